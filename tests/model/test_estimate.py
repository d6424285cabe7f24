"""Accuracy estimates of the project page: bands, the density ratio that undoes the queue's
selection, audit positions."""

import pytest
import torch

from model.estimate import (
    band,
    density_ratio,
    interleave_audit,
    reweighted_accuracy,
    weighted_estimate,
)


def test_wilson_band_known_values():
    low, high = band(0.5, 100)
    assert low == pytest.approx(0.404, abs=1e-3) and high == pytest.approx(0.596, abs=1e-3)
    assert band(1.0, 10)[1] == 1.0 and band(0.0, 10)[0] == 0.0
    assert band(0.3, 0) == (0.0, 1.0)


def test_weighted_estimate_and_effective_size():
    correct = torch.tensor([1.0, 1.0, 0.0, 0.0])
    plain = weighted_estimate(correct)
    assert plain.value == 0.5 and plain.n == pytest.approx(4.0)
    skewed = weighted_estimate(correct, torch.tensor([3.0, 3.0, 1.0, 1.0]))
    assert skewed.value == pytest.approx(0.75) and skewed.n < 4.0
    assert weighted_estimate(torch.zeros(0)) is None


def test_the_density_ratio_down_weights_where_the_queue_looked_most():
    gen = torch.Generator().manual_seed(0)
    pool = torch.randn(2000, 5, generator=gen)
    # The queue picked mostly from the x0 > 1 corner, a few elsewhere.
    selected = torch.cat((torch.randn(40, 5, generator=gen) * 0.3 + torch.tensor([2.0, 0, 0, 0, 0]),
                          torch.randn(10, 5, generator=gen)))  # fmt: skip
    weights = density_ratio(selected, pool)
    assert weights.shape == (50,) and weights.mean() == pytest.approx(1.0, abs=1e-5)
    assert weights[:40].mean() < weights[40:].mean() / 2
    # The model is right on the typical items and wrong in the corner: the reweighted estimate
    # moves toward the pool's (typical) accuracy.
    correct = torch.cat((torch.zeros(40), torch.ones(10)))
    assert reweighted_accuracy(correct, selected, pool).value > weighted_estimate(correct).value + 0.2


def test_audit_positions_are_spaced_and_drawn_from_the_whole_order():
    order = torch.arange(100, 200)
    mixed, audit = interleave_audit(order, 0.1, seed=1)
    assert sorted(mixed.tolist()) == order.tolist()  # a permutation
    assert torch.nonzero(audit).flatten().tolist() == list(range(9, 100, 10))
    # The non-audit tasks keep their order.
    rest = mixed[~audit].tolist()
    assert rest == sorted(rest)
    assert interleave_audit(order, 0.0, seed=1)[0].tolist() == order.tolist()
