"""Issue 24's judgement from leave-one-out runs: per set, mean AUBC of each selector and AutoAL
minus each, paired over seeds (mean, standard error, wins, t); accuracy AUBC on the balanced
sets, macro-F1 AUBC on the long-tailed ones (-lt in the name); and the labels each selector's
mean accuracy curve needs to reach random order's at the end of the budget.

    PYTHONPATH=. python docs/experiments/2026-12-05-judge-table.py results/loo-new/small \
        --extra old=results/loo-old/small:autoal --extra random=results/random/small:random

A run's rows come from ROOT/<set>/rounds.csv, pooled over every ROOT given (runs of other
seeds); ``--extra NAME=ROOT:STRATEGY`` adds STRATEGY's rows of another run as NAME (the same
seeds, another prior or a baseline run apart).
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

from benchmarks.loo import paired
from benchmarks.simulate import RunResult, aubc_per_seed, labels_to_match_random


def rows(path: Path, strategy: str | None = None, name: str | None = None) -> list[dict]:
    out = []
    for r in csv.DictReader(path.open()):
        if strategy is None or r["strategy"] == strategy:
            out.append(r | ({"strategy": name} if name else {}))
    return out


def per_seed(data: list[dict], metric: str) -> dict[str, dict[int, float]]:
    points = [(r["strategy"], int(r["seed"]), int(r["labeled"]), float(r[metric])) for r in data]
    return aubc_per_seed(points)


def paired_text(a: dict[int, float], b: dict[int, float]) -> str:
    """a - b over common seeds: mean (paired standard error; wins/seeds; t)."""
    p = paired(a, b)
    se = p["std"] / math.sqrt(p["seeds"])
    return f"{p['mean']:+.4f} ({se:.4f}; {p['wins']}/{p['seeds']}; t {p['t']:+.1f})"


def to_match(data: list[dict]) -> dict[str, float | None]:
    runs: dict[str, list[RunResult]] = {}
    by_key: dict[tuple[str, int], RunResult] = {}
    for r in sorted(data, key=lambda r: (r["strategy"], int(r["seed"]), int(r["labeled"]))):
        key = (r["strategy"], int(r["seed"]))
        if key not in by_key:
            by_key[key] = RunResult(r["strategy"], int(r["seed"]))
            runs.setdefault(r["strategy"], []).append(by_key[key])
        by_key[key].labeled.append(int(r["labeled"]))
        by_key[key].accuracy.append(float(r["accuracy"]))
    return labels_to_match_random(runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "roots", type=Path, nargs="+", help="runs whose rows are pooled (other seeds)"
    )
    parser.add_argument("--extra", action="append", default=[])
    args = parser.parse_args()
    sets = sorted(p.name for p in args.roots[0].iterdir() if (p / "rounds.csv").is_file())
    for name in sets:
        data = [r for root in args.roots if (root / name / "rounds.csv").is_file()
                for r in rows(root / name / "rounds.csv")]  # fmt: skip
        for spec in args.extra:
            label, where = spec.split("=", 1)
            root, strategy = where.rsplit(":", 1)
            path = Path(root) / name / "rounds.csv"
            if path.is_file():
                data += rows(path, strategy, label)
        metric = "macro_f1" if "-lt" in name else "accuracy"
        curves = per_seed(data, metric)
        matched = to_match(data)
        print(f"\n{name} ({metric} AUBC)")
        for s in sorted(curves, key=lambda s: -sum(curves[s].values()) / len(curves[s])):
            mean = sum(curves[s].values()) / len(curves[s])
            versus = (
                ""
                if s == "autoal"
                else "  autoal - it: " + paired_text(curves["autoal"], curves[s])
            )
            n = matched.get(s)
            reach = (
                ""
                if not matched
                else f"  labels to match random: {n if n is not None else 'never'}"
            )
            print(f"  {s:10s} {mean:.4f}{versus}{reach}")


if __name__ == "__main__":
    main()
