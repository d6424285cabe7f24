"""Leave one data set out: AutoAL with a prior that never saw the data set, next to every
baseline, with paired per-seed differences.

    python -m benchmarks.loo --budget small --seeds 10 --workers 2 --out results/loo

For each data set X of ``--datasets`` and each ratio of ``--imbalance`` (1 = as it is, 10 = its
long-tailed version): the prior trained on every episode family except X's
(``benchmarks.meta_train --exclude X``; trained here when its file is missing) is handed to
AutoAL, and ``benchmarks.simulate`` runs exactly as the README documents it
(``--strategies all``, the budget's initial labels, batch and rounds, ``--seeds``), with
``--selector-option autoal.prior=<that file>``. Nothing else differs from a user's run.

Budgets: ``small`` 20 + 10 x 20 (20-220 labels), ``large`` 20 + 20 x 50 (20-1,020 labels). A set
runs at a budget only when its pool holds the whole budget (at 1,020 labels: digits, MNIST, BBC
News, Rotten Tomatoes and the long-tailed MNIST and Rotten; the long-tailed digits and BBC pools
have 535 and 880 items). Writes each run's output under ``--out/<budget>/<set>``,
and ``summary.json`` / ``summary.md`` there: mean AUBC of every selector, and the paired per-seed
differences of AutoAL against the uniform mixture, the best single strategy, the budget
schedule, ALBL and random (mean, standard deviation, wins); macro-F1 and minority recall on the
long-tailed sets. The last line on stdout is the JSON summary.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.datasets import load_raw
from benchmarks.simulate import aubc
from model.selectors import mixture_names
from model.strategies import strategy_names

BUDGETS = {"small": (20, 20, 10), "large": (20, 50, 20)}


def budget_labels(budget: str) -> int:
    """Labels at the budget's last round: a pool must hold them all to run at that budget."""
    initial, batch, rounds = BUDGETS[budget]
    return initial + batch * rounds


COMPARED = ("uniform", "schedule", "albl", "random", "tailor", "autoal_online", "autoal_labels")


def set_name(dataset: str, imbalance: float) -> str:
    return dataset if imbalance == 1.0 else f"{dataset}-lt{imbalance:g}"


def prior_path(root: Path, family: str) -> Path:
    return root / f"loo-{family}.json"


def ensure_prior(root: Path, family: str, episodes: str | None) -> Path:
    """The prior trained without ``family`` (made with benchmarks.meta_train when missing)."""
    path = prior_path(root, family)
    if not path.is_file():
        command = [
            sys.executable,
            "-m",
            "benchmarks.meta_train",
            "--exclude",
            family,
            "--out",
            str(path),
        ]
        if episodes:
            command += ["--episodes", episodes]
        subprocess.run(command, check=True)
    return path


def per_seed_aubc(rounds_csv: Path, metric: str = "accuracy") -> dict[str, dict[int, float]]:
    """{strategy: {seed: AUBC of ``metric``}} from a simulate run's rounds.csv."""
    curves: dict[tuple[str, int], list[tuple[int, float]]] = {}
    with open(rounds_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            key = (row["strategy"], int(row["seed"]))
            curves.setdefault(key, []).append((int(row["labeled"]), float(row[metric])))
    out: dict[str, dict[int, float]] = {}
    for (strategy, seed), points in curves.items():
        x, y = zip(*points, strict=True)
        out.setdefault(strategy, {})[seed] = aubc(list(x), list(y))
    return out


def final_values(rounds_csv: Path, metric: str) -> dict[str, dict[int, float]]:
    """{strategy: {seed: ``metric`` at the last round}}."""
    last: dict[tuple[str, int], tuple[int, float]] = {}
    with open(rounds_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            key = (row["strategy"], int(row["seed"]))
            point = (int(row["round"]), float(row[metric]))
            if key not in last or point[0] > last[key][0]:
                last[key] = point
    out: dict[str, dict[int, float]] = {}
    for (strategy, seed), (_, value) in last.items():
        out.setdefault(strategy, {})[seed] = value
    return out


def estimate_errors(rounds_csv: Path) -> dict:
    """How the project page's accuracy estimate (``model.estimate``, from the labels the
    annotator gives each batch) compares with the true test accuracy, over every round of every
    selector and seed: bias (mean of estimate - truth), spread (its std), mean absolute error
    and how often the truth fell inside the 95% band."""
    errors, inside = [], []
    with open(rounds_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("estimate") in (None, "") or row.get("cold_start") == "True":
                continue
            truth = float(row["accuracy"])
            errors.append(float(row["estimate"]) - truth)
            inside.append(float(row["estimate_low"]) <= truth <= float(row["estimate_high"]))
    if not errors:
        return {}
    array = np.asarray(errors)
    return {
        "bias": round(float(array.mean()), 4),
        "spread": round(float(array.std()), 4),
        "mae": round(float(np.abs(array).mean()), 4),
        "band_coverage": round(float(np.mean(inside)), 3),
        "rounds": int(array.size),
    }


def policy_actions(selections: Path, selector: str = "autoal") -> dict[str, dict[str, int]]:
    """What the prior chose: {labels-per-class bucket: {action: rounds}} from a simulate run's
    selections.jsonl (rounds where the prior was not asked, such as cold starts, do not count)."""
    out: dict[str, dict[str, int]] = {}
    if not selections.is_file():
        return out
    with open(selections) as handle:
        for line in handle:
            record = json.loads(line)
            info = record.get("info") or {}
            action = info.get("prior_action") if isinstance(info, dict) else None
            if record.get("strategy") != selector or not action:
                continue
            per_class = float(np.expm1(info["state"]["log_labels_per_class"]))  # log1p in the state
            bucket = next(b for b in PER_CLASS_BUCKETS if per_class < b[1])[0]
            counts = out.setdefault(bucket, {})
            counts[action] = counts.get(action, 0) + 1
    return out


PER_CLASS_BUCKETS = (
    ("<5", 5.0),
    ("5-10", 10.0),
    ("10-20", 20.0),
    ("20-50", 50.0),
    (">=50", float("inf")),
)


def plot_policy(reports: list[dict], path: Path) -> None:
    """Share of rounds per prior action against labels per class, all sets together."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    totals: dict[str, dict[str, int]] = {}
    for report in reports:
        for bucket, counts in report.get("policy_actions", {}).items():
            for action, n in counts.items():
                totals.setdefault(bucket, {})[action] = (
                    totals.setdefault(bucket, {}).get(action, 0) + n
                )
    buckets = [b for b, _ in PER_CLASS_BUCKETS if b in totals]
    if not buckets:
        return
    actions = sorted({a for c in totals.values() for a in c}, key=lambda a: (a != "uniform", a))
    figure, axes = plt.subplots(figsize=(7, 3.8))
    bottom = np.zeros(len(buckets))
    palette = [plt.get_cmap("tab20")(i) for i in range(20)]
    for index, action in enumerate(actions):
        share = np.array([totals[b].get(action, 0) / sum(totals[b].values()) for b in buckets])
        axes.bar(buckets, share, bottom=bottom, label=action, color=palette[index % 20])
        bottom += share
    axes.set_xlabel("labels per class when the round ran")
    axes.set_ylabel("share of AutoAL's rounds")
    axes.set_title("What the leave-one-out prior chose")
    axes.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def paired(a: dict[int, float], b: dict[int, float]) -> dict:
    """Mean, std, paired t and wins of a - b over their common seeds."""
    seeds = sorted(set(a) & set(b))
    d = np.array([a[s] - b[s] for s in seeds])
    std = float(d.std(ddof=1)) if d.size > 1 else 0.0
    t = float(d.mean() / (std / np.sqrt(d.size))) if std > 0 else 0.0
    return {
        "mean": round(float(d.mean()), 4),
        "std": round(std, 4),
        "t": round(t, 2),
        "wins": int((d > 0).sum()),
        "seeds": int(d.size),
    }


def summarise_set(out: Path, name: str) -> dict:
    """The paired comparison of AutoAL on one set's run."""
    rounds = out / "rounds.csv"
    accuracy = per_seed_aubc(rounds)
    # Random labeling is its own baseline row, not an active-learning strategy to pick: where it
    # beat every strategy (Rotten Tomatoes at imbalance 10), "best single" named it and its row
    # came out empty.
    singles = [s for s in strategy_names() if s in accuracy and s != "random"]
    means = {s: float(np.mean(list(v.values()))) for s, v in accuracy.items()}
    # None when no single strategy ran (e.g. ``--strategies autoal``, to rerun only AutoAL).
    best_single = max(singles, key=lambda s: means[s]) if singles else None
    report: dict[str, Any] = {
        "set": name,
        "aubc": {s: round(m, 4) for s, m in sorted(means.items(), key=lambda kv: -kv[1])},
        "best_single": best_single,
        "autoal_minus": {},
    }
    if "autoal" in accuracy:
        for other in (*COMPARED, best_single):
            if other is not None and other in accuracy:
                key = "best_single" if other == best_single and other not in COMPARED else other
                report["autoal_minus"][key] = paired(accuracy["autoal"], accuracy[other])
    f1 = per_seed_aubc(rounds, "macro_f1")
    minority = final_values(rounds, "minority_recall")
    report["aubc_macro_f1"] = {s: round(float(np.mean(list(v.values()))), 4) for s, v in f1.items()}
    report["final_minority_recall"] = {
        s: round(float(np.mean(list(v.values()))), 4) for s, v in minority.items()
    }
    if "autoal" in f1 and "uniform" in f1:
        report["autoal_minus_uniform_macro_f1"] = paired(f1["autoal"], f1["uniform"])
    report["estimate_error"] = estimate_errors(rounds)
    report["policy_actions"] = policy_actions(out / "selections.jsonl")
    return report


def markdown(budget: str, reports: list[dict]) -> str:
    selectors = [
        n for n in mixture_names() + strategy_names() if any(n in r["aubc"] for r in reports)
    ]
    header = "| selector | " + " | ".join(r["set"] for r in reports) + " |"
    lines = [f"# Leave one data set out, budget {budget}", "", "Mean AUBC (accuracy).", "", header,
             "|---" * (len(reports) + 1) + "|"]  # fmt: skip
    for name in selectors:
        cells = [f"{r['aubc'][name]:.4f}" if name in r["aubc"] else "" for r in reports]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "AutoAL minus each, paired over seeds: mean (std; wins/seeds).", "", header,
              "|---" * (len(reports) + 1) + "|"]  # fmt: skip
    others = sorted(
        {k for r in reports for k in r["autoal_minus"]}, key=lambda k: (k != "uniform", k)
    )
    for other in others:
        cells = []
        for r in reports:
            p = r["autoal_minus"].get(other)
            label = f" ({r['best_single']})" if other == "best_single" else ""
            cells.append(
                f"{p['mean']:+.4f} ({p['std']:.4f}; {p['wins']}/{p['seeds']}){label}" if p else ""
            )
        lines.append(f"| {other} | " + " | ".join(cells) + " |")
    lines += ["", "AUBC of macro-F1 / final minority-class recall.", "", header,
              "|---" * (len(reports) + 1) + "|"]  # fmt: skip
    for name in selectors:
        cells = [
            f"{r['aubc_macro_f1'][name]:.3f} / {r['final_minority_recall'][name]:.3f}"
            if name in r["aubc_macro_f1"] else "" for r in reports
        ]  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "The page's accuracy estimate against the true test accuracy, every round of every "
              "selector after the cold start: bias / spread / share of rounds inside the 95% band.", "",
              header, "|---" * (len(reports) + 1) + "|"]  # fmt: skip
    cells = [
        f"{e['bias']:+.3f} / {e['spread']:.3f} / {e['band_coverage']:.2f}"
        if (e := r.get("estimate_error"))
        else ""
        for r in reports
    ]
    lines.append("| estimate | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_set(
    args: argparse.Namespace, dataset: str, imbalance: float, prior: Path, out: Path
) -> Path:
    initial, batch, rounds = BUDGETS[args.budget]
    command = [
        sys.executable, "-m", "benchmarks.simulate", "--dataset", dataset,
        "--imbalance", f"{imbalance:g}", "--strategies", args.strategies,
        "--initial", str(initial), "--batch", str(batch), "--rounds", str(rounds),
        "--seeds", str(args.seeds), "--first-seed", str(args.first_seed), "--out", str(out), "--no-progress",
    ]  # fmt: skip
    chosen = {s.strip() for s in args.strategies.split(",")}
    for selector in ("autoal", "autoal_online"):  # the selectors that take a prior
        if "all" in chosen or selector in chosen:
            command += ["--selector-option", f"{selector}.prior={prior}"]
    for option in args.selector_option:
        command += ["--selector-option", option]
    log = out.with_suffix(".log")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as handle:
        subprocess.run(command, check=True, stdout=handle, stderr=subprocess.STDOUT)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.loo", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--datasets", default="digits,mnist,bbc,rotten")
    parser.add_argument("--imbalance", default="1,10", help="comma-separated ratios")
    parser.add_argument("--budget", default="small", choices=sorted(BUDGETS))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument(
        "--first-seed", type=int, default=0, help="seeds F..F+S-1 (to extend a run)"
    )
    parser.add_argument("--strategies", default="all")
    parser.add_argument("--selector-option", action="append", default=[])
    parser.add_argument("--workers", type=int, default=1, help="data sets simulated at once")
    parser.add_argument(
        "--priors",
        default="benchmarks/priors",
        help="where the LOO priors live (tracked; trained when missing)",
    )
    parser.add_argument("--episodes", default=None, help="episode cache for training priors")
    parser.add_argument("--out", default="results/loo")
    parser.add_argument("--summary-only", action="store_true", help="summarise existing runs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    ratios = [float(r) for r in args.imbalance.split(",") if r.strip()]
    root = Path(args.out) / args.budget
    jobs = []
    for dataset in datasets:
        for ratio in ratios:
            if len(load_raw(dataset, 0, ratio)[1].pool_labels) < budget_labels(args.budget):
                print(f"{set_name(dataset, ratio)}: pool too small for the {args.budget} budget; skipped",
                      file=sys.stderr)  # fmt: skip
                continue
            jobs.append((dataset, ratio))
    if not args.summary_only:
        priors = {d: ensure_prior(Path(args.priors), d, args.episodes) for d in datasets}
        with ThreadPoolExecutor(max(1, args.workers)) as pool:
            futures = [
                pool.submit(run_set, args, d, r, priors[d], root / set_name(d, r)) for d, r in jobs
            ]
            for future in futures:
                print(f"done: {future.result()}", file=sys.stderr, flush=True)
    if args.summary_only:  # the sets that were run; say which are missing
        missing = [
            set_name(d, r) for d, r in jobs if not (root / set_name(d, r) / "rounds.csv").is_file()
        ]
        if missing:
            print(f"not run (no rounds.csv): {', '.join(missing)}", file=sys.stderr)
        jobs = [(d, r) for d, r in jobs if set_name(d, r) not in missing]
    reports = [summarise_set(root / set_name(d, r), set_name(d, r)) for d, r in jobs]
    (root / "summary.json").write_text(json.dumps(reports, indent=1))
    (root / "summary.md").write_text(markdown(args.budget, reports))
    plot_policy(reports, root / "policy.png")
    print(markdown(args.budget, reports))
    print(json.dumps(reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
