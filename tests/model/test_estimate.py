"""The accuracy figure on the unlabeled tasks (model.estimate): the difference estimator and
its band on pools with a known truth, the out-of-fold judging, the temperature, the verdict
that decides what the page shows, the audit share and the audit positions."""

import math

import pytest
import torch

from model.estimate import (
    MIN_AUDITS,
    TRUSTED_HALF_WIDTH,
    Estimate,
    audit_share,
    certainty,
    current_accuracy,
    fit_temperature,
    interleave_audit,
    is_right,
    out_of_fold,
    t_quantile,
    unlabeled_accuracy,
    verdict,
)
from model.task_model import TaskModel, TaskModelConfig


def test_t_quantiles_match_the_table():
    for dof, exact in ((1, 12.706), (3, 3.182), (9.7, 2.262), (30, 2.042), (31, 2.040), (60, 2.000),
                       (1000, 1.962)):  # fmt: skip
        assert t_quantile(dof) == pytest.approx(exact, abs=0.002)
    assert t_quantile(0) == t_quantile(1)


def test_certainty_is_the_top_probability_softened_by_the_temperature():
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25]])
    assert certainty(probs, False).tolist() == pytest.approx([0.9, 0.4])
    softer = certainty(probs, False, temperature=3.0)
    assert (softer < certainty(probs, False)).all() and (softer > 1 / 3).all()
    # Multi-label: the whole guess is right when every label is; 0.9 on, 0.2 off -> 0.9 * 0.8.
    assert certainty(torch.tensor([[0.9, 0.2]]), True).item() == pytest.approx(0.72)


def test_right_means_the_whole_guess():
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    probs = torch.tensor([[0.8, 0.1, 0.7], [0.6, 0.7, 0.1]])
    assert is_right(probs, targets, multilabel=True).tolist() == [True, False]
    assert is_right(probs, targets, multilabel=False).tolist() == [True, True]


def test_the_temperature_undoes_a_known_overconfidence():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4000, 4, generator=gen)
    truth = torch.multinomial(torch.softmax(logits, dim=1), 1, generator=gen).flatten()
    targets = torch.nn.functional.one_hot(truth, 4).float()
    overconfident = torch.softmax(3.0 * logits, dim=1)
    assert fit_temperature(overconfident, targets, False) == pytest.approx(3.0, rel=0.12)
    assert fit_temperature(torch.softmax(logits, dim=1), targets, False) == pytest.approx(
        1.0, rel=0.12
    )
    assert fit_temperature(torch.zeros(0, 4), torch.zeros(0, 4), False) == 1.0


def overconfident_pool(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Certainty claims .95 everywhere; the guesses are right 60% of the time."""
    gen = torch.Generator().manual_seed(seed)
    return torch.full((n,), 0.95), (torch.rand(n, generator=gen) < 0.6).float()


def test_audits_correct_a_model_that_claims_too_much():
    claim, right = overconfident_pool(5000, seed=1)
    truth = float(right.mean())
    audits = torch.randperm(5000, generator=torch.Generator().manual_seed(2))[:400]
    estimate = unlabeled_accuracy(claim, right[audits], claim[audits])
    assert float(claim.mean()) - truth > 0.3  # the model's word alone is far off
    assert estimate.low <= truth <= estimate.high
    assert abs(estimate.value - truth) < 0.05 and estimate.n == 400


def test_the_band_holds_the_truth_in_most_draws_of_few_audits():
    claim, right = overconfident_pool(3000, seed=3)
    truth = float(right.mean())
    inside = []
    for draw in range(300):
        rows = torch.randperm(3000, generator=torch.Generator().manual_seed(draw))[:20]
        estimate = unlabeled_accuracy(claim, right[rows], claim[rows])
        inside.append(estimate.low <= truth <= estimate.high)
    assert sum(inside) / len(inside) >= 0.9


def test_agreeing_audits_do_not_collapse_the_band():
    # Ten audits all right at certainty .9: their spread is 0, the band is not.
    pool = torch.full((1000,), 0.9)
    estimate = unlabeled_accuracy(pool, torch.ones(10), torch.full((10,), 0.9))
    assert estimate.value == pytest.approx(1.0) and estimate.high == 1.0
    # The variance floor: what certainty .9 itself predicts, 0.9 * 0.1 per task.
    assert estimate.low == pytest.approx(1.0 - t_quantile(9) * math.sqrt(0.9 * 0.1 / 10))


def test_audits_from_a_larger_pool_subtract_what_the_queue_labeled_since():
    # Drawn from 120 tasks; the queue has labeled 20 of them since, whose residuals sum to -6
    # (the model was wrong on the hard ones it claimed); 100 remain, all certainty .5.
    pool = torch.full((100,), 0.5)
    right = torch.tensor([1.0, 0.0, 1.0, 1.0])
    claim = torch.full((4,), 0.5)
    drawn_from = torch.full((4,), 120)
    since = torch.full((4,), -6.0)
    estimate = unlabeled_accuracy(pool, right, claim, drawn_from, since)
    # 0.5 + mean(1.2 * residual) + 6 / 100 = 0.5 + 1.2 * 0.25 + 0.06
    assert estimate.value == pytest.approx(0.86)
    plain = unlabeled_accuracy(pool, right, claim)
    assert plain.value == pytest.approx(0.75)


def test_audits_judged_by_lucky_fold_models_widen_the_band():
    # 40 audits, half right, in 10 folds: once each fold holds two right and two wrong, once
    # every right one sits in five folds (as if those fold models were luckier than the rest).
    pool = torch.full((1000,), 0.5)
    right = torch.tensor([1.0, 0.0] * 20)
    claim = torch.full((40,), 0.5)
    even = unlabeled_accuracy(pool, right, claim, fold=torch.arange(40) // 4)
    lucky = unlabeled_accuracy(pool, right, claim, fold=torch.arange(40) % 10)
    plain = unlabeled_accuracy(pool, right, claim)
    assert even.value == lucky.value == plain.value == pytest.approx(0.5)
    # Even folds: the plain variance, with 9 degrees of freedom instead of 39.
    assert even.high - even.low == pytest.approx(
        (plain.high - plain.low) * t_quantile(9) / t_quantile(39)
    )
    assert lucky.high - lucky.low > 1.5 * (even.high - even.low)


def test_no_estimate_without_audits_or_unlabeled_tasks():
    assert unlabeled_accuracy(torch.full((5,), 0.5), torch.zeros(0), torch.zeros(0)) is None
    assert unlabeled_accuracy(torch.zeros(0), torch.ones(3), torch.ones(3)) is None


def test_the_verdict_shows_only_a_narrow_band_from_enough_audits():
    narrow = Estimate(0.8, 0.75, 0.85, 40, expected_half=0.05)
    few = verdict(narrow, MIN_AUDITS - 1)
    assert not few.trusted and few.code == "too_few_audits"
    assert f"{MIN_AUDITS - 1} of the {MIN_AUDITS}" in few.reason
    shown = verdict(narrow, 40)
    assert shown.trusted and shown.reason is None and shown.code is None
    # What the certainty predicts decides, not how lucky the sample was ...
    lucky = verdict(Estimate(0.8, 0.75, 0.85, 40, expected_half=0.12), 40)
    assert not lucky.trusted and lucky.code == "band_too_wide" and "±12%" in lucky.reason
    edge = Estimate(0.8, 0.8 - TRUSTED_HALF_WIDTH, 0.8 + TRUSTED_HALF_WIDTH, 40, TRUSTED_HALF_WIDTH)
    assert verdict(edge, 40).trusted
    # ... but a measured band much wider than predicted is not shown either.
    wide = verdict(Estimate(0.8, 0.6, 1.0, 40, expected_half=0.08), 40)
    assert not wide.trusted and "±20%" in wide.reason
    # Cut at 1, [.83, 1] looks narrow; the band around .99 is +-16 points.
    cut = verdict(Estimate(0.99, 0.83, 1.0, 30, expected_half=0.09), 30)
    assert not cut.trusted and cut.code == "band_too_wide" and "±16%" in cut.reason
    assert verdict(None, 0).to_json() == {
        "estimate": None,
        "trusted": False,
        "reason": f"0 of the {MIN_AUDITS} tasks served at random that an accuracy figure "
        "needs are labeled so far",
        "code": "too_few_audits",
    }


def test_the_expected_band_does_not_depend_on_which_guesses_were_right():
    pool = torch.full((2000,), 0.7)
    claim = torch.full((50,), 0.7)
    gen = torch.Generator().manual_seed(3)
    lucky = unlabeled_accuracy(pool, (torch.rand(50, generator=gen) < 0.9).float(), claim)
    unlucky = unlabeled_accuracy(pool, (torch.rand(50, generator=gen) < 0.5).float(), claim)
    assert lucky.value > unlucky.value + 0.2
    assert (
        lucky.expected_half
        == unlucky.expected_half
        == pytest.approx(t_quantile(49) * math.sqrt(0.7 * 0.3 / 50))
    )
    assert (lucky.high - lucky.low) < (unlucky.high - unlucky.low)  # the measured band does


def blobs(
    n: int, seed: int, dim: int = 20, noise: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes, their centres 2 apart in each of the first 10 dimensions."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(2, (n,), generator=gen)
    centres = torch.zeros(2, dim)
    centres[1, :10] = 2.0
    return centres[labels] + noise * torch.randn(n, dim, generator=gen), labels


def test_out_of_fold_judges_each_held_task_by_a_model_that_never_saw_it():
    features, labels = blobs(80, seed=4, dim=200)
    targets = torch.nn.functional.one_hot(labels, 2).float()
    # Five held tasks in class 0's blob that carry class 1: a model trained on them learns
    # them (200 dimensions, 80 rows). Five folds for five tasks: each is judged by the model
    # trained on every row but itself.
    held = torch.zeros(80, dtype=torch.bool)
    outliers = torch.nonzero(labels == 0).flatten()[:5]
    held[outliers] = True
    targets[outliers] = torch.tensor([0.0, 1.0])
    config = TaskModelConfig(dropout=0.0, steps=800, lr=0.05, weight_decay=0.0)
    unseen, fold = out_of_fold(features, targets, held, multilabel=False, config=config, seed=0)
    assert unseen.shape == (5, 2) and sorted(fold.tolist()) == [0, 1, 2, 3, 4]
    for position, row in enumerate(outliers.tolist()):
        others = torch.arange(80) != row
        alone = TaskModel.fit(features[others], targets[others], config=config, seed=0)
        expected = alone.predict_proba(features[row : row + 1])[0]
        assert unseen[position].tolist() == pytest.approx(expected.tolist(), abs=1e-4)
    seen = TaskModel.fit(features, targets, config=config, seed=0).predict_proba(features[held])
    assert bool(is_right(seen, targets[held], False).all())  # learned in-sample
    assert is_right(unseen, targets[held], False).float().mean() < 0.8  # not out of sample
    none, no_fold = out_of_fold(features, targets, torch.zeros(80, dtype=torch.bool),
                                multilabel=False, config=config, seed=0)  # fmt: skip
    assert none.shape == (0, 2) and no_fold.numel() == 0


def simulated_project(audited_count: int, seed: int = 5):
    """A pool of 1,500 with 100 labeled: the 40 least sure (as a queue picks) plus
    ``audited_count`` drawn at random (audits) and the rest at random; the current model fitted
    on them, with its truth on the unlabeled tasks."""
    features, labels = blobs(1500, seed=seed)
    targets = torch.nn.functional.one_hot(labels, 2).float()
    gen = torch.Generator().manual_seed(seed)
    start = torch.randperm(1500, generator=gen)[:20]
    labeled = torch.zeros(1500, dtype=torch.bool)
    labeled[start] = True
    config = TaskModelConfig()
    first = TaskModel.fit(features[labeled], targets[labeled], config=config, seed=0)
    unsure = (first.predict_proba(features).max(dim=1).values + labeled.float()).argsort()[:40]
    labeled[unsure] = True
    pool = torch.nonzero(~labeled).flatten()
    audits = pool[torch.randperm(pool.numel(), generator=gen)[:audited_count]]
    audit_pool = torch.zeros(1500, dtype=torch.int64)
    audit_pool[audits] = pool.numel()
    labeled[audits] = True
    labeled_round = torch.where(labeled, torch.ones(1500, dtype=torch.int64), -1)
    audit_round = torch.zeros(1500, dtype=torch.int64)
    model = TaskModel.fit(features[labeled], targets[labeled], config=config, seed=0)
    probs = model.predict_proba(features)
    truth = float(is_right(probs[~labeled], targets[~labeled], False).float().mean())
    inputs = (features, targets * labeled.unsqueeze(1), labeled, labeled_round, audit_round,
              audit_pool, probs)  # fmt: skip
    return inputs, truth, config


def test_the_current_models_accuracy_from_its_audited_tasks():
    inputs, truth, config = simulated_project(60)
    result = current_accuracy(*inputs, multilabel=False, config=config, seed=0)
    assert result.estimate is not None and result.estimate.n == 60
    assert result.estimate.low <= truth <= result.estimate.high
    assert abs(result.estimate.value - truth) < 0.06
    assert result.trusted == (result.estimate.high - result.estimate.low <= 2 * TRUSTED_HALF_WIDTH)


def test_no_figure_before_enough_audits():
    inputs, _, config = simulated_project(4)
    result = current_accuracy(*inputs, multilabel=False, config=config, seed=0)
    assert not result.trusted and result.code == "too_few_audits"
    features, targets, labeled, labeled_round, audit_round, _, probs = inputs
    nothing = current_accuracy(features, targets, labeled, labeled_round, audit_round,
                               torch.zeros(1500, dtype=torch.int64), probs, multilabel=False,
                               config=config, seed=0)  # fmt: skip
    assert nothing.estimate is None and nothing.code == "too_few_audits"


def test_the_audit_share_is_larger_until_the_figure_is_trusted():
    assert audit_share(False, 0.1, 0.5) == 0.5
    assert audit_share(True, 0.1, 0.5) == 0.1
    assert audit_share(False, 0.2, 0.0) == 0.2  # never below the steady share
    assert audit_share(True, 0.0, 0.5) == 0.0


def test_audit_positions_are_spaced_and_drawn_from_the_whole_order():
    order = torch.arange(100, 200)
    mixed, audit = interleave_audit(order, 0.1, seed=1)
    assert sorted(mixed.tolist()) == order.tolist()  # a permutation
    assert torch.nonzero(audit).flatten().tolist() == list(range(9, 100, 10))
    # The non-audit tasks keep their order.
    rest = mixed[~audit].tolist()
    assert rest == sorted(rest)
    assert interleave_audit(order, 0.0, seed=1)[0].tolist() == order.tolist()
    # Every position random: a seeded permutation of the whole order.
    every, flags = interleave_audit(order, 1.0, seed=1)
    assert bool(flags.all()) and sorted(every.tolist()) == order.tolist()
    assert every.tolist() != order.tolist()
