"""What random-within-window serving costs: Label Studio Enterprise serves a project with
members a random task among those holding a current prediction (the pushed window), not the
first one.

    python -m benchmarks.window --datasets digits,bbc,rotten --windows 10,30,100 --seeds 5

For each data set, ``benchmarks.simulate`` runs top-first serving and then ``--serve-window W``
for each window, with the same strategies, budget (20 + 10 x 20) and seeds, so each window's
AUBC is paired per seed with top-first's. ``autoal`` gets the prior trained without the data
set's family (``benchmarks/priors/loo-<set>.json``, made by ``benchmarks.meta_train --exclude``
when missing). Writes ``--out/summary.json`` and ``summary.md``; the last line printed is the
JSON summary.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from benchmarks.loo import ensure_prior, paired, per_seed_aubc


def run(args: argparse.Namespace, dataset: str, window: int | None, prior: Path, out: Path) -> Path:
    command = [
        sys.executable, "-m", "benchmarks.simulate", "--dataset", dataset,
        "--strategies", args.strategies, "--initial", "20", "--batch", "20", "--rounds", "10",
        "--seeds", str(args.seeds), "--out", str(out), "--no-progress",
        "--selector-option", f"autoal.prior={prior}",
    ]  # fmt: skip
    if window is not None:
        command += ["--serve-window", str(window)]
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".log"), "w") as log:
        subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT)
    return out / "rounds.csv"


def compare(
    name: str, top: dict[str, dict[int, float]], by_window: dict[int, dict[str, dict[int, float]]]
) -> dict:
    """One data set's report: per strategy, top-first mean AUBC and each window's paired
    difference from it."""
    strategies = {}
    for strategy, seeds in top.items():
        strategies[strategy] = {
            "top": round(sum(seeds.values()) / len(seeds), 4),
            "window_minus_top": {
                str(w): paired(runs[strategy], seeds) for w, runs in by_window.items()
            },
        }
    return {"set": name, "windows": list(by_window), "strategies": strategies}


def markdown(reports: list[dict]) -> str:
    lines = ["# Random-within-window serving against top-first", "",
             "AUBC with window W minus top-first AUBC, paired over seeds: mean (std; seeds where "
             "the window did better / seeds).", "",
             "| data set | strategy | top-first AUBC | " + " | ".join(f"W={w}" for w in reports[0]["windows"]) + " |",
             "|---|---|---|" + "---|" * len(reports[0]["windows"])]  # fmt: skip
    for report in reports:
        for strategy, row in report["strategies"].items():
            cells = [
                f"{d['mean']:+.4f} ({d['std']:.4f}; {d['wins']}/{d['seeds']})"
                for d in row["window_minus_top"].values()
            ]
            lines.append(
                f"| {report['set']} | {strategy} | {row['top']:.4f} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.window", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--datasets", default="digits,bbc,rotten")
    parser.add_argument("--windows", default="10,30,100")
    parser.add_argument("--strategies", default="autoal,uniform,margin")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--priors", default="benchmarks/priors")
    parser.add_argument("--out", default="results/window")
    args = parser.parse_args(argv)
    windows = [int(w) for w in args.windows.split(",") if w.strip()]
    reports = []
    for dataset in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        prior = ensure_prior(Path(args.priors), dataset, None)
        root = Path(args.out) / dataset
        top = per_seed_aubc(run(args, dataset, None, prior, root / "top"))
        by_window = {
            w: per_seed_aubc(run(args, dataset, w, prior, root / f"w{w}")) for w in windows
        }
        reports.append(compare(dataset, top, by_window))
        print(f"done: {dataset}", file=sys.stderr, flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(reports, indent=1))
    (out / "summary.md").write_text(markdown(reports))
    print(markdown(reports))
    print(json.dumps(reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
