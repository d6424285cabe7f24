"""AutoAL: a differentiable search over the query-strategy portfolio (arXiv 2410.13853).

A small package, one concept per module:

- ``config``: ``AutoALConfig``, the selector's settings.
- ``state``: the round's task-agnostic state features (labels per class, balance, the model's
  confidence, how much the strategies agree).
- ``prior``: the SearchNet prior, state -> strategy weights, trained offline on simulated
  labeling of other tasks (``make meta-train``) and shipped as ``prior.json``.
- ``search``: SearchNet, the differentiable top-fraction relaxation, the search objective and
  its validated shrinkage.
- ``signals``: cross-fitting and the label-only signals of the online search.
- ``selector``: ``AutoALSelector``, registered as ``autoal`` (and ``autoal_labels``, the
  published design).

Measured results, with the commands and every variant tried, are in docs/benchmarks.md.
"""

from model.selectors.autoal.config import AutoALConfig
from model.selectors.autoal.prior import (
    Prior,
    PriorTrainingConfig,
    TrainingRound,
    load_prior,
    train_prior,
)
from model.selectors.autoal.search import (
    SHRINKAGE_GRID,
    Projection,
    SearchNet,
    fit_search_net,
    hard_top_reward,
    search_objective,
    soft_top_fraction,
    strategy_rewards,
    validated_shrinkage,
)
from model.selectors.autoal.selector import AutoALSelector, LabelOnlyAutoAL
from model.selectors.autoal.signals import (
    SearchSplit,
    cross_fit,
    leave_one_out_influence,
    normalise_signal,
)
from model.selectors.autoal.state import FEATURES, round_features

__all__ = [
    "FEATURES",
    "SHRINKAGE_GRID",
    "AutoALConfig",
    "AutoALSelector",
    "LabelOnlyAutoAL",
    "Prior",
    "PriorTrainingConfig",
    "Projection",
    "SearchNet",
    "SearchSplit",
    "TrainingRound",
    "cross_fit",
    "fit_search_net",
    "hard_top_reward",
    "leave_one_out_influence",
    "load_prior",
    "normalise_signal",
    "round_features",
    "search_objective",
    "soft_top_fraction",
    "strategy_rewards",
    "train_prior",
    "validated_shrinkage",
]
