"""Scores to rankings: the one place where strategies' scores become an order.

Strategies never select (STYLE.md): they score, and these functions turn scores into
rank-normalised values in [0, 1] and into an order, with seeded tie-breaking.
"""

import torch

from model.errors import EmptyPoolError, NonFiniteScoresError


def _tie_breaker(n: int, seed: int, device: torch.device) -> torch.Tensor:
    """A seeded random permutation used to break ties the same way every run.  # [n]"""
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randperm(n, generator=generator).to(device)


def check_finite(scores: torch.Tensor, source: str = "scores") -> None:
    """Raise NonFiniteScoresError naming how many of the scores are NaN or infinite."""
    bad = ~torch.isfinite(scores)
    if bool(bad.any()):
        raise NonFiniteScoresError(
            f"{source}: expected finite values, got {int(bad.sum())} non-finite of {scores.numel()}"
        )


def rank_order(scores: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Indices that sort ``scores`` [N] from highest (most informative) to lowest.

    Ties are broken by a seeded permutation, so equal scores do not fall back to
    index order (which would favour whatever came first in the pool).
    """
    if scores.ndim != 1:
        raise ValueError(f"scores must be 1-D [N], got shape {tuple(scores.shape)}")
    if scores.numel() == 0:
        raise EmptyPoolError("no scores to rank: the candidate pool is empty")
    check_finite(scores)
    n = scores.numel()
    breaker = _tie_breaker(n, seed, scores.device)
    # Sort by the tie-breaker first, then stable-sort by score: equal scores keep the
    # seeded random order.
    shuffled = scores[breaker]
    order = torch.sort(shuffled, descending=True, stable=True).indices
    return breaker[order]


def rank_normalise(scores: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Map raw scores [N] to their ranks scaled into [0, 1]; 1 = the highest score.

    Makes strategies with different scales comparable (AUTOAL.md flaw 4). A single
    candidate gets 1.0.
    """
    return ranks_from_order(rank_order(scores, seed))


def ranks_from_order(order: torch.Tensor) -> torch.Tensor:
    """[N] values in [0, 1] from an order [N] (a permutation, best first): 1 for the first,
    0 for the last, evenly spaced; a single item gets 1.0."""
    n = order.numel()
    ranks = torch.empty(n, dtype=torch.float32, device=order.device)
    if n == 1:
        ranks[order] = 1.0
        return ranks
    ranks[order] = torch.linspace(1.0, 0.0, n, device=order.device)
    return ranks


def top_k(scores: torch.Tensor, k: int, seed: int = 0) -> torch.Tensor:
    """The indices of the k highest scores, best first (seeded ties)."""
    from model.errors import BudgetError

    if k < 0 or k > scores.numel():
        raise BudgetError(k, scores.numel())
    return rank_order(scores, seed)[:k]
