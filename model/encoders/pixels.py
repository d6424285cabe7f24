"""Raw pixels as the embedding: grayscale, resized, flattened, scaled to [0, 1].

On tiny grayscale images (digits, MNIST) this beats ImageNet features (AUTOAL.md), and costs
nothing to compute.
"""

import numpy as np
import torch

from model.encoders import option_suffix
from model.encoders.image import encode_in_batches, pil_to_array, resize_batch

# ITU-R 601-2 luma, the weights PIL's convert("L") uses, so both input paths agree.
LUMA = (0.299, 0.587, 0.114)


class PixelEncoder:
    """Images -> [N, side * side] grayscale intensities in [0, 1]."""

    modality = "image"
    _defaults = {"side": 28}

    def __init__(
        self, device: torch.device | str = "cpu", side: int = 28, batch_size: int = 4096
    ) -> None:
        if side < 1:
            raise ValueError(f"side must be a positive number of pixels, got {side}")
        self.device = torch.device(device)
        self.side = int(side)
        self.batch_size = int(batch_size)
        self.name, self.dim = self.identity(side=self.side)
        self.luma = torch.tensor(LUMA, device=self.device).view(1, 3, 1, 1)

    @classmethod
    def identity(cls, side: int = 28, **_: object) -> tuple[str, int]:
        """(name, dim) for these options; see ``model.encoders.encoder_identity``."""
        return "pixels" + option_suffix(cls._defaults, {"side": int(side)}), int(side) ** 2

    def encode(self, items: list) -> torch.Tensor:
        """PIL images [N] -> [N, side * side] float32 on the CPU."""
        return self.encode_array(pil_to_array(items, self.side, "L"))

    def encode_array(self, images: np.ndarray) -> torch.Tensor:
        """uint8 [N, H, W] or [N, H, W, C] -> [N, side * side] float32 on the CPU."""

        def features(x: torch.Tensor) -> torch.Tensor:
            if x.shape[1] == 3:
                x = (x * self.luma).sum(dim=1, keepdim=True)
            return (resize_batch(x, self.side) / 255.0).flatten(1).clamp_(0.0, 1.0)

        return encode_in_batches(images, self.batch_size, self.device, self.dim, features)
