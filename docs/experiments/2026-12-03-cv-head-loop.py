"""Experiment (screen, not maintained): task heads that can learn the class prior, inside the
active-learning loop. Recorded in docs/notebook.md ("The cross-validated prior inside the
loop, and calibration").

The screen on random labeled sets (``2026-12-03-head-cv.py``) found the macro-F1 rule level
with today's head on the image sets and far above it on long-tailed Rotten Tomatoes. ``--head``:

- ``cv-f1``: every fit of the round's task model (``TaskModel.fit`` without sample weights: the
  model a round trains, and the final one of a run) picks the strength from ``GRID`` by 3-fold
  stratified cross-validation on the labeled items (held-out macro-F1 over the classes labeled
  so far; ties go to the weaker strength), then fits on all of them with ``l2 * sum(W^2) / n``
  added to the mean loss. The strategies score with it.
- ``bcts``: today's head through bias-corrected temperature scaling fitted on 3-fold
  out-of-fold logits.
- ``cv-f1-predict`` / ``bcts-predict``: the strategies score with today's head; only the model
  the round reports (test accuracy, the page's estimate, the final model) is the other one.
- ``today``: the same command without a change, for the paired baseline.

Everything else is ``benchmarks.simulate`` as the README runs it; the other arguments are
simulate's.

    PYTHONPATH=. .venv/bin/python docs/experiments/2026-12-03-cv-head-loop.py --head cv-f1 \\
        --dataset rotten --imbalance 10 --strategies autoal,uniform,random,margin \\
        --initial 20 --batch 20 --rounds 10 --seeds 5 \\
        --selector-option autoal.prior=benchmarks/priors/loo-rotten.json --out results/cvhead/cv-f1/rotten-lt10

AutoAL here uses the tracked leave-one-out priors, trained on episodes whose truth was measured
with today's head: the screen asks what the head does to the loop, not what a prior retrained
under it would learn.
"""

import sys
from dataclasses import replace

import numpy as np
import torch

from benchmarks import simulate
from model.active_round import RoundConfig
from model.seeding import seeded
from model.task_model import (
    DropoutMasks,
    TaskHead,
    TaskModel,
    TaskModelConfig,
    _stacked_heads,
    task_loss,
)

GRID = (0.0, 0.05, 0.5, 5.0)
FOLDS = 3
_today_fit = TaskModel.fit.__func__  # type: ignore[attr-defined]
CHOSEN: list[float] = []  # every strength picked, for the log


def penalised_fit(
    x: torch.Tensor, targets: torch.Tensor, l2: float, config: TaskModelConfig, seed: int
) -> TaskModel:
    """``TaskModel.fit`` (linear head, single-label) plus ``l2 * sum(W^2) / n``; l2 = 0 is that fit."""
    with seeded(seed, x.device):
        head = TaskHead(x.shape[1], targets.shape[1], config).to(x.device)
        optimiser = torch.optim.Adam(
            head.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        masks = DropoutMasks(config.dropout, int(torch.randint(2**62, (1,))))
        head.train()
        for _ in range(config.steps):
            optimiser.zero_grad(set_to_none=True)
            loss = task_loss(head.out(masks.apply(head.body(x))), targets, False).mean()
            if l2 > 0:
                loss = loss + l2 * head.out.weight.square().sum() / x.shape[0]
            loss.backward()
            optimiser.step()
    return TaskModel(head.eval(), False, config)


def stratified_folds(labels: torch.Tensor, seed: int) -> np.ndarray:
    """[L] fold of each item: each class's items shuffled and dealt round-robin."""
    rng = np.random.default_rng(seed)
    values = labels.cpu().numpy()
    out = np.zeros(len(values), dtype=int)
    start = 0
    for c in np.unique(values):
        members = rng.permutation(np.flatnonzero(values == c))
        out[members] = (start + np.arange(len(members))) % FOLDS
        start += len(members)
    return out


def macro_f1(predicted: torch.Tensor, labels: torch.Tensor) -> float:
    scores = []
    for c in torch.unique(labels).tolist():
        tp = float(((predicted == c) & (labels == c)).sum())
        scores.append(2 * tp / float((predicted == c).sum() + (labels == c).sum()))
    return float(np.mean(scores))


def chosen_strength(
    x: torch.Tensor, targets: torch.Tensor, config: TaskModelConfig, seed: int
) -> float:
    """The grid strength with the best 3-fold held-out macro-F1. The 12 fold x strength heads
    train stacked, as ``TaskModel.fit_weighted`` trains k-fold heads (one masked matmul per
    step serves all; each head its own weighted mean loss and its own penalty)."""
    y = targets.argmax(dim=1)
    fold = torch.from_numpy(stratified_folds(y, seed)).to(x.device)  # [L]
    (n, d), c = x.shape, targets.shape[1]
    outside = torch.stack([(fold != k).float() for _ in GRID for k in range(FOLDS)])  # [J, L]
    l2 = torch.tensor([s for s in GRID for _ in range(FOLDS)], device=x.device)  # [J]
    j = outside.shape[0]
    rows = outside.sum(dim=1).clamp_min(1.0)
    with seeded(seed, x.device):
        weight, bias, optimiser, masks = _stacked_heads(j, d, c, config, x.device)
        stacked_targets = targets.repeat(j, 1)
        for _ in range(config.steps):
            optimiser.zero_grad(set_to_none=True)
            logits = (masks.apply(x) @ weight.reshape(j * c, d).t()).view(n, j, c).transpose(0, 1)
            loss = task_loss(
                (logits + bias.unsqueeze(1)).reshape(j * n, c), stacked_targets, False
            ).view(j, n)
            penalty = (l2 * weight.square().sum(dim=(1, 2)) / rows).sum()
            ((loss * outside).sum(dim=1) / rows).sum().add(penalty).backward()
            optimiser.step()
    with torch.no_grad():
        predicted = (torch.einsum("ld,jcd->jlc", x, weight) + bias.unsqueeze(1)).argmax(
            dim=2
        )  # [J, L]
    best, best_f1 = 0.0, -1.0
    for g, strength in enumerate(GRID):
        held_out = torch.zeros_like(y)
        for k in range(FOLDS):
            head = g * FOLDS + k
            held_out[fold == k] = predicted[head][fold == k]
        f1 = macro_f1(held_out, y)
        if f1 > best_f1 + 1e-12:  # ties go to the weaker strength (the grid is ascending)
            best, best_f1 = strength, f1
    return best


def cv_fit(cls, features, targets, *, multilabel=False, config=None, seed=0, sample_weight=None):
    config = config or TaskModelConfig()
    if (
        multilabel
        or sample_weight is not None
        or config.hidden > 0
        or features.shape[0] < 2 * FOLDS
    ):
        return _today_fit(cls, features, targets, multilabel=multilabel, config=config, seed=seed,
                          sample_weight=sample_weight)  # fmt: skip
    l2 = chosen_strength(features, targets, config, seed)
    CHOSEN.append(l2)
    return penalised_fit(features, targets, l2, config, seed)


class Calibrated(TaskModel):
    """A head whose logits go through a temperature and a per-class offset: z / T + b."""

    def __init__(self, base: TaskModel, temperature: float, offset: torch.Tensor) -> None:
        super().__init__(base.head, base.multilabel, base.config)
        self.temperature, self.offset = temperature, offset

    @torch.no_grad()
    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return super().logits(features) / self.temperature + self.offset


def calibration(x: torch.Tensor, targets: torch.Tensor, config: TaskModelConfig, seed: int):
    """Bias-corrected temperature scaling (Alexandari et al. 2020) fitted on out-of-fold logits:
    3 stratified folds of today's head (trained stacked, ``fit_weighted``), then T and b [C]
    minimising the held-out items' mean NLL of softmax(z / T + b) + 0.01 * |b|^2 (the small
    ridge keeps a class with no labels finite)."""
    y = targets.argmax(dim=1)
    fold = torch.from_numpy(stratified_folds(y, seed)).to(x.device)
    outside = torch.stack([(fold != k).float() for k in range(FOLDS)])
    models = TaskModel.fit_weighted(x, targets, outside, config=config, seed=seed)
    held = torch.zeros(x.shape[0], targets.shape[1], device=x.device)
    for k, model in enumerate(models):
        held[fold == k] = model.logits(x[fold == k])
    log_t = torch.zeros((), requires_grad=True)
    offset = torch.zeros(targets.shape[1], requires_grad=True)
    optimiser = torch.optim.LBFGS(
        [log_t, offset], lr=0.5, max_iter=200, line_search_fn="strong_wolfe"
    )

    def closure():
        optimiser.zero_grad()
        loss = (
            torch.nn.functional.cross_entropy(held / log_t.exp() + offset, y)
            + 0.01 * offset.square().sum()
        )
        loss.backward()
        return loss

    optimiser.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 100.0)), offset.detach()


def bcts_fit(cls, features, targets, *, multilabel=False, config=None, seed=0, sample_weight=None):
    config = config or TaskModelConfig()
    model = _today_fit(cls, features, targets, multilabel=multilabel, config=config, seed=seed,
                       sample_weight=sample_weight)  # fmt: skip
    if (
        multilabel
        or sample_weight is not None
        or config.hidden > 0
        or features.shape[0] < 2 * FOLDS
    ):
        return model
    temperature, offset = calibration(features, targets, config, seed)
    CHOSEN.append(round(temperature, 1))
    return Calibrated(model, temperature, offset)


def predict_with(fit) -> None:
    """``*-predict``: the round's strategies score with today's head, and the model the round
    reports (its accuracy, the page's estimate, the final model) is ``fit``'s on the same
    labels."""
    today_round = simulate.run_round

    def run_round(state, selector, config=None):
        outcome = today_round(state, selector, config)
        if outcome.model is None:
            return outcome
        labeled = state.labeled_indices()
        task_config = (config or RoundConfig()).task_model
        model = fit(TaskModel, state.features[labeled], state.targets[labeled],
                       multilabel=state.multilabel, config=task_config, seed=state.seed)  # fmt: skip
        return replace(outcome, model=model)

    def final_fit(pool, labels, num_classes, config, seed):
        labeled = torch.nonzero(labels >= 0).flatten()
        targets = torch.nn.functional.one_hot(labels[labeled], num_classes).float()
        return fit(TaskModel, pool[labeled], targets, config=config.task_model, seed=seed)

    simulate.run_round = run_round
    simulate._fit = final_fit


def main(argv: list[str]) -> int:
    head = "today"
    if argv[:1] == ["--head"]:
        head, argv = argv[1], argv[2:]
    fits = {"cv-f1": cv_fit, "bcts": bcts_fit}
    if head in fits:
        TaskModel.fit = classmethod(fits[head])  # type: ignore[method-assign]
    elif head.endswith("-predict") and head.removesuffix("-predict") in fits:
        predict_with(fits[head.removesuffix("-predict")])
    elif head != "today":
        raise SystemExit(
            f"--head must be today, cv-f1, bcts or one of those + -predict, got {head!r}"
        )
    rc = simulate.main(argv)
    if CHOSEN:
        values, counts = np.unique(CHOSEN, return_counts=True)
        print(
            "strengths (temperatures for bcts) chosen:",
            {float(v): int(n) for v, n in zip(values, counts, strict=True)},
            file=sys.stderr,
        )
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
