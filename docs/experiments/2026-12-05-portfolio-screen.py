"""Paired per-seed AUBC differences between runs of the same selector under different options
(issue 24's portfolio screen: the uniform mixture with TypiClust in k-means' place, or added).

    PYTHONPATH=. python docs/experiments/2026-12-05-portfolio-screen.py results/screen base swap add

Reads ROOT/<variant>/<set>/rounds.csv for every set the first variant has; accuracy AUBC on
the balanced sets, macro-F1 AUBC on the long-tailed ones (issue 24's judged metrics), each
variant minus the first: mean (paired standard error; wins/seeds; t).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from benchmarks.loo import paired, per_seed_aubc


def only(curves: dict[str, dict[int, float]]) -> dict[int, float]:
    """The per-seed AUBCs of a run of one selector."""
    (seeds,) = curves.values()
    return seeds


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
        first = only(per_seed_aubc(root / base / name / "rounds.csv", metric))
        cells = []
        for v in variants[1:]:
            path = root / v / name / "rounds.csv"
            if not path.exists():
                cells.append("-")
                continue
            other = only(per_seed_aubc(path, metric))
            cells.append(paired_text(other, first))
        mean_base = sum(first.values()) / len(first)
        print(f"| {name} | {metric} | {mean_base:.4f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
