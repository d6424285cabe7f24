"""BADGE (Ash et al., 2020): k-means++ seeding in the space of last-layer gradient embeddings.

An item's gradient embedding is g = a (x) h: the outer product of a = p - y_hat (the loss
gradient w.r.t. the logits under the model's own guess y_hat) and h, the input of the last
linear layer (``TaskModel.embed``). The [M, C*h] matrix of all g is never built: inner products
factorise, g_i . g_j = (a_i . a_j)(h_i . h_j), so each k-means++ step costs two matvecs.
"""

import torch

from model.errors import EmptyPoolError
from model.pool import PoolState
from model.seeding import generator
from model.strategies import register
from model.strategies.common import (
    canonical_order,
    picks_on_top,
    require_candidates,
    restore_order,
    squared_norms,
    weighted_draw,
)


def gradient_factors(probs: torch.Tensor, multilabel: bool = False) -> torch.Tensor:
    """[M, C] probabilities -> [M, C] a = dLoss/dlogits at the predicted label(s).

    Single-label: p - onehot(argmax p) (softmax cross-entropy). Multi-label: p - [p > 0.5]
    (binary cross-entropy per class).
    """
    if multilabel:
        return probs - (probs > 0.5).to(probs.dtype)
    guess = torch.nn.functional.one_hot(probs.argmax(dim=1), probs.shape[1]).to(probs.dtype)
    return probs - guess


def badge_picks(
    a: torch.Tensor, h: torch.Tensor, budget: int, rng: torch.Generator
) -> tuple[list[int], torch.Tensor]:
    """k-means++ seeding over gradient embeddings g_i = a_i (x) h_i, given a [M, C] and h [M, h].

    The first pick is the largest gradient norm (as in the BADGE paper's code), the next ones
    are D^2-sampled; when every distance left is 0 (all gradients alike) the rest are drawn
    uniformly. Returns the picks in order and each item's squared gradient-embedding distance
    [M] to its nearest pick (0 for picks).
    """
    m = a.shape[0]
    budget = max(1, min(budget, m))
    a_sq = squared_norms(a)  # [M]
    h_sq = squared_norms(h)  # [M]
    g_sq = a_sq * h_sq  # [M] = |g_i|^2

    def distance_to(index: int) -> torch.Tensor:
        # |g_i - g_j|^2 = |g_i|^2 + |g_j|^2 - 2 (a_i . a_j)(h_i . h_j)   # [M]
        return (g_sq + g_sq[index] - 2.0 * (a @ a[index]) * (h @ h[index])).clamp_min(0.0)

    first = int(torch.argmax(g_sq))
    picks = [first]
    picked = torch.zeros(m, dtype=torch.bool, device=a.device)
    picked[first] = True
    min_d2 = distance_to(first)
    while len(picks) < budget:
        weights = torch.where(picked, torch.zeros_like(min_d2), min_d2)
        index = weighted_draw(weights, rng)
        if index is None:
            index = weighted_draw((~picked).to(a.dtype), rng)
            assert index is not None  # budget <= m, so an unpicked item exists
        picks.append(index)
        picked[index] = True
        min_d2 = torch.minimum(min_d2, distance_to(index))
    min_d2[picked] = 0.0
    return picks, min_d2


@register(
    "badge",
    needs_model=True,
    sequential=True,
    description="k-means++ seeding on gradient embeddings (uncertainty and diversity)",
)
def badge(state: PoolState, candidates: torch.Tensor) -> torch.Tensor:
    """[M] raw scores: the B BADGE picks in pick order first, then the rest by their
    gradient-embedding distance to the nearest pick."""
    require_candidates(candidates, "badge")
    model = state.model
    if model is None or not hasattr(model, "embed"):
        raise EmptyPoolError("strategy 'badge' needs a trained task model; the pool has none")
    ordered, order = canonical_order(candidates)
    a = gradient_factors(state.require_probs()[ordered], state.multilabel)  # [M, C]
    h = model.embed(state.features[ordered])  # [M, h]
    picks, min_d2 = badge_picks(a, h.to(a.dtype), state.budget, generator(state.seed))
    return restore_order(picks_on_top(min_d2.sqrt(), picks), order)
