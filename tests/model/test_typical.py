"""TypiClust and ProbCover on Gaussian blobs: one pick per blob before any second, each pick
near its blob's dense centre, a blob that already holds a label served last (TypiClust) or not
at all while others are uncovered (ProbCover), the radius is the largest with 95% pure balls,
the blockwise distances equal brute force, and tiny or degenerate pools still get scores."""

import math

import pytest
import torch

from model.pool import make_pool
from model.strategies import get_strategy, strategy_names, typical
from model.strategies.diversity import kmeans
from model.strategies.typical import (
    PURITY,
    ball_edges,
    knn_mean_distance,
    probcover_picks,
    purity_radius,
    typiclust_picks,
    unit_rows,
)

BLOBS = 4
PER_BLOB = 60


def blobs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(BLOBS, 8, generator=gen) * 30
    x = torch.cat([c + torch.randn(PER_BLOB, 8, generator=gen) for c in centres])
    return x, centres


def blob(i: int) -> int:
    return i // PER_BLOB


def exact_distances(x: torch.Tensor) -> torch.Tensor:
    return torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")


@pytest.mark.parametrize("row_block, elements", [(7, 1 << 24), (1024, 90)])
def test_blockwise_neighbour_distances_match_brute_force(monkeypatch, row_block, elements):
    # A fixed block of 7 rows, and blocks cut to 2 rows by the element cap (90 // 40).
    monkeypatch.setattr(typical, "ROW_BLOCK", row_block)
    monkeypatch.setattr(typical, "BLOCK_ELEMENTS", elements)
    x = torch.randn(40, 5, generator=torch.Generator().manual_seed(1))
    d = torch.cdist(x, x)
    d.fill_diagonal_(float("inf"))
    expected = d.topk(3, dim=1, largest=False).values.mean(1)
    assert torch.allclose(knn_mean_distance(x, 3), expected, atol=1e-4)


def test_blockwise_ball_edges_match_brute_force(monkeypatch):
    monkeypatch.setattr(typical, "ROW_BLOCK", 7)
    x = unit_rows(torch.randn(40, 5, generator=torch.Generator().manual_seed(2)))
    source, target = ball_edges(x, 0.8)
    expected = torch.nonzero(exact_distances(x) < 0.8).tolist()
    assert sorted(zip(source.tolist(), target.tolist(), strict=True)) == sorted(
        map(tuple, expected)
    )


@pytest.mark.parametrize("n, seed", [(240, 0), (240, 5), (30, 1), (37, 2)])
def test_the_radius_is_the_largest_with_enough_pure_balls(n, seed):
    # 30 and 37 points: sizes where an interpolated 5% quantile lands above the largest pure
    # radius (purity 28/30 instead of 0.95).
    x, _ = blobs(seed)
    x = unit_rows(x[torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]])
    radius = purity_radius(x, BLOBS, torch.Generator().manual_seed(0))
    _, assign, _ = kmeans(x, BLOBS, torch.Generator().manual_seed(0))  # the same draw inside
    d = exact_distances(x)
    other = torch.where(assign[:, None] == assign[None, :], float("inf"), d)
    in_ball = d < radius
    pure = ~(in_ball & (assign[:, None] != assign[None, :])).any(dim=1)
    assert int(pure.sum()) >= math.ceil(PURITY * n)
    # Largest: just past the next distance to another cluster, too many balls are impure.
    nearest_other = other.min(dim=1).values.sort().values
    beyond = float(nearest_other[nearest_other > radius][0]) * (1 + 1e-6)
    impure_beyond = int(((d < beyond) & (assign[:, None] != assign[None, :])).any(dim=1).sum())
    assert n - impure_beyond < math.ceil(PURITY * n)


def test_typiclust_takes_the_typical_item_of_each_blob_and_a_labeled_blob_last():
    x, centres = blobs()
    labeled = torch.zeros(len(x), dtype=torch.bool)
    picks, typ = typiclust_picks(x, labeled, BLOBS, torch.Generator().manual_seed(0))
    assert sorted(blob(p) for p in picks) == list(range(BLOBS))
    for p in picks:
        members = x[blob(p) * PER_BLOB : (blob(p) + 1) * PER_BLOB]
        to_centre = (members - centres[blob(p)]).norm(dim=1)
        assert float((x[p] - centres[blob(p)]).norm()) < float(to_centre.median())
    assert typ.shape == (len(x),) and bool((typ > 0).all())
    labeled[3] = True  # blob 0 already holds a label
    picks, typ = typiclust_picks(x, labeled, BLOBS, torch.Generator().manual_seed(0))
    assert [blob(p) for p in picks][-1] == 0 and 3 not in picks and float(typ[3]) == 0.0


def test_probcover_covers_every_blob_once_and_skips_a_covered_blob():
    x, _ = blobs(2)
    radius = purity_radius(unit_rows(x), BLOBS, torch.Generator().manual_seed(0))
    assert 0 < radius < 2
    labeled = torch.zeros(len(x), dtype=torch.bool)
    picks, degrees = probcover_picks(x, labeled, BLOBS, BLOBS, torch.Generator().manual_seed(0))
    assert sorted(blob(p) for p in picks) == list(range(BLOBS))
    assert degrees.shape == (len(x),)
    labeled[5] = True
    picks, _ = probcover_picks(x, labeled, BLOBS - 1, BLOBS, torch.Generator().manual_seed(0))
    assert sorted(blob(p) for p in picks) == [1, 2, 3]


def test_probcover_falls_back_to_seeded_random_picks_once_everything_is_covered():
    x, _ = blobs(3)
    labeled = torch.zeros(len(x), dtype=torch.bool)
    first, _ = probcover_picks(x, labeled, 10, BLOBS, torch.Generator().manual_seed(4))
    again, _ = probcover_picks(x, labeled, 10, BLOBS, torch.Generator().manual_seed(4))
    assert first == again and len(set(first)) == 10


@pytest.mark.parametrize("name", ["typiclust", "probcover"])
def test_the_strategy_contract_with_and_without_labels(name):
    assert name in strategy_names("choices") and name not in strategy_names("spans")
    x, _ = blobs(5)
    labels = torch.arange(len(x)) // PER_BLOB
    for known in (0, 6):
        targets = torch.where(
            (torch.arange(len(x)) % 40 == 0) & (torch.arange(len(x)) // 40 < known), labels, -1
        )
        pool = make_pool(x, targets, BLOBS, budget=BLOBS, seed=3)
        candidates = pool.unlabeled_indices()
        raw = get_strategy(name).fn
        first = raw(pool, candidates)
        again = raw(pool, candidates.flip(0)).flip(0)
        assert first.shape == (candidates.numel(),) and bool(torch.isfinite(first).all())
        assert torch.equal(first, raw(pool, candidates))  # the same seed, the same scores
        assert torch.allclose(first, again)  # order of the candidates does not matter
        top = candidates[first.argsort(descending=True)[:BLOBS]]
        assert sorted(blob(int(i)) for i in top) == list(range(BLOBS)) or known


def degenerate_pools() -> dict[str, tuple[torch.Tensor, torch.Tensor, int, int]]:
    """name -> (features, labels with -1 for unlabeled, classes, budget)."""
    gen = torch.Generator().manual_seed(6)
    none = torch.full((60,), -1)
    return {
        "one item": (torch.randn(1, 4, generator=gen), torch.tensor([-1]), 3, 5),
        "two items": (torch.randn(2, 4, generator=gen), torch.tensor([-1, -1]), 3, 5),
        "budget above the pool": (torch.randn(8, 4, generator=gen), none[:8], 3, 50),
        "all duplicates": (torch.ones(20, 4), none[:20], 3, 5),
        "each item five times": (torch.randn(12, 4, generator=gen).repeat(5, 1), none, 3, 10),
        "one class": (
            torch.randn(30, 4, generator=gen),
            torch.where(torch.arange(30) < 3, 0, -1),
            1,
            5,
        ),
        "one left unlabeled": (
            torch.randn(10, 4, generator=gen),
            torch.tensor([0] * 9 + [-1]),
            2,
            3,
        ),
    }


@pytest.mark.parametrize("name", ["typiclust", "probcover"])
@pytest.mark.parametrize("case", list(degenerate_pools()))
def test_tiny_and_degenerate_pools_get_one_finite_score_per_candidate(name, case):
    x, labels, classes, budget = degenerate_pools()[case]
    pool = make_pool(x, labels, classes, budget=budget, seed=1)
    candidates = pool.unlabeled_indices()
    scores = get_strategy(name).fn(pool, candidates)
    assert scores.shape == candidates.shape and bool(torch.isfinite(scores).all())
    # B picks, or every unlabeled item when there are fewer; each once, none labeled.
    labeled = labels >= 0
    rng = torch.Generator().manual_seed(1)
    if name == "typiclust":
        picks, _ = typiclust_picks(x, labeled, budget, rng)
    else:
        picks, _ = probcover_picks(x, labeled, budget, classes, rng)
    assert len(picks) == len(set(picks)) == min(budget, candidates.numel())
    assert not any(bool(labeled[p]) for p in picks)
