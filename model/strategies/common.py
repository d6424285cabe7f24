"""Building blocks shared by the strategies: canonical candidate order, chunked nearest-centre
distances, seeded weighted draws, and turning an ordered list of picks into raw scores.

Every function here keeps memory at O(N*d + chunk*k): no N x N (or M x M) matrix is built.
"""

import torch

from model.errors import EmptyPoolError

# Entries in one [rows, centres] distance block: 4 Mi fp32 values = 16 MiB, whatever N is.
BLOCK_ELEMENTS = 1 << 22
# Centres compared at once; more are walked in blocks so a huge labeled set stays bounded.
CENTRE_BLOCK = 4096


def require_candidates(candidates: torch.Tensor, name: str) -> None:
    """EmptyPoolError when there is nothing to score (strategies may be called directly)."""
    if candidates.numel() == 0:
        raise EmptyPoolError(f"strategy {name!r}: expected at least 1 candidate, got 0")


def canonical_order(candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted candidates [M] and the permutation ``order`` with ``sorted = candidates[order]``.

    Strategies compute on the sorted candidates and write results back with
    ``out[order] = result``: the same inputs in the same order every time, so seeded draws and
    even the float rounding of blocked matmuls cannot depend on how the caller ordered them.
    """
    order = torch.argsort(candidates, stable=True)
    return candidates[order], order


def restore_order(sorted_scores: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Undo ``canonical_order``: [M] scores of the sorted candidates -> the caller's order."""
    out = torch.empty_like(sorted_scores)
    out[order] = sorted_scores
    return out


def squared_norms(x: torch.Tensor) -> torch.Tensor:
    """[N, d] -> [N] squared Euclidean norms."""
    return (x * x).sum(dim=1)


def nearest_centre(
    x: torch.Tensor,
    centres: torch.Tensor,
    x_sq: torch.Tensor | None = None,
    centres_sq: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared distance [N] from each row of ``x`` [N, d] to its nearest row of ``centres``
    [K, d], and that centre's index [N] (int64).

    Blocked over rows and centres via |x|^2 + |c|^2 - 2 x.c, so peak extra memory is
    ``BLOCK_ELEMENTS`` floats, not N x K.
    """
    if centres.shape[0] == 0:
        raise EmptyPoolError("nearest_centre: expected at least 1 centre, got 0")
    x_sq = squared_norms(x) if x_sq is None else x_sq
    centres_sq = squared_norms(centres) if centres_sq is None else centres_sq
    n = x.shape[0]
    best = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)
    best_index = torch.zeros(n, dtype=torch.long, device=x.device)
    for c_start in range(0, centres.shape[0], CENTRE_BLOCK):
        block = centres[c_start : c_start + CENTRE_BLOCK]  # [k, d]
        block_sq = centres_sq[c_start : c_start + CENTRE_BLOCK]  # [k]
        rows = max(1, BLOCK_ELEMENTS // block.shape[0])
        for r_start in range(0, n, rows):
            r_end = min(n, r_start + rows)
            d2 = torch.addmm(
                x_sq[r_start:r_end, None] + block_sq[None, :],
                x[r_start:r_end],
                block.t(),
                alpha=-2.0,
            )  # [rows, k]
            value, index = d2.min(dim=1)
            # Strictly smaller only: on a tie the earlier centre keeps the item, as argmin does.
            better = value < best[r_start:r_end]
            best[r_start:r_end] = torch.where(better, value, best[r_start:r_end])
            best_index[r_start:r_end] = torch.where(
                better, index + c_start, best_index[r_start:r_end]
            )
    # The expansion can dip a hair below 0 for (near-)duplicates.
    return best.clamp_min(0.0), best_index


def weighted_draw(weights: torch.Tensor, rng: torch.Generator) -> int | None:
    """One index drawn with probability proportional to ``weights`` [N] (>= 0), or None when
    they sum to 0.

    The uniform number comes from a CPU generator and the search runs on ``weights``' device,
    so CPU and CUDA draw the same index up to float rounding of the cumulative sum.
    """
    cumulative = torch.cumsum(weights.double(), dim=0)  # [N]
    total = float(cumulative[-1])
    if not total > 0.0:
        return None
    target = float(torch.rand(1, generator=rng, dtype=torch.float64)) * total
    target_tensor = torch.tensor([target], dtype=torch.float64, device=weights.device)
    index = min(int(torch.searchsorted(cumulative, target_tensor)), weights.numel() - 1)
    if float(weights[index]) <= 0.0:
        # Only float rounding at a boundary lands on a zero-weight item: step to the nearest
        # item that can actually be drawn (the next one, else the last positive one).
        after = torch.nonzero(weights[index:] > 0).flatten()
        if after.numel():
            index += int(after[0])
        else:
            index = int(torch.nonzero(weights > 0).flatten()[-1])
    return index


def picks_on_top(rest_scores: torch.Tensor, picks: list[int]) -> torch.Tensor:
    """[M] raw scores that rank ``picks`` first, in pick order, then every other item by
    ``rest_scores`` [M] (higher = sooner).

    For strategies that select B items in sequence (k-means representatives, core-set,
    BADGE): ranking these scores reproduces the selection, and the rest keep a meaningful
    order instead of a tie.
    """
    scores = rest_scores.double().clone()  # float64: pick offsets stay exact on any scale
    if not picks:
        return scores.to(rest_scores.dtype)
    top = float(scores.max()) + 1.0
    pick_index = torch.tensor(picks, dtype=torch.long, device=rest_scores.device)
    steps = torch.arange(len(picks), 0, -1, dtype=torch.float64, device=rest_scores.device)
    scores[pick_index] = top + steps
    return scores.to(rest_scores.dtype)
