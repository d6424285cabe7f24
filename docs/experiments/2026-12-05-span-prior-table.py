"""The span prior's results in docs/spans.md, from the harness's ``rounds.jsonl`` files: per-seed
span-F1 AUBC of every strategy, and the paired per-seed differences of one run (``--name``,
renamed from ``autoal`` in the files given with ``--judged``) against random order, the uniform
mixture, the previous AutoAL and the best single strategy, on the seeds both hold.

    python docs/experiments/2026-12-05-span-prior-table.py \\
        --runs results/spans/wnut16-singles results/spans/wnut16-mixtures results/spans/wnut16-extra-seeds \\
        --judged results/spans/wnut16-span-prior
"""

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from benchmarks.simulate import aubc_per_seed, paired_text


def per_seed(directory: str, rename: str | None = None) -> dict[str, dict[int, float]]:
    rows = [
        json.loads(line) for line in (Path(directory) / "rounds.jsonl").read_text().splitlines()
    ]
    return aubc_per_seed(
        (
            rename if rename and r["strategy"] == "autoal" else r["strategy"],
            r["seed"],
            r["labeled"],
            r["span_f1"],
        )
        for r in rows
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", nargs="+", required=True)
    parser.add_argument("--judged", nargs="+", required=True)
    parser.add_argument("--name", default="autoal-span-prior")
    args = parser.parse_args()
    scores: dict[str, dict[int, float]] = defaultdict(dict)
    for directory in args.runs:
        for name, seeds in per_seed(directory).items():
            scores[name].update(seeds)
    for directory in args.judged:
        for name, seeds in per_seed(directory, args.name).items():
            scores[name].update(seeds)
    print("| strategy | seeds | AUBC span-F1 | per seed |\n|---|---|---|---|")
    for name in sorted(scores, key=lambda n: -statistics.mean(scores[n].values())):
        seeds = scores[name]
        print(f"| {name} | {len(seeds)} | {statistics.mean(seeds.values()):.4f} | "
              + ", ".join(f"{seeds[s]:.3f}" for s in sorted(seeds)) + " |")  # fmt: skip
    judged = scores[args.name]
    singles = [
        n for n in scores if n not in (args.name, "autoal", "uniform", "albl", "tailor", "schedule")
    ]
    first = sorted(s for s in judged if all(s in scores[n] for n in singles))
    best = max(singles, key=lambda n: statistics.mean(scores[n][s] for s in first))
    print()
    for other in ("random", "uniform", "autoal", best):
        print(f"{args.name} - {other}: {paired_text(judged, scores[other])}")


if __name__ == "__main__":
    main()
