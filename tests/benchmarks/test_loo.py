"""The leave-one-data-set-out report: per-seed AUBC from simulate's CSV, paired differences
with known answers, the comparison against the best single strategy."""

import csv

import pytest

from benchmarks import loo


def write_rounds(path, curves: dict[tuple[str, int], list[float]]):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["strategy", "seed", "round", "labeled", "accuracy",
                                                    "macro_f1", "minority_recall"])  # fmt: skip
        writer.writeheader()
        for (strategy, seed), accuracy in curves.items():
            for r, a in enumerate(accuracy):
                writer.writerow({"strategy": strategy, "seed": seed, "round": r, "labeled": 20 + 20 * r,
                                 "accuracy": a, "macro_f1": a - 0.1, "minority_recall": a / 2})  # fmt: skip


def test_paired_differences_known_answer():
    result = loo.paired({0: 0.8, 1: 0.7, 2: 0.9}, {0: 0.7, 1: 0.7, 2: 0.8})
    assert result["mean"] == pytest.approx(0.0667, abs=1e-4)
    assert result["wins"] == 2 and result["seeds"] == 3
    assert result["std"] == pytest.approx(0.0577, abs=1e-4)


def test_a_set_summary_compares_autoal_with_uniform_and_the_best_single(tmp_path):
    curves = {}
    for seed in range(3):
        curves[("autoal", seed)] = [0.5, 0.7, 0.80 + 0.01 * seed]
        curves[("uniform", seed)] = [0.5, 0.6, 0.80]
        curves[("margin", seed)] = [0.5, 0.65, 0.85]
        curves[("random", seed)] = [0.5, 0.55, 0.6]
    write_rounds(tmp_path / "rounds.csv", curves)
    report = loo.summarise_set(tmp_path, "toy")
    assert report["best_single"] == "margin"  # the best of the single strategies
    assert list(report["aubc"]) == ["autoal", "margin", "uniform", "random"]
    # AUBC = mean of the two trapezoids: autoal .675 + .0025 seed, uniform .625, margin .6625.
    diff = report["autoal_minus"]["uniform"]
    assert diff["mean"] == pytest.approx(0.0525, abs=1e-4) and diff["wins"] == 3
    assert report["autoal_minus"]["best_single"]["mean"] == pytest.approx(0.015, abs=1e-4)
    assert "margin" in report["final_minority_recall"]
    text = loo.markdown("small", [report])
    assert "| autoal |" in text and "(margin)" in text


def test_random_labeling_is_never_the_best_single_strategy(tmp_path):
    curves = {}
    for seed in range(2):
        curves[("autoal", seed)] = [0.5, 0.6, 0.7]
        curves[("random", seed)] = [0.5, 0.7, 0.8]  # beats every strategy, as on rotten-lt10
        curves[("margin", seed)] = [0.5, 0.55, 0.65]
    write_rounds(tmp_path / "rounds.csv", curves)
    report = loo.summarise_set(tmp_path, "toy")
    assert report["best_single"] == "margin"
    assert report["autoal_minus"]["best_single"]["mean"] == pytest.approx(
        0.0375, abs=1e-4
    )  # .6 - .5625
    assert report["autoal_minus"]["random"]["mean"] < 0


def test_a_run_of_autoal_alone_is_summarised_without_a_best_single(tmp_path):
    """Rerunning only AutoAL (``--strategies autoal``, e.g. after retraining the priors) once
    crashed at the summary, after every run had finished: no single strategy to compare."""
    write_rounds(
        tmp_path / "rounds.csv", {("autoal", 0): [0.5, 0.7, 0.8], ("autoal", 1): [0.5, 0.6, 0.8]}
    )
    report = loo.summarise_set(tmp_path, "toy")
    assert report["best_single"] is None and report["autoal_minus"] == {}
    assert report["aubc"] == {"autoal": pytest.approx(0.65, abs=1e-4)}  # (.675 + .625) / 2
    assert "| autoal | 0.6500 |" in loo.markdown("small", [report])


def test_estimate_errors_known_answer(tmp_path):
    rows = [  # (accuracy, estimate, low, high, cold start)
        (0.50, 0.60, 0.40, 0.70, "True"),  # cold start: not counted
        (0.70, 0.75, 0.70, 0.80, "False"),  # +.05, inside
        (0.80, 0.70, 0.65, 0.75, "False"),  # -.10, outside
        (0.90, 0.92, 0.85, 0.95, "False"),  # +.02, inside
    ]
    with open(tmp_path / "rounds.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "strategy",
                "seed",
                "accuracy",
                "estimate",
                "estimate_low",
                "estimate_high",
                "cold_start",
            ]
        )
        for row in rows:
            writer.writerow(["uniform", 0, *row])
    errors = loo.estimate_errors(tmp_path / "rounds.csv")
    assert errors["rounds"] == 3
    assert errors["bias"] == pytest.approx(-0.01, abs=1e-4)
    assert errors["mae"] == pytest.approx(0.0567, abs=1e-4)
    assert errors["band_coverage"] == pytest.approx(0.667, abs=1e-3)


def test_policy_actions_are_counted_per_labels_per_class_bucket(tmp_path):
    import json
    import math

    def record(strategy, per_class, action):
        info = {"state": {"log_labels_per_class": math.log1p(per_class)}, "prior_action": action}
        return json.dumps({"strategy": strategy, "info": info})

    lines = [record("autoal", 2, "only kmeans"), record("autoal", 3, "only kmeans"), record("autoal", 12, "uniform"),
             record("uniform", 12, "uniform"), json.dumps({"strategy": "autoal", "info": {}})]  # fmt: skip
    (tmp_path / "selections.jsonl").write_text("\n".join(lines) + "\n")
    assert loo.policy_actions(tmp_path / "selections.jsonl") == {
        "<5": {"only kmeans": 2},
        "10-20": {"uniform": 1},
    }
    report = {"policy_actions": loo.policy_actions(tmp_path / "selections.jsonl")}
    loo.plot_policy([report], tmp_path / "policy.png")
    assert (tmp_path / "policy.png").stat().st_size > 1000


def test_a_set_runs_at_a_budget_only_when_its_pool_holds_the_whole_budget(
    monkeypatch, tmp_path, capsys
):
    assert loo.budget_labels("small") == 220 and loo.budget_labels("large") == 1020

    class Raw:
        def __init__(self, n):
            self.pool_labels = [0] * n

    sizes = {("big", 1.0): 1297, ("big", 10.0): 535}
    monkeypatch.setattr(
        loo, "load_raw", lambda name, seed, ratio: (name, Raw(sizes[(name, ratio)]))
    )
    ran = []
    monkeypatch.setattr(loo, "run_set", lambda args, d, r, prior, out: ran.append((d, r)) or out)
    monkeypatch.setattr(loo, "ensure_prior", lambda root, family, episodes: tmp_path / "prior.json")
    monkeypatch.setattr(loo, "summarise_set", lambda root, name: {"set": name})
    monkeypatch.setattr(loo, "markdown", lambda budget, reports: "")
    monkeypatch.setattr(loo, "plot_policy", lambda reports, path: None)
    for budget in ("small", "large"):
        (tmp_path / budget).mkdir()  # run_set, mocked here, makes it in a real run
    loo.main(
        ["--budget", "large", "--datasets", "big", "--imbalance", "1,10", "--out", str(tmp_path)]
    )
    assert ran == [("big", 1.0)]  # 1,297 items hold 1,020 labels; 535 do not
    assert "big-lt10: pool too small for the large budget" in capsys.readouterr().err
    ran.clear()
    loo.main(
        ["--budget", "small", "--datasets", "big", "--imbalance", "1,10", "--out", str(tmp_path)]
    )
    assert ran == [("big", 1.0), ("big", 10.0)]
