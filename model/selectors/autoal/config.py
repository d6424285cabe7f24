"""The settings of AutoAL's search: one default for every data set."""

from dataclasses import dataclass


@dataclass(frozen=True)
class AutoALConfig:
    """Settings of the AutoAL selector.

    Attributes:
        prior: where the round's starting weights come from: ``default`` (the SearchNet
            prior trained offline on simulated labeling of other tasks and shipped with the
            package, ``model/selectors/autoal/prior.json``), a path to such a file, or ``none`` (the
            uniform mixture, as the published design).
        online: also run the per-project bi-level search on the project's own labels; it
            starts from the prior's weights and shrinks back toward them when its evidence
            is weak (``validate``).
        folds: cross-fitting folds (each costs one task-model fit per round).
        budget_fraction: r, the fraction of search samples the soft top-r selects.
        temperature: T in standard deviations of u.
        steps: SearchNet optimiser steps per round (a fixed compute budget).
        lr: SearchNet learning rate (Adam).
        weight_decay: L2 on SearchNet's parameters.
        hidden: SearchNet hidden width.
        embed_dims: the online SearchNet sees this many principal components of the
            embedding, so its weights are per sample; 0 makes them one vector per round.
        budget_weight: weight of (mean(s) - r)^2.
        prior_labels: strength of the pull toward the starting weights, in labels: the KL
            term is weighted prior_labels / n, so with n = prior_labels search samples the
            pull counts as much as the reward.
        min_search_labels: below this many labeled items there is no online search.
        max_search_items: at most this many labeled items take part in cross-fitting.
        context_items: unlabeled items added to each fold's sub-pool, so diversity strategies
            see the pool's shape, not only the held-out fold.
        signal: what the online search rewards: ``influence`` (leave-one-out gradient
            alignment within the held-out fold, ``signals.leave_one_out_influence``) or
            ``loss`` (the held-out loss, the paper's signal).
        validate: choose how far to move from the starting weights (lambda) by 2-fold
            validation of the search on the search samples.

    Variants measured and removed (figures in docs/benchmarks.md): SearchNet seeing the
    strategy scores as inputs, validation evidence pooled across rounds, a rank signal.
    """

    prior: str = "default"
    online: bool = False
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
    validate: bool = True

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ValueError(f"cross-fitting needs folds >= 2, got {self.folds}")
        if not 0.0 < self.budget_fraction < 1.0:
            raise ValueError(f"budget_fraction must lie in (0, 1), got {self.budget_fraction}")
        if self.signal not in ("influence", "loss"):
            raise ValueError(f"signal must be 'influence' or 'loss'; got {self.signal!r}")
