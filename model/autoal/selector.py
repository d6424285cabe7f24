"""AutoAL: a differentiable search over the query-strategy portfolio (arXiv 2410.13853).

How one round works (AUTOAL.md, "What ours must be"):

1. **Cross-fitting** (fixes flaw 3). The labeled items are split into folds. For each fold a
   task model (FitNet; same config as the round's task model) is trained on the other folds,
   and on a small sub-pool (training folds labeled, held-out fold + a sample of unlabeled
   items as context) every portfolio strategy scores the held-out fold: A [n, K],
   rank-normalised (flaw 4), from models that have not seen the samples.
2. **Signal: the bi-level objective, linearised.** The truly bi-level objective trains FitNet
   on its fit part plus s-weighted search samples and asks how much the validation loss drops.
   For one gradient step of FitNet's output layer the drop is, to first order,
   eta * sum_n s_n g_n . grad L_val, with g_n = (p_n - y_n) x [e_n; 1] the sample's gradient.
   So each held-out sample's value is g_n . mean_{v != n} g_v over its own fold (the rest of
   the fold is the validation part; ``leave_one_out_influence``), exact in closed form, with
   no unrolled steps and no noise from re-fitting FitNet per SearchNet step. High-loss
   samples whose gradient points where the others' errors point score high; confusing
   outliers score low. (The paper's signal, the held-out loss, is ``signal="loss"``.)
3. **Search.** SearchNet maps the reduced embedding (16 principal components) to softmax
   weights over K per sample (``AutoALConfig.embed_dims``; the scores as inputs are an
   option, ``score_inputs``);
   priority u = sum_j w_nj A_nj. A soft top-r relaxation s = sigmoid((z - tau) / T) on the
   standardised u, tau its (1-r) quantile, keeps real gradients (fixes flaw 1); the objective
   rewards a high mean signal among the soft-selected samples, with a differentiable budget
   penalty (mean(s) - r)^2 and a KL prior toward the uniform mixture that fades as labels
   accumulate. A 2-fold validation of the search on the search samples picks how far to move
   from uniform (``validated_shrinkage``), so with few or uninformative labels the round stays
   near the uniform mixture.
4. **Scoring.** The portfolio scores the candidates once with the round's task model, and one
   SearchNet forward weights them: contributions [M, K] = w * A, priority = their row sum.

Measured results, with the exact commands and the variants tried, are in docs/benchmarks.md.
In short: at 20-220 labels the search rarely finds a mixture that generalises better than the
uniform mixture, and the validated shrinkage then keeps the round near uniform, as designed;
AutoAL is level with uniform within one standard deviation, not above it (also at 1,020 labels).
A known bias of the held-out signals: the task model's confident mistakes carry most of the
held-out loss, and uncertainty strategies never rank such items first, so the loss (and often the
influence) rewards the confidence-blind strategies (random, k-means, core-set).

SearchNet is warm-started across rounds (its parameters and the embedding projection live in
``state_dict``), seeded, and runs on the pool's device. Nothing here builds an N x N matrix.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from model.errors import EmptyPoolError
from model.pool import PoolState
from model.seeding import generator, seeded
from model.selection import Selection
from model.strategies import resolve_portfolio, score_matrix
from model.task_model import TaskModel, TaskModelConfig


@dataclass(frozen=True)
class AutoALConfig:
    """Settings of the search; one default for every data set.

    Attributes:
        folds: cross-fitting folds (each costs one task-model fit per round).
        budget_fraction: r, the fraction of search samples the soft top-r selects.
        temperature: T in standard deviations of u.
        steps: SearchNet optimiser steps per round (a fixed compute budget).
        lr: SearchNet learning rate (Adam).
        weight_decay: L2 on SearchNet's parameters.
        hidden: SearchNet hidden width.
        embed_dims: SearchNet sees this many principal components of the embedding, so the
            weights are per sample (the issue's design); 0 makes them one global vector per
            round. Default 16 (mean AUBC, 5 seeds, digits / MNIST / BBC / Rotten T.):
            per-sample .883 / .731 / .935 / .650, per-sample + scores as inputs .885 / .733 /
            .934 / .657, global .887 / .727 / .934 / .654: level within noise (one std is
            .003-.02), so the default follows the issue's per-sample design.
        budget_weight: weight of (mean(s) - r)^2.
        prior_labels: strength of the prior toward the uniform mixture, in labels: the KL
            term is weighted prior_labels / n, so with n = prior_labels search samples the
            prior counts as much as the reward.
        min_search_labels: below this many labeled items there is no search (prior only).
        max_search_items: at most this many labeled items take part in cross-fitting.
        context_items: unlabeled items added to each fold's sub-pool, so diversity strategies
            see the pool's shape, not only the held-out fold.
        signal: ``influence`` (default: leave-one-out gradient alignment within the held-out
            fold, see ``leave_one_out_influence``), ``loss`` (held-out loss over its mean,
            clipped; the paper's signal) or ``rank`` (rank of the loss). On digits (5 seeds)
            the two tie within noise: AUBC .887 (influence) vs .887 (loss).
        score_inputs: SearchNet also sees the K scores (AUTOAL.md's wording). Off by default
            although its AUBC was level (see ``embed_dims``): with the scores as inputs
            u = sum_j w_j(A) A_j is any function of A, the weights stop meaning "how much this
            strategy counts", and the search no longer drives a harmful strategy's weight to
            ~0 (it kept .26-.28 on the synthetic test, where it falls below .2 without them),
            which AUTOAL.md requires and the per-task explanations rely on.
        validate: choose a shrinkage lambda toward the uniform mixture by 2-fold validation
            of the search on the search samples; the round uses (1 - lambda) / K + lambda * w.
        evidence_decay: the validation rewards of every lambda are pooled across rounds,
            each earlier round's counting ``evidence_decay`` times less per round (0 = this
            round only): one round's halves hold 10-110 samples, too few to tell lambdas apart.
            Off by default: 0.5 gave AUBC .887 / .723 / .935 / .655 (digits / MNIST / BBC /
            Rotten T.) against .887 / .727 / .934 / .654 per round, with global weights.
    """

    folds: int = 3
    budget_fraction: float = 0.25
    temperature: float = 0.2
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
    signal: str = "influence"
    score_inputs: bool = False
    validate: bool = True
    evidence_decay: float = 0.0


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

    u is standardised (with gradient) and tau is the (1 - fraction) quantile of the
    standardised values, also with gradient; T = ``temperature`` standard deviations. So the
    sigmoid's slope follows u's spread (flaw 1 of the reference: T = 1e-11, no gradient), and
    shifting or scaling every u at once changes nothing, as it changes no selection. (With a
    detached tau the gradient rewarded lowering u near the threshold, which the recomputed
    quantile undoes: the search drifted toward uninformative strategies.)
    """
    if u.numel() < 2:
        return torch.ones_like(u)
    z = (u - u.mean()) / u.std().clamp_min(1e-6)
    tau = torch.quantile(z, 1.0 - fraction)
    return torch.sigmoid((z - tau) / temperature)


def search_objective(
    weights: torch.Tensor,
    scores: torch.Tensor,
    signal: torch.Tensor,
    config: AutoALConfig,
) -> tuple[torch.Tensor, dict[str, float]]:
    """SearchNet's loss for weights [n, K], scores A [n, K] and informativeness signal [n].

    -(signal-weighted mean over the soft selection) + budget penalty + prior toward the uniform
    mixture.
    """
    n, k = scores.shape
    u = (weights * scores).sum(dim=1)  # [n]
    s = soft_top_fraction(u, config.budget_fraction, config.temperature)  # [n]
    reward = (signal * s).sum() / s.sum().clamp_min(1e-6)
    budget = (s.mean() - config.budget_fraction) ** 2
    log_w = torch.log(weights.clamp_min(1e-12))
    # KL(uniform || w_n), averaged over samples: zero exactly at the uniform mixture.
    prior = (-math.log(k) - log_w.mean(dim=1)).mean()
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
    if kind == "influence":
        # Signed: standardise, and clip so one sample cannot decide the mixture.
        centred = losses - losses.mean()
        return (centred / centred.std().clamp_min(1e-12)).clamp(-3.0, 3.0)
    if kind != "loss":
        raise ValueError(f"signal must be 'loss', 'rank' or 'influence'; got {kind!r}")
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


SHRINKAGE_GRID: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)


def hard_top_reward(priority: torch.Tensor, signal: torch.Tensor, fraction: float) -> float:
    """Mean signal [n] over the exact top ``fraction`` of priority [n] (no relaxation)."""
    k = max(1, round(fraction * priority.numel()))
    return float(signal[priority.topk(k).indices].mean())


def validated_shrinkage(
    net: SearchNet,
    x: torch.Tensor,
    scores: torch.Tensor,
    signal: torch.Tensor,
    config: AutoALConfig,
    seed: int,
) -> tuple[float, dict[str, float]]:
    """Pick lambda in SHRINKAGE_GRID by 2-fold validation of the search (x [n, p], A [n, K],
    signal [n]): copies of ``net`` are searched on one half and the exact top-r reward of
    (1 - lambda) / K + lambda * w is measured on the other. Ties go to the smaller lambda, so
    the search is used only where it beats the uniform mixture on samples it did not see."""
    import copy

    n, k = scores.shape
    base = torch.full((k,), 1.0 / k, device=scores.device)
    order = torch.randperm(n, generator=generator(seed)).to(scores.device)
    halves = (order[: n // 2], order[n // 2 :])
    totals = dict.fromkeys(SHRINKAGE_GRID, 0.0)
    for train, test in (halves, halves[::-1]):
        trial = copy.deepcopy(net)
        fit_search_net(trial, x[train], scores[train], signal[train], config, seed)
        with torch.no_grad():
            learned = trial(x[test], scores[test])  # [t, K]
        for lam in SHRINKAGE_GRID:
            weights = (1.0 - lam) * base + lam * learned
            totals[lam] += hard_top_reward(
                (weights * scores[test]).sum(dim=1), signal[test], config.budget_fraction
            )
    best = max(SHRINKAGE_GRID, key=lambda lam: (round(totals[lam], 6), -lam))
    # Unrounded: the selector pools these over rounds (``evidence_decay``).
    return best, {f"{lam:g}": v / 2 for lam, v in totals.items()}


def strategy_rewards(scores: torch.Tensor, signal: torch.Tensor, fraction: float) -> torch.Tensor:
    """[K] each strategy's exact top-``fraction`` mean signal (scores A [n, K], signal [n])."""
    return torch.tensor(
        [hard_top_reward(scores[:, j], signal, fraction) for j in range(scores.shape[1])],
        device=scores.device,
    )


@dataclass
class SearchSplit:
    """Cross-fitted search samples.

    Attributes:
        indices: [n] pool indices of the held-out labeled items.
        scores: [n, K] rank-normalised portfolio scores from models that did not see them.
        losses: [n] their loss under those models.
        influence: [n] first-order benefit of training on each sample for the rest of its
            held-out fold: g_n . mean_{v != n} g_v, g the gradient of the loss with respect to
            the fold model's output layer. Positive = a gradient step on it lowers the others'
            loss (it is informative *and* representative); outliers score low.
        fold_sizes: held-out size of each fold.
    """

    indices: torch.Tensor
    scores: torch.Tensor
    losses: torch.Tensor
    influence: torch.Tensor
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

    all_idx, all_scores, all_losses, all_influence, sizes = [], [], [], [], []
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
        all_influence.append(
            leave_one_out_influence(model, state.features[held], state.targets[held])
        )
        all_idx.append(held)
        sizes.append(int(held.numel()))
    return SearchSplit(
        torch.cat(all_idx),
        torch.cat(all_scores),
        torch.cat(all_losses),
        torch.cat(all_influence),
        sizes,
    )


@torch.no_grad()
def leave_one_out_influence(
    model: TaskModel, features: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """[h] g_n . mean_{v != n} g_v over a held-out fold (features [h, d], targets [h, C]).

    g_n = (p_n - y_n) x [e_n, 1] is the output layer's loss gradient (softmax-CE and summed
    BCE share it), e_n the penultimate embedding. Computed as (p_n - y_n)^T G [e_n; 1] with
    G = sum_v g_v [C, e+1]: O(h C e), no h x h matrix.
    """
    h = features.shape[0]
    if h < 2:
        return torch.zeros(h, device=features.device)
    embedded = model.embed(features)  # [h, e]
    augmented = torch.cat((embedded, torch.ones(h, 1, device=features.device)), dim=1)
    residual = model.predict_proba(features) - targets  # [h, C]
    total = residual.t() @ augmented  # [C, e+1]
    with_all = ((residual @ total) * augmented).sum(dim=1)  # [h] g_n . sum_v g_v
    own = residual.pow(2).sum(dim=1) * augmented.pow(2).sum(dim=1)  # [h] |g_n|^2
    return (with_all - own) / (h - 1)


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
        if self.config.folds < 2:
            raise ValueError(f"cross-fitting needs folds >= 2, got {self.config.folds}")
        if not 0.0 <= self.config.evidence_decay < 1.0:
            raise ValueError(
                f"evidence_decay must lie in [0, 1), got {self.config.evidence_decay}"
            )
        if not 0.0 < self.config.budget_fraction < 1.0:
            raise ValueError(
                f"budget_fraction must lie in (0, 1), got {self.config.budget_fraction}"
            )
        self.portfolio = resolve_portfolio(portfolio, "AutoAL")
        self.net: SearchNet | None = None
        self.projection: Projection | None = None
        self.rounds = 0
        # lambda of the last validated search; 1.0 = SearchNet's weights as they are.
        self.shrinkage = 1.0
        # lambda -> decayed sum over rounds of its validation reward (see evidence_decay).
        self.evidence: dict[float, float] = {}

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
            raw = split.influence if self.config.signal == "influence" else split.losses
            signal = normalise_signal(raw, self.config.signal)
            x = self.projection(state.features[split.indices])
            if self.config.validate and split.indices.numel() >= 8:
                _, rewards = validated_shrinkage(
                    self.net,
                    x,
                    split.scores,
                    signal,
                    self.config,
                    state.seed + self.rounds,
                )
                self.shrinkage = self._pool_evidence(rewards)
                info["validation_reward"] = {k: round(v, 4) for k, v in rewards.items()}
                info["pooled_validation_reward"] = {
                    f"{lam:g}": round(v, 4) for lam, v in self.evidence.items()
                }
            info.update(
                fit_search_net(
                    self.net,
                    x,
                    split.scores,
                    signal,
                    self.config,
                    state.seed + self.rounds,
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
            uniform = 1.0 / len(self.portfolio)
            weights = (1.0 - self.shrinkage) * uniform + self.shrinkage * weights
        info["shrinkage"] = self.shrinkage
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

    def _pool_evidence(self, rewards: dict[str, float]) -> float:
        """Add one round's validation reward per lambda (keys as ``f"{lam:g}"``) to the decayed
        pool and return the lambda with the best pooled reward (ties: the smaller lambda)."""
        decay = self.config.evidence_decay
        for lam in SHRINKAGE_GRID:
            self.evidence[lam] = decay * self.evidence.get(lam, 0.0) + rewards[f"{lam:g}"]
        return max(SHRINKAGE_GRID, key=lambda lam: (round(self.evidence[lam], 6), -lam))

    def state_dict(self) -> dict:
        """JSON-able state: the config, portfolio, round count, SearchNet and projection."""
        state: dict = {
            "config": asdict(self.config),
            "portfolio": list(self.portfolio),
            "rounds": self.rounds,
            "shrinkage": self.shrinkage,
            "evidence": {f"{lam:g}": v for lam, v in self.evidence.items()},
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
        self.shrinkage = float(state.get("shrinkage", 1.0))
        self.evidence = {float(k): float(v) for k, v in state.get("evidence", {}).items()}
        if state.get("portfolio") != self.portfolio or "net" not in state:
            self.net, self.projection = None, None
            return
        device = self.device or torch.device("cpu")
        proj = _from_lists(state["projection"], device)
        self.projection = Projection(proj["mean"], proj["basis"], proj["scale"])
        # Only the fields this version knows: a state saved with an option since removed loads.
        known = {f.name for f in fields(AutoALConfig)}
        config = AutoALConfig(**{k: v for k, v in state.get("config", {}).items() if k in known})
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
