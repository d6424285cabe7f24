"""Labeling episodes and meta-training on a tiny synthetic task family: the recorded truth is
the true gain of each candidate batch, episodes and the trained prior are deterministic."""

import json

import numpy as np
import pytest
import torch

from benchmarks import episodes, meta_train
from benchmarks.episodes import (
    UNIFORM_ROW,
    Regime,
    TaskSpec,
    build_task,
    candidate_weights,
    run_episode,
    training_rounds,
)
from model.selectors.autoal import FEATURES
from model.strategies import PORTFOLIO, score_matrix
from model.task_model import TaskModel, TaskModelConfig

TINY = Regime("tiny", initial=10, batch=5, rounds=3, truth_every=1, min_pool=50)
FAST = TaskModelConfig(steps=60)
SPEC = TaskSpec(
    "synthetic", "synthetic", 7, imbalance=10.0, num_classes=3, dim=8, modes=2, separation=2.0
)


@pytest.fixture(scope="module")
def task():
    full = build_task(SPEC)
    # A small pool keeps the test fast; the test set stays as built.
    full.pool, full.pool_labels = full.pool[:300], full.pool_labels[:300]
    return full


def test_candidate_weights_are_the_strategies_uniform_leave_one_out_and_dirichlet():
    w = candidate_weights(4, np.random.default_rng(0))
    assert w.shape == (4 + 1 + 4 + episodes.DIRICHLET_MIXTURES, 4)
    assert torch.allclose(w.sum(dim=1), torch.ones(w.shape[0]))
    assert torch.equal(w[:4], torch.eye(4))
    assert torch.allclose(w[4], torch.full((4,), 0.25))  # the uniform mixture
    assert len(PORTFOLIO) == UNIFORM_ROW
    assert torch.allclose(w[5], torch.tensor([0.0, 1 / 3, 1 / 3, 1 / 3]))


def test_extras_are_measured_alone_and_weigh_nothing_in_any_mixture():
    w = candidate_weights(4, np.random.default_rng(0), extras=1)
    rows = 4 + 1 + 4 + episodes.DIRICHLET_MIXTURES
    assert w.shape == (rows + 1, 5)
    assert torch.equal(w[:rows, 4], torch.zeros(rows))  # no mixture holds the extra
    assert torch.equal(w[rows], torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0]))
    # the same random mixtures as without extras: the rows before are unchanged
    assert torch.equal(w[:rows, :4], candidate_weights(4, np.random.default_rng(0)))


def test_synthetic_tasks_follow_their_spec(task):
    counts = torch.bincount(build_task(SPEC).pool_labels, minlength=3)
    assert task.num_classes == 3 and task.pool.shape[1] == 8
    assert counts.max() > 5 * counts.min()  # long-tailed, ratio 10
    assert abs(float(task.pool.mean())) < 0.1  # standardised with the pool's statistics


def test_an_episode_records_the_true_gain_of_each_candidate_batch(task):
    episode = run_episode(task, TINY, seed=3, config=FAST)
    assert len(episode["rounds"]) == 3
    record = episode["rounds"][1]
    j = len(PORTFOLIO) * 2 + 1 + episodes.DIRICHLET_MIXTURES + len(episodes.EXTRAS)
    assert record["batches"].shape == (j, TINY.batch) and record["accuracy_gain"].shape == (j,)
    assert record["features"].shape == (len(FEATURES),)
    assert record["scores"].shape[1] == len(PORTFOLIO) + len(episodes.EXTRAS)
    # the gains of the prior's actions: uniform (0 by definition), each alone, each left out,
    # then each extra alone, which is the last candidate row's batch
    gains = episodes.action_gains(record)
    assert gains.shape == (1 + 2 * len(PORTFOLIO) + len(episodes.EXTRAS),) and gains[0] == 0
    uniform = record["accuracy_gain"][UNIFORM_ROW]
    assert gains[-1] == pytest.approx(float(record["accuracy_gain"][-1] - uniform))
    assert record["labeled"] == TINY.initial + TINY.batch
    again = run_episode(task, TINY, seed=3, config=FAST)["rounds"][1]
    assert torch.equal(record["accuracy_gain"], again["accuracy_gain"])  # deterministic
    assert torch.equal(record["batches"], again["batches"])


def test_the_truth_matches_a_separate_fit(task):
    from model.pool import make_pool

    labels = torch.full((task.pool.shape[0],), -1)
    labels[:20] = task.pool_labels[:20]
    state = make_pool(task.pool, labels, task.num_classes, budget=5, seed=11)
    labeled = state.labeled_indices()
    model = TaskModel.fit(state.features[labeled], state.targets[labeled], seed=11)
    state.model, state.probs = model, model.predict_proba(state.features)
    candidates = state.unlabeled_indices()
    scores = score_matrix(state, list(PORTFOLIO), candidates)
    weights = candidate_weights(len(PORTFOLIO), np.random.default_rng(0))
    from model.ranking import rank_order

    batches = torch.stack([rank_order(scores @ w, 11)[:5] for w in weights])
    record = episodes._truth(task, state, model, scores, weights, batches, 0, 11, model.config)
    before = episodes._metrics(model, task)[0]
    # The truth trains on the batch in pool order (identical batches are fitted once).
    items = torch.cat((labeled, candidates[batches[2].sort().values]))
    alone = TaskModel.fit(
        task.pool[items], torch.nn.functional.one_hot(task.pool_labels[items], 3).float(), seed=11
    )
    assert float(record["accuracy_gain"][2]) == pytest.approx(
        episodes._metrics(alone, task)[0] - before, abs=1e-3
    )


def test_meta_training_on_a_tiny_episode_set_is_deterministic(task, tmp_path, monkeypatch, capsys):
    record = run_episode(task, TINY, seed=5, config=FAST) | {
        "family": "synthetic",
        "regime": "small",
        "spec": {},
    }
    (tmp_path / "small" / "synthetic").mkdir(parents=True)
    torch.save(record, tmp_path / "small" / "synthetic" / "0000.pt")
    rounds = training_rounds([record])
    assert len(rounds) == 3 and all(r.group == "synthetic/small" for r in rounds)
    assert sum(r.weight for r in rounds) == pytest.approx(1.0)
    outputs = []
    for name in ("a.json", "b.json"):
        path = tmp_path / name
        meta_train.main(
            ["--episodes", str(tmp_path), "--regimes", "small", "--steps", "30", "--out", str(path)]
        )
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert summary["episodes"] == 1 and summary["rounds"] == 3
        outputs.append(json.loads(path.read_text()))
    assert outputs[0]["net"] == outputs[1]["net"]
    assert outputs[0]["meta"]["data"]["families"] == list(episodes.FAMILIES)
    assert outputs[0]["extras"] == list(episodes.EXTRAS)
    assert outputs[0]["actions"][-1] == f"only {episodes.EXTRAS[-1]}"
    # --no-extras: the same rounds without the extras' actions (what they add, measured apart)
    plain = tmp_path / "plain.json"
    meta_train.main(["--episodes", str(tmp_path), "--regimes", "small", "--steps", "30",
                     "--no-extras", "--out", str(plain)])  # fmt: skip
    capsys.readouterr()
    assert "extras" not in json.loads(plain.read_text())
    assert (
        json.loads(plain.read_text())["actions"] == outputs[0]["actions"][: -len(episodes.EXTRAS)]
    )
    with pytest.raises(SystemExit, match="no episodes"):
        meta_train.main(
            [
                "--episodes",
                str(tmp_path),
                "--exclude",
                "synthetic",
                "--out",
                str(tmp_path / "c.json"),
            ]
        )


def test_the_mid_regime_is_the_judged_long_tailed_budget_and_draws_big_long_tails():
    mid = episodes.REGIMES["mid"]
    # 20 + 10 x 50: the long-tailed sets' judged 20-520 (issue 24), every family
    assert (mid.initial, mid.batch, mid.rounds) == (20, 50, 10)
    assert mid.families == episodes.FAMILIES
    args = episodes.build_parser().parse_args(["--regimes", "small,mid", "--mid-episodes", "3"])
    assert episodes.regime_counts(args) == {"small": 24, "mid": 3}
    rng = np.random.default_rng(0)
    specs = [episodes.sample_spec("mnist", mid, rng) for _ in range(40)]
    long_tailed = [s for s in specs if s.imbalance > 1]
    assert long_tailed and all(s.long_tail_at_load for s in long_tailed)
    # MobileNetV2's 1,280-d fits at 520 labels are too slow for episodes: small regime only
    assert all(s.encoder not in episodes.SLOW_ENCODERS for s in specs)
    small = [episodes.sample_spec("mnist", episodes.REGIMES["small"], rng) for _ in range(40)]
    assert not any(s.long_tail_at_load for s in small)


def test_a_noisy_annotator_is_wrong_on_its_share_of_the_pool_and_only_there():
    labels = torch.arange(3000) % 4
    given = episodes.noisy_labels(labels, 4, 0.2, seed=3)
    wrong = given != labels
    assert abs(float(wrong.float().mean()) - 0.2) < 0.03
    assert int(given.min()) >= 0 and int(given.max()) <= 3
    assert torch.equal(episodes.noisy_labels(labels, 4, 0.2, seed=3), given)  # deterministic
    noisy = episodes.REGIMES["noisy"]
    spec = episodes.sample_spec("synthetic", noisy, np.random.default_rng(1))
    assert episodes.LABEL_NOISE[0] <= spec.label_noise <= episodes.LABEL_NOISE[1]
    task = build_task(spec)
    clean = build_task(episodes.TaskSpec(**{**spec.__dict__, "label_noise": 0.0}))
    assert torch.equal(task.test_labels, clean.test_labels)  # the truth stays true
    share = float((task.pool_labels != clean.pool_labels).float().mean())
    assert abs(share - spec.label_noise) < 0.05
    # the other regimes draw what they drew before the noisy regime existed: no noise; and the
    # noisy regime's tasks are the small regime's, long tails included, with its noise added
    for family in ("synthetic", "mnist", "rotten", "bbc"):
        for seed in range(12):
            small = episodes.sample_spec(
                family, episodes.REGIMES["small"], np.random.default_rng(seed)
            )
            with_noise = episodes.sample_spec(family, noisy, np.random.default_rng(seed))
            assert small.label_noise == 0.0 and with_noise.label_noise > 0
            assert small == episodes.TaskSpec(**{**with_noise.__dict__, "label_noise": 0.0})
