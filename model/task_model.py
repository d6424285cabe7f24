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

    def mask(self, shape: tuple[int, ...], device: torch.device | str = "cpu") -> torch.Tensor:
        """A fresh scaled keep-mask of ``shape`` (float32, 0 or 1/keep). Its buffer is reused
        by the next call: the mask is meant for one training step."""
        count = int(np.prod(shape))
        if self._mask is None or self._mask.shape != shape:
            self._keep = np.empty(shape, dtype=bool)
            self._mask = np.empty(shape, dtype=np.float32)
        assert self._keep is not None
        # Raw PCG64 output cut into 16-bit uniforms: 4 draws per generator step.
        draws = self.rng.bit_generator.random_raw((count + 3) // 4).view(np.uint16)[:count]
        # The scaled float mask is built by numpy: cheaper than torch.where on a bool mask.
        np.less(draws.reshape(shape), self.threshold, out=self._keep)
        np.multiply(self._keep, self.scale, out=self._mask)
        mask = torch.from_numpy(self._mask)
        return mask if torch.device(device).type == "cpu" else mask.to(device)

    def apply(self, hidden: torch.Tensor) -> torch.Tensor:
        """[L, h] -> [L, h] with a fresh mask; the identity when dropout is 0."""
        if self.threshold >= 65536:
            return hidden
        mask = self.mask(tuple(hidden.shape), hidden.device)
        return hidden * (mask if mask.dtype == hidden.dtype else mask.to(hidden.dtype))


def standardisation(
    embeddings: torch.Tensor, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean [d] and unbiased std [d] (clamped to ``eps``) over the pool [N, d].

    The variance is summed over row blocks of the centred rows: torch's ``std(dim=0)`` walks
    columns of a row-major matrix and took 4x longer on a 100k pool (docs/performance.md).
    """
    n = embeddings.shape[0]
    mean = embeddings.mean(dim=0, keepdim=True)  # [1, d]
    squares = torch.zeros_like(mean)
    for block in embeddings.split(STANDARDISE_BLOCK):
        squares += (block - mean).square().sum(dim=0, keepdim=True)
    std = (squares / max(n - 1, 1)).sqrt_().clamp_min_(eps)  # unbiased, as torch.std
    return mean.squeeze(0), std.squeeze(0)


def standardise(
    embeddings: torch.Tensor,
    eps: float = 1e-6,
    stats: tuple[torch.Tensor, torch.Tensor] | None = None,
    in_place: bool = False,
) -> torch.Tensor:
    """Zero mean, unit variance per dimension over the whole pool ([N, d] -> [N, d]), or with
    given ``stats`` (mean [d], std [d] from ``standardisation``: new items as the pool was).
    ``in_place``: overwrite ``embeddings`` instead of allocating a second pool (a 1M x 1280
    pool is 5 GB); the values are the same."""
    mean, std = stats if stats is not None else standardisation(embeddings, eps)
    out = embeddings.sub_(mean) if in_place else embeddings - mean
    return out.div_(std)


def task_loss(logits: torch.Tensor, targets: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """Per-sample loss [N]: cross-entropy (single-label) or summed binary CE (multi-label)."""
    if multilabel:
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(dim=1)
    return F.cross_entropy(logits, targets.argmax(dim=1), reduction="none")


def to_probs(logits: torch.Tensor, multilabel: bool) -> torch.Tensor:
    return torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=-1)


def _stacked_heads(j: int, d: int, c: int, config: TaskModelConfig, device: torch.device):
    """J copies of the linear head ``fit`` would start from under the current seed, stacked
    (weight [J, C, d], bias [J, C]), their Adam optimiser and the fit's dropout masks."""
    head = TaskHead(d, c, config).to(device)
    masks = DropoutMasks(config.dropout, int(torch.randint(2**62, (1,))))
    weight = head.out.weight.detach().expand(j, c, d).clone().requires_grad_()
    bias = head.out.bias.detach().expand(j, c).clone().requires_grad_()
    optimiser = torch.optim.Adam([weight, bias], lr=config.lr, weight_decay=config.weight_decay)
    return weight, bias, optimiser, masks


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

    @classmethod
    def fit_extensions(
        cls,
        features: torch.Tensor,
        targets: torch.Tensor,
        extra_features: torch.Tensor,
        extra_targets: torch.Tensor,
        *,
        multilabel: bool = False,
        config: TaskModelConfig | None = None,
        seed: int = 0,
    ) -> list["TaskModel"]:
        """J heads at once, head j trained on ``features`` [L, d] plus batch j of
        ``extra_features`` [J, B, d] (targets [L, C] and [J, B, C]): what J calls of ``fit`` on
        ``cat(features, extra_features[j])`` with this ``seed`` train, up to float rounding.

        Those J fits share their initial head and every step's dropout mask (the same seed,
        the same number of rows), so the labeled rows' masked features are computed once and
        one matmul serves all J heads; Adam is elementwise, so the stacked parameters train
        exactly as J separate ones. For the simulation's truth: the gain of each candidate
        batch, 13 fits for the price of about two (docs/benchmarks.md)."""
        config = config or TaskModelConfig()
        j, b, d = extra_features.shape
        if config.hidden > 0 or j == 0:
            return [
                cls.fit(
                    torch.cat((features, extra_features[i])),
                    torch.cat((targets, extra_targets[i])),
                    multilabel=multilabel,
                    config=config,
                    seed=seed,
                )
                for i in range(j)
            ]
        device = features.device
        n, c = features.shape[0] + b, targets.shape[1]
        with seeded(seed, device):
            weight, bias, optimiser, masks = _stacked_heads(j, d, c, config, device)
            shared_targets = targets.unsqueeze(0).expand(j, -1, -1)  # [J, L, C]
            for _ in range(config.steps):
                optimiser.zero_grad(set_to_none=True)
                if masks.threshold >= 65536:
                    shared, extra = features, extra_features
                else:
                    mask = masks.mask((n, d), device)  # [L + B, d], rows as fit() orders them
                    shared = features * mask[: features.shape[0]]
                    extra = extra_features * mask[features.shape[0] :]
                logits_shared = (
                    (shared @ weight.reshape(j * c, d).t()).view(-1, j, c).transpose(0, 1)
                )
                logits = torch.cat((logits_shared, torch.bmm(extra, weight.transpose(1, 2))), dim=1)
                logits = logits + bias.unsqueeze(1)  # [J, L + B, C]
                all_targets = torch.cat((shared_targets, extra_targets), dim=1)
                loss = task_loss(
                    logits.reshape(j * n, c), all_targets.reshape(j * n, c), multilabel
                )
                (loss.sum() / n).backward()  # each head's mean loss; heads share nothing
                optimiser.step()
        return [cls._linear(weight[i], bias[i], multilabel, config) for i in range(j)]

    @classmethod
    def fit_weighted(
        cls,
        features: torch.Tensor,
        targets: torch.Tensor,
        weights: torch.Tensor,
        *,
        multilabel: bool = False,
        config: TaskModelConfig | None = None,
        seed: int = 0,
    ) -> list["TaskModel"]:
        """J heads at once on the same rows ``features`` [L, d], head j's loss weighted by
        ``weights[j]`` [J, L] (0 leaves a row out): what J calls of ``fit(features, targets,
        sample_weight=weights[j], seed=seed)`` train, up to float rounding. The rows' masked
        features are computed once per step and one matmul serves every head (Adam is
        elementwise, so stacked parameters train as separate ones). For k-fold validation:
        k fits for the price of about one."""
        config = config or TaskModelConfig()
        j = weights.shape[0]
        if config.hidden > 0 or j < 2:
            return [
                cls.fit(
                    features,
                    targets,
                    multilabel=multilabel,
                    config=config,
                    seed=seed,
                    sample_weight=w,
                )
                for w in weights
            ]
        device = features.device
        (n, d), c = features.shape, targets.shape[1]
        norm = weights / weights.sum(dim=1, keepdim=True)  # [J, L]; each head's weighted mean
        with seeded(seed, device):
            weight, bias, optimiser, masks = _stacked_heads(j, d, c, config, device)
            stacked_targets = targets.repeat(j, 1)  # [J * L, C]
            for _ in range(config.steps):
                optimiser.zero_grad(set_to_none=True)
                masked = masks.apply(features)  # [L, d]
                logits = (masked @ weight.reshape(j * c, d).t()).view(n, j, c).transpose(0, 1)
                logits = logits + bias.unsqueeze(1)  # [J, L, C]
                loss = task_loss(logits.reshape(j * n, c), stacked_targets, multilabel).view(j, n)
                (loss * norm).sum().backward()  # the heads share nothing: each gets its own mean
                optimiser.step()
        return [cls._linear(weight[i], bias[i], multilabel, config) for i in range(j)]

    @classmethod
    def _linear(
        cls, weight: torch.Tensor, bias: torch.Tensor, multilabel: bool, config: TaskModelConfig
    ) -> "TaskModel":
        """A linear head with these trained parameters ([C, d], [C])."""
        c, d = weight.shape
        single = TaskHead(d, c, config).to(weight.device)
        with torch.no_grad():
            single.out.weight.copy_(weight)
            single.out.bias.copy_(bias)
        return cls(single, multilabel, config)

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
        masks = torch.bernoulli(
            torch.full((passes, hidden.shape[1]), keep), generator=generator(seed)
        ).to(hidden.device) / max(keep, 1e-6)  # [T, h]
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
