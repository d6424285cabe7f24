"""The geometry state features: whether the embedding's clusters follow the labels, on pools
whose answer is known."""

import pytest
import torch

from model.pool import make_pool
from model.seeding import generator
from model.selectors.autoal.geometry import (
    cluster_geometry,
    geometry_features,
    knn_head_agreement,
    knn_label_lift,
)


def clumps(per: int = 50, k: int = 4, spread: float = 0.05, seed: int = 0):
    """[k * per, 8] points in ``k`` tight clumps around orthogonal directions, and the clump of
    each."""
    gen = torch.Generator().manual_seed(seed)
    d = max(8, k)
    centres = torch.eye(d)[:k] * 5
    x = centres.repeat_interleave(per, dim=0) + spread * torch.randn(k * per, d, generator=gen)
    return x, torch.arange(k).repeat_interleave(per)


def one_hot(labels: torch.Tensor, k: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels, k).float()


def test_knn_lift_is_high_where_labels_follow_the_clumps_and_near_zero_where_they_do_not():
    x, clump = clumps()
    x = x / x.norm(dim=1, keepdim=True)
    following = knn_label_lift(x, one_hot(clump, 4), generator(0))
    shuffled = clump[torch.randperm(clump.numel(), generator=generator(1))]
    unrelated = knn_label_lift(x, one_hot(shuffled, 4), generator(0))
    assert following == pytest.approx(1.0, abs=1e-6)
    assert abs(unrelated) < 0.15
    assert knn_label_lift(x[:2], one_hot(clump[:2], 4), generator(0)) == 0.0  # too few
    same = torch.zeros(200, dtype=torch.long)
    assert knn_label_lift(x, one_hot(same, 4), generator(0)) == 0.0  # nothing to predict


def test_knn_head_agreement_counts_the_questions_both_answer_alike():
    x, clump = clumps(per=10)
    x = x / x.norm(dim=1, keepdim=True)
    labeled = torch.arange(0, 40, 2)
    items = torch.arange(1, 40, 2)
    targets = one_hot(clump[labeled], 4)
    agreeing = one_hot(clump[items], 4) * 0.7 + 0.075
    assert knn_head_agreement(x[labeled], targets, x[items], agreeing, False) == 1.0
    wrong = one_hot((clump[items] + 1) % 4, 4)
    assert knn_head_agreement(x[labeled], targets, x[items], wrong, False) == 0.0
    # Several labels per item: each label's yes/no is a question.
    multi = torch.stack((clump[items] == 0, clump[items] == 1), dim=1).float()
    half = multi.clone()
    half[:, 1] = 1 - half[:, 1]
    multi_targets = torch.stack((clump[labeled] == 0, clump[labeled] == 1), dim=1).float()
    assert knn_head_agreement(x[labeled], multi_targets, x[items], half, True) == 0.5
    assert knn_head_agreement(x[:0], targets[:0], x[items], agreeing, False) == 1.0


def test_tightness_and_uncovered_mass_of_clumps():
    x, clump = clumps(per=10, k=20)  # as many clumps as clusters
    labeled = torch.zeros(200, dtype=torch.bool)
    labeled[::10] = True  # one item in each clump
    tight, uncovered = cluster_geometry(x[~labeled], x[labeled], generator(0))
    assert tight > 0.95 and uncovered == 0.0
    labeled[[0, 10]] = False  # two clumps without a label: 20 of the 182 unlabeled uncovered
    _, uncovered = cluster_geometry(x[~labeled], x[labeled], generator(0))
    assert uncovered == pytest.approx(20 / 182, abs=1e-6)
    assert cluster_geometry(x, x[:0], generator(0))[1] == 1.0  # nothing labeled
    x4, _ = clumps(per=50, k=4)  # 4 clumps cut into 20 clusters: one label per clump leaves
    four = torch.zeros(200, dtype=torch.bool)  # most of each clump's clusters uncovered
    four[[0, 50, 100, 150]] = True
    assert cluster_geometry(x4[~four], x4[four], generator(0))[1] > 0.5
    noise = torch.randn(400, 8, generator=torch.Generator().manual_seed(3))
    loose, _ = cluster_geometry(noise, noise[:0], generator(0))
    assert loose < 0.6


def test_geometry_features_of_a_pool_are_seeded_and_ignore_the_candidates_order():
    x, clump = clumps()
    labels = torch.full((200,), -1)
    labels[::10] = clump[::10]
    state = make_pool(x, labels, 4, budget=10, seed=5)
    state.probs = one_hot(clump, 4)
    candidates = state.unlabeled_indices()
    first = geometry_features(state, candidates)
    again = geometry_features(state, candidates.flip(0))
    assert first == again
    # 5 labeled per clump: a vote of 5 neighbours takes one from another clump (lift ~.73).
    assert first["knn_label_lift"] > 0.6 and first["knn_head_agreement"] == 1.0
    assert first["cluster_tightness"] > 0.95 and 0.0 <= first["uncovered_mass"] <= 1.0
    shuffled = make_pool(x, labels[torch.randperm(200, generator=generator(2))], 4, budget=10)
    shuffled.probs = state.probs
    assert geometry_features(shuffled, shuffled.unlabeled_indices())["knn_label_lift"] < 0.3
