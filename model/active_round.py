"""One active-learning round, the same code for the backend and for the benchmark harness:
train the kind's model on the labeled items, let the selector prioritise the unlabeled ones.
The round never asks which kind it serves: the pool's kind (``model.kinds``) trains the model
and fills the per-item ``probs`` the selectors read.
"""

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from model.errors import EmptyPoolError
from model.kinds import get_kind
from model.pool import PoolState
from model.selectors import Selection, Selector, SingleStrategy
from model.task_model import TaskModelConfig

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
        model: the kind's model trained on every labeled item (``TaskModel`` for choices,
            ``SpanModel`` for spans); None in a cold-start round.
        probs: [N, C] its per-item probabilities (``PoolState.probs``); None in a cold start.
        cold_start: True when the round used diversity only.
        parts: the kind's trained per-item parts (a span pool's tokens with their tag
            distributions and decoded path); None for choices and in a cold start.
        validation_accuracy: k-fold cross-validated accuracy on the labeled items, when
            ``validation_folds`` >= 2 and there are enough labels; else None.
        seconds: wall time of each stage.
    """

    selection: Selection
    model: Any
    probs: torch.Tensor | None
    cold_start: bool
    validation_accuracy: float | None = None
    parts: Any = None
    seconds: dict[str, float] = field(default_factory=dict)


def is_cold_start(state: PoolState, min_labels: int) -> bool:
    """The pool's kind says whether a model is worth training yet (``model.kinds``)."""
    return get_kind(state.kind).cold_start(state, min_labels)


def cross_validated_accuracy(state: PoolState, config: RoundConfig) -> float | None:
    """The kind's k-fold cross-validated quality on the labeled items (choices: accuracy,
    exact match for multi-label; spans: entity micro-F1), ``config.validation_folds`` folds."""
    return get_kind(state.kind).validate(state, config.task_model, config.validation_folds)


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
    kind = get_kind(state.kind)
    model = kind.fit(state, config.task_model, state.seed)
    trained = kind.trained(state, model)
    probs = trained.probs
    seconds["train"] = time.perf_counter() - start

    start = time.perf_counter()
    selection = selector.select(trained, candidates)
    seconds["select"] = time.perf_counter() - start

    start = time.perf_counter()
    accuracy = cross_validated_accuracy(state, config)
    if accuracy is not None:
        seconds["validate"] = time.perf_counter() - start
    return RoundResult(
        selection, model, probs, False, accuracy, seconds=seconds, parts=trained.parts
    )
