"""The simulation harness end to end on a tiny synthetic data set with a known answer."""

import csv
import json

import numpy as np
import pytest
import torch

from benchmarks import simulate
from benchmarks.simulate import (
    RunResult,
    aubc,
    labels_to_match_random,
    labels_to_reach,
    main,
    run_strategy,
    standardise_pair,
)
from model.active_round import RoundConfig


def blobs_npz(path, per_class=40, side=4, seed=0):
    """Three classes of 4x4 images, each bright in its own column, plus noise: separable, so a
    few labels already give high test accuracy."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label in range(3):
        for _ in range(per_class):
            image = rng.integers(0, 60, size=(side, side))
            image[:, label] += 180
            images.append(image)
            labels.append(["a", "b", "c"][label])
    np.savez(path, images=np.asarray(images, dtype=np.uint8), labels=np.asarray(labels))


def test_aubc_is_the_normalised_trapezoid():
    assert aubc([0, 10, 20], [0.5, 0.5, 1.0]) == pytest.approx(0.625)
    assert aubc([20, 40], [0.8, 0.8]) == pytest.approx(0.8)
    assert aubc([20], [0.7]) == pytest.approx(0.7)
    with pytest.raises(ValueError):
        aubc([1, 2], [0.5])


def test_labels_to_reach_takes_the_crossing_after_which_the_curve_stays_above():
    labeled = [20, 40, 60, 80]
    # Crosses .8 between 40 and 60 (at .7 -> .9: halfway) and stays above.
    assert labels_to_reach(labeled, [0.5, 0.7, 0.9, 0.95], 0.8) == pytest.approx(50.0)
    # Touches .8 at 40, dips, and only stays above from the last crossing on (at 70).
    assert labels_to_reach(labeled, [0.5, 0.8, 0.7, 0.9], 0.8) == pytest.approx(70.0)
    assert labels_to_reach(labeled, [0.85, 0.9, 0.9, 0.9], 0.8) == 20.0
    assert labels_to_reach(labeled, [0.5, 0.9, 0.9, 0.79], 0.8) is None
    with pytest.raises(ValueError):
        labels_to_reach([20, 40], [0.5], 0.8)


def test_labels_to_match_random_uses_the_mean_curves():
    def run(name, seed, accuracy):
        return RunResult(name, seed, labeled=[10, 20, 30], accuracy=accuracy)

    runs = {
        "random": [run("random", 0, [0.5, 0.6, 0.7]), run("random", 1, [0.5, 0.6, 0.9])],  # -> .8
        "margin": [run("margin", 0, [0.5, 0.9, 0.9]), run("margin", 1, [0.5, 0.7, 0.9])],
        "coreset": [run("coreset", 0, [0.5, 0.6, 0.7]), run("coreset", 1, [0.5, 0.6, 0.8])],
    }
    # margin's mean .5/.8/.9 reaches .8 at 20; random's own at 30; coreset's .75 never.
    assert labels_to_match_random(runs) == {"random": 30.0, "margin": 20.0, "coreset": None}
    assert labels_to_match_random({"margin": runs["margin"]}) == {}


def test_standardise_uses_pool_statistics_only():
    pool = torch.tensor([[0.0, 10.0], [2.0, 10.0]])
    test = torch.tensor([[1.0, 12.0]])
    pool_z, test_z = standardise_pair(pool, test)
    assert torch.allclose(pool_z.mean(dim=0), torch.zeros(2))
    assert test_z[0, 0] == pytest.approx(0.0)  # the pool's mean, whatever the test set holds


def test_run_is_reproducible_and_labels_the_batch_each_round(one_thread):
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(60) % 3
    features = torch.randn(60, 5, generator=generator) + 3 * torch.nn.functional.one_hot(labels, 5)
    kwargs = dict(initial=10, batch=5, rounds=2, config=RoundConfig(), device=torch.device("cpu"))
    first = run_strategy("random", 3, features, labels, features[:15], labels[:15], 3, **kwargs)
    second = run_strategy("random", 3, features, labels, features[:15], labels[:15], 3, **kwargs)
    assert first.labeled == [10, 15, 20]
    assert first.accuracy == second.accuracy
    assert [r["round"] for r in first.rows] == [0, 1, 2]


def test_audited_rounds_carry_the_figure_and_the_truth_it_estimates(one_thread):
    generator = torch.Generator().manual_seed(1)
    labels = torch.arange(300) % 3
    features = torch.randn(300, 5, generator=generator) + 3 * torch.nn.functional.one_hot(labels, 5)
    kwargs = dict(initial=20, batch=10, rounds=3, config=RoundConfig(), device=torch.device("cpu"))
    result = run_strategy("margin", 0, features, labels, features[:30], labels[:30], 3,
                          audit_fraction=0.1, audit_until_trusted=0.5, **kwargs)  # fmt: skip
    rows = result.rows[:-1]  # the last point is the final model's: no queue, no figure
    # The cold start's random share of the initial labels, then five of every ten served.
    assert [r["audited"] for r in rows] == [10, 15, 20]
    assert rows[0]["audit_share"] == 0.5
    for row in rows:
        assert 0.0 <= row["unlabeled_accuracy"] <= 1.0
        assert row["estimate_low"] <= row["estimate"] <= row["estimate_high"]
    error = simulate.estimate_error([result])
    assert error["shown"] + error["withheld"] == 3 and error["estimated"] == 3
    table = "\n".join(simulate.figure_lines({"margin": error}))
    assert f"| margin | {error['shown']} / {error['withheld']} |" in table
    assert "no round showed one" in simulate.figure_lines({"margin": {"estimated": 0}})[0]
    shown = [r for r in rows if r["estimate_shown"]]
    assert error["shown"] == len(shown)
    if shown:
        assert error["mae"] == pytest.approx(
            np.mean([abs(r["estimate"] - r["unlabeled_accuracy"]) for r in shown]), abs=1e-4
        )
        # Once trusted, the next queue serves the steady share.
        after = rows[rows.index(shown[0]) + 1 :]
        assert all(r["audit_share"] == 0.1 for r in after)


def test_first_seed_extends_a_run_with_the_seeds_a_longer_run_would_have(tmp_path):
    blobs_npz(tmp_path / "blobs.npz")

    def rows(out: str, *seeds: str) -> list[dict]:
        code = main(
            [
                "--dataset", str(tmp_path / "blobs.npz"), "--strategies", "entropy",
                "--initial", "10", "--batch", "5", "--rounds", "2", *seeds,
                "--encoder", "pixels", "--device", "cpu",
                "--out", str(tmp_path / out), "--cache-dir", str(tmp_path / "cache"), "--no-progress",
            ]
        )  # fmt: skip
        assert code == 0
        return list(csv.DictReader((tmp_path / out / "rounds.csv").read_text().splitlines()))

    longer = rows("longer", "--seeds", "3")
    extension = rows("extension", "--seeds", "2", "--first-seed", "1")
    assert {r["seed"] for r in extension} == {"1", "2"}
    timings = ("train_s", "select_s", "round_s")
    strip = lambda r: {k: v for k, v in r.items() if k not in timings}  # noqa: E731
    assert [strip(r) for r in extension] == [strip(r) for r in longer if r["seed"] != "0"]
    assert "seeds 1..2" in (tmp_path / "extension" / "summary.md").read_text()


def test_simulate_end_to_end(tmp_path, capsys):
    blobs_npz(tmp_path / "blobs.npz")
    out = tmp_path / "out"
    code = main(
        [
            "--dataset", str(tmp_path / "blobs.npz"),
            "--strategies", "random,entropy",
            "--initial", "10", "--batch", "5", "--rounds", "2", "--seeds", "2",
            "--encoder", "pixels", "--device", "cpu",
            "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--no-progress",
        ]
    )  # fmt: skip
    assert code == 0
    rows = list(csv.DictReader((out / "rounds.csv").read_text().splitlines()))
    # 2 strategies x 2 seeds x (initial + 2 rounds) points.
    assert len(rows) == 12
    assert {(r["strategy"], r["seed"]) for r in rows} == {
        (s, str(k)) for s in ("random", "entropy") for k in (0, 1)
    }
    assert [int(r["labeled"]) for r in rows if r["strategy"] == "entropy" and r["seed"] == "1"] == [
        10,
        15,
        20,
    ]
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in rows)
    # The same initial labels per seed: both strategies start from the same model.
    start = {(r["strategy"], r["seed"]): r["accuracy"] for r in rows if r["round"] == "0"}
    assert start[("random", "0")] == start[("entropy", "0")]
    assert start[("random", "1")] == start[("entropy", "1")]
    png = out / "learning_curves.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| entropy |" in (out / "summary.md").read_text()
    selections = [json.loads(x) for x in (out / "selections.jsonl").read_text().splitlines()]
    assert len(selections) == 8  # 2 strategies x 2 seeds x 2 rounds

    last = capsys.readouterr().out.strip().splitlines()[-1]
    report = json.loads(last)
    assert set(report) == {
        "dataset",
        "aubc",
        "final_accuracy",
        "labels_to_match_random",
        "aubc_macro_f1",
        "final_macro_f1",
        "final_minority_recall",
        "estimate_error",
    }
    for error in report["estimate_error"].values():
        # No task served at random: every round withholds the figure.
        assert error == {"bias": None, "mae": None, "band_coverage": None, "shown": 0,
                         "withheld": 4, "mae_all": None, "band_coverage_all": None,
                         "estimated": 0}  # fmt: skip
    assert report["dataset"] == "blobs"
    # Random reaches its own final accuracy by the end at the latest.
    assert 10 <= report["labels_to_match_random"]["random"] <= 20
    assert set(report["labels_to_match_random"]) == {"random", "entropy"}
    for metric in (
        "aubc",
        "final_accuracy",
        "aubc_macro_f1",
        "final_macro_f1",
        "final_minority_recall",
    ):
        assert set(report[metric]) == {"random", "entropy"}
        for values in report[metric].values():
            assert set(values) == {"mean", "std"}
            assert 0.0 <= values["mean"] <= 1.0 and values["std"] >= 0.0
    # Separable classes: 20 labels must classify nearly all of the test set.
    assert report["final_accuracy"]["random"]["mean"] > 0.9


def test_a_crashing_strategy_is_reported_and_the_others_still_run(tmp_path, capsys, monkeypatch):
    blobs_npz(tmp_path / "blobs.npz", per_class=20)
    real = simulate.make_selector

    class Broken:
        name = "margin"

        def select(self, state, candidates):
            raise RuntimeError("selector exploded")

    monkeypatch.setattr(
        simulate,
        "make_selector",
        lambda name, **kw: Broken() if name == "margin" else real(name, **kw),
    )
    code = main(
        [
            "--dataset", str(tmp_path / "blobs.npz"), "--strategies", "margin,random",
            "--initial", "12", "--batch", "4", "--rounds", "1", "--seeds", "2",
            "--encoder", "pixels", "--out", str(tmp_path / "out"),
            "--cache-dir", str(tmp_path / "cache"), "--no-progress",
        ]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 1
    assert (
        "strategy 'margin' failed at seed 0, round 0: RuntimeError: selector exploded"
        in captured.err
    )
    report = json.loads(captured.out.strip().splitlines()[-1])
    assert set(report["aubc"]) == {"random"}
    assert "selector exploded" in report["failed"]["margin"]
    assert "selector exploded" in (tmp_path / "out" / "errors.log").read_text()


def test_unknown_strategy_lists_the_valid_ones():
    with pytest.raises(SystemExit, match="valid: all, autoal"):
        simulate.parse_strategies("random,magic")


def test_an_initial_set_larger_than_the_pool_is_refused(tmp_path):
    blobs_npz(tmp_path / "blobs.npz", per_class=4)
    with pytest.raises(SystemExit, match="--initial must be between 1 and 8"):
        main(
            [
                "--dataset", str(tmp_path / "blobs.npz"), "--initial", "50",
                "--encoder", "pixels", "--cache-dir", str(tmp_path / "cache"),
                "--out", str(tmp_path / "out"), "--no-progress",
            ]
        )  # fmt: skip


def test_an_unknown_data_set_ends_with_the_valid_names():
    with pytest.raises(SystemExit, match="--dataset nope: .*valid: bbc, digits, mnist, rotten"):
        main(["--dataset", "nope", "--no-progress"])


def test_a_missing_npz_file_ends_with_the_reason(tmp_path):
    with pytest.raises(SystemExit, match="--dataset"):
        main(["--dataset", str(tmp_path / "missing.npz"), "--no-progress"])


def test_held_out_metrics_known_answer():
    class Fixed:
        def predict_proba(self, features):
            return torch.nn.functional.one_hot(features[:, 0].long(), 3).float()

    predicted = torch.tensor([0, 0, 0, 1, 1, 2, 0])
    truth = torch.tensor([0, 0, 1, 1, 1, 2, 2])
    metrics = simulate.held_out_metrics(
        Fixed(), predicted.float().unsqueeze(1), truth, 3, minority=2
    )
    assert metrics.accuracy == pytest.approx(5 / 7)
    # F1: class 0 2*2/(2+4) = 2/3, class 1 2*2/(3+2) = .8, class 2 2*1/(2+1) = 2/3.
    assert metrics.macro_f1 == pytest.approx((2 / 3 + 0.8 + 2 / 3) / 3)
    assert metrics.minority_recall == pytest.approx(0.5)
    assert simulate.minority_class(torch.tensor([0, 0, 1, 2, 2, 1, 1]), 3) == 2  # tie: last
    assert simulate.minority_class(torch.tensor([0, 1, 2, 2, 1, 1]), 3) == 0


def test_selector_options_reach_the_selectors_that_take_them():
    options = simulate.selector_options_for(
        ["albl", "autoal", "margin"], ["horizon=5", "autoal.online=false", "seed=3"]
    )
    assert options == {"albl": {"horizon": 5, "seed": 3}, "autoal": {"online": False}, "margin": {}}
    with pytest.raises(SystemExit, match="none of the strategies run .* takes it"):
        simulate.selector_options_for(["margin"], ["horizon=5"])
    with pytest.raises(SystemExit, match="'autoal' has no option 'nope'"):
        simulate.selector_options_for(["autoal"], ["autoal.nope=1"])
    with pytest.raises(SystemExit, match="expected an integer"):
        simulate.selector_options_for(["albl"], ["horizon=soon"])


def test_simulate_with_a_selector_option_and_a_long_tail(tmp_path, capsys):
    blobs_npz(tmp_path / "blobs.npz", per_class=60)
    code = main(
        [
            "--dataset", str(tmp_path / "blobs.npz"), "--strategies", "albl",
            "--selector-option", "albl.horizon=3", "--imbalance", "4",
            "--initial", "10", "--batch", "5", "--rounds", "1", "--seeds", "1",
            "--encoder", "pixels", "--out", str(tmp_path / "out"),
            "--cache-dir", str(tmp_path / "cache"), "--no-progress",
        ]
    )  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["dataset"] == "blobs-lt4"
    assert report["selector_options"] == {"albl": {"horizon": 3}}
    selections = [
        json.loads(x) for x in (tmp_path / "out" / "selections.jsonl").read_text().splitlines()
    ]
    assert selections[0]["info"]["pmin"] == pytest.approx(min((np.log(9) / 27) ** 0.5, 1 / 18))


def test_serving_at_random_within_the_window():
    order = torch.arange(100, 200)
    assert simulate.served(order, 5, None, 0).tolist() == [100, 101, 102, 103, 104]
    within = simulate.served(order, 5, 30, 0)
    assert len(set(within.tolist())) == 5 and all(100 <= i < 130 for i in within.tolist())
    assert torch.equal(within, simulate.served(order, 5, 30, 0))  # seeded
    assert not torch.equal(within, simulate.served(order, 5, 30, 1))
    # A window smaller than the batch: all of it, then the rest at random from the others.
    small = simulate.served(order, 20, 10, 0).tolist()
    assert set(small[:10]) == set(range(100, 110)) and len(set(small)) == 20
