"""How good is the model? Estimates of its accuracy on the whole pool from the labels the queue
gathered, honest about the queue's selection bias.

Cross-validated accuracy on the labeled items understates the model: the queue picks hard
items (the point Label Sleuth makes). Two estimates that avoid that, both **prequential**: each
round's model predicted a task before anyone labeled it, so the label that came later judges a
prediction made without it.

- ``reweighted_accuracy``: the guesses on the batch labeled since the last round, each weighted
  by how much likelier the task is under the pool than under the queue's selection (a density
  ratio from a logistic classifier telling the batch from the pool, on a few principal
  components; weights clipped, self-normalised). It corrects the bias where the batch has
  support; where the queue never looks (items the model is sure of) it cannot, so it still errs
  low. Its bias is measured in simulation (docs/benchmarks.md).
- ``audit_accuracy``: with ``AUTOAL_AUDIT_FRACTION`` > 0, a share of the queue is served at
  random (``interleave_audit``): their labels are a uniform sample of the pool, and the model's
  guesses on them an unbiased estimate, at the price of those labels.

Both come with a 95% band (normal approximation on the effective sample size).
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


def density_ratio(
    selected: torch.Tensor, pool: torch.Tensor, dims: int = 8, clip: float = 10.0, seed: int = 0
) -> torch.Tensor:
    """[s] weights ~ p_pool(x) / p_selected(x) for the ``selected`` items [s, d], from a
    logistic classifier telling them from ``pool`` [m, d] (both standardised features) on their
    top ``dims`` principal components. Clipped to [1 / clip, clip] and scaled to mean 1."""
    s = selected.shape[0]
    if s == 0:
        return torch.zeros(0)
    x = torch.cat((selected, pool)).float().cpu()
    mean = x.mean(dim=0)
    q = max(1, min(dims, x.shape[0] - 1, x.shape[1]))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        _, _, v = torch.pca_lowrank(x - mean, q=q, center=False, niter=2)
    z = (x - mean) @ v
    z = z / z.std(dim=0).clamp_min(1e-6)
    y = torch.cat((torch.ones(s), torch.zeros(pool.shape[0])))
    balance = torch.where(y > 0, 0.5 / s, 0.5 / max(pool.shape[0], 1))  # both sides weigh alike
    w = torch.zeros(q, requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    optimiser = torch.optim.LBFGS([w, b], max_iter=50, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        logits = z @ w + b
        loss = (balance * torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")).sum()
        loss = loss + 1e-2 * (w * w).sum()  # a weak ridge: a few dozen items cannot bear more
        loss.backward()
        return loss

    optimiser.step(closure)
    with torch.no_grad():
        logit = z[:s] @ w + b  # log p_selected / p_pool (balanced classes)
        ratio = torch.exp(-logit).clamp(1.0 / clip, clip)
    return ratio / ratio.mean()


def reweighted_accuracy(
    correct: torch.Tensor, selected: torch.Tensor, pool: torch.Tensor, seed: int = 0
) -> Estimate | None:
    """The prequential accuracy of the last batch (``correct`` [s] for items ``selected``
    [s, d]), reweighted to ``pool`` [m, d], the unlabeled items it was chosen from."""
    if correct.numel() == 0:
        return None
    weights = density_ratio(selected, pool, seed=seed) if pool.shape[0] > 1 else None
    return weighted_estimate(correct, weights)


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
