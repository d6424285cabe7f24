"""The SearchNet prior: which mixture of the portfolio to use in this round's state, learned
offline from simulated labeling of other tasks.

No signal computed from one project's own few hundred labels ranks the strategies' next
batches (docs/benchmarks.md); what repeats across tasks is the state (labels per class,
balance, the model's confidence, how much the strategies agree). So a small SearchNet maps the
state features of ``state.py`` to a choice among **actions**, each a weight vector over the K
strategies: the uniform mixture, each strategy alone, and the uniform mixture without one
strategy. It is trained where the truth can be measured: in simulated rounds of many tasks
(``benchmarks.episodes``), the true test-accuracy gain of the batch each action picks, relative
to the uniform mixture's. The policy is a softmax over actions (differentiable; the expected
true gain is its reward), pulled toward the uniform mixture so that it leaves it only where
the truth consistently pays; at run time the most probable action's weights are used.

Why actions and not free weights (measured, docs/benchmarks.md): rank-normalised scores
mixed with lopsided weights make hybrid batches no candidate was measured on (k-means' picks
lose their place to its near-misses that other strategies like): a prior trained with free
weights through the soft top-fraction relaxation gave k-means 0.74 of the weight at 20 labels
and lost 0.018 AUBC to the uniform mixture on MNIST, where k-means alone and the uniform
mixture were both better.

The trained prior ships as ``prior.json`` (a few kilobytes: weights, the feature
standardisation, the actions, and how it was made); ``make meta-train`` reproduces it. A task
kind may ship its own, trained on that kind's episodes (``prior-boxes.json``:
``benchmarks.box_episodes``; ``prior-spans.json``: ``benchmarks.span_episodes``); ``default``
means it for a pool of that kind's portfolio, and the choices prior, read through the kind's
roles, for a kind without one. A prior with a ``Gate`` also carries its training rounds' states
and gains (the span prior: about 100 kB).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from model.seeding import seeded
from model.selectors.autoal.state import FEATURES

PRIOR_FILE = Path(__file__).with_name("prior.json")
PRIOR_FORMAT = 2
UNIFORM = "uniform"


def action_names(portfolio: list[str], extras: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The prior's actions over ``portfolio``: the uniform mixture first (the default), each
    strategy alone, the uniform mixture without each strategy, then each of ``extras`` alone:
    strategies the policy may choose on their own that are no member of the mixture (TypiClust,
    which pays as the first batches' pick and costs as a member of the mixture)."""
    return (
        [UNIFORM]
        + [f"only {n}" for n in portfolio]
        + [f"without {n}" for n in portfolio]
        + [f"only {n}" for n in extras]
    )


def action_weights(portfolio: list[str], extras: list[str] | tuple[str, ...] = ()) -> torch.Tensor:
    """[A, K + E] the weight vector of each action of ``action_names(portfolio, extras)`` over
    the K portfolio members then the E extras (which weigh 0 in every portfolio action)."""
    k, e = len(portfolio), len(extras)
    without = (1.0 - torch.eye(k)) / max(k - 1, 1)
    mixtures = torch.cat((torch.full((1, k), 1.0 / k), torch.eye(k), without))  # [1 + 2K, K]
    if not e:
        return mixtures
    alone = torch.cat((torch.zeros(e, k), torch.eye(e)), dim=1)  # [E, K + E]
    return torch.cat((torch.cat((mixtures, torch.zeros(mixtures.shape[0], e)), dim=1), alone))


class PriorNet(nn.Module):
    """Standardised state features [n, F] -> action probabilities [n, A] (softmax). The output
    layer starts at zero except a head start for the uniform mixture: an untrained prior
    chooses the uniform mixture."""

    def __init__(self, num_features: int, num_actions: int, hidden: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(num_features, hidden), nn.Tanh())
        self.head = nn.Linear(hidden, num_actions)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        with torch.no_grad():
            self.head.bias[0] = 1.0

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.head(self.body(features)), dim=-1)


@dataclass
class Gate:
    """Leave the uniform mixture only on evidence: the chosen action's true gain over the
    mixture in the ``neighbours`` training rounds whose standardised state is nearest this
    round's must be positive beyond ``z`` standard errors, else the mixture is used: where the
    action paid in some resembling rounds and cost in others, the round falls back to the
    mixture the prior starts from. A round whose nearest training rounds are farther from it
    than ``radius`` resembles none of them (a state no episode showed: the prior would be
    extrapolating), and falls back to the mixture too.

    Attributes:
        features: [R, F] the training rounds' standardised state features.
        gains: [R, A] their true gain of each action over the uniform mixture.
        radius: the largest mean distance to the ``neighbours`` nearest training rounds that
            still counts as resembling them: the 95th percentile of the training rounds' own
            (``neighbour_radius``); inf for no such check.
    """

    features: torch.Tensor
    gains: torch.Tensor
    neighbours: int
    z: float
    radius: float = float("inf")

    def _k(self) -> int:
        return max(2, min(self.neighbours, self.features.shape[0]))

    def nearest(self, x: torch.Tensor) -> tuple[torch.Tensor, float]:
        """The ``neighbours`` training rounds nearest ``x`` [F] and their mean distance."""
        found = torch.cdist(x[None], self.features)[0].topk(self._k(), largest=False)
        return found.indices, float(found.values.mean())

    def evidence(self, x: torch.Tensor, action: int) -> tuple[float, float]:
        """Mean and standard error of ``action``'s gain in the rounds nearest ``x`` [F]."""
        nearest, _ = self.nearest(x)
        gains = self.gains[nearest, action]
        return float(gains.mean()), float(gains.std() / self._k() ** 0.5)

    def admits(self, x: torch.Tensor, action: int) -> bool:
        if self.nearest(x)[1] > self.radius:
            return False
        mean, error = self.evidence(x, action)
        return mean > self.z * error

    def to_json(self) -> dict:
        return {
            "neighbours": self.neighbours,
            "z": self.z,
            "radius": round(self.radius, 4) if self.radius != float("inf") else None,
            "features": [[round(v, 4) for v in row] for row in self.features.tolist()],
            "gains": [[round(v, 5) for v in row] for row in self.gains.tolist()],
        }

    @classmethod
    def from_json(cls, data: dict) -> Gate:
        radius = data.get("radius")
        return cls(torch.tensor(data["features"], dtype=torch.float32),
                   torch.tensor(data["gains"], dtype=torch.float32),
                   int(data["neighbours"]), float(data["z"]),
                   float("inf") if radius is None else float(radius))  # fmt: skip


@dataclass
class Prior:
    """A trained prior: its portfolio (the order of the K strategy weights), the feature names
    and standardisation it was trained with, the network over ``action_names(portfolio,
    extras)``, how it was made (``meta``), its gate if any, and its ``extras``: strategies it
    may choose alone that are no member of the portfolio's mixture.

    ``features`` names columns of ``state.FEATURES``; the prior reads those of any vector in
    that order that reaches them, so a prior trained before a feature was appended keeps
    working, and one can be trained on a subset (``PriorTrainingConfig.features``)."""

    portfolio: list[str]
    features: list[str]
    mean: torch.Tensor  # [F]
    std: torch.Tensor  # [F]
    net: PriorNet
    meta: dict = field(default_factory=dict)
    gate: Gate | None = None
    extras: list[str] = field(default_factory=list)

    @property
    def actions(self) -> list[str]:
        return action_names(self.portfolio, self.extras)

    def standardised(self, features: torch.Tensor) -> torch.Tensor:
        """[F] or [n, F] state features in ``FEATURES`` order -> the prior's own columns,
        standardised as in training."""
        return (select_features(features.float().cpu(), self.features) - self.mean) / self.std

    @torch.no_grad()
    def probabilities(self, features: torch.Tensor) -> torch.Tensor:
        """[F] -> [A] (or [n, F] -> [n, A]) the policy's action probabilities."""
        return self.net.eval()(self.standardised(features))

    def choose(self, features: torch.Tensor) -> int:
        """The action for one round's raw state features [F]: the most probable, unless the
        prior has a ``gate`` that finds too little evidence for it (then the uniform mixture)."""
        action = int(self.probabilities(features).argmax())
        if action == 0 or self.gate is None:
            return action
        return action if self.gate.admits(self.standardised(features), action) else 0

    def weights(self, features: torch.Tensor) -> torch.Tensor:
        """[F] -> [K + E]: the chosen action's strategy weights (portfolio, then extras)."""
        return action_weights(self.portfolio, self.extras)[self.choose(features)]

    def to_json(self) -> dict:
        return {
            "format": PRIOR_FORMAT,
            "portfolio": list(self.portfolio),
            **({"extras": list(self.extras)} if self.extras else {}),
            "actions": self.actions,
            "features": list(self.features),
            "hidden": int(self.net.head.in_features),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "net": {k: v.tolist() for k, v in self.net.state_dict().items()},
            "meta": self.meta,
            **({"gate": self.gate.to_json()} if self.gate is not None else {}),
        }

    @classmethod
    def from_json(cls, data: dict) -> Prior:
        if data.get("format") != PRIOR_FORMAT:
            raise ValueError(
                f"prior format {data.get('format')!r}; this version reads {PRIOR_FORMAT}"
            )
        features = list(data["features"])
        unknown = [name for name in features if name not in FEATURES]
        if unknown:
            raise ValueError(
                f"the prior reads features {unknown} that this version does not compute "
                f"(it computes {list(FEATURES)})"
            )
        portfolio = list(data["portfolio"])
        extras = list(data.get("extras", []))
        if list(data.get("actions", [])) != action_names(portfolio, extras):
            raise ValueError("the prior's actions are not this version's")
        net = PriorNet(len(features), len(action_names(portfolio, extras)), int(data["hidden"]))
        net.load_state_dict(
            {k: torch.tensor(v, dtype=torch.float32) for k, v in data["net"].items()}
        )
        return cls(
            portfolio=portfolio,
            features=features,
            mean=torch.tensor(data["mean"], dtype=torch.float32),
            std=torch.tensor(data["std"], dtype=torch.float32),
            net=net.eval(),
            meta=dict(data.get("meta") or {}),
            gate=Gate.from_json(data["gate"]) if data.get("gate") else None,
            extras=extras,
        )

    def save(self, path: Path | str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.to_json(), indent=1) + "\n")


def select_features(features: torch.Tensor, names: list[str] | tuple[str, ...]) -> torch.Tensor:
    """The columns ``names`` of state features [..., F] laid out in ``FEATURES`` order (F may
    stop short of the last ones: vectors recorded before they were appended)."""
    columns = [FEATURES.index(name) for name in names]
    if columns and max(columns) >= features.shape[-1]:
        missing = [n for n, c in zip(names, columns, strict=True) if c >= features.shape[-1]]
        raise ValueError(f"state features of width {features.shape[-1]} lack {missing}")
    return features[..., columns]


_LOADED: dict[tuple[str, float], Prior] = {}


def default_prior_path(portfolio: list[str] | tuple[str, ...] | None = None) -> Path:
    """The shipped prior for ``portfolio``: a kind's own (``prior-<kind>.json``) when one was
    trained for exactly this portfolio, else the choices prior (``prior.json``)."""
    if portfolio is not None:
        for path in sorted(PRIOR_FILE.parent.glob("prior-*.json")):
            if json.loads(path.read_text()).get("portfolio") == list(portfolio):
                return path
    return PRIOR_FILE


def load_prior(spec: str, portfolio: list[str] | tuple[str, ...] | None = None) -> Prior | None:
    """The prior named by an AutoAL ``prior`` setting: ``none`` -> None, ``default`` -> the
    shipped file for ``portfolio`` (``default_prior_path``), anything else a path. Loaded
    once per file version."""
    if spec == "none":
        return None
    path = default_prior_path(portfolio) if spec == "default" else Path(spec)
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
        gains: [A] the true test-accuracy gain of each action's batch minus the uniform
            mixture's (so ``gains[0]`` is 0).
        group: the task family and regime (a data set and everything derived from it).
        weight: the round's share in the objective (families weigh alike).
    """

    features: torch.Tensor
    gains: torch.Tensor
    group: str
    weight: float = 1.0


@dataclass(frozen=True)
class PriorTrainingConfig:
    """How the prior is trained (full batch, Adam, deterministic on the CPU).

    Attributes:
        hidden: width of the prior's hidden layer.
        steps, lr, weight_decay: the optimiser.
        pull: weight of KL(policy || anchor) per round, the anchor putting ``anchor_mass`` on
            the uniform mixture and the rest evenly on the other actions: what it costs, in
            accuracy gain, to leave the uniform mixture.
        anchor_mass: the anchor's probability of the uniform mixture.
        seed: initialisation.
        features: the state features (names of ``FEATURES``) the prior reads; () = all that
            every training round recorded.
        gate_z, gate_neighbours: with ``gate_z`` > 0 the prior keeps its training rounds and
            leaves the mixture only where the chosen action's gain in the ``gate_neighbours``
            nearest of them is above ``gate_z`` standard errors and those rounds resemble this
            one (within the 95th percentile of the training rounds' own neighbour distance;
            ``Gate``); 0: no gate.
    """

    hidden: int = 16
    steps: int = 1500
    lr: float = 0.01
    weight_decay: float = 1e-4
    pull: float = 0.001
    anchor_mass: float = 0.6
    seed: int = 0
    features: tuple[str, ...] = ()
    gate_z: float = 0.0
    gate_neighbours: int = 30


def standardisation(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean [F] and std [F] of training features [R, F] (a constant feature gets std 1)."""
    mean = features.mean(dim=0)
    std = features.std(dim=0)
    return mean, torch.where(std > 1e-6, std, torch.ones_like(std))


def anchor(num_actions: int, mass: float) -> torch.Tensor:
    """[A] the distribution the policy is pulled toward: ``mass`` on the uniform mixture."""
    rest = (1.0 - mass) / max(num_actions - 1, 1)
    out = torch.full((num_actions,), rest)
    out[0] = mass
    return out


def neighbour_radius(x: torch.Tensor, neighbours: int, quantile: float = 0.95) -> float:
    """The ``quantile`` of the training rounds' mean distance to their ``neighbours`` nearest
    others (standardised features ``x`` [R, F]): how far a resembling round may lie."""
    k = max(2, min(neighbours, x.shape[0]))  # as many as ``Gate`` averages over
    if x.shape[0] <= k:
        return float("inf")
    distances = torch.cdist(x, x)
    distances.fill_diagonal_(float("inf"))
    mean = distances.topk(k, dim=1, largest=False).values.mean(dim=1)
    return float(torch.quantile(mean, quantile))


def chosen_gain(prior: Prior, rounds: list[TrainingRound]) -> torch.Tensor:
    """[R] the recorded true gain over uniform of the action the prior would choose."""
    return torch.stack([r.gains[prior.choose(r.features)] for r in rounds])


def train_prior(
    rounds: list[TrainingRound],
    portfolio: list[str],
    config: PriorTrainingConfig | None = None,
    meta: dict | None = None,
    extras: list[str] | tuple[str, ...] = (),
) -> Prior:
    """Fit a prior on ``rounds``: maximise the weighted expected true gain over uniform of
    the policy's action minus ``pull`` times KL(policy || anchor). Deterministic for the same
    rounds, config and thread count. ``extras``: strategies the rounds' gains also measured
    alone (``action_names``)."""
    config = config or PriorTrainingConfig()
    if not rounds:
        raise ValueError("cannot train a prior on 0 rounds")
    names_of_actions = action_names(portfolio, extras)
    a = len(names_of_actions)
    if any(r.gains.shape != (a,) for r in rounds):
        raise ValueError(f"every round must hold the gains of the {a} actions of the portfolio")
    # Features are only ever appended, so every round holds the first min-width of them.
    names = list(config.features) or list(FEATURES[: min(r.features.numel() for r in rounds)])
    features = torch.stack([select_features(r.features.float(), names) for r in rounds])  # [R, F]
    gains = torch.stack([r.gains.float() for r in rounds])  # [R, A]
    weight = torch.tensor([r.weight for r in rounds], dtype=torch.float32)
    weight = weight / weight.sum()
    mean, std = standardisation(features)
    x = (features - mean) / std
    target = anchor(a, config.anchor_mass)
    with seeded(config.seed):
        net = PriorNet(x.shape[1], a, config.hidden)
        optimiser = torch.optim.Adam(
            net.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        for _ in range(config.steps):
            optimiser.zero_grad(set_to_none=True)
            policy = net(x)  # [R, A]
            expected = (policy * gains).sum(dim=1)
            kl = (policy * (torch.log(policy.clamp_min(1e-12)) - torch.log(target))).sum(dim=1)
            loss = -(weight * (expected - config.pull * kl)).sum()
            loss.backward()
            optimiser.step()
    gate = None
    if config.gate_z > 0:
        radius = neighbour_radius(x, config.gate_neighbours)
        gate = Gate(x, gains, config.gate_neighbours, config.gate_z, radius)
    prior = Prior(list(portfolio), names, mean, std, net.eval(), {}, gate, list(extras))
    chosen = torch.tensor([prior.choose(r.features) for r in rounds])
    counts = torch.bincount(chosen, minlength=a).tolist()
    prior.meta = {
        **(meta or {}),
        "training": asdict(config),
        "rounds": len(rounds),
        "groups": sorted({r.group for r in rounds}),
        "chosen_gain_over_uniform": round(float((weight * chosen_gain(prior, rounds)).sum()), 6),
        "actions_chosen": {n: c for n, c in zip(names_of_actions, counts, strict=True) if c},
    }
    return prior
