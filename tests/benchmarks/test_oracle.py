"""The strategy oracle: rank correlation, the true one-step gain, and the CLI end to end."""

import csv
import json

import pytest
import torch
from test_simulate import blobs_npz

from benchmarks.oracle import Oracle, main, spearman, summarise
from benchmarks.simulate import accuracy_of


def test_spearman_known_values():
    assert spearman([1.0, 2.0, 3.0], [10.0, 20.0, 30.0]) == pytest.approx(1.0)
    assert spearman([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)
    # Ranks, not values: a monotone but non-linear relation is still 1.
    assert spearman([1.0, 2.0, 3.0, 4.0], [1.0, 8.0, 27.0, 1000.0]) == pytest.approx(1.0)
    # Ties share their mean rank: [0.5, 0.5, 2] against [0, 1, 2] is 0.866.
    assert spearman([1.0, 1.0, 2.0], [0.0, 1.0, 2.0]) == pytest.approx(3**0.5 / 2)
    assert spearman([1.0, 1.0, 1.0], [0.0, 1.0, 2.0]) == 0.0
    with pytest.raises(ValueError):
        spearman([1.0, 2.0], [1.0])


def blobs(n=90, seed=0):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    features = torch.randn(n, 4, generator=generator) + 2 * torch.nn.functional.one_hot(labels, 4)
    return features, labels


def test_truth_is_the_test_accuracy_gain_of_each_strategys_picks():
    pool, pool_labels = blobs()
    test, test_labels = blobs(30, seed=1)
    oracle = Oracle(pool, pool_labels, test, test_labels, batch=5, device=torch.device("cpu"))
    labeled = torch.arange(9)
    picks = [torch.arange(9, 14), torch.arange(40, 45)]
    gains = oracle.truth(labeled, picks, seed=3)
    before = accuracy_of(oracle.fit(labeled, pool_labels[labeled], 3), test, test_labels)
    for chosen, gain in zip(picks, gains, strict=True):
        items = torch.cat((labeled, chosen))
        after = accuracy_of(oracle.fit(items, pool_labels[items], 3), test, test_labels)
        assert gain == pytest.approx(after - before)


def test_one_seed_gives_every_signal_for_every_strategy(one_thread):
    pool, pool_labels = blobs()
    test, test_labels = blobs(30, seed=1)
    oracle = Oracle(pool, pool_labels, test, test_labels, batch=5, device=torch.device("cpu"))
    values = oracle.run_seed(24, seed=0, repeats=2, samples=1)
    assert set(values) == {"truth", "autoal", "replay", "eer", "emoc", "holdout", "holdout_true"}
    assert all(len(v) == len(oracle.names) for v in values.values())
    assert all(-1.0 <= g <= 1.0 for g in values["truth"])
    probabilities = values["replay"] + values["eer"] + values["holdout"] + values["holdout_true"]
    assert all(0.0 <= p <= 1.0 for p in probabilities)
    assert all(0.0 <= c <= 2.0 for c in values["emoc"])  # an L1 distance of two distributions
    again = oracle.run_seed(24, seed=0, repeats=2, samples=1)
    assert again == values  # seeded


def test_summary_reports_consistency_and_mean_gains():
    names = ["a", "b", "c"]
    same = {"truth": [0.1, 0.2, 0.3], "autoal": [1.0, 2.0, 3.0], "replay": [3.0, 2.0, 1.0]}
    same |= {"eer": [1.0, 3.0, 2.0], "emoc": [2.0, 1.0, 3.0], "holdout": [0.0, 0.0, 1.0]}
    same["holdout_true"] = [1.0, 1.0, 1.0]
    summary = summarise("x", names, {0: same, 1: dict(same, truth=[0.3, 0.4, 0.5])})
    assert summary["truth_consistency"] == pytest.approx(1.0)
    assert summary["mean_spearman_with_truth"]["autoal"] == pytest.approx(1.0)
    assert summary["mean_spearman_with_truth"]["replay"] == pytest.approx(-1.0)
    assert summary["mean_truth_gain"] == {"a": 0.2, "b": 0.3, "c": 0.4}


def test_cli_end_to_end(tmp_path, capsys):
    blobs_npz(tmp_path / "blobs.npz", per_class=30)
    out = tmp_path / "out"
    code = main(
        [
            "--dataset", str(tmp_path / "blobs.npz"), "--labeled", "15", "--batch", "4",
            "--seeds", "2", "--repeats", "1", "--samples", "1", "--encoder", "pixels",
            "--device", "cpu", "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
        ]
    )  # fmt: skip
    assert code == 0
    rows = list(csv.DictReader((out / "oracle.csv").read_text().splitlines()))
    assert len(rows) == 2 * len({r["strategy"] for r in rows}) == 18
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["dataset"] == "blobs"
    assert set(summary["spearman_with_truth"]) == {
        "autoal", "replay", "eer", "emoc", "holdout", "holdout_true"
    }  # fmt: skip
    assert -1.0 <= summary["truth_consistency"] <= 1.0


def test_a_labeled_set_as_large_as_the_pool_is_refused(tmp_path):
    blobs_npz(tmp_path / "blobs.npz", per_class=4)
    with pytest.raises(SystemExit):
        main(
            [
                "--dataset", str(tmp_path / "blobs.npz"), "--labeled", "20",
                "--encoder", "pixels", "--cache-dir", str(tmp_path / "cache"),
            ]
        )  # fmt: skip


def test_hindsight_selector_labels_the_batch_that_raises_test_accuracy_most(one_thread):
    from benchmarks.oracle import HindsightSelector
    from model.pool import make_pool
    from model.strategies import score_matrix

    pool, pool_labels = blobs()
    test, test_labels = blobs(30, seed=1)
    oracle = Oracle(pool, pool_labels, test, test_labels, batch=5, device=torch.device("cpu"))
    labels = torch.full_like(pool_labels, -1)
    labels[:6] = pool_labels[:6]
    state = make_pool(pool, labels, 3, budget=5, seed=2)
    model = oracle.fit(torch.arange(6), pool_labels[:6], 2)
    state.model, state.probs = model, model.predict_proba(pool)
    candidates = state.unlabeled_indices()
    selection = HindsightSelector(oracle).select(state, candidates)
    scores = score_matrix(state, oracle.names, candidates)
    picks = [candidates[scores[:, j].topk(5).indices] for j in range(len(oracle.names))]
    gains = oracle.truth(torch.arange(6), picks, 2)
    best = oracle.names[gains.index(max(gains))]
    assert selection.info["picked"] == best
    assert torch.equal(selection.priority, scores[:, oracle.names.index(best)])
    column = scores[:, oracle.names.index(best)]
    assert all(t == best for t, v in zip(selection.top_strategy(), column, strict=True) if v > 0)


def test_curve_mode_end_to_end(tmp_path, capsys):
    blobs_npz(tmp_path / "blobs.npz", per_class=30)
    code = main(
        [
            "--dataset", str(tmp_path / "blobs.npz"), "--curve", "--initial", "10",
            "--batch", "4", "--rounds", "2", "--seeds", "2", "--encoder", "pixels",
            "--device", "cpu", "--out", str(tmp_path / "out"),
            "--cache-dir", str(tmp_path / "cache"),
        ]
    )  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(report["aubc"]) == {"hindsight", "uniform"}
    assert all(0.0 <= v["mean"] <= 1.0 for v in report["aubc"].values())
    assert sum(report["picked"].values()) == 2 * 2  # one strategy per round and seed
    assert json.loads((tmp_path / "out" / "headroom.json").read_text()) == report


def test_an_unknown_data_set_ends_with_the_valid_names():
    with pytest.raises(SystemExit, match="--dataset nope: .*valid: bbc, digits, mnist, rotten"):
        main(["--dataset", "nope"])
