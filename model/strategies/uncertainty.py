"""Uncertainty of the task model's predictive distribution: least confidence, margin, entropy.

Each works on ``as_distributions`` ([N, G, K]: G categorical distributions per item), so the
same formula serves single-label (G=1) and multi-label (G=C binary) tasks.
"""

import torch

from model.pool import PoolState, as_distributions
from model.strategies import register
from model.strategies.common import require_candidates


def uncertainty_scores(probs: torch.Tensor, method: str, multilabel: bool = False) -> torch.Tensor:
    """[N, C] probabilities -> [N] uncertainty, higher = less certain.

    ``method``: ``least_confidence`` (1 - max p), ``margin`` (1 - (p_top1 - p_top2)) or
    ``entropy`` (-sum p log p); averaged (summed for entropy) over a multi-label item's labels.
    """
    dist = as_distributions(probs, multilabel)  # [N, G, K]
    if method == "least_confidence":
        return (1.0 - dist.max(dim=-1).values).mean(dim=1)
    if method == "margin":
        top2 = dist.topk(2, dim=-1).values  # [N, G, 2]
        return (1.0 - (top2[..., 0] - top2[..., 1])).mean(dim=1)
    if method == "entropy":
        return -(dist * torch.log(dist.clamp_min(1e-12))).sum(dim=-1).sum(dim=1)
    raise ValueError(f"method must be least_confidence, margin or entropy; got {method!r}")


@register("least_confidence", needs_model=True, description="1 - probability of the top class")
def least_confidence(state: PoolState, candidates: torch.Tensor) -> torch.Tensor:
    require_candidates(candidates, "least_confidence")
    return uncertainty_scores(
        state.require_probs()[candidates], "least_confidence", state.multilabel
    )


@register("margin", needs_model=True, description="small gap between the two top classes")
def margin(state: PoolState, candidates: torch.Tensor) -> torch.Tensor:
    require_candidates(candidates, "margin")
    return uncertainty_scores(state.require_probs()[candidates], "margin", state.multilabel)


@register("entropy", needs_model=True, description="entropy of the predictive distribution")
def entropy(state: PoolState, candidates: torch.Tensor) -> torch.Tensor:
    require_candidates(candidates, "entropy")
    return uncertainty_scores(state.require_probs()[candidates], "entropy", state.multilabel)
