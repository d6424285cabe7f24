"""The task head: learns, round-trips, MC dropout passes, multi-label."""

import pytest
import torch
from pool_helpers import make_blobs

from model.errors import EmptyPoolError
from model.task_model import TaskModel, TaskModelConfig, standardise

FAST = TaskModelConfig(steps=150)


@pytest.fixture(scope="module")
def split():
    """Four separable blobs: every third item to train on, the rest held out."""
    features, blob = make_blobs([40, 40, 40, 40], seed=5)
    features = standardise(features)
    train = torch.arange(160) % 3 == 0
    targets = torch.nn.functional.one_hot(blob, 4).float()
    return features, targets, blob, train


@pytest.mark.parametrize("hidden", [0, 16])
def test_learns_a_separable_problem(split, hidden):
    features, targets, blob, train = split
    model = TaskModel.fit(
        features[train], targets[train], config=TaskModelConfig(hidden=hidden, steps=150)
    )
    accuracy = (model.predict_proba(features[~train]).argmax(dim=1) == blob[~train]).float().mean()
    assert float(accuracy) == 1.0
    loss = model.per_sample_loss(features[train], targets[train])
    wrong = model.per_sample_loss(features[train], targets[train].roll(1, dims=1))
    assert loss.shape == (int(train.sum()),) and (loss < wrong).all()


def test_same_seed_same_model_other_seed_other_model(split):
    features, targets, _, train = split
    first = TaskModel.fit(features[train], targets[train], config=FAST, seed=1)
    again = TaskModel.fit(features[train], targets[train], config=FAST, seed=1)
    other = TaskModel.fit(features[train], targets[train], config=FAST, seed=2)
    assert torch.equal(first.predict_proba(features), again.predict_proba(features))
    assert not torch.equal(first.predict_proba(features), other.predict_proba(features))


@pytest.mark.parametrize("hidden", [0, 16])
def test_state_dict_round_trip_gives_identical_probs(split, hidden):
    features, targets, _, train = split
    model = TaskModel.fit(
        features[train], targets[train], config=TaskModelConfig(hidden=hidden, steps=20)
    )
    restored = TaskModel.from_state_dict(model.state_dict())
    assert restored.config == model.config and restored.multilabel is False
    assert torch.equal(restored.predict_proba(features), model.predict_proba(features))
    assert torch.equal(
        restored.mc_probabilities(features, passes=5, seed=3),
        model.mc_probabilities(features, passes=5, seed=3),
    )


def test_embed_is_the_input_of_the_last_layer(split):
    features, targets, _, train = split
    linear = TaskModel.fit(features[train], targets[train], config=TaskModelConfig(steps=5))
    assert torch.equal(linear.embed(features), features)
    mlp = TaskModel.fit(features[train], targets[train], config=TaskModelConfig(hidden=16, steps=5))
    hidden = mlp.embed(features)
    assert hidden.shape == (160, 16) and (hidden >= 0).all()  # after the ReLU
    torch.testing.assert_close(mlp.head.out(hidden), mlp.logits(features))


def test_mc_probabilities_shape_and_passes_differ(split):
    features, targets, _, train = split
    model = TaskModel.fit(features[train], targets[train], config=FAST)
    passes = model.mc_probabilities(features, passes=7, seed=0)
    assert passes.shape == (160, 7, 4)
    torch.testing.assert_close(passes.sum(dim=-1), torch.ones(160, 7))
    # Different dropout masks per pass: no two passes are the same.
    for t in range(1, 7):
        assert not torch.allclose(passes[:, 0], passes[:, t])
    assert torch.equal(passes, model.mc_probabilities(features, passes=7, seed=0))
    assert not torch.equal(passes, model.mc_probabilities(features, passes=7, seed=1))


def test_mc_passes_match_explicit_masked_forward(split):
    features, targets, _, train = split
    model = TaskModel.fit(
        features[train], targets[train], config=TaskModelConfig(hidden=8, steps=5)
    )
    passes = model.mc_probabilities(features[:3], passes=4, seed=9)
    hidden = model.embed(features[:3])
    # Each pass is one dropout mask shared by every item: recover it from item 0 and check
    # it reproduces the other items' passes through an ordinary masked forward pass.
    keep = 1.0 - model.config.dropout
    masks = (
        torch.bernoulli(
            torch.full((4, hidden.shape[1]), keep), generator=torch.Generator().manual_seed(9)
        )
        / keep
    )
    for t in range(4):
        logits = model.head.out(hidden * masks[t])
        torch.testing.assert_close(passes[:, t], torch.softmax(logits, dim=-1))


def test_multilabel_fit_learns_each_label(split):
    features, _, blob, train = split
    targets = torch.zeros(160, 4)
    targets[torch.arange(160), blob] = 1.0
    targets[torch.arange(160), (blob + 1) % 4] = 1.0  # two labels per item
    model = TaskModel.fit(features[train], targets[train], multilabel=True, config=FAST)
    probs = model.predict_proba(features[~train])
    assert model.multilabel and probs.shape == (int((~train).sum()), 4)
    assert torch.equal((probs > 0.5).float(), targets[~train])
    assert model.mc_probabilities(features[:5], passes=3).shape == (5, 3, 4)


def test_fit_on_nothing_is_an_error():
    with pytest.raises(EmptyPoolError, match="0 labeled"):
        TaskModel.fit(torch.zeros(0, 3), torch.zeros(0, 2))


def test_standardise_zero_mean_unit_variance_and_constant_columns():
    x = torch.cat(
        [
            torch.randn(50, 2, generator=torch.Generator().manual_seed(0)) * 5 + 3,
            torch.full((50, 1), 7.0),
        ],
        dim=1,
    )
    z = standardise(x)
    torch.testing.assert_close(z.mean(dim=0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(z[:, :2].std(dim=0), torch.ones(2))
    assert torch.isfinite(z).all() and (z[:, 2] == 0).all()
    copy = x.clone()
    same = standardise(copy, in_place=True)
    assert same.data_ptr() == copy.data_ptr() and torch.equal(
        same, z
    )  # no second pool, same values


@pytest.mark.parametrize("multilabel", [False, True])
def test_fit_weighted_trains_what_separate_weighted_fits_train(multilabel):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(45, 8, generator=gen)
    if multilabel:
        y = (torch.rand(45, 3, generator=gen) > 0.5).float()
    else:
        y = torch.nn.functional.one_hot(torch.randint(0, 3, (45,), generator=gen), 3).float()
    # Three folds left out in turn, as the validation score does, and one soft weighting.
    fold = torch.arange(45) % 3
    weights = torch.cat(
        ((fold != torch.arange(3)[:, None]).float(), torch.rand(1, 45, generator=gen))
    )
    config = TaskModelConfig(steps=60)
    many = TaskModel.fit_weighted(x, y, weights, multilabel=multilabel, config=config, seed=2)
    probe = torch.randn(20, 8, generator=gen)
    for j, model in enumerate(many):
        alone = TaskModel.fit(
            x, y, multilabel=multilabel, config=config, seed=2, sample_weight=weights[j]
        )
        assert torch.allclose(model.predict_proba(probe), alone.predict_proba(probe), atol=1e-5)
    assert not torch.allclose(many[0].predict_proba(probe), many[1].predict_proba(probe))


def test_a_row_left_out_of_a_weighted_fit_does_not_move_it():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(30, 6, generator=gen)
    y = torch.nn.functional.one_hot(torch.randint(0, 2, (30,), generator=gen), 2).float()
    flipped = y.clone()
    flipped[:10] = flipped[:10].flip(1)  # rows 0-9 relabeled: only a head that sees them changes
    weights = torch.ones(2, 30)
    weights[:, :10] = 0.0
    config = TaskModelConfig(steps=40)
    a = TaskModel.fit_weighted(x, y, weights, config=config, seed=0)[0]
    b = TaskModel.fit_weighted(x, flipped, weights, config=config, seed=0)[0]
    assert torch.allclose(a.predict_proba(x), b.predict_proba(x), atol=1e-6)


@pytest.mark.parametrize("multilabel", [False, True])
def test_fit_extensions_trains_what_separate_fits_train(multilabel):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 8, generator=gen)
    extra = torch.randn(3, 5, 8, generator=gen)
    if multilabel:
        y = (torch.rand(40, 3, generator=gen) > 0.5).float()
        extra_y = (torch.rand(3, 5, 3, generator=gen) > 0.5).float()
    else:
        y = torch.nn.functional.one_hot(torch.randint(0, 3, (40,), generator=gen), 3).float()
        extra_y = torch.nn.functional.one_hot(torch.randint(0, 3, (3, 5), generator=gen), 3).float()
    config = TaskModelConfig(steps=60)
    many = TaskModel.fit_extensions(
        x, y, extra, extra_y, multilabel=multilabel, config=config, seed=4
    )
    probe = torch.randn(20, 8, generator=gen)
    for j, model in enumerate(many):
        alone = TaskModel.fit(
            torch.cat((x, extra[j])), torch.cat((y, extra_y[j])),
            multilabel=multilabel, config=config, seed=4,
        )  # fmt: skip
        assert torch.allclose(model.predict_proba(probe), alone.predict_proba(probe), atol=1e-5)
    # Different batches give different models.
    assert not torch.allclose(many[0].predict_proba(probe), many[1].predict_proba(probe))
