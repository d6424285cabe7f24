"""Accuracy estimates of the project page: bands, the density ratio that undoes the queue's
selection, audit positions."""

import pytest
import torch

from model.estimate import (
    band,
    calibrated_accuracy,
    calibration,
    interleave_audit,
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


def test_calibration_recovers_a_known_curve_and_falls_back_to_the_confidence():
    gen = torch.Generator().manual_seed(0)
    confidence = 0.3 + 0.69 * torch.rand(4000, generator=gen)
    # The model is overconfident: right with probability sigmoid(0.5 logit(c)).
    right = torch.sigmoid(0.5 * torch.logit(confidence))
    correct = (torch.rand(4000, generator=gen) < right).float()
    a, b = calibration(correct, confidence)
    assert a == pytest.approx(0.5, abs=0.08) and b == pytest.approx(0.0, abs=0.08)
    # With two labels, the pull toward "the confidence is right" dominates.
    a, b = calibration(torch.tensor([1.0, 0.0]), torch.tensor([0.9, 0.6]))
    assert 0.5 < a < 1.5 and abs(b) < 0.5


def test_the_calibrated_estimate_undoes_the_queues_preference_for_unsure_tasks():
    gen = torch.Generator().manual_seed(1)
    pool = torch.rand(5000, generator=gen) * 0.5 + 0.5  # confidences of the pool's guesses
    truth = float(pool.mean())  # a calibrated model: accuracy = mean confidence
    queue = pool.sort().values[:200]  # the queue took the 200 least sure
    correct = (torch.rand(200, generator=gen) < queue).float()
    naive = float(correct.mean())
    estimate = calibrated_accuracy(correct, queue, pool, seed=0)
    assert naive < truth - 0.2  # the queue's own picks read far too low
    assert abs(estimate.value - truth) < abs(naive - truth) / 3
    assert estimate.low <= estimate.value <= estimate.high and estimate.n == 200
    assert calibrated_accuracy(torch.zeros(0), torch.zeros(0), pool) is None


def test_audit_positions_are_spaced_and_drawn_from_the_whole_order():
    order = torch.arange(100, 200)
    mixed, audit = interleave_audit(order, 0.1, seed=1)
    assert sorted(mixed.tolist()) == order.tolist()  # a permutation
    assert torch.nonzero(audit).flatten().tolist() == list(range(9, 100, 10))
    # The non-audit tasks keep their order.
    rest = mixed[~audit].tolist()
    assert rest == sorted(rest)
    assert interleave_audit(order, 0.0, seed=1)[0].tolist() == order.tolist()
