"""The task model: a small classification head trained on frozen embeddings.

Protocol of the reference measurements (AUTOAL.md): a linear softmax head with dropout 0.2 on
standardised features, full-batch Adam. The head always ends in ``Dropout -> Linear``, so the
penultimate representation (``embed``) is what MC dropout and BADGE need, computed once.
"""

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from model.errors import EmptyPoolError
from model.seeding import generator, seeded

CHUNK = 65536
# Rows per block when summing squares in ``standardise``: a [16384, d] temporary at most.
STANDARDISE_BLOCK = 16384


@dataclass(frozen=True)
class TaskModelConfig:
    """Hyper-parameters of the task head. ``hidden=0`` means a linear head."""

    hidden: int = 0
    dropout: float = 0.2
    steps: int = 500
    lr: float = 0.01
    weight_decay: float = 1e-4


class TaskHead(nn.Module):
    """[N, d] features -> [N, C] logits: (Linear -> ReLU ->)? Dropout -> Linear."""

    def __init__(self, dim: int, num_classes: int, config: TaskModelConfig) -> None:
        super().__init__()
        self.body: nn.Module = (
            nn.Sequential(nn.Linear(dim, config.hidden), nn.ReLU())
            if config.hidden > 0
            else nn.Identity()
        )
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Linear(config.hidden if config.hidden > 0 else dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(self.body(x)))


class DropoutMasks:
    """Training-time dropout with masks from numpy's PCG64, seeded once per fit.

    Same distribution as ``nn.Dropout`` (each unit kept with probability 1 - p, kept units
    scaled by 1 / keep), but about 8x cheaper on the CPU: torch's Bernoulli draws cost
    ~3 ms per [1000, 384] mask, i.e. 1.6 s of every 500-step fit and most of a round's fixed
    cost (docs/performance.md). Masks are drawn on the CPU and moved, so CUDA and CPU fits see
    the very same masks. A unit is kept when a uniform 16-bit integer is below
    round(keep * 65536); the scale uses that exact keep rate, so the expectation is unbiased.
    """

    def __init__(self, dropout: float, seed: int) -> None:
        self.threshold = round((1.0 - dropout) * 65536)
        self.scale = np.float32(65536.0 / self.threshold if self.threshold > 0 else 0.0)
        self.rng = np.random.default_rng(seed)
        # One fit applies 500 masks of one shape: the bool and float buffers are reused, so
        # no step pays for fresh multi-megabyte arrays (page faults doubled the mask's cost).
        self._keep: np.ndarray | None = None
        self._mask: np.ndarray | None = None

    def apply(self, hidden: torch.Tensor) -> torch.Tensor:
        """[L, h] -> [L, h] with a fresh mask; the identity when dropout is 0.

        The mask's buffer is reused by the next call: the result is meant for one training
        step (autograd is done with it before the next mask is drawn)."""
        if self.threshold >= 65536:
            return hidden
        count = hidden.numel()
        shape = tuple(hidden.shape)
        if self._mask is None or self._mask.shape != shape:
            self._keep = np.empty(shape, dtype=bool)
            self._mask = np.empty(shape, dtype=np.float32)
        assert self._keep is not None
        # Raw PCG64 output cut into 16-bit uniforms: 4 draws per generator step.
        draws = self.rng.bit_generator.random_raw((count + 3) // 4).view(np.uint16)[:count]
        # The scaled float mask is built by numpy: cheaper than torch.where on a bool mask.
        np.less(draws.reshape(shape), self.threshold, out=self._keep)
        np.multiply(self._keep, self.scale, out=self._mask)  # [L, h]
        mask = torch.from_numpy(self._mask)
        if hidden.device.type != "cpu" or hidden.dtype != torch.float32:
            mask = mask.to(device=hidden.device, dtype=hidden.dtype)
        return hidden * mask


def standardise(embeddings: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Zero mean, unit variance per dimension over the whole pool ([N, d] -> [N, d]).

    The variance is summed over row blocks of the centred copy: torch's ``std(dim=0)`` walks
    columns of a row-major matrix and took 4x longer on a 100k pool (docs/performance.md).
    """
    n = embeddings.shape[0]
    mean = embeddings.mean(dim=0, keepdim=True)  # [1, d]
    centred = embeddings - mean  # [N, d], the result once scaled in place
    squares = torch.zeros_like(mean)
    for block in centred.split(STANDARDISE_BLOCK):
        squares += block.square().sum(dim=0, keepdim=True)
    std = (squares / max(n - 1, 1)).sqrt_().clamp_min_(eps)  # unbiased, as torch.std
    return centred.div_(std)


def task_loss(logits: torch.Tensor, targets: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """Per-sample loss [N]: cross-entropy (single-label) or summed binary CE (multi-label)."""
    if multilabel:
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(dim=1)
    return F.cross_entropy(logits, targets.argmax(dim=1), reduction="none")


def to_probs(logits: torch.Tensor, multilabel: bool) -> torch.Tensor:
    return torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=-1)


class TaskModel:
    """A trained head plus what is needed to use it: the label kind and its config."""

    def __init__(self, head: TaskHead, multilabel: bool, config: TaskModelConfig) -> None:
        self.head = head.eval()
        self.multilabel = multilabel
        self.config = config

    @classmethod
    def fit(
        cls,
        features: torch.Tensor,
        targets: torch.Tensor,
        *,
        multilabel: bool = False,
        config: TaskModelConfig | None = None,
        seed: int = 0,
        sample_weight: torch.Tensor | None = None,
    ) -> "TaskModel":
        """Train a fresh head on [L, d] features and [L, C] targets, full batch."""
        config = config or TaskModelConfig()
        if features.shape[0] == 0:
            raise EmptyPoolError("cannot train the task model on 0 labeled items")
        device = features.device
        with seeded(seed, device):
            head = TaskHead(features.shape[1], targets.shape[1], config).to(device)
            optimiser = torch.optim.Adam(
                head.parameters(), lr=config.lr, weight_decay=config.weight_decay
            )
            weight = sample_weight if sample_weight is not None else None
            masks = DropoutMasks(config.dropout, int(torch.randint(2**62, (1,))))
            head.train()
            for _ in range(config.steps):
                optimiser.zero_grad(set_to_none=True)
                hidden = head.body(features)  # [L, h]
                loss = task_loss(head.out(masks.apply(hidden)), targets, multilabel)
                loss = (loss * weight).sum() / weight.sum() if weight is not None else loss.mean()
                loss.backward()
                optimiser.step()
        return cls(head, multilabel, config)

    @torch.no_grad()
    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """[N, d] -> [N, h]: the input of the last dropout and linear layer.

        For a linear head that is ``features`` itself, returned without a copy (callers only
        read it): on a 100k pool the copy cost BADGE 150 MiB of peak memory.
        """
        if isinstance(self.head.body, nn.Identity) or not len(features):
            return features
        return torch.cat([self.head.body(c) for c in features.split(CHUNK)])

    @torch.no_grad()
    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """[N, d] -> [N, C] deterministic logits (dropout off)."""
        return torch.cat([self.head(c) for c in features.split(CHUNK)])

    @torch.no_grad()
    def predict_proba(self, features: torch.Tensor) -> torch.Tensor:
        """[N, d] -> [N, C] probabilities (softmax rows, or per-class sigmoids)."""
        return to_probs(self.logits(features), self.multilabel)

    @torch.no_grad()
    def per_sample_loss(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """[N] loss of the deterministic model on labeled items."""
        return task_loss(self.logits(features), targets, self.multilabel)

    @torch.no_grad()
    def mc_probabilities(
        self, features: torch.Tensor, passes: int = 20, seed: int = 0
    ) -> torch.Tensor:
        """[N, T, C] probabilities under T MC-dropout passes of the last layer.

        The T dropout masks are shared across the pool ("consistent MC dropout"), so all T
        passes fold into one matmul against a [h, T*C] weight: no per-item mask draws.
        """
        hidden = self.embed(features)  # [N, h]
        keep = 1.0 - self.config.dropout
        # Drawn on the CPU and moved: CUDA and CPU runs then share the very same masks.
        masks = (
            torch.bernoulli(
                torch.full((passes, hidden.shape[1]), keep), generator=generator(seed)
            ).to(hidden.device)
            / max(keep, 1e-6)
        )  # [T, h]
        weight = self.head.out.weight  # [C, h]
        num_classes = weight.shape[0]
        folded = (masks.t().unsqueeze(-1) * weight.t().unsqueeze(1)).reshape(
            hidden.shape[1], passes * num_classes
        )  # [h, T*C]
        out = []
        for chunk in hidden.split(CHUNK):
            logits = (chunk @ folded).view(-1, passes, num_classes) + self.head.out.bias
            out.append(to_probs(logits, self.multilabel))
        return torch.cat(out)

    def state_dict(self) -> dict:
        return {
            "head": {k: v.detach().cpu() for k, v in self.head.state_dict().items()},
            "multilabel": self.multilabel,
            "config": asdict(self.config),
        }

    @classmethod
    def from_state_dict(cls, state: dict, device: torch.device | str = "cpu") -> "TaskModel":
        config = TaskModelConfig(**state["config"])
        weight = state["head"]["out.weight"]
        num_classes = weight.shape[0]
        dim = state["head"]["body.0.weight"].shape[1] if config.hidden > 0 else weight.shape[1]
        head = TaskHead(dim, num_classes, config)
        head.load_state_dict(state["head"])
        return cls(head.to(device), bool(state["multilabel"]), config)
