"""The choices kind: one label set per item, a softmax (or per-label sigmoid) head on frozen
embeddings (``model.task_model``). The pool is exactly what ``model.pool`` describes."""

from __future__ import annotations

from dataclasses import replace

import torch

from model.kinds import register_kind
from model.pool import PoolState
from model.strategies import PORTFOLIO
from model.task_model import TaskModel, TaskModelConfig


def is_cold_start(state: PoolState, min_labels: int) -> bool:
    """Fewer than ``min_labels`` labels, or (single-label) fewer than two classes seen."""
    labeled = state.labeled_indices()
    if labeled.numel() < max(min_labels, 1):
        return True
    if state.multilabel:
        return False
    classes_seen = int((state.targets[labeled].sum(dim=0) > 0).sum())
    return classes_seen < 2


def cross_validated_accuracy(state: PoolState, config: TaskModelConfig, folds: int) -> float | None:
    """Mean accuracy of models trained on k-1 folds of the labeled items, tested on the
    k-th (exact-match accuracy for multi-label)."""
    labeled = state.labeled_indices()
    if folds < 2 or labeled.numel() < 2 * folds:
        return None
    order = labeled[
        torch.randperm(labeled.numel(), generator=torch.Generator().manual_seed(state.seed)).to(
            labeled.device
        )
    ]
    fold = (
        torch.arange(order.numel(), device=order.device) % folds
    )  # [L]: item order[i] is in fold i % k
    # The k fold models train at once: model k on every labeled item outside fold k.
    outside = (
        fold.unsqueeze(0) != torch.arange(folds, device=order.device).unsqueeze(1)
    ).float()  # [k, L]
    models = TaskModel.fit_weighted(
        state.features[order],
        state.targets[order],
        outside,
        multilabel=state.multilabel,
        config=config,
        seed=state.seed,
    )
    correct = 0
    for k, model in enumerate(models):
        test = order[k::folds]
        probs = model.predict_proba(state.features[test])
        if state.multilabel:
            hit = ((probs > 0.5).float() == state.targets[test]).all(dim=1)
        else:
            hit = probs.argmax(dim=1) == state.targets[test].argmax(dim=1)
        correct += int(hit.sum())
    return correct / labeled.numel()


@register_kind("choices")
class ChoicesKind:
    """``<Choices>``: the item's embedding in, its label set out."""

    name = "choices"
    portfolio = PORTFOLIO
    roles: dict[str, str] = {n: n for n in PORTFOLIO}

    def cold_start(self, state: PoolState, min_labels: int) -> bool:
        return is_cold_start(state, min_labels)

    def fit(self, state: PoolState, config: TaskModelConfig, seed: int) -> TaskModel:
        labeled = state.labeled_indices()
        return TaskModel.fit(
            state.features[labeled],
            state.targets[labeled],
            multilabel=state.multilabel,
            config=config,
            seed=seed,
        )

    def trained(self, state: PoolState, model: TaskModel) -> PoolState:
        return replace(state, probs=model.predict_proba(state.features), model=model)

    def validate(self, state: PoolState, config: TaskModelConfig, folds: int) -> float | None:
        return cross_validated_accuracy(state, config, folds)
