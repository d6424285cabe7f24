"""How good is the current model on the tasks not yet labeled? An estimate with a band that
holds the truth, or no figure at all.

The queue picks tasks by what the model says about them, so the labels it gathers cannot
judge the model where the queue never looks (the model's surest tasks): every estimate built
on them alone was measured off by up to .3 with a band that held the truth in 4-59% of rounds
(docs/benchmarks.md). What judges the model without that bias is a share of the queue served
at random (**audit tasks**, ``interleave_audit``): their labels are a uniform sample of the
unlabeled pool.

``unlabeled_accuracy`` is a difference estimator over them:

    accuracy = mean over the unlabeled pool of the model's calibrated certainty
             + mean over the audited tasks of (right or wrong - calibrated certainty)

The first term is exact arithmetic on every unlabeled task, the second corrects its bias with
the labels, so the estimate is unbiased whatever the certainty is worth; a certainty that
predicts right from wrong only narrows the band. Each audited task is judged **out of fold**
(``out_of_fold``): by a model trained on every label except a fold of the audited ones,
i.e. (nearly) the current model, not the one that was current when the task was served. So
audits from every round pool without drift. The certainty is the model's, softened by one
temperature fitted on out-of-fold guesses of the tasks the queue chose (``fit_temperature``).

The band is a t interval, cluster-robust over the folds, whose variance is at least what the
calibrated certainty itself predicts (a handful of audits that all agree says little). A
figure is **trusted** from ``MIN_AUDITS`` audited tasks on, once the band the certainty
predicts for them is at most ``TRUSTED_HALF_WIDTH`` either side (a rule that reads nothing
of which audited guesses were right, so it does not favour lucky samples): the page shows no
number before that, and the queue audits more (``audit_share``). Measured on every packaged
data set in docs/benchmarks.md; the screens in docs/experiments/2026-12-05-accuracy-figure.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from model.seeding import generator
from model.task_model import TaskModel, TaskModelConfig

# A figure needs this many audited tasks (a smaller sample's spread is itself unknown) and a
# 95% band at most this far either side of it (then its mean error is about .04).
MIN_AUDITS = 10
TRUSTED_HALF_WIDTH = 0.10
# Folds of the cross-fits: each fold model misses a tenth of the audited labels at most, so
# it stays close to the current model; the folds are also the clusters of the band.
FOLDS = 10
# Temperatures tried by fit_temperature (log-spaced; 1 = the model as it is).
TEMPERATURES = torch.exp(torch.linspace(math.log(0.25), math.log(32.0), 71, dtype=torch.float64))
# A trusted figure's band, as measured, may be this much wider than the certainty predicts.
WIDEST_HALF_WIDTH = 0.15


@dataclass(frozen=True)
class Estimate:
    """An accuracy estimate: ``value`` in [0, 1], its 95% band, the number of labels behind
    it, and ``expected_half``: the band's half width that the model's own (calibrated)
    certainty predicts for that many labels. The expected half width does not depend on which
    audited guesses happened to be right, so a rule that shows a figure by it does not favour
    lucky samples (a band measured on the sample is narrowest when most guesses were right,
    for accuracies above one half)."""

    value: float
    low: float
    high: float
    n: float
    expected_half: float = 0.0

    def to_json(self) -> dict:
        return {k: round(v, 4) for k, v in (("value", self.value), ("low", self.low),
                                            ("high", self.high), ("n", self.n))}  # fmt: skip


@dataclass(frozen=True)
class Verdict:
    """What may be shown: the estimate (None when none could be made), whether it is trusted,
    and, when it is not, why: in one sentence a person can act on (``reason``) and as a short
    code a monitor can group by (``code``: ``too_few_audits``, ``band_too_wide``, or the
    caller's own)."""

    estimate: Estimate | None
    trusted: bool
    reason: str | None = None
    code: str | None = None

    def to_json(self) -> dict:
        return {
            "estimate": self.estimate.to_json() if self.estimate else None,
            "trusted": self.trusted,
            "reason": self.reason,
            "code": self.code,
        }


# Student's t 97.5% quantiles for 1-30 degrees of freedom (beyond: the expansion below).
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip


def t_quantile(dof: float) -> float:
    """The 97.5% quantile of Student's t with ``dof`` degrees of freedom (at least 1; a
    fractional count is rounded down, the wider band): the table to 30, then the
    Cornish-Fisher expansion around the normal's 1.96 (within .001 there)."""
    v = max(int(dof), 1)
    if v <= len(T_975):
        return T_975[v - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * v) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v * v)


def is_right(probs: torch.Tensor, targets: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """[n] bool: the guess from ``probs`` [n, C] equals ``targets`` [n, C] (the top class;
    for multi-label, every label on or off as the target has it)."""
    if multilabel:
        return ((probs > 0.5) == (targets > 0.5)).all(dim=1)
    return probs.argmax(dim=1) == targets.argmax(dim=1)


def certainty(probs: torch.Tensor, multilabel: bool, temperature: float = 1.0) -> torch.Tensor:
    """[n] the probability that the whole guess from ``probs`` [n, C] is right, after dividing
    the logits by ``temperature``: the top class's softmax probability, or for multi-label
    the product over labels of the chosen side's probability."""
    p = probs.double().clamp(1e-12, 1 - 1e-12)
    if multilabel:
        q = torch.sigmoid(torch.logit(p) / temperature)
        return torch.maximum(q, 1 - q).prod(dim=1)
    return torch.softmax(torch.log(p) / temperature, dim=1).max(dim=1).values


def fit_temperature(probs: torch.Tensor, targets: torch.Tensor, multilabel: bool) -> float:
    """The temperature (of ``TEMPERATURES``) with the least log-loss of out-of-fold ``probs``
    [n, C] against ``targets`` [n, C]; 1 for n = 0."""
    if probs.shape[0] == 0:
        return 1.0
    p = probs.double().clamp(1e-12, 1 - 1e-12)
    t = targets.double()
    losses = []
    for temperature in TEMPERATURES.tolist():
        if multilabel:
            logits = torch.logit(p) / temperature
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, t)
        else:
            loss = torch.nn.functional.cross_entropy(torch.log(p) / temperature, t.argmax(dim=1))
        losses.append(float(loss))
    return float(TEMPERATURES[min(range(len(losses)), key=losses.__getitem__)])


def out_of_fold(
    features: torch.Tensor,
    targets: torch.Tensor,
    held: torch.Tensor,
    *,
    multilabel: bool,
    config: TaskModelConfig,
    seed: int,
    folds: int = FOLDS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities [h, C] for the ``held`` rows (bool [L]) of the labeled ``features``
    [L, d] and ``targets`` [L, C], each from a model trained on every row but its fold of the
    held ones (rows not held train every fold's model), and each held row's fold [h]. The
    fold models train at once (``TaskModel.fit_weighted``)."""
    rows = torch.nonzero(held).flatten()
    h = rows.numel()
    if h == 0:
        return torch.zeros(0, targets.shape[1]), torch.zeros(0, dtype=torch.int64)
    k = max(1, min(folds, h))
    fold_of = torch.full((held.numel(),), -1, dtype=torch.int64)
    fold_of[rows[torch.randperm(h, generator=generator(seed))]] = torch.arange(h) % k
    fold_of = fold_of.to(features.device)
    weights = fold_of.unsqueeze(0) != torch.arange(k, device=features.device).unsqueeze(1)
    models = TaskModel.fit_weighted(features, targets, weights.float(), multilabel=multilabel,
                                    config=config, seed=seed)  # fmt: skip
    out = torch.zeros(h, targets.shape[1])
    held_fold = fold_of[rows]
    for f, model in enumerate(models):
        mine = torch.nonzero(held_fold == f).flatten()
        if mine.numel():
            out[mine] = model.predict_proba(features[rows[mine]]).float().cpu()
    return out, held_fold.cpu()


def unlabeled_accuracy(
    pool_certainty: torch.Tensor,
    audit_right: torch.Tensor,
    audit_certainty: torch.Tensor,
    drawn_from: torch.Tensor | None = None,
    labeled_since: torch.Tensor | None = None,
    fold: torch.Tensor | None = None,
) -> Estimate | None:
    """The difference estimate of the accuracy on the unlabeled pool: the mean calibrated
    certainty of its guesses ``pool_certainty`` [m] plus the mean residual (right - certainty)
    the audited tasks (``audit_right`` [a], 0/1, and their out-of-fold ``audit_certainty``
    [a]) say the pool has.

    An audited task was drawn from the pool as it was then, ``drawn_from`` [a] tasks, of which
    the queue has labeled some since: their summed residual (out of fold), ``labeled_since``
    [a], is known, so each audit's word on today's pool is (drawn_from * residual -
    labeled_since) / m. Without them (None) every audit is taken to come from today's pool.

    The band: a t interval on those per-audit values. Audits judged by the same fold model
    (``fold`` [a]) share that model's luck, so the variance is the larger of the plain one and
    the one over the folds' means (cluster-robust, with as many degrees of freedom as folds
    less one), and at least what the certainty itself predicts (the pool's mean certainty *
    (1 - certainty)). None without an unlabeled task or an audit."""
    a, m = audit_right.numel(), pool_certainty.numel()
    if a == 0 or m == 0:
        return None
    pool = pool_certainty.double()
    residual = audit_right.double() - audit_certainty.double()  # [a]
    scale = torch.ones(a, dtype=torch.float64) if drawn_from is None else drawn_from.double() / m
    since = torch.zeros(a, dtype=torch.float64) if labeled_since is None else labeled_since.double()
    word = scale * residual - since / m  # [a]: each audit's estimate of today's mean residual
    mean = float(word.mean())
    floor = float((pool * (1 - pool)).mean() * (scale * scale).mean())
    variance = max(float(word.var(unbiased=True)) if a > 1 else 0.0, floor) / a  # of the mean
    dof = a - 1
    groups = fold.unique() if fold is not None else torch.zeros(0)
    if groups.numel() >= 2:
        # Cluster-robust: sum over folds of (fold total - its size * mean)^2, G / (G - 1).
        g = groups.numel()
        totals = torch.stack([(word[fold == k] - mean).sum() for k in groups])
        variance = max(variance, float((totals * totals).sum()) / (a * a) * g / (g - 1))
        dof = min(dof, g - 1)
    half = t_quantile(dof) * math.sqrt(variance)
    expected = t_quantile(dof) * math.sqrt(floor / a)
    value = min(1.0, max(0.0, float(pool.mean()) + mean))
    return Estimate(value, max(0.0, value - half), min(1.0, value + half), float(a), expected)


def verdict(estimate: Estimate | None, audited: int) -> Verdict:
    """Whether ``estimate`` may be shown, and if not, why (``audited``: the audited tasks
    labeled so far). Shown: from ``MIN_AUDITS`` audits on, when the band the certainty
    predicts is at most ``TRUSTED_HALF_WIDTH`` either side and the band measured at most
    ``WIDEST_HALF_WIDTH`` (the page shows the measured one)."""
    if estimate is None or audited < MIN_AUDITS:
        return Verdict(estimate, False, f"{audited} of the {MIN_AUDITS} tasks served at random "
                       "that an accuracy figure needs are labeled so far", "too_few_audits")  # fmt: skip
    # The band before it was cut at 0 or 1: a figure of .99 whose band reaches 1.15 is as
    # unsure as one of .8 with a band of .65-.95, however narrow [.84, 1] looks.
    measured = max(estimate.value - estimate.low, estimate.high - estimate.value)
    if estimate.expected_half > TRUSTED_HALF_WIDTH or measured > WIDEST_HALF_WIDTH:
        half = max(estimate.expected_half, measured)
        return Verdict(estimate, False, f"the {audited} tasks served at random so far pin the "
                       f"accuracy down to ±{half:.0%} only; a figure needs ±"
                       f"{TRUSTED_HALF_WIDTH:.0%}", "band_too_wide")  # fmt: skip
    return Verdict(estimate, True)


def current_accuracy(
    features: torch.Tensor,
    targets: torch.Tensor,
    labeled: torch.Tensor,
    labeled_round: torch.Tensor,
    audit_round: torch.Tensor,
    audit_pool: torch.Tensor,
    probs: torch.Tensor,
    *,
    multilabel: bool,
    config: TaskModelConfig,
    seed: int,
) -> Verdict:
    """The current model's accuracy on the unlabeled tasks, from the pool's ``features``
    [N, d], ``targets`` [N, C], ``labeled`` [N] mask and the round each label arrived in
    (``labeled_round`` [N]); for the labeled tasks that were served at random, the round whose
    queue drew them (``audit_round`` [N]; a label drawn in round s arrives in a later round)
    and how many tasks that queue held (``audit_pool`` [N], 0 for tasks not audited); and the
    current model's ``probs`` [N, C].

    A task counts as audited where ``audit_pool`` > 0; the tasks labeled since its draw are
    those with ``labeled_round`` > its ``audit_round``. Two cross-fits: over all labeled tasks
    (the temperature, and the residuals of the tasks labeled since each draw), and over the
    audited ones (to judge them by nearly the current model). The temperature is fitted on
    the tasks the queue chose (all labeled ones while fewer than ``MIN_AUDITS`` are)."""
    labeled = labeled.cpu()
    audited = (audit_pool.cpu() > 0) & labeled
    count = int(audited.sum())
    unlabeled = ~labeled
    if count == 0 or not bool(unlabeled.any()):
        return verdict(None, count)
    rows = torch.nonzero(labeled).flatten()
    x, y = features[rows.to(features.device)], targets[rows.to(targets.device)]
    y_cpu = y.float().cpu()
    everyone = torch.ones(rows.numel(), dtype=torch.bool)
    all_probs, _ = out_of_fold(
        x, y, everyone, multilabel=multilabel, config=config, seed=seed + 1, folds=5
    )
    held = audited[rows]
    # The temperature from the labels the queue chose: the audited ones would make it (and
    # with it the band a figure is shown by) depend on whether their guesses happened to be
    # right, and shown figures would then favour lucky samples.
    chosen = ~held if int((~held).sum()) >= MIN_AUDITS else torch.ones_like(held)
    temperature = fit_temperature(all_probs[chosen], y_cpu[chosen], multilabel)
    residual = is_right(all_probs, y_cpu, multilabel).double() - certainty(
        all_probs, multilabel, temperature
    )  # [L]: every labeled task's out-of-fold residual
    audit_probs, fold = out_of_fold(x, y, held, multilabel=multilabel, config=config, seed=seed)
    arrived = labeled_round.cpu()[rows]  # [L]
    drawn = audit_round.cpu()[rows][held]  # [a]
    since = torch.stack([residual[arrived > d].sum() for d in drawn.tolist()])
    estimate = unlabeled_accuracy(
        certainty(probs.cpu()[unlabeled], multilabel, temperature),
        is_right(audit_probs, y_cpu[held], multilabel).float(),
        certainty(audit_probs, multilabel, temperature),
        audit_pool.cpu()[rows][held],
        since,
        fold,
    )
    return verdict(estimate, count)


def audit_share(trusted: bool, steady: float, until_trusted: float) -> float:
    """The share of the queue served at random: ``until_trusted`` while no trusted figure
    exists, ``steady`` after (never less than ``steady``)."""
    return steady if trusted else max(steady, until_trusted)


def interleave_audit(
    order: torch.Tensor, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Serve a ``fraction`` of the queue at random: every (1 / fraction)-th position of
    ``order`` [M] is given to a task drawn uniformly from the whole order (without
    replacement). Returns the new order [M] and which of its positions are audit tasks [M]."""
    m = order.numel()
    audit = torch.zeros(m, dtype=torch.bool)
    if fraction <= 0 or m < 1:
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
