"""One row per ``meta_train --validate`` run: each held-out family's true gain over the uniform
mixture per recorded round (its standard error; rounds that left the mixture / rounds), and
the families' mean.

    PYTHONPATH=. python docs/experiments/2026-12-05-validate-table.py results/choices-validate/*.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def row(path: Path) -> str:
    summary = json.loads(path.read_text().strip().splitlines()[-1])
    report = summary["validation"]
    cells, gains = [], []
    for family in sorted(report):
        r = report[family]
        left = sum(c for action, c in r["actions_chosen"].items() if action != "uniform")
        extra = sum(c for action, c in r["actions_chosen"].items() if action == "only typiclust")
        gains.append(r["prior_gain_over_uniform"])
        cells.append(
            f"{r['prior_gain_over_uniform']:+.4f} ({r['standard_error']:.4f}) "
            f"{left}/{r['rounds']}" + (f", TypiClust {extra}" if extra else "")
        )
    mean = sum(gains) / len(gains)
    return f"| {path.stem} | " + " | ".join(cells) + f" | {mean:+.4f} |"


def main(paths: list[str]) -> None:
    first = json.loads(Path(paths[0]).read_text().strip().splitlines()[-1])["validation"]
    print("| prior | " + " | ".join(sorted(first)) + " | mean |")
    print("|---|" + "---|" * (len(first) + 1))
    for p in paths:
        print(row(Path(p)))
    best = json.loads(Path(paths[0]).read_text().strip().splitlines()[-1])["validation"]
    print()
    print("best single action in hindsight per family: " + ", ".join(
        f"{f} {r['best_single_action']} {r['best_single_action_gain_over_uniform']:+.4f}"
        for f, r in sorted(best.items())))  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
