"""TypiClust and ProbCover on Gaussian blobs: one pick per blob before any second, each pick
near its blob's dense centre, a blob that already holds a label served last (TypiClust) or not
at all while others are uncovered (ProbCover), and the blockwise distances equal brute force."""

import pytest
import torch

from model.pool import make_pool
from model.strategies import get_strategy, strategy_names, typical
from model.strategies.typical import (
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


def test_blockwise_neighbour_distances_match_brute_force(monkeypatch):
    monkeypatch.setattr(typical, "ROW_BLOCK", 7)
    x = torch.randn(40, 5, generator=torch.Generator().manual_seed(1))
    d = torch.cdist(x, x)
    d.fill_diagonal_(float("inf"))
    expected = d.topk(3, dim=1, largest=False).values.mean(1)
    assert torch.allclose(knn_mean_distance(x, 3), expected, atol=1e-4)


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
        assert torch.allclose(first, again)  # order of the candidates does not matter
        top = candidates[first.argsort(descending=True)[:BLOBS]]
        assert sorted(blob(int(i)) for i in top) == list(range(BLOBS)) or known
