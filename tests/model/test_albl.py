"""ALBL: IW-ACC and inclusion probabilities on known answers, the bandit moves toward the arm
that earns reward, its state follows item ids and survives a JSON round trip."""

import json

import pytest
import torch

from model.errors import UnknownNameError
from model.pool import make_pool
from model.selectors import make_selector
from model.selectors.albl import ALBLSelector, importance_weighted_accuracy, inclusion_probabilities
from model.task_model import TaskModel, TaskModelConfig

FAST_TASK = TaskModelConfig(steps=100)


def test_importance_weighted_accuracy_known_answer():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    targets = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])  # right, wrong, right
    weights = torch.tensor([1.0, 2.0, 5.0])
    assert importance_weighted_accuracy(probs, targets, weights, False) == pytest.approx(6 / 8)
    multi = torch.tensor([[0.9, 0.8], [0.9, 0.2]])
    multi_targets = torch.tensor([[1.0, 1.0], [1.0, 1.0]])  # exact match, one label wrong
    assert importance_weighted_accuracy(multi, multi_targets, torch.ones(2), True) == pytest.approx(
        0.5
    )


def test_inclusion_probabilities_known_answer():
    # Two arms over 4 candidates, batch 1: arm 0 picks item 3, arm 1 (uniform) spreads 1/4.
    scores = torch.tensor([[0.0, 0.5], [0.3, 0.5], [0.6, 0.5], [1.0, 0.5]])
    q = inclusion_probabilities(scores, torch.tensor([0.75, 0.25]), 1, uniform_arm=1, seed=0)
    assert torch.allclose(q, torch.tensor([0.0625, 0.0625, 0.0625, 0.8125]))
    assert float(q.sum()) == pytest.approx(1.0)  # batch of 1: probabilities sum to B


def test_rewarded_arm_gains_probability_and_floor_holds():
    selector = ALBLSelector(portfolio=["random", "margin", "entropy"], horizon=10)
    start = selector.arm_probabilities()
    assert torch.allclose(start, torch.full((3,), 1 / 3))
    for _ in range(5):
        selector._update(1, 0.9, selector.arm_probabilities().tolist())
    probs = selector.arm_probabilities()
    assert probs[1] > probs[0] and probs[1] > probs[2]
    assert float(probs.min()) >= selector.pmin - 1e-7
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-6)


def pool_with_model(labels: torch.Tensor, x: torch.Tensor, seed: int = 0):
    state = make_pool(x, labels, 2, budget=4, seed=seed)
    model = TaskModel.fit(x[labels >= 0], state.targets[labels >= 0], config=FAST_TASK, seed=seed)
    state.model, state.probs = model, model.predict_proba(x)
    state.ids = torch.arange(x.shape[0]) + 1000  # ids are not row numbers
    return state


def two_blobs(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.cat(
        [torch.randn(40, 3, generator=gen) + 1.5, torch.randn(40, 3, generator=gen) - 1.5]
    )
    y = torch.arange(2).repeat_interleave(40)
    labels = torch.full_like(y, -1)
    labels[:3], labels[40:43] = 0, 1
    return x, y, labels


def test_rounds_record_queries_by_id_with_importance_weights_and_restore():
    x, y, labels = two_blobs()
    selector = make_selector("albl", portfolio=["random", "margin"], horizon=5)
    for _ in range(3):
        state = pool_with_model(labels, x)
        selection = selector.select(state, state.unlabeled_indices())
        arm = selection.info["chosen_arm"]
        column = selection.strategy_names.index(arm)
        # One-hot contributions: only the played arm explains the priority.
        assert torch.equal(selection.contributions[:, column], selection.priority)
        assert float(selection.contributions.abs().sum()) == pytest.approx(
            float(selection.priority.sum())
        )
        pending = selector.pending
        batch = selection.order()[:4]
        labels[batch] = y[batch]
        queried_ids = [int(i) + 1000 for i in batch]
        expected_q = [pending["q"].get(i, pending["base_q"]) for i in queried_ids]
    state = pool_with_model(labels, x)
    saved = json.loads(json.dumps(selector.state_dict()))
    restored = ALBLSelector(portfolio=["random", "margin"])
    restored.load_state_dict(saved)
    a = selector.select(state, state.unlabeled_indices())
    b = restored.select(state, state.unlabeled_indices())
    assert len(selector.queried) == 12  # three rounds of 4, the initial labels are not queries
    for item, q in zip(queried_ids, expected_q, strict=True):
        assert selector.queried[item] == pytest.approx(1.0 / q)
    assert a.info == b.info
    assert torch.equal(a.priority, b.priority)
    assert 0.0 <= a.info["reward"] <= 1.0


def test_arm_draws_are_seeded():
    x, _, labels = two_blobs()
    state = pool_with_model(labels, x)
    arms = [
        ALBLSelector(portfolio=["random", "margin"], seed=3)
        .select(state, state.unlabeled_indices())
        .info["chosen_arm"]
        for _ in range(2)
    ]
    assert arms[0] == arms[1]


def test_bad_options_are_explained():
    with pytest.raises(UnknownNameError, match="no_such_strategy.*valid: .*margin"):
        ALBLSelector(portfolio=["margin", "no_such_strategy"])
    with pytest.raises(ValueError, match="pmin"):
        ALBLSelector(portfolio=["random", "margin"], pmin=0.9)
    selector = ALBLSelector(portfolio=["random", "margin"])
    with pytest.raises(ValueError, match="portfolio"):
        selector.load_state_dict(ALBLSelector(portfolio=["margin", "entropy"]).state_dict())
