"""How good is the model? Estimates of its accuracy on the whole pool from the labels the queue
gathered, honest about the queue's selection bias.

Cross-validated accuracy on the labeled items understates the model: the queue picks hard
items (the point Label Sleuth makes). Two estimates that avoid that, both **prequential**: each
round's model predicted a task before anyone labeled it, so the label that came later judges a
prediction made without it.

- ``calibrated_accuracy``: the queue chooses tasks by what the model says about them (how sure
  it is), so the chance that a guess of a given confidence is right is about the same among
  the queue's tasks as in the pool. The pool is split into strata by the model's confidence;
  each stratum's accuracy comes from the judged guesses in it, shrunk toward the stratum's
  own confidence where they are few, and the strata are averaged by their share of the pool
  (post-stratification). Where the queue never looks (the model's surest tasks) the estimate
  takes the model at its word; its bias is measured in simulation (docs/benchmarks.md). The
  band is a bootstrap over the judged guesses.
- ``audit_accuracy``: with ``AUTOAL_AUDIT_FRACTION`` > 0, a share of the queue is served at
  random (``interleave_audit``): their labels are a uniform sample of the pool, and the model's
  guesses on them an unbiased estimate (Wilson band), at the price of those labels.

Tried first and dropped (docs/benchmarks.md): a density-ratio reweighting of the batch on
the embeddings' principal components (it cannot see the model's confidence, what the queue
selects on: 0.38 low on MNIST), and a logistic calibration curve (it diverged on small
separable batches).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from model.seeding import generator


@dataclass(frozen=True)
class Estimate:
    """An accuracy estimate: ``value`` in [0, 1], its 95% band, and the (effective) number of
    labels behind it."""

    value: float
    low: float
    high: float
    n: float

    def to_json(self) -> dict:
        return {k: round(v, 4) for k, v in (("value", self.value), ("low", self.low),
                                            ("high", self.high), ("n", self.n))}  # fmt: skip


def band(p: float, n: float) -> tuple[float, float]:
    """95% Wilson interval for a proportion ``p`` seen on ``n`` (effective) trials."""
    if n <= 0:
        return 0.0, 1.0
    z = 1.96
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def weighted_estimate(
    correct: torch.Tensor, weights: torch.Tensor | None = None
) -> Estimate | None:
    """Self-normalised weighted mean of ``correct`` [n] (0/1) and its band; None for n = 0."""
    if correct.numel() == 0:
        return None
    w = torch.ones_like(correct, dtype=torch.float64) if weights is None else weights.double()
    c = correct.double()
    p = float((w * c).sum() / w.sum())
    n_eff = float(w.sum() ** 2 / (w * w).sum())
    low, high = band(p, n_eff)
    return Estimate(p, low, high, n_eff)


# Confidence strata of the pool, and how many pseudo-labels a stratum's own confidence is
# worth: a stratum the queue sampled little falls back toward what the model claims there.
STRATA = 5
SHRINK = 5.0
# Prequential batches pooled: the current one and the two before it.
POOLED_BATCHES = 3


def stratified(
    correct: torch.Tensor, confidence: torch.Tensor, pool_confidence: torch.Tensor
) -> float:
    """Post-stratified accuracy: the pool split into ``STRATA`` strata by the confidence of its
    guesses (equal shares), each stratum's accuracy estimated from the judged guesses that fall
    in it, shrunk toward the stratum's mean confidence by ``SHRINK`` pseudo-labels, and the
    strata averaged by their share of the pool."""
    pool = pool_confidence.double()
    edges = torch.quantile(pool, torch.linspace(0, 1, STRATA + 1, dtype=torch.float64)[1:-1])
    pool_stratum = torch.bucketize(pool, edges)
    judged_stratum = torch.bucketize(confidence.double(), edges)
    total = 0.0
    for k in range(STRATA):
        in_pool = pool_stratum == k
        if not bool(in_pool.any()):
            continue
        claimed = float(pool[in_pool].mean())
        hits = correct.double()[judged_stratum == k]
        accuracy = (float(hits.sum()) + SHRINK * claimed) / (hits.numel() + SHRINK)
        total += float(in_pool.double().mean()) * accuracy
    return total


def calibrated_accuracy(
    correct: torch.Tensor,
    confidence: torch.Tensor,
    pool_confidence: torch.Tensor,
    seed: int = 0,
    resamples: int = 200,
) -> Estimate | None:
    """The pool's accuracy from the guesses judged so far: ``correct`` [n] (0/1) with their
    ``confidence`` [n], and the confidence of every pool task's guess [m] (judged ones
    included), post-stratified on confidence (``stratified``); the band is a bootstrap over
    the judged guesses. None when nothing was judged."""
    n = correct.numel()
    if n == 0 or pool_confidence.numel() == 0:
        return None
    value = stratified(correct, confidence, pool_confidence)
    gen = generator(seed)
    draws = []
    for _ in range(resamples):
        rows = torch.randint(n, (n,), generator=gen)
        draws.append(stratified(correct[rows], confidence[rows], pool_confidence))
    draws.sort()
    low = draws[int(0.025 * resamples)]
    high = draws[min(resamples - 1, int(0.975 * resamples))]
    return Estimate(value, min(low, value), max(high, value), float(n))


def interleave_audit(
    order: torch.Tensor, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Serve a ``fraction`` of the queue at random: every (1 / fraction)-th position of
    ``order`` [M] is given to a task drawn uniformly from the whole order (without
    replacement). Returns the new order [M] and which of its positions are audit tasks [M]."""
    m = order.numel()
    audit = torch.zeros(m, dtype=torch.bool)
    if fraction <= 0 or m < 2:
        return order, audit
    step = max(1, round(1.0 / fraction))
    slots = torch.arange(step - 1, m, step)
    picks = torch.randperm(m, generator=generator(seed))[: slots.numel()]
    chosen = order[picks]
    rest = order[~torch.isin(order, chosen)]
    out = torch.empty_like(order)
    audit[slots] = True
    out[audit] = chosen
    out[~audit] = rest
    return out, audit


def audit_accuracy(correct: torch.Tensor) -> Estimate | None:
    """The unbiased estimate from audit tasks' prequential ``correct`` [a] (0/1)."""
    return weighted_estimate(correct)
