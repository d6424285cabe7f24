"""Paired per-seed AUBC differences between runs of the same selector under different options
(issue 24's portfolio screen: the uniform mixture with TypiClust in k-means' place, or added).

    PYTHONPATH=. python docs/experiments/2026-12-05-portfolio-screen.py results/screen base swap add

Reads ROOT/<variant>/<set>/rounds.csv for every set the first variant has; accuracy AUBC on
the balanced sets, macro-F1 AUBC on the long-tailed ones (issue 24's judged metrics), each
variant minus the first: mean (paired standard error; wins/seeds; t).
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

from benchmarks.loo import paired
from benchmarks.simulate import aubc_per_seed


def per_seed(path: Path, metric: str) -> dict[int, float]:
    rows = list(csv.DictReader(path.open()))
    points = [(r["strategy"], int(r["seed"]), int(r["labeled"]), float(r[metric])) for r in rows]
    (curves,) = aubc_per_seed(points).values()
    return curves


def paired_text(a: dict[int, float], b: dict[int, float]) -> str:
    """a - b over common seeds: mean (paired standard error; wins/seeds; t)."""
    p = paired(a, b)
    se = p["std"] / math.sqrt(p["seeds"])
    return f"{p['mean']:+.4f} ({se:.4f}; {p['wins']}/{p['seeds']}; t {p['t']:+.1f})"


def main(root: Path, variants: list[str]) -> None:
    base = variants[0]
    sets = sorted(p.name for p in (root / base).iterdir() if (p / "rounds.csv").exists())
    print(f"| set | metric | {base} | " + " | ".join(f"{v} - {base}" for v in variants[1:]) + " |")
    print("|---|---|---|" + "---|" * (len(variants) - 1))
    for name in sets:
        metric = "macro_f1" if "-lt" in name else "accuracy"
        first = per_seed(root / base / name / "rounds.csv", metric)
        cells = []
        for v in variants[1:]:
            path = root / v / name / "rounds.csv"
            if not path.exists():
                cells.append("-")
                continue
            other = per_seed(path, metric)
            cells.append(paired_text(other, first))
        mean_base = sum(first.values()) / len(first)
        print(f"| {name} | {metric} | {mean_base:.4f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
