"""The label-only signals of the online search: cross-fitted strategy scores and the value of
each labeled item for the rest of its held-out fold.

Cross-fitting fixes flaw 3 of the reference code: every labeled item is scored by the
portfolio with a task model (FitNet) that was not trained on it. What the items are worth to
the model (their influence, or their held-out loss) is the reward the online search
maximises. docs/benchmarks.md measures how well such signals rank the strategies' next
batches: at 20-1,000 labels, not better than chance across data sets; the prior learned from
other tasks (``prior.py``) exists because of that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from model.errors import EmptyPoolError
from model.pool import PoolState
from model.seeding import generator
from model.selectors.autoal.config import AutoALConfig
from model.strategies import score_matrix
from model.task_model import TaskModel, TaskModelConfig


def normalise_signal(losses: torch.Tensor, kind: str) -> torch.Tensor:
    """[n] held-out influences or losses -> [n] reward signal, robust to a few huge values."""
    if kind == "influence":
        # Signed: standardise, and clip so one sample cannot decide the mixture.
        centred = losses - losses.mean()
        return (centred / centred.std().clamp_min(1e-12)).clamp(-3.0, 3.0)
    if kind != "loss":
        raise ValueError(f"signal must be 'loss' or 'influence'; got {kind!r}")
    # Clip at the 95th percentile: a single mislabeled or freak sample must not decide the
    # mixture on its own.
    clipped = losses.clamp_max(torch.quantile(losses, 0.95))
    return clipped / clipped.mean().clamp_min(1e-12)


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
        shortlist=state.shortlist,
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


def loss_correlations(
    scores: torch.Tensor, losses: torch.Tensor, names: list[str]
) -> dict[str, float]:
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
