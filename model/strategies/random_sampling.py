"""Random sampling: the baseline every strategy must beat."""

import torch

from model.pool import PoolState
from model.seeding import generator
from model.strategies import register
from model.strategies.common import require_candidates


@register(
    "random",
    needs_model=False,
    description="uniformly random order (the baseline)",
    kinds=("choices", "spans", "boxes"),
)
def random_scores(state: PoolState, candidates: torch.Tensor) -> torch.Tensor:
    """[M] i.i.d. uniform scores, seeded by the pool's seed."""
    require_candidates(candidates, "random")
    draws = torch.rand(state.num_items, generator=generator(state.seed))  # [N]
    # Drawn for the whole pool and then indexed, so an item's score does not depend on
    # which other items are candidates (invariance to the candidate set's order).
    return draws.to(candidates.device)[candidates]
