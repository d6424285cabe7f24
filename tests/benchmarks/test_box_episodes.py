"""Box episodes and the box prior on toy scenes: each recorded round holds the true mAP of every
prior action's batch, meta-training on them is deterministic, and AutoAL picks the kind's own
prior up for box pools (the choices prior, through the roles, for the other kinds)."""

import json

import pytest
import torch

from benchmarks import box_episodes, meta_train
from benchmarks.box_simulate import BoxSplit
from benchmarks.box_simulate import test_map as scene_map
from benchmarks.kind_episodes import action_batches
from model.kinds import boxes as box_kind
from model.kinds import get_kind
from model.kinds.boxes import BOX_PORTFOLIO, BoxModel, map_standardisation, standardise_maps
from model.selectors import make_selector
from model.selectors.autoal import FEATURES, prior
from model.selectors.autoal.prior import action_names
from model.strategies import SPAN_PORTFOLIO, score_matrix
from tests.model.test_boxes import CLASSES, synthetic_scenes

ACTIONS = len(action_names(list(BOX_PORTFOLIO)))


@pytest.fixture(autouse=True)
def fast_detector(monkeypatch):
    monkeypatch.setattr(box_kind, "TRAIN_STEPS", 40)


@pytest.fixture(scope="module")
def split() -> BoxSplit:
    maps, boxes = synthetic_scenes(130, seed=4)
    stats = map_standardisation(maps[:100])
    features = maps.mean(dim=(1, 2))
    features = (features - features[:100].mean(0)) / features[:100].std(0)
    return BoxSplit(features[:100], standardise_maps(maps[:100], stats), boxes[:100],
                    standardise_maps(maps[100:], stats), boxes[100:], CLASSES)  # fmt: skip


def episode(split: BoxSplit, seed: int = 3) -> dict:
    return box_episodes.run_episode(split, seed, rounds=2, truth_rounds=(1,))


def test_an_episode_records_every_actions_true_map(split):
    record = episode(split)["rounds"]
    assert [r["round"] for r in record] == [1]
    r = record[0]
    assert r["map50"].shape == (ACTIONS,) and r["features"].shape == (len(FEATURES),)
    assert r["map50_gain"][0] == 0.0
    assert torch.allclose(r["map50_gain"], r["map50"] - r["map50"][0])
    assert 1 < r["distinct_batches"] <= ACTIONS
    assert r["labeled"] == box_episodes.INITIAL + box_episodes.BATCH
    assert 0.0 <= r["before"] <= 1.0 and 0 <= r["choice"] < ACTIONS


def test_an_episode_is_deterministic_and_the_truth_matches_a_separate_fit(split):
    a, b = episode(split), episode(split)
    assert torch.equal(a["rounds"][0]["map50"], b["rounds"][0]["map50"])
    # One round by hand: the recorded mAP of each action is its batch's detector's test mAP.
    n = split.pool_features.shape[0]
    known = [split.pool_boxes[i] if i < 20 else None for i in range(n)]
    state = box_kind.make_box_pool(split.pool_features, split.pool_maps, known, CLASSES,
                                   budget=box_episodes.BATCH, seed=7)  # fmt: skip
    kind = get_kind("boxes")
    model = kind.fit(state, None, 7)
    state = kind.trained(state, model)
    candidates = state.unlabeled_indices()
    scores = score_matrix(state, list(BOX_PORTFOLIO), candidates)
    batches = action_batches(scores, BOX_PORTFOLIO, 7, box_episodes.BATCH)
    record = box_episodes._truth(split, state, model, candidates, batches, 7)
    gold = box_episodes.replace_boxes(state.parts, split.pool_boxes)
    for action in (0, 1, ACTIONS - 1):
        items = torch.cat((torch.arange(20), candidates[batches[action].sort().values]))
        expected = scene_map(BoxModel.fit(gold, items, 7), split)
        assert float(record["map50"][action]) == pytest.approx(expected)
    assert record["before"] == pytest.approx(scene_map(model, split))


def test_meta_training_a_box_prior_and_autoal_using_it(split, tmp_path, monkeypatch, capsys):
    for family, seed in (("primitives", 3), ("symbols", 5)):
        saved = episode(split, seed) | {"family": family, "regime": "boxes", "spec": {}}
        (tmp_path / family).mkdir()
        torch.save(saved, tmp_path / family / "0000.pt")
    outputs = []
    for name in ("a.json", "b.json"):
        meta_train.main(["--kind", "boxes", "--episodes", str(tmp_path), "--steps", "30",
                         "--out", str(tmp_path / name)])  # fmt: skip
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert summary["episodes"] == 2 and summary["rounds"] == 2
        outputs.append(json.loads((tmp_path / name).read_text()))
    assert outputs[0]["net"] == outputs[1]["net"]
    assert outputs[0]["portfolio"] == list(BOX_PORTFOLIO)
    assert outputs[0]["meta"]["data"]["kind"] == "boxes"
    assert outputs[0]["meta"]["data"]["gain"] == "map50_gain"
    meta_train.main(["--kind", "boxes", "--episodes", str(tmp_path), "--steps", "30",
                     "--validate"])  # fmt: skip
    validation = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["validation"]
    assert set(validation) == {"primitives", "symbols"}
    with pytest.raises(SystemExit, match="unknown families"):
        meta_train.main(["--kind", "boxes", "--episodes", str(tmp_path), "--exclude", "mnist"])

    # Shipped next to the choices prior, the box prior is AutoAL's default for box pools only.
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "prior.json").write_text(prior.PRIOR_FILE.read_text())
    (shipped / "prior-boxes.json").write_text((tmp_path / "a.json").read_text())
    monkeypatch.setattr(prior, "PRIOR_FILE", shipped / "prior.json")
    assert prior.default_prior_path(BOX_PORTFOLIO) == shipped / "prior-boxes.json"
    assert prior.default_prior_path(SPAN_PORTFOLIO) == shipped / "prior.json"
    assert prior.default_prior_path() == shipped / "prior.json"
    assert make_selector("autoal", kind="boxes").prior.portfolio == list(BOX_PORTFOLIO)
    assert make_selector("autoal", kind="spans").prior.portfolio != list(SPAN_PORTFOLIO)


def test_the_truth_fit_labels_the_batch_with_its_gold_boxes(split):
    state_boxes = [None] * split.pool_features.shape[0]
    pool = box_kind.MapPool(split.pool_maps, state_boxes, CLASSES)
    gold = box_episodes.replace_boxes(pool, split.pool_boxes)
    items = torch.arange(30)
    model = BoxModel.fit(gold, items, seed=1)
    assert scene_map(model, split) == scene_map(BoxModel.fit(gold, items, seed=1), split)
    assert pool.boxes[0] is None and gold.boxes[0] is split.pool_boxes[0]
