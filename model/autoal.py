"""AutoAL: a differentiable search over the query-strategy portfolio (arXiv 2410.13853).

How one round works (AUTOAL.md, "What ours must be"):

1. **Cross-fitting** (fixes flaw 3). The labeled items are split into folds. For each fold a
   task model (FitNet; same config as the round's task model) is trained on the other folds,
   and on a small sub-pool (training folds labeled, held-out fold + a sample of unlabeled
   items as context) every portfolio strategy scores the held-out fold. The held-out fold's
   per-sample loss under that model is the informativeness signal: it comes from a model that
   has not seen the sample, so it says what a query there would have taught the model.
   Result: A [n, K] rank-normalised scores (flaw 4) and loss [n] for n search samples.
2. **Search.** SearchNet maps (reduced embedding, K scores) to softmax weights over K per
   sample; priority u = sum_j w_nj A_nj. A soft top-r relaxation s = sigmoid((u - tau) / T),
   tau the detached (1-r) quantile of u and T proportional to u's spread, keeps real
   gradients (fixes flaw 1); the objective rewards a high mean loss among the soft-selected
   samples, with a differentiable budget penalty (mean(s) - r)^2 and a KL prior toward the
   uniform mixture whose strength fades as labels accumulate.
3. **Scoring.** The portfolio scores the candidates once with the round's task model, and one
   SearchNet forward weights them: contributions [M, K] = w * A, priority = their row sum.

Why this objective and not an unrolled bi-level one (FitNet trained on fit + s-weighted
search samples, outer loss on a validation part): with 20-200 labels the validation loss of a
linear head changes by a few hundredths when a handful of samples is re-weighted, far below
the fold-to-fold noise, and unrolling costs a full FitNet fit per SearchNet step. The held-out
loss is a direct, per-sample signal from a model that has not seen the sample, at the cost of
one fit per fold; see the report of the benchmark for the measured difference.

SearchNet is warm-started across rounds (its parameters and the embedding projection live in
``state_dict``), seeded, and runs on the pool's device. Nothing here builds an N x N matrix.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn

from model.errors import EmptyPoolError
from model.pool import PoolState
from model.seeding import generator, seeded
from model.selection import Selection
from model.strategies import PORTFOLIO, score_matrix, strategy_names
from model.task_model import TaskModel, TaskModelConfig


@dataclass(frozen=True)
class AutoALConfig:
    """Settings of the search; one default for every data set.

    Attributes:
        folds: cross-fitting folds (each costs one task-model fit per round).
        budget_fraction: r, the fraction of search samples the soft top-r selects.
        temperature: T as a fraction of the standard deviation of u.
        steps: SearchNet optimiser steps per round (a fixed compute budget).
        lr: SearchNet learning rate (Adam).
        weight_decay: L2 on SearchNet's parameters.
        hidden: SearchNet hidden width.
        embed_dims: the embedding is reduced to this many principal components for SearchNet.
        budget_weight: weight of (mean(s) - r)^2.
        prior_labels: strength of the prior toward the uniform mixture, in labels: the KL
            term is weighted prior_labels / n, so with n = prior_labels search samples the
            prior counts as much as the reward.
        min_search_labels: below this many labeled items there is no search (prior only).
        max_search_items: at most this many labeled items take part in cross-fitting.
        context_items: unlabeled items added to each fold's sub-pool, so diversity strategies
            see the pool's shape, not only the held-out fold.
        signal: ``loss`` (held-out loss over its mean, clipped) or ``rank`` (rank of the loss).
        score_inputs: SearchNet sees the K scores beside the embedding (AUTOAL.md); without
            them the weights depend on where a sample lies, not on how it scored. With
            ``embed_dims=0`` and no score inputs SearchNet is one global weight vector.
    """

    folds: int = 3
    budget_fraction: float = 0.25
    temperature: float = 0.1
    steps: int = 150
    lr: float = 0.02
    weight_decay: float = 1e-3
    hidden: int = 32
    embed_dims: int = 16
    budget_weight: float = 1.0
    prior_labels: float = 20.0
    min_search_labels: int = 12
    max_search_items: int = 2048
    context_items: int = 1000
    signal: str = "loss"
    score_inputs: bool = True


class SearchNet(nn.Module):
    """(x [n, p], A [n, K]) -> softmax weights [n, K] over the K strategies.

    The output layer starts at zero, so an untrained SearchNet is exactly the uniform mixture.
    With no inputs at all (p = 0, scores not used) it is a single learned weight vector.
    """

    def __init__(
        self, embed_dims: int, num_strategies: int, hidden: int = 32, score_inputs: bool = True
    ) -> None:
        super().__init__()
        self.score_inputs = score_inputs
        in_dim = embed_dims + (num_strategies if score_inputs else 0)
        self.body: nn.Module | None = (
            nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU()) if in_dim > 0 else None
        )
        self.head = nn.Linear(hidden, num_strategies)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.body is None:
            logits = self.head.bias.expand(scores.shape[0], -1)
        else:
            inputs = torch.cat((x, scores), dim=1) if self.score_inputs else x
            logits = self.head(self.body(inputs))
        return torch.softmax(logits, dim=1)


def soft_top_fraction(u: torch.Tensor, fraction: float, temperature: float) -> torch.Tensor:
    """A differentiable "is in the top ``fraction`` of u" indicator, [n] -> [n] in (0, 1).

    tau is the detached (1 - fraction) quantile and T = temperature * std(u), so the sigmoid's
    slope follows u's spread: gradients neither vanish (flaw 1: T = 1e-11) nor wash out.
    """
    detached = u.detach()
    tau = torch.quantile(detached, 1.0 - fraction)
    scale = (temperature * detached.std()).clamp_min(1e-6) if u.numel() > 1 else u.new_tensor(1.0)
    return torch.sigmoid((u - tau) / scale)


def search_objective(
    weights: torch.Tensor,
    scores: torch.Tensor,
    signal: torch.Tensor,
    config: AutoALConfig,
) -> tuple[torch.Tensor, dict[str, float]]:
    """SearchNet's loss for weights [n, K], scores A [n, K] and informativeness signal [n].

    -(signal-weighted mean over the soft selection) + budget penalty + prior toward uniform.
    """
    n, k = scores.shape
    u = (weights * scores).sum(dim=1)  # [n]
    s = soft_top_fraction(u, config.budget_fraction, config.temperature)  # [n]
    reward = (signal * s).sum() / s.sum().clamp_min(1e-6)
    budget = (s.mean() - config.budget_fraction) ** 2
    # KL(uniform || w_n), averaged over samples: zero exactly at the uniform mixture.
    prior = (-math.log(k) - torch.log(weights.clamp_min(1e-12)).mean(dim=1)).mean()
    prior_weight = config.prior_labels / max(n, 1)
    loss = -reward + config.budget_weight * budget + prior_weight * prior
    parts = {
        "reward": float(reward.detach()),
        "budget": float(budget.detach()),
        "prior": float(prior.detach()),
        "loss": float(loss.detach()),
    }
    return loss, parts


def normalise_signal(losses: torch.Tensor, kind: str) -> torch.Tensor:
    """[n] held-out losses -> [n] reward signal of mean ~1, robust to a few huge losses."""
    if kind == "rank":
        order = losses.argsort()
        ranks = torch.empty_like(losses)
        ranks[order] = torch.linspace(0.0, 2.0, losses.numel(), device=losses.device)
        return ranks
    if kind != "loss":
        raise ValueError(f"signal must be 'loss' or 'rank'; got {kind!r}")
    # Clip at the 95th percentile: a single mislabeled or freak sample must not decide the
    # mixture on its own.
    clipped = losses.clamp_max(torch.quantile(losses, 0.95))
    return clipped / clipped.mean().clamp_min(1e-12)


def fit_search_net(
    net: SearchNet,
    x: torch.Tensor,
    scores: torch.Tensor,
    signal: torch.Tensor,
    config: AutoALConfig,
    seed: int,
) -> dict[str, float]:
    """Train ``net`` in place on search samples: x [n, p], A [n, K], signal [n]. Full batch,
    ``config.steps`` Adam steps. Returns the objective's parts before and after."""
    optimiser = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    net.train()
    with seeded(seed, x.device):
        _, first = search_objective(net(x, scores), scores, signal, config)
        for _ in range(config.steps):
            optimiser.zero_grad(set_to_none=True)
            loss, _ = search_objective(net(x, scores), scores, signal, config)
            loss.backward()
            optimiser.step()
    net.eval()
    with torch.no_grad():
        _, last = search_objective(net(x, scores), scores, signal, config)
    return {
        "loss_before": first["loss"],
        "loss_after": last["loss"],
        "reward_before": first["reward"],
        "reward_after": last["reward"],
    }


@dataclass
class SearchSplit:
    """Cross-fitted search samples.

    Attributes:
        indices: [n] pool indices of the held-out labeled items.
        scores: [n, K] rank-normalised portfolio scores from models that did not see them.
        losses: [n] their loss under those models.
        fold_sizes: held-out size of each fold.
    """

    indices: torch.Tensor
    scores: torch.Tensor
    losses: torch.Tensor
    fold_sizes: list[int]


def _sub_pool(state: PoolState, items: torch.Tensor, train: torch.Tensor) -> PoolState:
    """The pool restricted to ``items`` [S] with only ``train`` (a subset) labeled."""
    labeled = torch.zeros(state.num_items, dtype=torch.bool, device=state.device)
    labeled[train] = True
    sub_labeled = labeled[items]
    return PoolState(
        features=state.features[items],
        targets=state.targets[items] * sub_labeled.unsqueeze(1),
        labeled=sub_labeled,
        labeled_round=torch.where(sub_labeled, state.labeled_round[items].clamp_min(0), -1),
        multilabel=state.multilabel,
        budget=state.budget,
        seed=state.seed,
        ids=state.item_ids()[items],
    )


def cross_fit(
    state: PoolState,
    names: list[str],
    config: AutoALConfig,
    task_config: TaskModelConfig,
) -> SearchSplit:
    """Score every labeled item (up to ``max_search_items``) with each strategy in ``names``
    and a task model trained on the other folds. Cost: ``folds`` task-model fits, and the
    strategies on sub-pools of at most max_search_items + context_items items."""
    device = state.device
    labeled = state.labeled_indices()
    if labeled.numel() < max(config.folds, 2):
        raise EmptyPoolError(
            f"cross-fitting needs at least {max(config.folds, 2)} labeled items, "
            f"got {labeled.numel()}"
        )
    gen = generator(state.seed + 7919)
    labeled = labeled[torch.randperm(labeled.numel(), generator=gen).to(device)]
    labeled = labeled[: config.max_search_items]
    unlabeled = state.unlabeled_indices()
    take = min(config.context_items, unlabeled.numel())
    context = unlabeled[torch.randperm(unlabeled.numel(), generator=gen)[:take].to(device)]
    items = torch.cat((labeled, context))  # [S]
    position = torch.arange(labeled.numel(), device=device)

    all_idx, all_scores, all_losses, sizes = [], [], [], []
    for fold in range(config.folds):
        held_mask = position % config.folds == fold
        held, train = labeled[held_mask], labeled[~held_mask]
        if held.numel() == 0 or train.numel() == 0:
            continue
        model = TaskModel.fit(
            state.features[train],
            state.targets[train],
            multilabel=state.multilabel,
            config=task_config,
            seed=state.seed + 101 * (fold + 1),
        )
        sub = _sub_pool(state, items, train)
        sub.probs = model.predict_proba(sub.features)
        sub.model = model
        # The fold plans for a batch of the same share of its candidates as the real round.
        sub.budget = max(1, min(held.numel(), math.ceil(config.budget_fraction * held.numel())))
        held_in_sub = torch.nonzero(held_mask, as_tuple=False).flatten()  # held's rows in sub
        all_scores.append(score_matrix(sub, names, held_in_sub))  # [h, K]
        all_losses.append(model.per_sample_loss(state.features[held], state.targets[held]))
        all_idx.append(held)
        sizes.append(int(held.numel()))
    return SearchSplit(torch.cat(all_idx), torch.cat(all_scores), torch.cat(all_losses), sizes)


class Projection:
    """A fixed linear map of standardised embeddings [N, d] to [N, p] (top principal
    components, unit variance), computed once so that a warm-started SearchNet sees the same
    input space every round."""

    def __init__(self, mean: torch.Tensor, basis: torch.Tensor, scale: torch.Tensor) -> None:
        self.mean, self.basis, self.scale = mean, basis, scale  # [d], [d, p], [p]

    @classmethod
    def fit(cls, features: torch.Tensor, dims: int, seed: int, sample: int = 4096) -> Projection:
        gen = generator(seed)
        rows = torch.randperm(features.shape[0], generator=gen)[:sample].to(features.device)
        x = features[rows].float()
        mean = x.mean(dim=0)
        if dims <= 0:  # SearchNet ignores the embedding
            empty = torch.zeros(x.shape[1], 0, device=x.device)
            return cls(mean, empty, torch.ones(0, device=x.device))
        dims = max(1, min(dims, x.shape[0] - 1, x.shape[1]))
        with seeded(seed, features.device):
            _, _, v = torch.pca_lowrank(x - mean, q=dims, center=False, niter=3)  # [d, p]
        scale = ((x - mean) @ v).std(dim=0).clamp_min(1e-6)
        return cls(mean, v, scale)

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) @ self.basis / self.scale

    @property
    def dims(self) -> int:
        return int(self.basis.shape[1])


def _to_lists(tensors: dict[str, torch.Tensor]) -> dict[str, list]:
    return {k: v.detach().cpu().tolist() for k, v in tensors.items()}


def _from_lists(values: dict[str, list], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v, dtype=torch.float32, device=device) for k, v in values.items()}


class AutoALSelector:
    """The AutoAL selector: cross-fitted search, then SearchNet-weighted portfolio scores.

    Args:
        device: where SearchNet lives; None means the pool's device.
        portfolio: strategy names to mix; default ``PORTFOLIO`` restricted to registered names.
        **options: fields of ``AutoALConfig``.
    """

    name = "autoal"

    def __init__(
        self,
        device: torch.device | str | None = None,
        portfolio: list[str] | tuple[str, ...] | None = None,
        **options,
    ) -> None:
        self.device = torch.device(device) if device is not None else None
        self.config = AutoALConfig(**options)
        registered = strategy_names()
        wanted = list(portfolio) if portfolio is not None else list(PORTFOLIO)
        self.portfolio = [n for n in wanted if n in registered]
        if portfolio is not None and len(self.portfolio) != len(wanted):
            missing = sorted(set(wanted) - set(self.portfolio))
            raise ValueError(f"unknown strategies in portfolio: {missing}; valid: {registered}")
        if not self.portfolio:
            raise ValueError("the AutoAL portfolio is empty")
        self.net: SearchNet | None = None
        self.projection: Projection | None = None
        self.rounds = 0

    def _ensure(self, state: PoolState, device: torch.device) -> None:
        dim = state.features.shape[1]
        if self.projection is None or self.projection.basis.shape[0] != dim:
            self.projection = Projection.fit(state.features, self.config.embed_dims, state.seed)
            self.net = None
        self.projection = Projection(
            self.projection.mean.to(device),
            self.projection.basis.to(device),
            self.projection.scale.to(device),
        )
        if self.net is None:
            with seeded(state.seed, device):
                self.net = SearchNet(
                    self.projection.dims,
                    len(self.portfolio),
                    self.config.hidden,
                    self.config.score_inputs,
                )
        self.net = self.net.to(device)

    def select(self, state: PoolState, candidates: torch.Tensor) -> Selection:
        """Priorities [M] for ``candidates`` [M]; ``state`` must carry the trained model."""
        if candidates.numel() == 0:
            raise EmptyPoolError("AutoAL: no candidates to score")
        # Everything runs where the pool lives (the task model is there too); ``device`` only
        # says where a restored SearchNet is placed before the first round.
        device = state.device
        self._ensure(state, device)
        assert self.net is not None and self.projection is not None
        info: dict = {"portfolio": list(self.portfolio), "round": self.rounds}
        seconds: dict[str, float] = {}

        num_labeled = int(state.labeled.sum())
        task_config = (
            state.model.config if isinstance(state.model, TaskModel) else TaskModelConfig()
        )
        if num_labeled >= max(self.config.min_search_labels, 2 * self.config.folds):
            start = time.perf_counter()
            split = cross_fit(state, self.portfolio, self.config, task_config)
            seconds["cross_fit"] = time.perf_counter() - start
            start = time.perf_counter()
            signal = normalise_signal(split.losses, self.config.signal)
            x = self.projection(state.features[split.indices])
            info.update(
                fit_search_net(
                    self.net, x, split.scores, signal, self.config, state.seed + self.rounds
                )
            )
            seconds["search"] = time.perf_counter() - start
            info["search_samples"] = int(split.indices.numel())
            info["fold_sizes"] = split.fold_sizes
            info["mean_held_out_loss"] = float(split.losses.mean())
            # How well each strategy alone ranks the held-out loss: a readable diagnostic.
            info["strategy_loss_correlation"] = _correlations(
                split.scores, split.losses, self.portfolio
            )
            info["searched"] = True
        else:
            info["searched"] = False
            info["reason"] = (
                f"{num_labeled} labeled items; the search needs "
                f"{max(self.config.min_search_labels, 2 * self.config.folds)}"
            )

        start = time.perf_counter()
        scores = score_matrix(state, self.portfolio, candidates)  # [M, K]
        seconds["portfolio"] = time.perf_counter() - start
        start = time.perf_counter()
        with torch.no_grad():
            self.net.eval()
            weights = torch.cat(
                [
                    self.net(self.projection(state.features[chunk]), scores[pos])
                    for chunk, pos in zip(
                        candidates.split(65536),
                        torch.arange(candidates.numel(), device=device).split(65536),
                        strict=True,
                    )
                ]
            )  # [M, K]
        contributions = weights * scores  # [M, K]
        seconds["weigh"] = time.perf_counter() - start
        self.rounds += 1
        info["mean_weights"] = {
            n: float(w) for n, w in zip(self.portfolio, weights.mean(dim=0).tolist(), strict=True)
        }
        info["seconds"] = seconds
        return Selection(
            candidates, contributions.sum(dim=1), list(self.portfolio), contributions, info
        )

    def state_dict(self) -> dict:
        """JSON-able state: the config, portfolio, round count, SearchNet and projection."""
        state: dict = {
            "config": asdict(self.config),
            "portfolio": list(self.portfolio),
            "rounds": self.rounds,
        }
        if self.net is not None and self.projection is not None:
            state["net"] = _to_lists(self.net.state_dict())
            state["projection"] = _to_lists(
                {
                    "mean": self.projection.mean,
                    "basis": self.projection.basis,
                    "scale": self.projection.scale,
                }
            )
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore a saved state. A saved SearchNet for another portfolio is dropped (its K
        outputs would mean other strategies); the search then starts from uniform again."""
        self.rounds = int(state.get("rounds", 0))
        if state.get("portfolio") != self.portfolio or "net" not in state:
            self.net, self.projection = None, None
            return
        device = self.device or torch.device("cpu")
        proj = _from_lists(state["projection"], device)
        self.projection = Projection(proj["mean"], proj["basis"], proj["scale"])
        config = AutoALConfig(**state.get("config", {}))
        net = SearchNet(
            self.projection.dims, len(self.portfolio), config.hidden, config.score_inputs
        )
        net.load_state_dict(_from_lists(state["net"], device))
        self.net = net.to(device)


def _correlations(scores: torch.Tensor, losses: torch.Tensor, names: list[str]) -> dict[str, float]:
    """Spearman-like correlation of each strategy's rank score [n, K] with the loss [n]."""
    loss_rank = losses.argsort().argsort().float()
    loss_rank = (loss_rank - loss_rank.mean()) / loss_rank.std().clamp_min(1e-12)
    centred = scores - scores.mean(dim=0)
    centred = centred / centred.std(dim=0).clamp_min(1e-12)
    corr = (
        (centred * loss_rank.unsqueeze(1)).mean(dim=0)
        * scores.shape[0]
        / max(scores.shape[0] - 1, 1)
    )
    return {n: round(float(c), 4) for n, c in zip(names, corr.tolist(), strict=True)}
