"""The SearchNet prior: state features with known values, the truth it learns from, training
that is deterministic and learns what the truth says, and the shipped file."""

import json

import pytest
import torch

from model.autoal import FEATURES, Prior, PriorTrainingConfig, TrainingRound, train_prior
from model.autoal.prior import PRIOR_FILE, hard_gain, item_values, load_prior
from model.autoal.state import round_features, top_agreement
from model.pool import make_pool
from model.strategies import PORTFOLIO, score_matrix
from model.task_model import TaskModel, TaskModelConfig

NAMES = ["random", "margin", "kmeans"]


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
    values = dict(zip(FEATURES, round_features(state, scores, NAMES, candidates).tolist(), strict=True))
    assert values["log_labeled"] == pytest.approx(torch.log1p(torch.tensor(20.0)).item())
    assert values["log_labels_per_class"] == pytest.approx(torch.log1p(torch.tensor(5.0)).item())
    assert values["min_class_share"] == pytest.approx(1.0)
    assert values["class_spread"] == pytest.approx(0.0, abs=1e-6)
    assert values["balance_entropy"] == pytest.approx(1.0)
    assert values["labeled_fraction"] == pytest.approx(0.1)
    assert 0.25 <= values["mean_confidence"] <= 1.0
    assert 0.0 <= values["top_agreement"] <= 1.0 and 0.0 < values["predicted_balance"] <= 1.0


def test_item_values_credit_each_item_with_its_batches_gain_over_the_reference():
    batches = torch.tensor([[0, 1], [1, 2], [3, 4]])
    gains = torch.tensor([0.03, 0.01, 0.02])
    items, value = item_values(batches, gains, reference=1)
    assert items.tolist() == [0, 1, 2, 3, 4]
    # Item 1 sits in batches 0 and 1: mean of (.02, 0); item 2 only in the reference batch.
    assert value.tolist() == pytest.approx([0.02, 0.01, 0.0, 0.01, 0.01])


def regime_rounds(count: int = 40, items: int = 60, batch: int = 10, seed: int = 0):
    """Simulated rounds of a task family with a known answer: below 100 labels the k-means
    batch gains 2 points over the uniform mixture's and margin's loses 1; above 400 labels the
    other way round. Features: log(1 + labels) varies, the others are noise."""
    gen = torch.Generator().manual_seed(seed)
    rounds = []
    for i in range(count):
        low = i % 2 == 0
        labeled = 20 + 60 * torch.rand(1, generator=gen).item() if low else 400 + 400 * torch.rand(1, generator=gen).item()
        features = torch.randn(len(FEATURES), generator=gen)
        features[0] = torch.log1p(torch.tensor(labeled))
        scores = torch.stack([torch.randperm(items, generator=gen).float() / (items - 1) for _ in NAMES], dim=1)
        uniform = scores.mean(dim=1)
        picks = [scores[:, j].topk(batch).indices for j in range(3)] + [uniform.topk(batch).indices]
        gains = torch.tensor([0.0, -0.01, 0.02, 0.0] if low else [0.0, 0.02, -0.01, 0.0])
        union, value = item_values(torch.stack(picks), gains, reference=3)
        rounds.append(TrainingRound(features, scores[union], value, batch, "family"))
    return rounds


def weights_at(prior: Prior, labeled: float) -> dict[str, float]:
    features = prior.mean.clone()
    features[0] = torch.log1p(torch.tensor(labeled))
    return dict(zip(NAMES, prior.weights(features).tolist(), strict=True))


def test_the_prior_learns_diversity_early_and_uncertainty_late():
    prior = train_prior(regime_rounds(), NAMES, PriorTrainingConfig(steps=400))
    early, late = weights_at(prior, 40.0), weights_at(prior, 600.0)
    assert early["kmeans"] > early["margin"] + 0.1, early
    assert late["margin"] > late["kmeans"] + 0.1, late
    assert prior.meta["hard_gain_over_uniform"] > 0.0
    held_out = regime_rounds(seed=1)
    learned = hard_gain(torch.stack([prior.weights(r.features) for r in held_out]), held_out)
    assert float(learned.mean()) > float(hard_gain(torch.full((3,), 1 / 3), held_out).mean())


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
    assert torch.equal(loaded.weights(x), first.weights(x))
    assert loaded.meta["command"] == "test" and loaded.portfolio == NAMES


def test_a_strong_pull_keeps_the_prior_at_the_uniform_mixture():
    prior = train_prior(regime_rounds(), NAMES, PriorTrainingConfig(steps=200, pull=10.0))
    assert max(abs(w - 1 / 3) for w in weights_at(prior, 40.0).values()) < 0.03


def test_a_prior_of_other_features_is_refused(tmp_path):
    prior = train_prior(regime_rounds(count=4), NAMES, PriorTrainingConfig(steps=5))
    data = prior.to_json()
    data["features"] = data["features"][:-1]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="trained on features"):
        load_prior(str(path))
    assert load_prior("none") is None


@pytest.mark.skipif(not PRIOR_FILE.is_file(), reason="no shipped prior yet")
def test_the_shipped_prior_loads_and_covers_the_portfolio():
    prior = load_prior("default")
    assert prior.portfolio == list(PORTFOLIO)
    for key in ("command", "data", "seed"):
        assert key in prior.meta
    weights = prior.weights(prior.mean)
    assert weights.shape == (len(PORTFOLIO),) and abs(float(weights.sum()) - 1.0) < 1e-5
