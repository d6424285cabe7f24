"""One active-learning round, the same code for the backend and for the benchmark harness:
train the task model on the labeled items, let the selector prioritise the unlabeled ones.
"""

import time
from dataclasses import dataclass, field, replace

import torch

from model.errors import EmptyPoolError
from model.pool import PoolState
from model.selection import Selection, Selector, SingleStrategy
from model.task_model import TaskModel, TaskModelConfig

COLD_START_STRATEGY = "kmeans"


@dataclass(frozen=True)
class RoundConfig:
    """Settings of a round. Below ``min_labels`` labeled items (or with fewer than two
    classes seen) there is no model worth trusting: the round falls back to diversity only
    (k-means on the embeddings), whatever the selector."""

    task_model: TaskModelConfig = field(default_factory=TaskModelConfig)
    min_labels: int = 10
    validation_folds: int = 0


@dataclass
class RoundResult:
    """What a round produced.

    Attributes:
        selection: the priorities of the unlabeled items.
        model: the task model trained on every labeled item; None in a cold-start round.
        probs: [N, C] its probabilities for every item; None in a cold-start round.
        cold_start: True when the round used diversity only.
        validation_accuracy: k-fold cross-validated accuracy on the labeled items, when
            ``validation_folds`` >= 2 and there are enough labels; else None.
        seconds: wall time of each stage.
    """

    selection: Selection
    model: TaskModel | None
    probs: torch.Tensor | None
    cold_start: bool
    validation_accuracy: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def is_cold_start(state: PoolState, min_labels: int) -> bool:
    labeled = state.labeled_indices()
    if labeled.numel() < max(min_labels, 1):
        return True
    if state.multilabel:
        return False
    classes_seen = int((state.targets[labeled].sum(dim=0) > 0).sum())
    return classes_seen < 2


def cross_validated_accuracy(state: PoolState, config: RoundConfig) -> float | None:
    """Mean accuracy of models trained on k-1 folds of the labeled items, tested on the
    k-th (exact-match accuracy for multi-label)."""
    folds = config.validation_folds
    labeled = state.labeled_indices()
    if folds < 2 or labeled.numel() < 2 * folds:
        return None
    order = labeled[torch.randperm(labeled.numel(), generator=torch.Generator().manual_seed(state.seed)).to(labeled.device)]
    fold = torch.arange(order.numel(), device=order.device) % folds  # [L]: item order[i] is in fold i % k
    # The k fold models train at once: model k on every labeled item outside fold k.
    outside = (fold.unsqueeze(0) != torch.arange(folds, device=order.device).unsqueeze(1)).float()  # [k, L]
    models = TaskModel.fit_weighted(
        state.features[order],
        state.targets[order],
        outside,
        multilabel=state.multilabel,
        config=config.task_model,
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


def run_round(
    state: PoolState, selector: Selector, config: RoundConfig | None = None
) -> RoundResult:
    """Train on ``state``'s labeled items and prioritise its unlabeled ones."""
    config = config or RoundConfig()
    candidates = state.unlabeled_indices()
    if candidates.numel() == 0:
        raise EmptyPoolError("every item is labeled: nothing left to prioritise")
    seconds: dict[str, float] = {}
    if is_cold_start(state, config.min_labels):
        start = time.perf_counter()
        selection = SingleStrategy(COLD_START_STRATEGY).select(state, candidates)
        selection.info["cold_start"] = True
        seconds["select"] = time.perf_counter() - start
        return RoundResult(selection, None, None, cold_start=True, seconds=seconds)

    start = time.perf_counter()
    labeled = state.labeled_indices()
    model = TaskModel.fit(
        state.features[labeled],
        state.targets[labeled],
        multilabel=state.multilabel,
        config=config.task_model,
        seed=state.seed,
    )
    probs = model.predict_proba(state.features)
    seconds["train"] = time.perf_counter() - start

    start = time.perf_counter()
    trained = replace(state, probs=probs, model=model)
    selection = selector.select(trained, candidates)
    seconds["select"] = time.perf_counter() - start

    start = time.perf_counter()
    accuracy = cross_validated_accuracy(state, config)
    if accuracy is not None:
        seconds["validate"] = time.perf_counter() - start
    return RoundResult(selection, model, probs, False, accuracy, seconds)
