"""The accuracy-figure table of docs/benchmarks.md from the harness's per-round CSVs: per data
set and audit policy, how many rounds showed a figure, from which round, its mean absolute
error, bias and band coverage against the round model's true accuracy on the unlabeled items,
and the AUBC cost of the audits (paired per seed against the same seeds without audits).

    python docs/experiments/2026-12-05-estimate-table.py results/estimate-final

expects ``<root>/<policy>/<set>/rounds.csv`` for policies ``none``, ``u25`` (.05 / .25) and
``u50`` (.1 / .5), as the loop in docs/benchmarks.md writes them.
"""

import csv
import math
import statistics
import sys
from pathlib import Path

SETS = ("digits", "digits-lt10", "bbc", "bbc-lt10", "mnist", "mnist-lt10", "rotten", "rotten-lt10")
POLICIES = {"u25": ".05 / .25 (default)", "u50": ".1 / .5"}


def rows(root: Path, policy: str, name: str) -> list[dict]:
    with open(root / policy / name / "rounds.csv") as handle:
        return list(csv.DictReader(handle))


def aubc(table: list[dict]) -> dict[int, float]:
    """{seed: trapezoid of test accuracy over the labeled counts / the label range}."""
    curves: dict[int, list[tuple[int, float]]] = {}
    for r in table:
        curves.setdefault(int(r["seed"]), []).append((int(r["labeled"]), float(r["accuracy"])))
    out = {}
    for seed, points in curves.items():
        points.sort()
        x, y = [p[0] for p in points], [p[1] for p in points]
        area = sum((x[i + 1] - x[i]) * (y[i] + y[i + 1]) / 2 for i in range(len(x) - 1))
        out[seed] = area / (x[-1] - x[0])
    return out


def main(root: Path) -> None:
    print(
        "| set | audit share (steady / until trusted) | rounds showing a figure | first shown "
        "(median round; seeds) | mean abs. error | bias | band coverage | AUBC cost (paired) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in SETS:
        base = aubc(rows(root, "none", name))
        for policy, label in POLICIES.items():
            table = rows(root, policy, name)
            shown = [r for r in table if r["estimate_shown"] == "True"]
            seeds = sorted({r["seed"] for r in table})
            firsts = [min(int(r["round"]) for r in shown if r["seed"] == s)
                      for s in seeds if any(r["seed"] == s for r in shown)]  # fmt: skip
            first = (
                f"{statistics.median(firsts):.0f} ({len(firsts)}/{len(seeds)})"
                if firsts
                else "never"
            )
            if shown:
                errors = [float(r["estimate"]) - float(r["unlabeled_accuracy"]) for r in shown]
                inside = [float(r["estimate_low"]) <= float(r["unlabeled_accuracy"])
                          <= float(r["estimate_high"]) for r in shown]  # fmt: skip
                figures = (f"{statistics.mean(abs(e) for e in errors):.3f} | "
                           f"{statistics.mean(errors):+.3f} | {sum(inside) / len(inside):.0%}")  # fmt: skip
            else:
                figures = "- | - | -"
            gain = aubc(table)
            diffs = [gain[s] - base[s] for s in gain]
            se = statistics.stdev(diffs) / math.sqrt(len(diffs))
            print(
                f"| {name} | {label} | {len(shown)} / {len(table)} | {first} | {figures} | "
                f"{statistics.mean(diffs):+.4f} ± {se:.4f} |"
            )


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "results/estimate-final"))
