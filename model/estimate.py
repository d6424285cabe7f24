"""How good is the model? Estimates of its accuracy on the whole pool from the labels the queue
gathered, honest about the queue's selection bias.

Cross-validated accuracy on the labeled items understates the model: the queue picks hard
items (the point Label Sleuth makes). Two estimates that avoid that, both **prequential**: each
round's model predicted a task before anyone labeled it, so the label that came later judges a
prediction made without it.

- ``calibrated_accuracy``: the queue chooses tasks by what the model says about them (how sure
  it is), so the chance that a guess of a given confidence is right is the same among the
  queue's tasks as in the pool. A calibration curve P(right | confidence) is fitted on the newly
  labeled tasks (logistic in the logit of the confidence, pulled toward "confidence is right"
  when they are few) and averaged over every task of the pool. Where the queue never looks (the
  model's surest tasks) the curve extrapolates; its bias is measured in simulation
  (docs/benchmarks.md). The band is a bootstrap over the judged tasks.
- ``audit_accuracy``: with ``AUTOAL_AUDIT_FRACTION`` > 0, a share of the queue is served at
  random (``interleave_audit``): their labels are a uniform sample of the pool, and the model's
  guesses on them an unbiased estimate (Wilson band), at the price of those labels.

A density-ratio reweighting of the batch on the embeddings' principal components was tried
first and dropped: it cannot see the model's confidence, which is what the queue selects on
(bias -0.38 on MNIST, docs/benchmarks.md).
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


def weighted_estimate(correct: torch.Tensor, weights: torch.Tensor | None = None) -> Estimate | None:
    """Self-normalised weighted mean of ``correct`` [n] (0/1) and its band; None for n = 0."""
    if correct.numel() == 0:
        return None
    w = torch.ones_like(correct, dtype=torch.float64) if weights is None else weights.double()
    c = correct.double()
    p = float((w * c).sum() / w.sum())
    n_eff = float(w.sum() ** 2 / (w * w).sum())
    low, high = band(p, n_eff)
    return Estimate(p, low, high, n_eff)


# Pseudo-observations' worth of pull toward "the confidence is right": a batch of 20 hard
# tasks, nearly all wrong, must not drag the curve to zero on its own.
CALIBRATION_PRIOR = 10.0
# Prequential batches pooled for the curve: the current one and the two before it.
POOLED_BATCHES = 3


def calibration(
    correct: torch.Tensor, confidence: torch.Tensor, prior: float = CALIBRATION_PRIOR
) -> tuple[float, float]:
    """(a, b) of P(right | c) = sigmoid(a logit(c) + b) fitted to 0/1 ``correct`` [n] and the
    guesses' ``confidence`` [n] by maximum likelihood, with ``prior`` pseudo-observations'
    worth of pull toward (1, 0), i.e. "the confidence is right" (Newton steps)."""
    x = torch.logit(confidence.double().clamp(1e-4, 1 - 1e-4))
    y = correct.double()
    theta = torch.tensor([1.0, 0.0], dtype=torch.float64)
    centre = theta.clone()
    design = torch.stack((x, torch.ones_like(x)), dim=1)  # [n, 2]
    for _ in range(25):
        p = torch.sigmoid(design @ theta)
        gradient = design.t() @ (y - p) - prior * (theta - centre)
        hessian = -(design.t() * (p * (1 - p))) @ design - prior * torch.eye(2, dtype=torch.float64)
        step = torch.linalg.solve(hessian, gradient)
        theta = theta - step
        if float(step.abs().max()) < 1e-8:
            break
    return float(theta[0]), float(theta[1])


def calibrated_accuracy(
    correct: torch.Tensor,
    confidence: torch.Tensor,
    pool_confidence: torch.Tensor,
    seed: int = 0,
    resamples: int = 200,
) -> Estimate | None:
    """The pool's accuracy from the guesses judged so far: ``correct`` [n] (0/1) with their
    ``confidence`` [n], and the confidence of every pool task's guess [m] (judged ones
    included). None when nothing was judged."""
    n = correct.numel()
    if n == 0:
        return None
    pool = torch.logit(pool_confidence.double().clamp(1e-4, 1 - 1e-4))

    def estimate(rows: torch.Tensor) -> float:
        a, b = calibration(correct[rows], confidence[rows])
        return float(torch.sigmoid(a * pool + b).mean())

    value = estimate(torch.arange(n))
    gen = generator(seed)
    draws = sorted(estimate(torch.randint(n, (n,), generator=gen)) for _ in range(resamples))
    low = draws[int(0.025 * resamples)]
    high = draws[min(resamples - 1, int(0.975 * resamples))]
    return Estimate(value, min(low, value), max(high, value), float(n))


def interleave_audit(order: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
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
