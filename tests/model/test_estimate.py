"""Accuracy estimates of the project page: bands, the density ratio that undoes the queue's
selection, audit positions."""

import pytest
import torch

from model.estimate import (
    band,
    calibrated_accuracy,
    interleave_audit,
    stratified,
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


def test_strata_the_queue_never_saw_fall_back_to_the_models_own_confidence():
    pool = torch.linspace(0.5, 1.0, 1000)
    # Judged guesses only in the least confident fifth, all of them wrong.
    judged = torch.linspace(0.5, 0.59, 30)
    value = stratified(torch.zeros(30), judged, pool)
    # Lowest stratum: (0 + 5 x 0.55) / 35; the other four keep their mean confidence.
    expected = 0.2 * (5 * 0.55 / 35) + 0.2 * sum(0.55 + 0.1 * k for k in range(1, 5))
    assert value == pytest.approx(expected, abs=0.01)


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
