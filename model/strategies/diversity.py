"""Diversity on the embeddings: k-means representatives and k-center greedy (core-set).

Neither needs a model, so both serve the cold start (with 0 labels too). Both are chunked
(``common.nearest_centre``): memory stays O(N*d), never an N x N matrix.
"""

import torch

from model.pool import PoolState
from model.seeding import generator
from model.strategies import register
from model.strategies.common import (
    canonical_order,
    nearest_centre,
    picks_on_top,
    require_candidates,
    restore_order,
    squared_norms,
    weighted_draw,
)

# Lloyd iterations after k-means++: the ranking needs a good partition, not a converged one,
# and each iteration costs a full [M, B] distance pass.
KMEANS_ITERATIONS = 10


def kmeans_plus_plus(x: torch.Tensor, k: int, rng: torch.Generator) -> torch.Tensor:
    """Indices [k] of k-means++ seeds among the rows of ``x`` [M, d] (D^2 sampling).

    When every remaining item coincides with a chosen seed (fewer distinct points than k),
    further seeds are drawn uniformly among the items not chosen yet.
    """
    m = x.shape[0]
    x_sq = squared_norms(x)  # [M]
    first = int(torch.randint(m, (1,), generator=rng))
    seeds = [first]
    chosen = torch.zeros(m, dtype=torch.bool, device=x.device)
    chosen[first] = True
    min_d2 = (x_sq + x_sq[first] - 2.0 * (x @ x[first])).clamp_min(0.0)  # [M]
    while len(seeds) < k:
        weights = torch.where(chosen, torch.zeros_like(min_d2), min_d2)
        index = weighted_draw(weights, rng)
        if index is None:
            index = weighted_draw((~chosen).to(x.dtype), rng)
            assert index is not None  # k <= m, so an unchosen item exists
        seeds.append(index)
        chosen[index] = True
        d2 = (x_sq + x_sq[index] - 2.0 * (x @ x[index])).clamp_min(0.0)
        min_d2 = torch.minimum(min_d2, d2)
    return torch.tensor(seeds, dtype=torch.long, device=x.device)


def _cluster_sums(x: torch.Tensor, assign: torch.Tensor, k: int) -> torch.Tensor:
    """[k, d] sum of the rows of ``x`` [M, d] in each cluster (``assign`` [M])."""
    if x.device.type == "cuda":
        # index_add_ uses float atomics on CUDA (run-to-run jitter); a one-hot matmul is
        # deterministic and cheap there.
        sums = torch.zeros(k, x.shape[1], dtype=x.dtype, device=x.device)
        rows = max(1, (1 << 22) // k)
        for start in range(0, x.shape[0], rows):
            block = assign[start : start + rows]
            one_hot = torch.nn.functional.one_hot(block, k).to(x.dtype)  # [rows, k]
            sums += one_hot.t() @ x[start : start + rows]
        return sums
    return torch.zeros(k, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, assign, x)


def kmeans(
    x: torch.Tensor, k: int, rng: torch.Generator, iterations: int = KMEANS_ITERATIONS
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """k-means on ``x`` [M, d] with k-means++ seeds and up to ``iterations`` Lloyd steps.

    Returns centroids [k, d], each row's cluster [M] (int64) and its squared distance to
    that centroid [M]. A cluster left empty is re-seeded at the item farthest from its own
    centroid, so clusters stay non-empty while there are at least k distinct items.
    """
    x_sq = squared_norms(x)
    centroids = x[kmeans_plus_plus(x, k, rng)].clone()  # [k, d]
    d2, assign = nearest_centre(x, centroids, x_sq)
    for _ in range(iterations):
        counts = torch.bincount(assign, minlength=k)  # [k]
        sums = _cluster_sums(x, assign, k)
        centroids = torch.where(
            (counts > 0)[:, None], sums / counts.clamp_min(1)[:, None].to(x.dtype), centroids
        )
        empty = torch.nonzero(counts == 0).flatten()
        if empty.numel():
            farthest = torch.topk(d2, empty.numel()).indices
            centroids[empty] = x[farthest]
        d2, new_assign = nearest_centre(x, centroids, x_sq)
        converged = bool(torch.equal(new_assign, assign)) and not empty.numel()
        assign = new_assign
        if converged:
            break
    return centroids, assign, d2


def kmeans_representative_scores(
    x: torch.Tensor, budget: int, rng: torch.Generator
) -> torch.Tensor:
    """[M] raw scores: the item nearest each of ``budget`` centroids first, the rest by
    closeness to their own centroid.

    The representatives come in order of cluster size (largest first: it stands for the
    most items), so the top B of the ranking is "one item per cluster".
    """
    k = max(1, min(budget, x.shape[0]))
    _, assign, d2 = kmeans(x, k, rng)
    m = x.shape[0]
    # The member closest to its centroid; on exact ties the lowest row, for determinism.
    nearest = torch.full((k,), float("inf"), dtype=d2.dtype, device=x.device).scatter_reduce(
        0, assign, d2, reduce="amin"
    )  # [k]
    is_nearest = d2 == nearest[assign]
    rows = torch.arange(m, device=x.device)
    representative = torch.full((k,), m, dtype=torch.long, device=x.device).scatter_reduce(
        0, assign[is_nearest], rows[is_nearest], reduce="amin"
    )  # [k]; m where a cluster has no member
    counts = torch.bincount(assign, minlength=k)
    present = torch.nonzero(representative < m).flatten()
    # Largest cluster first; the tighter representative first among equal sizes.
    by_tightness = present[torch.argsort(nearest[present], stable=True)]
    by_size = by_tightness[torch.argsort(counts[by_tightness], descending=True, stable=True)]
    picks = representative[by_size].tolist()
    return picks_on_top(-d2.sqrt(), picks)


@register(
    "kmeans",
    needs_model=False,
    sequential=True,
    description="one representative per k-means cluster (B clusters) on the embeddings",
    kinds=("choices", "spans", "boxes"),
)
def kmeans_scores(state: PoolState, candidates: torch.Tensor) -> torch.Tensor:
    """[M] representativeness of the candidates [M] under k-means with ``state.budget``
    clusters on their features; ranking the top B gives one item per cluster."""
    require_candidates(candidates, "kmeans")
    ordered, order = canonical_order(candidates)
    x = state.features[ordered]  # [M, d]
    scores = kmeans_representative_scores(x, state.budget, generator(state.seed))
    return restore_order(scores, order)


def coreset_picks(
    x: torch.Tensor, centres: torch.Tensor, budget: int, rng: torch.Generator
) -> tuple[list[int], torch.Tensor]:
    """k-center greedy: ``budget`` rows of ``x`` [M, d], each the farthest from every centre
    so far, starting from ``centres`` [L, d] (a seeded random row of ``x`` when L = 0).

    Returns the picks in pick order and each row's final squared distance [M] to its nearest
    centre (picks included as centres).
    """
    m = x.shape[0]
    budget = max(1, min(budget, m))
    x_sq = squared_norms(x)
    picks: list[int] = []
    if centres.shape[0] > 0:
        min_d2, _ = nearest_centre(x, centres, x_sq)
    else:
        first = int(torch.randint(m, (1,), generator=rng))
        picks.append(first)
        min_d2 = (x_sq + x_sq[first] - 2.0 * (x @ x[first])).clamp_min(0.0)
    picked = torch.zeros(m, dtype=torch.bool, device=x.device)
    picked[picks] = True
    while len(picks) < budget:
        # Picked rows are excluded even when every remaining distance is 0 (duplicates).
        index = int(torch.argmax(torch.where(picked, -1.0, min_d2)))
        picks.append(index)
        picked[index] = True
        d2 = (x_sq + x_sq[index] - 2.0 * (x @ x[index])).clamp_min(0.0)
        min_d2 = torch.minimum(min_d2, d2)
    min_d2[picked] = 0.0
    return picks, min_d2


@register(
    "coreset",
    needs_model=False,
    sequential=True,
    description="k-center greedy on the embeddings, from the labeled items as centres",
    kinds=("choices", "spans", "boxes"),
)
def coreset_scores(state: PoolState, candidates: torch.Tensor) -> torch.Tensor:
    """[M] raw scores: the B k-center-greedy picks in pick order first, then the rest by
    distance to their nearest centre (labeled items and picks).

    Labeled items that are themselves candidates (a held-out fold during cross-fitting) are
    not centres: an item cannot already cover itself.
    """
    require_candidates(candidates, "coreset")
    ordered, order = canonical_order(candidates)
    is_centre = state.labeled.clone()
    is_centre[ordered] = False
    centres = state.features[is_centre]  # [L, d]
    x = state.features[ordered]  # [M, d]
    picks, min_d2 = coreset_picks(x, centres, state.budget, generator(state.seed))
    return restore_order(picks_on_top(min_d2.sqrt(), picks), order)
