"""The SearchNet prior: strategy weights from the round's state, learned offline from
simulated labeling of other tasks.

No signal computed from one project's own few hundred labels ranks the strategies' next
batches (docs/benchmarks.md); what repeats across tasks is the state (labels per class,
balance, the model's confidence, how much the strategies agree). So a small SearchNet maps the
state features of ``state.py`` to weights over the K strategies, and is trained where the
truth can be measured: in simulated rounds of many tasks, the true test-accuracy gain of the
batch each strategy and several mixtures would have picked (``benchmarks.episodes``). It is
trained through the same differentiable top-fraction relaxation as the online search
(``search.soft_top_fraction``): its weights give each recorded item a priority, the relaxed
top-B of those priorities is its batch, and the reward is the true gain that batch carries
(each item credited with the mean gain, over the uniform mixture's, of the recorded batches
holding it). A pull toward the uniform mixture keeps it there wherever the truth does not
consistently say otherwise.

The trained prior ships as ``prior.json`` (a few kilobytes: weights, the feature
standardisation, and how it was made); ``make meta-train`` reproduces it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from model.autoal.state import FEATURES
from model.seeding import seeded

PRIOR_FILE = Path(__file__).with_name("prior.json")
PRIOR_FORMAT = 1


class PriorNet(nn.Module):
    """Standardised state features [n, F] -> weights [n, K] (softmax). The output layer starts
    at zero: an untrained prior is the uniform mixture."""

    def __init__(self, num_features: int, num_strategies: int, hidden: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(num_features, hidden), nn.Tanh())
        self.head = nn.Linear(hidden, num_strategies)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.head(self.body(features)), dim=-1)


@dataclass
class Prior:
    """A trained prior: its portfolio (the order of its K outputs), the feature names and
    standardisation it was trained with, the network, and how it was made (``meta``)."""

    portfolio: list[str]
    features: list[str]
    mean: torch.Tensor  # [F]
    std: torch.Tensor  # [F]
    net: PriorNet
    meta: dict = field(default_factory=dict)

    @torch.no_grad()
    def weights(self, features: torch.Tensor) -> torch.Tensor:
        """[F] -> [K] (or [n, F] -> [n, K]) strategy weights for raw state features."""
        x = (features.float().cpu() - self.mean) / self.std
        return self.net.eval()(x)

    def to_json(self) -> dict:
        return {
            "format": PRIOR_FORMAT,
            "portfolio": list(self.portfolio),
            "features": list(self.features),
            "hidden": int(self.net.head.in_features),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "net": {k: v.tolist() for k, v in self.net.state_dict().items()},
            "meta": self.meta,
        }

    @classmethod
    def from_json(cls, data: dict) -> Prior:
        if data.get("format") != PRIOR_FORMAT:
            raise ValueError(f"prior format {data.get('format')!r}; this version reads {PRIOR_FORMAT}")
        features = list(data["features"])
        if features != list(FEATURES):
            raise ValueError(
                f"the prior was trained on features {features}, this version computes {list(FEATURES)}"
            )
        net = PriorNet(len(features), len(data["portfolio"]), int(data["hidden"]))
        net.load_state_dict({k: torch.tensor(v, dtype=torch.float32) for k, v in data["net"].items()})
        return cls(
            portfolio=list(data["portfolio"]),
            features=features,
            mean=torch.tensor(data["mean"], dtype=torch.float32),
            std=torch.tensor(data["std"], dtype=torch.float32),
            net=net.eval(),
            meta=dict(data.get("meta") or {}),
        )

    def save(self, path: Path | str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.to_json(), indent=1) + "\n")


_LOADED: dict[tuple[str, float], Prior] = {}


def load_prior(spec: str) -> Prior | None:
    """The prior named by an AutoAL ``prior`` setting: ``none`` -> None, ``default`` -> the
    shipped file, anything else a path. Loaded once per file version."""
    if spec == "none":
        return None
    path = PRIOR_FILE if spec == "default" else Path(spec)
    if not path.is_file():
        raise FileNotFoundError(
            f"AutoAL prior {spec!r}: no file at {path}"
            + (" (run `make meta-train`)" if spec == "default" else "")
        )
    key = (str(path.resolve()), path.stat().st_mtime)
    if key not in _LOADED:
        _LOADED[key] = Prior.from_json(json.loads(path.read_text()))
    return _LOADED[key]


# --- training ------------------------------------------------------------------------------


@dataclass
class TrainingRound:
    """One simulated round, as the prior learns from it.

    Attributes:
        features: [F] the round's state features (``state.round_features``).
        scores: [U, K] rank-normalised portfolio scores of the U items in any recorded batch.
        value: [U] each item's credit: the mean over the recorded batches that hold it of
            (that batch's true gain - the uniform mixture's batch gain).
        batch: B, the batch size of the round.
        group: the task family (a data set and everything derived from it).
        weight: the round's share in the objective (families weigh alike).
    """

    features: torch.Tensor
    scores: torch.Tensor
    value: torch.Tensor
    batch: int
    group: str
    weight: float = 1.0


def item_values(batches: torch.Tensor, gains: torch.Tensor, reference: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(items [U], value [U]) from recorded batches [J, B] (candidate indices) and their true
    gains [J]: the union of the batches' items and, per item, the mean of (gain_j - gain of
    batch ``reference``) over the batches j that hold it."""
    items, inverse = torch.unique(batches.flatten(), return_inverse=True)
    relative = (gains - gains[reference]).repeat_interleave(batches.shape[1])  # [J * B]
    total = torch.zeros(items.numel(), dtype=torch.float64).index_add_(0, inverse, relative.double())
    count = torch.zeros(items.numel(), dtype=torch.float64).index_add_(
        0, inverse, torch.ones_like(relative, dtype=torch.float64)
    )
    return items, (total / count).float()


@dataclass(frozen=True)
class PriorTrainingConfig:
    """How the prior is trained (full batch, Adam, deterministic on the CPU).

    Attributes:
        hidden: width of the prior's hidden layer.
        steps, lr, weight_decay: the optimiser.
        pull: weight of KL(uniform || w) per round: the price, in accuracy gain, of moving away
            from the uniform mixture.
        temperature: the relaxation's temperature (standard deviations of the priority).
        seed: initialisation.
    """

    hidden: int = 16
    steps: int = 1500
    lr: float = 0.01
    weight_decay: float = 1e-4
    pull: float = 0.01
    temperature: float = 0.2
    seed: int = 0


@dataclass
class _Batch:
    """Training rounds padded to one tensor: scores [R, U, K], value and mask [R, U]."""

    features: torch.Tensor
    scores: torch.Tensor
    value: torch.Tensor
    mask: torch.Tensor
    take: torch.Tensor  # [R] batch size within the round's items
    weight: torch.Tensor  # [R], sums to 1

    @classmethod
    def of(cls, rounds: list[TrainingRound]) -> _Batch:
        width = max(r.scores.shape[0] for r in rounds)
        k = rounds[0].scores.shape[1]
        scores = torch.zeros(len(rounds), width, k)
        value = torch.zeros(len(rounds), width)
        mask = torch.zeros(len(rounds), width, dtype=torch.bool)
        for i, r in enumerate(rounds):
            u = r.scores.shape[0]
            scores[i, :u] = r.scores.float()
            value[i, :u] = r.value.float()
            mask[i, :u] = True
        take = torch.tensor([min(r.batch, r.scores.shape[0] - 1) for r in rounds])
        weight = torch.tensor([r.weight for r in rounds], dtype=torch.float32)
        return cls(
            torch.stack([r.features.float() for r in rounds]),
            scores,
            value,
            mask,
            take.clamp_min(1),
            weight / weight.sum(),
        )


def soft_batch(
    weights: torch.Tensor, batch: _Batch, temperature: float
) -> torch.Tensor:
    """[R, U] the relaxed "in the top-B by priority" of every round at once (weights [R, K]).

    The rows' own top-fraction relaxation (``search.soft_top_fraction``), vectorised over
    rounds of different sizes: priorities standardised over each round's items, the threshold
    half-way between the B-th and (B+1)-th largest."""
    u = (batch.scores * weights.unsqueeze(1)).sum(dim=-1)  # [R, U]
    m = batch.mask.float()
    n = m.sum(dim=1, keepdim=True)
    mean = (u * m).sum(dim=1, keepdim=True) / n
    var = (((u - mean) ** 2) * m).sum(dim=1, keepdim=True) / (n - 1).clamp_min(1)
    z = torch.where(batch.mask, (u - mean) / var.sqrt().clamp_min(1e-6), torch.full_like(u, -1e4))
    ordered = z.sort(dim=1, descending=True).values
    index = batch.take.unsqueeze(1)
    tau = 0.5 * (ordered.gather(1, index - 1) + ordered.gather(1, index))
    return torch.sigmoid((z - tau) / temperature) * m


def relaxed_gain(weights: torch.Tensor, batch: _Batch, temperature: float) -> torch.Tensor:
    """[R] the true gain (over uniform) that each round's relaxed batch carries."""
    s = soft_batch(weights, batch, temperature)
    return (s * batch.value).sum(dim=1) / s.sum(dim=1).clamp_min(1e-6)


@torch.no_grad()
def hard_gain(weights: torch.Tensor, rounds: list[TrainingRound]) -> torch.Tensor:
    """[R] the mean item credit of each round's exact top-B by priority (weights [R, K] or
    [K]): what the weights would have gained over uniform, by the recorded truth."""
    out = []
    for i, r in enumerate(rounds):
        w = weights if weights.ndim == 1 else weights[i]
        u = r.scores.float() @ w.float()
        take = max(1, min(r.batch, u.numel()))
        out.append(r.value[u.topk(take).indices].float().mean())
    return torch.stack(out)


def standardisation(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean [F] and std [F] of training features [R, F] (a constant feature gets std 1)."""
    mean = features.mean(dim=0)
    std = features.std(dim=0)
    return mean, torch.where(std > 1e-6, std, torch.ones_like(std))


def train_prior(
    rounds: list[TrainingRound],
    portfolio: list[str],
    config: PriorTrainingConfig | None = None,
    meta: dict | None = None,
) -> Prior:
    """Fit a prior on ``rounds``: maximise the weighted mean relaxed gain minus ``pull`` times
    KL(uniform || w). Deterministic for the same rounds, config and thread count."""
    config = config or PriorTrainingConfig()
    if not rounds:
        raise ValueError("cannot train a prior on 0 rounds")
    k = len(portfolio)
    if any(r.scores.shape[1] != k for r in rounds):
        raise ValueError(f"every round must score the {k} strategies of the portfolio")
    batch = _Batch.of(rounds)
    mean, std = standardisation(batch.features)
    x = (batch.features - mean) / std
    uniform = torch.full((k,), 1.0 / k)
    with seeded(config.seed):
        net = PriorNet(x.shape[1], k, config.hidden)
        optimiser = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        for _ in range(config.steps):
            optimiser.zero_grad(set_to_none=True)
            w = net(x)  # [R, K]
            gain = relaxed_gain(w, batch, config.temperature)
            kl = (uniform * (torch.log(uniform) - torch.log(w.clamp_min(1e-12)))).sum(dim=1)
            loss = -(batch.weight * (gain - config.pull * kl)).sum()
            loss.backward()
            optimiser.step()
    net.eval()
    with torch.no_grad():
        w = net(x)
        trained = float((batch.weight * hard_gain(w, rounds)).sum())
    info = {
        "training": asdict(config),
        "rounds": len(rounds),
        "groups": sorted({r.group for r in rounds}),
        "hard_gain_over_uniform": round(trained, 6),
        "mean_weights": [round(float(v), 4) for v in w.mean(dim=0)],
    }
    return Prior(list(portfolio), list(FEATURES), mean, std, net, {**(meta or {}), **info})
