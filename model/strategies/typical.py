"""Low-budget picks on the embeddings: TypiClust and ProbCover.

Both were proposed for the first few labels per class, where uncertainty has nothing to read
and k-means representatives or core-set's outliers teach little (Hacohen et al., ICML 2022,
"Active Learning on a Budget"; Yehuda et al., NeurIPS 2022, "Active Learning Through a
Covering Lens"). Both follow their authors' code (avihu111/TypiClust, ``deep-al/pycls/al/
typiclust.py`` and ``prob_cover.py``) in what they pick; where it needs faiss or an N x N
graph in memory, the same quantities are computed in blocks here. Neither needs a model.
Outside the portfolio: measured against k-means and random order in docs/benchmarks.md.
"""

import math
from collections.abc import Callable

import torch

from model.pool import PoolState
from model.seeding import generator
from model.strategies import register
from model.strategies.common import (
    canonical_order,
    picks_on_top,
    require_candidates,
    restore_order,
    squared_norms,
)
from model.strategies.diversity import kmeans

# TypiClust's constants, as its authors set them.
MIN_CLUSTER_SIZE = 5
MAX_CLUSTERS = 500
TYPICALITY_NEIGHBOURS = 20
# ProbCover: the share of points whose ball must be pure (alpha), the anchors the radius is
# estimated on, the relative amount it stays below the purity limit (float rounding), and the
# most ball edges kept (20M edges, 320 MB of int64 pairs: the radius shrinks to stay under).
PURITY = 0.95
RADIUS_ANCHORS = 2000
RADIUS_MARGIN = 1e-4
MAX_EDGES = 20_000_000
# Rows compared with every row at once: at most ROW_BLOCK, fewer on a large pool so that one
# [rows, n] distance block stays near BLOCK_ELEMENTS floats (64 MiB), whatever n is.
ROW_BLOCK = 1024
BLOCK_ELEMENTS = 1 << 24


def pairwise_sq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[n, m] squared Euclidean distances (clamped at 0)."""
    return torch.addmm(
        squared_norms(a)[:, None] + squared_norms(b)[None, :], a, b.t(), alpha=-2.0
    ).clamp_min(0.0)


def block_rows(n: int) -> int:
    """Rows per distance block against ``n`` columns (``ROW_BLOCK`` capped by elements)."""
    return max(1, min(ROW_BLOCK, BLOCK_ELEMENTS // max(1, n)))


def knn_mean_distance(x: torch.Tensor, k: int) -> torch.Tensor:
    """[n] each row's mean Euclidean distance to its ``k`` nearest other rows, in row blocks
    (never an n x n matrix at once)."""
    n = x.shape[0]
    k = max(1, min(k, n - 1))
    out = torch.empty(n, dtype=x.dtype, device=x.device)
    step = block_rows(n)
    for start in range(0, n, step):
        d2 = pairwise_sq(x[start : start + step], x)  # [rows, n]
        rows = torch.arange(d2.shape[0], device=x.device)
        d2[rows, rows + start] = float("inf")  # not its own neighbour
        out[start : start + step] = d2.topk(k, dim=1, largest=False).values.sqrt().mean(1)
    return out


def typicality(x: torch.Tensor, k: int) -> torch.Tensor:
    """[n] 1 / (mean distance to the k nearest neighbours + 1e-5), as the authors define it."""
    if x.shape[0] < 2:
        return torch.ones(x.shape[0], dtype=x.dtype, device=x.device)
    return 1.0 / (knn_mean_distance(x, k) + 1e-5)


def typiclust_picks(x: torch.Tensor, labeled: torch.Tensor, budget: int,
                    rng: torch.Generator) -> tuple[list[int], torch.Tensor]:  # fmt: skip
    """TypiClust on rows ``x`` [n, d] of which ``labeled`` [n] are labeled: ``budget`` picks
    among the others, and each unlabeled row's typicality in its cluster [n] (0 for labeled).

    k-means into min(L + B, 500) clusters; the clusters above ``MIN_CLUSTER_SIZE`` are visited
    fewest labeled first, then largest first, cycling when the budget exceeds them (every
    cluster when none is that large); each visit takes the cluster's most typical member not
    labeled nor picked, typicality computed among those members."""
    n = x.shape[0]
    unlabeled = int((~labeled).sum())
    budget = max(0, min(budget, unlabeled))
    k = max(1, min(int(labeled.sum()) + budget, MAX_CLUSTERS, n))
    _, assign, _ = kmeans(x, k, rng)
    sizes = torch.bincount(assign, minlength=k)
    existing = torch.bincount(assign[labeled], minlength=k)
    eligible = torch.nonzero(sizes > MIN_CLUSTER_SIZE).flatten()
    if eligible.numel() == 0:
        eligible = torch.nonzero(sizes > 0).flatten()
    # Fewest labeled first, then the largest (stable sorts: the second key first).
    by_size = eligible[torch.argsort(sizes[eligible], descending=True, stable=True)]
    visit = by_size[torch.argsort(existing[by_size], stable=True)].tolist()
    taken = labeled.clone()
    typical = torch.zeros(n, dtype=x.dtype, device=x.device)
    cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    picks: list[int] = []
    step, empty = 0, 0
    while len(picks) < budget:
        cluster = visit[step % len(visit)]
        step += 1
        members = torch.nonzero((assign == cluster) & ~taken).flatten()
        if members.numel() == 0:
            empty += 1
            if empty >= len(visit):  # every visited cluster used up: the rest, most typical first
                rest = torch.nonzero(~taken).flatten()
                order = torch.argsort(typicality(x[rest], TYPICALITY_NEIGHBOURS), descending=True)
                picks += rest[order][: budget - len(picks)].tolist()
            continue
        empty = 0
        values = typicality(x[members], min(TYPICALITY_NEIGHBOURS, members.numel() // 2))
        cache.setdefault(cluster, (members, values))
        best = int(members[int(values.argmax())])
        picks.append(best)
        taken[best] = True
    for members, values in cache.values():
        typical[members] = values
    # Clusters never visited: their members ranked by typicality in their own cluster.
    for cluster in set(range(k)) - set(cache):
        members = torch.nonzero((assign == cluster) & ~labeled).flatten()
        if members.numel():
            typical[members] = typicality(x[members], TYPICALITY_NEIGHBOURS)
    typical[labeled] = 0.0
    return picks, typical


@register(
    "typiclust",
    needs_model=False,
    sequential=True,
    description="TypiClust: the most typical item of the least-labeled k-means clusters",
    kinds=("choices",),
)
def typiclust_scores(state: PoolState, candidates: torch.Tensor) -> torch.Tensor:
    """[M] raw scores: TypiClust's B picks first, then the rest by typicality in their cluster.
    Clusters are made over the labeled items and the candidates together, as the authors do."""
    return _with_labeled_items(state, candidates, "typiclust", lambda x, labeled: typiclust_picks(
        x, labeled, state.budget, generator(state.seed)))  # fmt: skip


def _with_labeled_items(state: PoolState, candidates: torch.Tensor, name: str,
                        pick: Callable[[torch.Tensor, torch.Tensor], tuple[list[int], torch.Tensor]]) -> torch.Tensor:  # fmt: skip
    """Raw scores [M] of a strategy that picks among the candidates on rows holding the labeled
    items (not candidates) first, then the candidates: ``pick(features [n, d], labeled [n])``
    gives the picks (row indices) and a score per row for the rest."""
    require_candidates(candidates, name)
    ordered, order = canonical_order(candidates)
    labeled_rows = state.labeled.clone()
    labeled_rows[ordered] = False
    rows = torch.cat((torch.nonzero(labeled_rows).flatten(), ordered))
    offset = rows.numel() - ordered.numel()
    labeled = torch.zeros(rows.numel(), dtype=torch.bool, device=rows.device)
    labeled[:offset] = True
    picks, rest = pick(state.features[rows], labeled)
    return restore_order(picks_on_top(rest[offset:], [p - offset for p in picks]), order)


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length (ProbCover's balls live on normalised embeddings)."""
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def purity_radius(x: torch.Tensor, classes: int, rng: torch.Generator) -> float:
    """ProbCover's delta: the largest radius at which at least ``PURITY`` of the balls hold
    one k-means cluster only (k = the number of classes, at least 2: one cluster would make
    every ball pure and one ball cover the pool). A ball (|x - y| < radius) around x is pure
    while the radius is at most D(x), x's distance to the nearest point of another cluster; so
    the radius is the order statistic of D with at most (1 - PURITY) of the values below it,
    on up to ``RADIUS_ANCHORS`` seeded anchors (all points when there are fewer: then exact).
    No grid of radii to try: every radius between two values of D has the same purity."""
    n = x.shape[0]
    k = min(max(2, classes), n)
    _, assign, _ = kmeans(x, k, rng)
    anchors = torch.randperm(n, generator=rng)[:RADIUS_ANCHORS].to(x.device)
    other = torch.empty(anchors.numel(), dtype=x.dtype, device=x.device)
    step = block_rows(n)
    for start in range(0, anchors.numel(), step):
        block = anchors[start : start + step]
        d2 = pairwise_sq(x[block], x)  # [rows, n]
        d2[assign[block][:, None] == assign[None, :]] = float("inf")
        other[start : start + step] = d2.min(dim=1).values.sqrt()
    if not bool(torch.isfinite(other).any()):  # one cluster holds everything: all balls pure
        return float("inf")
    ordered = torch.sort(other.double()).values  # [anchors]
    impure_allowed = math.floor(ordered.numel() * (1.0 - PURITY) + 1e-9)
    # A hair inside D: the ball's other-cluster point at exactly D must stay out of the ball
    # whatever the rounding of the distances (|a|^2 + |b|^2 - 2ab here, cdist elsewhere).
    return float(ordered[min(impure_allowed, ordered.numel() - 1)]) * (1.0 - RADIUS_MARGIN)


def ball_edges(x: torch.Tensor, radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Edges (i, j) with |x_i - x_j| < radius, self-loops included, found in row blocks; the
    radius shrinks by a tenth until at most ``MAX_EDGES`` edges remain."""
    while True:
        sources, targets, count = [], [], 0
        step = block_rows(x.shape[0])
        for start in range(0, x.shape[0], step):
            i, j = torch.nonzero(pairwise_sq(x[start : start + step], x) < radius**2,
                                 as_tuple=True)  # fmt: skip
            sources.append(i + start)
            targets.append(j)
            count += i.numel()
            if count > MAX_EDGES:
                break
        if count <= MAX_EDGES:
            return torch.cat(sources), torch.cat(targets)
        radius *= 0.9


def probcover_picks(x: torch.Tensor, labeled: torch.Tensor, budget: int, classes: int,
                    rng: torch.Generator) -> tuple[list[int], torch.Tensor]:  # fmt: skip
    """ProbCover on rows ``x`` [n, d]: ``budget`` picks among the unlabeled rows by greedy
    maximum coverage of the radius-delta balls (the points in the labeled items' balls count as
    covered), seeded random picks once everything is covered; and each row's count of points
    its ball would still cover after the picks [n]."""
    n = x.shape[0]
    budget = max(0, min(budget, int((~labeled).sum())))
    x = unit_rows(x)
    radius = purity_radius(x, classes, rng)
    if radius == float("inf"):
        radius = 2.0 + 1e-6  # unit vectors are at most 2 apart: every ball holds every point
    source, target = ball_edges(x, radius)
    covered = torch.zeros(n, dtype=torch.bool, device=x.device)
    covered[target[labeled[source]]] = True
    live = ~covered[target]
    taken = labeled.clone()
    picks: list[int] = []
    while len(picks) < budget:
        degrees = torch.bincount(source[live], minlength=n)
        degrees[taken] = -1
        if int(degrees.max()) <= 0:  # all covered: random picks, as the authors' code does
            rest = torch.nonzero(~taken).flatten()
            order = torch.randperm(rest.numel(), generator=rng).to(rest.device)
            picks += rest[order][: budget - len(picks)].tolist()
            break
        best = int(degrees.argmax())
        picks.append(best)
        taken[best] = True
        covered[target[live & (source == best)]] = True
        live = live & ~covered[target]
    degrees = torch.bincount(source[live], minlength=n).to(x.dtype)
    return picks, degrees


@register(
    "probcover",
    needs_model=False,
    sequential=True,
    description="ProbCover: greedy maximum coverage of pure-radius balls on the embeddings",
    kinds=("choices",),
)
def probcover_scores(state: PoolState, candidates: torch.Tensor) -> torch.Tensor:
    """[M] raw scores: ProbCover's B picks first, then the rest by the uncovered points their
    ball holds. The graph spans the labeled items and the candidates."""
    return _with_labeled_items(state, candidates, "probcover", lambda x, labeled: probcover_picks(
        x, labeled, state.budget, state.num_classes, generator(state.seed)))  # fmt: skip
