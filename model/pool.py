"""The pool state: everything a query strategy may look at, in one explicit object."""

from dataclasses import dataclass, field
from typing import Any

import torch

from model.errors import EmptyPoolError


@dataclass
class PoolState:
    """One active-learning pool, on one device.

    Attributes:
        features: [N, d] float32, standardised embeddings of every item.
        targets: [N, C] float32; one-hot (single-label) or multi-hot (multi-label) rows for
            labeled items, zeros elsewhere.
        labeled: [N] bool, True where a label is known.
        labeled_round: [N] int64, the round an item was labeled in; -1 where unlabeled.
        multilabel: False for one class per item (softmax), True for independent labels
            (sigmoid per class).
        probs: [N, C] predictive probabilities of the trained task model for every item
            (softmax rows, or per-class sigmoids when multilabel); None before training.
        model: the trained task model (``model.task_model.TaskModel``); strategies that need
            MC-dropout passes or penultimate features use it. None before training.
        budget: the batch size B a strategy should plan for (k-means uses B clusters, core-set
            and BADGE pick B seeds). Scores are still given for every candidate.
        seed: seeds every random choice a strategy makes.
        ids: [N] int64 stable identifiers of the items (Label Studio task ids in the backend,
            data set row numbers in simulation); selectors that keep state across rounds
            (ALBL) key it by these. None means ``arange(N)``.
        shortlist: the most candidates the sequential strategies (k-means, core-set, BADGE)
            look at: a seeded random subset of them when there are more (``model.strategies``);
            0 = all of them.
        kind: the task kind (``model.kinds``): ``choices`` (one label set per item) or
            ``spans`` (entities in a text). Every kind fills ``features``, ``targets`` and
            ``probs`` with per-item meaning, so selectors need nothing else; the kind's own
            per-item parts (a span pool's tokens) are in ``parts``.
        parts: the kind's own data (``model.kinds.spans.TokenPool`` for spans); None for
            choices.
    """

    features: torch.Tensor
    targets: torch.Tensor
    labeled: torch.Tensor
    labeled_round: torch.Tensor
    multilabel: bool = False
    probs: torch.Tensor | None = None
    model: object | None = None
    budget: int = 10
    seed: int = 0
    ids: torch.Tensor | None = None
    shortlist: int = 0
    kind: str = "choices"
    parts: Any = None
    cache: dict = field(default_factory=dict, repr=False)

    @property
    def num_items(self) -> int:
        return int(self.features.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.targets.shape[1])

    @property
    def device(self) -> torch.device:
        return self.features.device

    def item_ids(self) -> torch.Tensor:
        """[N] int64 stable identifiers (``ids`` or ``arange(N)``)."""
        if self.ids is None:
            return torch.arange(self.num_items, device=self.device)
        return self.ids

    def labeled_indices(self) -> torch.Tensor:
        """[L] int64 indices of labeled items."""
        return torch.nonzero(self.labeled, as_tuple=False).flatten()

    def unlabeled_indices(self) -> torch.Tensor:
        """[U] int64 indices of unlabeled items."""
        return torch.nonzero(~self.labeled, as_tuple=False).flatten()

    def class_indices(self) -> torch.Tensor:
        """[N] int64 class of each single-label item (argmax of targets; 0 where unlabeled)."""
        return self.targets.argmax(dim=1)

    def require_probs(self) -> torch.Tensor:
        if self.probs is None:
            raise EmptyPoolError(
                "this strategy needs a trained task model (probs), but none is set on the pool"
            )
        return self.probs


def as_distributions(probs: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """View probabilities as G categorical distributions per item: [N, G, K].

    Single-label: one distribution over the C classes (G=1, K=C). Multi-label: one binary
    distribution per class (G=C, K=2). Uncertainty strategies reduce over K, then G, so they
    serve both kinds of task with one formula.
    """
    if not multilabel:
        return probs.unsqueeze(1)
    return torch.stack((1.0 - probs, probs), dim=-1)


def make_pool(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    labeled_round: torch.Tensor | None = None,
    budget: int = 10,
    seed: int = 0,
) -> PoolState:
    """A single-label pool from class indices [N] (-1 = unlabeled). Handy for tests and
    simulation."""
    labels = labels.to(features.device).long()
    labeled = labels >= 0
    targets = torch.zeros(features.shape[0], num_classes, device=features.device)
    targets[labeled, labels[labeled]] = 1.0
    if labeled_round is None:
        labeled_round = torch.where(labeled, 0, -1).to(features.device)
    return PoolState(
        features=features.float(),
        targets=targets,
        labeled=labeled,
        labeled_round=labeled_round.long(),
        budget=budget,
        seed=seed,
    )
