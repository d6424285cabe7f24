"""Frozen pretrained encoders: each task becomes one vector, once (AUTOAL.md, embedding-space
design). Everything after this (task model, strategies, SearchNet) works on those vectors.

An encoder takes a list of items (``PIL.Image.Image`` for images, ``str`` for texts) and returns
[N, dim] float32 embeddings on the CPU, computed in batches under ``torch.no_grad`` on the
device it was built for. Image encoders also take a whole uint8 array at once
(``encode_array``), which the benchmark data sets use to skip PIL entirely.

Encoders are found by name; an unknown name is an error listing the valid ones. Building one is
lazy: importing this package loads no weights.
"""

import importlib
import inspect
from typing import Any, Protocol, runtime_checkable

import torch

from model.errors import UnknownNameError

DEFAULT_ENCODERS: dict[str, str] = {"image": "mobilenet_v2", "text": "minilm"}


@runtime_checkable
class Encoder(Protocol):
    """What every encoder offers.

    Attributes:
        name: the registry name, plus any non-default option (``pixels@side=8``), so that it names
            the embedding space exactly; part of every cache key.
        modality: ``"image"`` or ``"text"``.
        dim: the embedding width d.
    """

    name: str
    modality: str
    dim: int

    def encode(self, items: list) -> torch.Tensor:
        """PIL images or strings [N] -> [N, dim] float32 on the CPU."""
        ...


# name -> (modality, "module:Class"): classes are imported on first use, so importing this
# package loads neither torchvision nor transformers.
_REGISTRY: dict[str, tuple[str, str]] = {
    "mobilenet_v2": ("image", "model.encoders.image:MobileNetV2Encoder"),
    "mobilenet_v2_maps": ("image", "model.encoders.image:MobileNetV2MapEncoder"),
    "efficientnet_lite0": ("image", "model.encoders.image:EfficientNetLite0Encoder"),
    "minilm": ("text", "model.encoders.text:MiniLMEncoder"),
    "pixels": ("image", "model.encoders.pixels:PixelEncoder"),
}


def encoder_names() -> list[str]:
    """Every registered encoder name."""
    return sorted(_REGISTRY)


def _encoder_class(name: str) -> Any:
    if name not in _REGISTRY:
        raise UnknownNameError("encoder", name, encoder_names())
    module, _, attribute = _REGISTRY[name][1].partition(":")
    return getattr(importlib.import_module(module), attribute)


def encoder_modality(name: str) -> str:
    """``"image"`` or ``"text"`` for a registered encoder, without building it."""
    if name not in _REGISTRY:
        raise UnknownNameError("encoder", name, encoder_names())
    return _REGISTRY[name][0]


def get_encoder(name: str, device: torch.device | str = "cpu", **options: Any) -> Encoder:
    """Build the encoder called ``name`` on ``device``.

    ``options`` are the encoder's own settings (``image_size`` for ``mobilenet_v2`` and
    ``efficientnet_lite0``, ``side`` for ``pixels``, ``max_length``/``model_path`` for
    ``minilm``, ``batch_size`` for all).
    """
    return _encoder_class(name)(device=torch.device(device), **options)


def encoder_identity(name: str, **options: Any) -> tuple[str, int]:
    """(``name`` with its options, dim) that ``get_encoder(name, **options)`` would have,
    without loading any weights: enough to open its ``EmbeddingCache`` and skip building the
    encoder when everything is cached."""
    return _encoder_class(name).identity(**options)


def encoder_map_shape(name: str, **options: Any) -> tuple[int, int, int] | None:
    """[G, G, d] of the feature maps the encoder called ``name`` gives with ``options``
    (``mobilenet_v2_maps``, for box projects), or None for an encoder without maps."""
    cls = _encoder_class(name)
    return cls.shape_for(**options) if hasattr(cls, "shape_for") else None


def encoder_options(name: str) -> dict[str, Any]:
    """{option: default} that the encoder called ``name`` takes (``device`` aside)."""
    parameters = inspect.signature(_encoder_class(name).__init__).parameters.values()
    return {
        p.name: p.default
        for p in parameters
        if p.name not in ("self", "device") and p.default is not inspect.Parameter.empty
    }


def parse_encoder(spec: str) -> tuple[str, dict[str, Any]]:
    """An encoder setting, ``name[@key=value,...]``, as (name, options): the one parser of
    encoder settings, used by the server's environment, per-project settings and the
    benchmarks alike. ``"mobilenet_v2@image_size=224"`` -> ``("mobilenet_v2", {"image_size":
    224})``. An unknown encoder or option is an ``UnknownNameError`` listing the valid ones; a
    value of the wrong type a ``ValueError`` that names it."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("an encoder setting must be a non-empty name, e.g. mobilenet_v2")
    name, _, rest = spec.strip().partition("@")
    name = name.strip()
    valid = encoder_options(name)  # UnknownNameError for an unknown encoder
    options: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, equals, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not equals or not key:
            raise ValueError(f"encoder option {part!r} in {spec!r} must look like key=value")
        if key not in valid:
            raise UnknownNameError(f"option of encoder {name!r}", key, list(valid))
        default = valid[key]
        if isinstance(default, int) and not isinstance(default, bool):
            try:
                options[key] = int(value)
            except ValueError:
                raise ValueError(
                    f"encoder option {key!r} in {spec!r} must be an integer, got {value!r}"
                ) from None
        else:
            options[key] = value
    return name, options


def option_suffix(defaults: dict[str, Any], values: dict[str, Any]) -> str:
    """``@k=v,...`` for the options that differ from their defaults ('' when none does), so
    two differently configured encoders never share a cache. Batch size is not an option that
    changes embeddings and is never passed here."""
    changed = [f"{k}={values[k]}" for k in sorted(defaults) if values[k] != defaults[k]]
    return "@" + ",".join(changed) if changed else ""
