"""The SearchNet prior: state features with known values, actions, training that is
deterministic and learns what the truth says, and the shipped file."""

import json

import pytest
import torch

from model.pool import make_pool
from model.selectors.autoal import FEATURES, Prior, PriorTrainingConfig, TrainingRound, train_prior
from model.selectors.autoal.prior import (
    PRIOR_FILE,
    action_names,
    action_weights,
    chosen_gain,
    load_prior,
)
from model.selectors.autoal.state import round_features, top_agreement
from model.strategies import PORTFOLIO, score_matrix
from model.task_model import TaskModel, TaskModelConfig

NAMES = ["random", "margin", "kmeans"]
WIDTH = 12  # the simulated rounds' features: the first 12 of FEATURES (log labels first)


def test_top_agreement_known_answers():
    a = torch.arange(10, dtype=torch.float32)
    same = torch.stack((torch.rand(10), a, a), dim=1)  # random ignored; two equal columns
    assert top_agreement(same, NAMES, 3) == pytest.approx(1.0)
    opposite = torch.stack((torch.rand(10), a, -a), dim=1)
    assert top_agreement(opposite, NAMES, 3) == pytest.approx(0.0)
    half = torch.stack((torch.rand(10), a, torch.tensor([9.0, 8, 1, 2, 3, 4, 5, 6, 0, 7])), dim=1)
    # Tops {9, 8} and {0, 1}... margin's top-2 = {9, 8}; kmeans' = {0, 1}: no overlap.
    assert top_agreement(half, NAMES, 2) == pytest.approx(0.0)
    # Top-4: {9, 8, 7, 6} and {0, 1, 9, 7}: 2 shared of 6 -> 1/3.
    assert top_agreement(half, NAMES, 4) == pytest.approx(1 / 3)


def test_round_features_on_a_balanced_labeled_pool():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=gen)
    labels = torch.full((200,), -1)
    labels[:20] = torch.arange(20) % 4
    state = make_pool(x, labels, 4, budget=10)
    model = TaskModel.fit(x[:20], state.targets[:20], config=TaskModelConfig(steps=50))
    state.model, state.probs = model, model.predict_proba(x)
    candidates = state.unlabeled_indices()
    scores = score_matrix(state, NAMES, candidates)
    values = dict(
        zip(FEATURES, round_features(state, scores, NAMES, candidates).tolist(), strict=True)
    )
    assert values["log_labeled"] == pytest.approx(torch.log1p(torch.tensor(20.0)).item())
    assert values["log_labels_per_class"] == pytest.approx(torch.log1p(torch.tensor(5.0)).item())
    assert values["min_class_share"] == pytest.approx(1.0)
    assert values["class_spread"] == pytest.approx(0.0, abs=1e-6)
    assert values["balance_entropy"] == pytest.approx(1.0)
    assert values["labeled_fraction"] == pytest.approx(0.1)
    assert 0.25 <= values["mean_confidence"] <= 1.0
    assert 0.0 <= values["top_agreement"] <= 1.0 and 0.0 < values["predicted_balance"] <= 1.0


def test_actions_are_uniform_each_strategy_and_uniform_without_each():
    names = action_names(NAMES)
    assert names == ["uniform", "only random", "only margin", "only kmeans",
                     "without random", "without margin", "without kmeans"]  # fmt: skip
    weights = action_weights(NAMES)
    assert torch.allclose(weights[0], torch.full((3,), 1 / 3))
    assert torch.equal(weights[1:4], torch.eye(3))
    assert torch.allclose(weights[6], torch.tensor([0.5, 0.5, 0.0]))


def test_extras_are_chosen_alone_and_weigh_nothing_in_the_mixtures():
    names = action_names(NAMES, ["typiclust"])
    assert names == action_names(NAMES) + ["only typiclust"]
    weights = action_weights(NAMES, ["typiclust"])
    assert weights.shape == (len(names), 4)
    assert torch.equal(weights[:-1, :3], action_weights(NAMES))
    assert torch.equal(weights[:-1, 3], torch.zeros(len(names) - 1))
    assert torch.equal(weights[-1], torch.tensor([0.0, 0.0, 0.0, 1.0]))


def extra_rounds(count: int = 40, seed: int = 0) -> list[TrainingRound]:
    """Rounds in which TypiClust alone, no member of the mixture, always gains 2 points."""
    gen = torch.Generator().manual_seed(seed)
    rounds = []
    for _ in range(count):
        gains = 0.002 * torch.randn(len(action_names(NAMES, ["typiclust"])), generator=gen)
        gains[0], gains[-1] = 0.0, 0.02
        rounds.append(TrainingRound(torch.randn(WIDTH, generator=gen), gains, "family"))
    return rounds


def test_a_prior_with_an_extra_chooses_it_and_autoal_ranks_by_it_alone(tmp_path):
    from model.selectors.autoal import AutoALSelector

    prior = train_prior(extra_rounds(), NAMES, PriorTrainingConfig(steps=300), extras=["typiclust"])
    assert prior.extras == ["typiclust"] and prior.actions[-1] == "only typiclust"
    assert prior.actions[prior.choose(prior.mean)] == "only typiclust"
    path = tmp_path / "extras.json"
    prior.save(path)
    assert json.loads(path.read_text())["extras"] == ["typiclust"]
    assert load_prior(str(path)).extras == ["typiclust"]
    with pytest.raises(ValueError, match="gains of the"):
        train_prior(extra_rounds(), NAMES, PriorTrainingConfig(steps=5))  # extras not named

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=gen)
    labels = torch.full((200,), -1)
    labels[:12] = torch.arange(12) % 3
    state = make_pool(x, labels, 3, budget=10, seed=3)
    model = TaskModel.fit(x[:12], state.targets[:12], config=TaskModelConfig(steps=50))
    state.model, state.probs = model, model.predict_proba(x)
    candidates = state.unlabeled_indices()
    selection = AutoALSelector(portfolio=NAMES, prior=str(path)).select(state, candidates)
    assert selection.info["prior_action"] == "only typiclust"
    assert selection.strategy_names == [*NAMES, "typiclust"]
    typiclust = score_matrix(state, ["typiclust"], candidates)[:, 0]
    assert torch.allclose(selection.priority, typiclust)
    assert selection.top_strategy()[int(typiclust.argmax())] == "typiclust"
    # The online search mixes the portfolio only: the extra's action starts it from uniform.
    online = AutoALSelector(portfolio=NAMES, prior=str(path), online=True)
    assert online.select(state, candidates).strategy_names == NAMES


def regime_rounds(count: int = 60, seed: int = 0, noise: float = 0.005):
    """Simulated rounds of a task family with a known answer: below 100 labels the k-means
    batch gains 2 points over the uniform mixture's and margin's loses 1; above 400 labels
    margin gains 2 and k-means loses 1; the other actions tie with uniform. The truth is noisy
    (as measured gains are); the features: log(1 + labels) varies, the others are noise."""
    gen = torch.Generator().manual_seed(seed)
    rounds = []
    names = action_names(NAMES)
    for i in range(count):
        low = i % 2 == 0
        labeled = (
            20 + 60 * float(torch.rand(1, generator=gen))
            if low
            else 400 + 400 * float(torch.rand(1, generator=gen))
        )
        features = torch.randn(WIDTH, generator=gen)
        features[0] = torch.log1p(torch.tensor(labeled))
        gains = noise * torch.randn(len(names), generator=gen)
        gains[0] = 0.0
        gains[names.index("only kmeans")] += 0.02 if low else -0.01
        gains[names.index("only margin")] += -0.01 if low else 0.02
        rounds.append(TrainingRound(features, gains, "family"))
    return rounds


def chosen_at(prior: Prior, labeled: float) -> str:
    features = prior.mean.clone()
    features[0] = torch.log1p(torch.tensor(labeled))
    return prior.actions[prior.choose(features)]


def test_the_prior_learns_diversity_early_and_uncertainty_late():
    prior = train_prior(regime_rounds(), NAMES, PriorTrainingConfig(steps=400))
    assert chosen_at(prior, 40.0) == "only kmeans"
    assert chosen_at(prior, 600.0) == "only margin"
    late = prior.mean.clone()
    late[0] = torch.log1p(torch.tensor(600.0))
    assert torch.equal(prior.weights(late), torch.tensor([0.0, 1.0, 0.0]))  # margin's weights
    assert prior.meta["chosen_gain_over_uniform"] > 0.01
    held_out = regime_rounds(seed=1)
    assert float(chosen_gain(prior, held_out).mean()) > 0.01


def test_an_untrained_or_strongly_pulled_prior_is_the_uniform_mixture():
    untrained = train_prior(regime_rounds(count=4), NAMES, PriorTrainingConfig(steps=0))
    assert chosen_at(untrained, 40.0) == "uniform"
    pulled = train_prior(regime_rounds(), NAMES, PriorTrainingConfig(steps=400, pull=1.0))
    assert chosen_at(pulled, 40.0) == "uniform" and chosen_at(pulled, 600.0) == "uniform"


def test_prior_training_is_deterministic_and_round_trips_through_json(tmp_path):
    rounds = regime_rounds(count=12)
    config = PriorTrainingConfig(steps=60)
    first = train_prior(rounds, NAMES, config, meta={"command": "test"})
    second = train_prior(rounds, NAMES, config, meta={"command": "test"})
    assert json.dumps(first.to_json()) == json.dumps(second.to_json())
    path = tmp_path / "prior.json"
    first.save(path)
    loaded = load_prior(str(path))
    x = torch.randn(5, len(FEATURES))
    assert torch.equal(loaded.probabilities(x), first.probabilities(x))
    assert loaded.meta["command"] == "test" and loaded.portfolio == NAMES


def test_the_gate_keeps_an_action_only_where_resembling_rounds_consistently_paid(tmp_path):
    clear = regime_rounds()
    gated = train_prior(
        clear, NAMES, PriorTrainingConfig(steps=400, gate_z=2.0, gate_neighbours=10)
    )
    assert chosen_at(gated, 40.0) == "only kmeans" and chosen_at(gated, 600.0) == "only margin"
    # The same average gains under ten times the noise: the ungated prior still leaves the
    # mixture, the gated one finds the evidence too thin and keeps it.
    noisy = regime_rounds(noise=0.05)
    loose = train_prior(noisy, NAMES, PriorTrainingConfig(steps=400))
    strict = train_prior(
        noisy, NAMES, PriorTrainingConfig(steps=400, gate_z=2.0, gate_neighbours=10)
    )
    assert chosen_at(loose, 40.0) != "uniform"
    assert chosen_at(strict, 40.0) == "uniform"
    x = (strict.mean.clone() - strict.mean) / strict.std
    assert strict.gate is not None and strict.gate.evidence(x, 1)[1] > 0
    # The gate travels with the prior's JSON and decides the same way after loading.
    path = tmp_path / "gated.json"
    strict.save(path)
    loaded = load_prior(str(path))
    assert loaded.gate is not None and loaded.gate.neighbours == 10 and loaded.gate.z == 2.0
    assert loaded.gate.radius == pytest.approx(strict.gate.radius, abs=1e-4)
    assert chosen_at(loaded, 40.0) == "uniform"
    assert train_prior(noisy, NAMES, PriorTrainingConfig(steps=10)).gate is None


def test_the_gate_falls_back_to_the_mixture_on_a_state_no_training_round_resembles():
    gated = train_prior(
        regime_rounds(), NAMES, PriorTrainingConfig(steps=400, gate_z=2.0, gate_neighbours=10)
    )
    assert gated.gate is not None and 0 < gated.gate.radius < float("inf")
    early = gated.mean.clone()
    early[0] = torch.log1p(torch.tensor(40.0))
    assert gated.actions[gated.choose(early)] == "only kmeans"
    # The same early round with a feature far outside anything seen in training: the net
    # would extrapolate, the gate finds no resembling round and keeps the mixture.
    strange = early.clone()
    strange[5] = gated.mean[5] + 30 * gated.std[5]
    assert gated.actions[int(gated.probabilities(strange).argmax())] != "uniform"
    assert gated.actions[gated.choose(strange)] == "uniform"


def test_a_prior_reads_its_own_features_and_refuses_ones_this_version_lacks(tmp_path):
    prior = train_prior(regime_rounds(count=4), NAMES, PriorTrainingConfig(steps=5))
    data = prior.to_json()
    data["features"] = data["features"][:-1] + ["a_feature_from_the_future"]
    path = tmp_path / "new.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="a_feature_from_the_future"):
        load_prior(str(path))
    assert load_prior("none") is None


def test_a_prior_trained_before_features_were_appended_keeps_working():
    # Rounds recorded when the state had fewer features (episodes from before the geometry
    # features): the prior reads those columns of today's longer vectors.
    prior = train_prior(regime_rounds(), NAMES, PriorTrainingConfig(steps=400))
    assert prior.features == list(FEATURES[:WIDTH]) and len(FEATURES) > WIDTH
    full = torch.cat((prior.mean, torch.full((len(FEATURES) - WIDTH,), 99.0)))  # ignored
    full[0] = torch.log1p(torch.tensor(40.0))
    assert prior.actions[prior.choose(full)] == "only kmeans"
    # A prior of a chosen subset: only those columns matter.
    subset = train_prior(
        regime_rounds(), NAMES, PriorTrainingConfig(steps=400, features=(FEATURES[0], FEATURES[3]))
    )
    assert subset.features == [FEATURES[0], FEATURES[3]] and subset.mean.shape == (2,)
    x = torch.randn(len(FEATURES))
    y = x.clone()
    y[5:] = torch.randn(len(FEATURES) - 5)
    assert torch.equal(subset.probabilities(x), subset.probabilities(y))
    with pytest.raises(ValueError, match="lack"):
        subset.probabilities(torch.zeros(2))
    # Rounds of both widths (episodes recorded before and after): the common first columns.
    mixed = regime_rounds(count=20)
    for r in mixed[::2]:
        r.features = torch.cat((r.features, torch.zeros(len(FEATURES) - WIDTH)))
    assert train_prior(mixed, NAMES, PriorTrainingConfig(steps=5)).features == list(
        FEATURES[:WIDTH]
    )


@pytest.mark.skipif(not PRIOR_FILE.is_file(), reason="no shipped prior yet")
def test_the_shipped_prior_loads_and_covers_the_portfolio():
    prior = load_prior("default")
    assert prior.portfolio == list(PORTFOLIO)
    for key in ("command", "data", "seed"):
        assert key in prior.meta
    weights = prior.weights(prior.mean)
    assert weights.shape == (len(PORTFOLIO) + len(prior.extras),)
    assert abs(float(weights.sum()) - 1.0) < 1e-5
    # Excluded from its training: nothing (the shipped prior is trained on every family).
    assert prior.meta["data"]["excluded"] == []


def test_the_shipped_box_prior_is_autoals_default_for_box_pools_only():
    from model.kinds.boxes import BOX_PORTFOLIO
    from model.selectors.autoal.prior import default_prior_path

    path = default_prior_path(BOX_PORTFOLIO)
    assert path.name == "prior-boxes.json"
    prior = load_prior("default", BOX_PORTFOLIO)
    assert prior.portfolio == list(BOX_PORTFOLIO)
    assert prior.meta["data"]["kind"] == "boxes" and prior.meta["data"]["excluded"] == []
    assert default_prior_path(PORTFOLIO) == PRIOR_FILE


def test_the_shipped_span_prior_is_autoals_default_for_span_pools_and_carries_its_gate():
    from model.selectors.autoal.prior import default_prior_path
    from model.strategies import SPAN_PORTFOLIO

    assert default_prior_path(SPAN_PORTFOLIO).name == "prior-spans.json"
    prior = load_prior("default", SPAN_PORTFOLIO)
    assert prior.portfolio == list(SPAN_PORTFOLIO)
    assert prior.meta["data"]["kind"] == "spans" and prior.meta["data"]["excluded"] == []
    assert prior.gate is not None and prior.gate.z == 2.0
    assert prior.gate.features.shape == (prior.meta["rounds"], len(prior.features))
    # At the mean training state the gated prior keeps the uniform mixture.
    assert prior.actions[prior.choose(prior.mean)] == "uniform"
