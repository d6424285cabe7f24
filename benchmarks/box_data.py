"""Box (object detection) data for the harness: generated scenes, and any Label Studio export of a
``<RectangleLabels>`` project.

A ``BoxCorpus`` is images with boxes ``(x0, y0, x1, y1, class index)`` in fractions of the
image. ``embed_box_corpus`` turns it into what a box pool needs: each image's pooled vector and
its feature map (``MobileNetV2MapEncoder.encode_maps``), cached on disk by content.

The generated scenes come from ``vision-synth`` (PyPI, offline; imports as ``synth_datasets``):
shapes pasted on textured or noisy canvases, rendered at 320 pixels (the encoder squashes them
to its own size, as it does any upload).

- ``boxes-shapes``: 4 primitive shapes (square, rectangle, triangle, circle; the class is the
  shape, the colour is random), 1 to 6 per image, 6-25% of the side, on a cloudy texture.
- ``boxes-symbols``: 7 symbols (kite, trapezoid, house, arrow, cross, teardrop, anchor), 1 to
  8 per image, 5-20% of the side, on grey noise, with 2 unlabeled distractor shapes per image.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.datasets import default_cache_dir

BOX_DATASETS = ("boxes-shapes", "boxes-symbols")
SCENES = 1600
SCENE_PIXELS = 320


@dataclass
class BoxCorpus:
    """Images with their boxes.

    Attributes:
        name: a short name for reports.
        images: [N] PIL images.
        boxes: [N] float32 arrays [b, 5]: (x0, y0, x1, y1) fractions of the image, class index.
        classes: the class names, in label-config order.
    """

    name: str
    images: list
    boxes: list[np.ndarray]
    classes: tuple[str, ...]


def _require_vision_synth():
    if importlib.util.find_spec("synth_datasets") is None:
        raise SystemExit(
            "the generated box scenes need vision-synth: "
            "pip install --no-deps vision-synth==0.14.0.dev0 (requirements-assets.txt)"
        )
    import synth_datasets

    return synth_datasets


def generated_scenes(name: str, count: int = SCENES, seed: int = 0) -> BoxCorpus:
    """``count`` scenes of the generated set ``name`` (``BOX_DATASETS``), the same for a seed."""
    s = _require_vision_synth()
    if name == "boxes-shapes":
        shapes = tuple(s.DEFAULT_SHAPES)
        config = s.SyntheticConfig(
            img_size=SCENE_PIXELS, min_objects=1, max_objects=6, min_size_ratio=0.06,
            max_size_ratio=0.25, background=s.TextureBackground(), shapes=shapes,
        )  # fmt: skip
    elif name == "boxes-symbols":
        family = next(f for f in s.SHAPE_FAMILIES if f.name == "symbols")
        shapes = tuple(family.members)
        config = s.SyntheticConfig(
            img_size=SCENE_PIXELS, min_objects=1, max_objects=8, min_size_ratio=0.05,
            max_size_ratio=0.2, background=s.NoiseBackground(sigma=24.0), shapes=shapes,
            distractors=2, distractor_shapes=tuple(s.DEFAULT_SHAPES),
        )  # fmt: skip
    else:
        raise SystemExit(f"unknown box data set {name!r}; choose from {', '.join(BOX_DATASETS)}")
    return render_scenes(name, config, shapes, count, seed)


def render_scenes(name: str, config, shapes: tuple, count: int, seed: int) -> BoxCorpus:
    """``count`` scenes drawn by vision-synth with ``config`` (a ``SyntheticConfig`` whose
    classes are ``shapes``), the same for a seed: images and boxes in fractions."""
    from PIL import Image

    s = _require_vision_synth()
    classes = tuple(str(shape.value) for shape in shapes)
    generator = s.SyntheticGenerator(config)
    rng = np.random.default_rng(seed)
    images, boxes = [], []
    for _ in range(count):
        sample = generator.sample(rng)
        width, height = sample.width, sample.height
        images.append(Image.fromarray(sample.image).convert("RGB"))
        rows = [
            [a.bbox_xyxy[0] / width, a.bbox_xyxy[1] / height, a.bbox_xyxy[2] / width,
             a.bbox_xyxy[3] / height, classes.index(a.class_name)]
            for a in sample.annotations
        ]  # fmt: skip
        boxes.append(np.clip(np.array(rows, dtype=np.float32).reshape(-1, 5), 0.0, None))
    for b in boxes:
        b[:, :4] = np.clip(b[:, :4], 0.0, 1.0)
    return BoxCorpus(name, images, boxes, classes)


def load_box_export(path: Path, label_config: str) -> BoxCorpus:
    """The annotated tasks of a Label Studio JSON export of a ``<RectangleLabels>`` project,
    each with the boxes its annotators agree on (as the backend agrees them:
    ``autoal_backend.kinds.boxes``); images as ``benchmarks.exports.load_image`` reads them."""
    from autoal_backend.kinds import parse_label_config
    from autoal_backend.kinds.boxes import BoxSpec
    from autoal_backend.rounds.sync import recency
    from benchmarks.exports import load_image

    spec = parse_label_config(label_config)
    if not isinstance(spec, BoxSpec):
        raise SystemExit(
            f"{path}: the label config is a {spec.kind} project; expected <RectangleLabels>"
        )
    tasks = json.loads(Path(path).read_text())
    index = spec.class_index()
    images, boxes = [], []
    for task in tasks:
        votes = []
        for annotation in sorted(task.get("annotations") or [], key=recency):
            if annotation.get("was_cancelled"):
                continue
            vote, _ = spec.vote(annotation)
            if vote is not None:
                votes.append(vote)
        value = (task.get("data") or {}).get(spec.data_key)
        if not votes or not isinstance(value, str):
            continue
        agreed = spec.agree(votes)
        images.append(load_image(value, Path(path).parent))
        rows = [[x0, y0, x1, y1, index[label]] for x0, y0, x1, y1, label in agreed]
        boxes.append(np.array(rows, dtype=np.float32).reshape(-1, 5))
    if len(images) < 8:
        raise SystemExit(
            f"{path}: {len(images)} annotated image task(s); the harness needs at least 8"
        )
    return BoxCorpus(Path(path).stem, images, boxes, spec.labels)


def load_box_corpus(dataset: str, label_config: str | None = None) -> BoxCorpus:
    if dataset in BOX_DATASETS:
        return generated_scenes(dataset)
    if label_config is None:
        raise SystemExit("a Label Studio export needs --label-config")
    return load_box_export(Path(dataset), label_config)


@dataclass
class EmbeddedBoxes:
    corpus: BoxCorpus
    encoder: str
    pooled: torch.Tensor  # [N, d]
    maps: torch.Tensor  # [N, G, G, d'] float16
    sizes: torch.Tensor  # [N, 2]


def embed_box_corpus(corpus: BoxCorpus, encoder_name: str = "mobilenet_v2_maps",
                     cache_dir: Path | None = None, device: torch.device | str = "cpu") -> EmbeddedBoxes:  # fmt: skip
    """The encoder's pooled vectors and feature maps for every image, cached by content."""
    from model.encoders import encoder_identity, get_encoder, parse_encoder

    name, options = parse_encoder(encoder_name)
    identity, _ = encoder_identity(name, **options)
    digest = hashlib.sha256()
    for image in corpus.images:
        digest.update(image.tobytes())
    cache = (
        Path(cache_dir or default_cache_dir()) / f"boxes-{identity}-{digest.hexdigest()[:16]}.pt"
    )
    if cache.exists():
        saved = torch.load(cache, weights_only=False)
        return EmbeddedBoxes(
            corpus, saved["encoder"], saved["pooled"], saved["maps"], saved["sizes"]
        )
    encoder = get_encoder(name, device, **options)
    if not hasattr(encoder, "encode_maps"):
        raise SystemExit(
            f"encoder {encoder_name!r} gives no feature maps; box projects need mobilenet_v2_maps"
        )
    pooled, maps, sizes = [], [], []
    for start in range(0, len(corpus.images), 256):
        p, m, s = encoder.encode_maps(corpus.images[start : start + 256])
        pooled.append(p)
        maps.append(m.half())
        sizes.append(s)
    out = EmbeddedBoxes(corpus, encoder.name, torch.cat(pooled), torch.cat(maps), torch.cat(sizes))
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"encoder": out.encoder, "pooled": out.pooled, "maps": out.maps, "sizes": out.sizes}, cache
    )
    return out
