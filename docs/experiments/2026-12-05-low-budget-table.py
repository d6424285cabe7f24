"""The TypiClust / ProbCover table of docs/benchmarks.md from the harness's ``rounds.csv`` files:
AUBC per strategy (accuracy on balanced sets, macro-F1 on long-tailed ones, the judged metrics of
issue 24), and paired per-seed differences against k-means, random order and the uniform mixture.

    PYTHONPATH=. python docs/experiments/2026-12-05-low-budget-table.py results/lowbudget/small
"""

import csv
import statistics
import sys
from pathlib import Path

from benchmarks.simulate import aubc_per_seed, paired_text

NEW = ("typiclust", "probcover")
AGAINST = ("kmeans", "random", "uniform")


def per_seed(path: Path, metric: str) -> dict[str, dict[int, float]]:
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    return aubc_per_seed(
        (r["strategy"], int(r["seed"]), int(r["labeled"]), float(r[metric])) for r in rows
    )


def main(root: str) -> None:
    header = (
        "| set | metric | "
        + " | ".join(f"{n} - {o}" for n in NEW for o in AGAINST)
        + " | AUBC: "
        + ", ".join(("typiclust", "probcover", "kmeans", "random", "uniform", "best"))
        + " |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for directory in sorted(Path(root).iterdir()):
        path = directory / "rounds.csv"
        if not path.is_file():
            continue
        metric = "macro_f1" if "-lt" in directory.name else "accuracy"
        scores = per_seed(path, metric)
        cells = [paired_text(scores[n], scores[o]) for n in NEW for o in AGAINST]
        means = {n: statistics.mean(s.values()) for n, s in scores.items()}
        best = max(means, key=means.get)
        shown = ", ".join(
            f"{means[n]:.3f}" for n in ("typiclust", "probcover", "kmeans", "random", "uniform")
        )
        print(
            f"| {directory.name} | {metric} | "
            + " | ".join(cells)
            + f" | {shown}, {best} {means[best]:.3f} |"
        )


if __name__ == "__main__":
    main(sys.argv[1])
