"""The box results table of docs/boxes.md from the harness's JSON summaries (the last line of
each run's log): AUBC of mAP@.5 per strategy (mean and per seed), and AutoAL's paired per-seed
differences against random order, the uniform mixture and the best single strategy.

    python docs/experiments/2026-12-05-boxes-table.py results/boxes/boxes-shapes.log \
        results/boxes/boxes-shapes-v2.log ...
"""

import json
import statistics
import sys


def summary(path: str) -> dict:
    with open(path) as handle:
        return json.loads(handle.read().strip().splitlines()[-1])


def paired(a: list[float], b: list[float]) -> str:
    d = [x - y for x, y in zip(a, b, strict=True)]
    mean = statistics.mean(d)
    se = statistics.stdev(d) / len(d) ** 0.5 if len(d) > 1 else float("nan")
    return f"{mean:+.3f} (t {mean / se:+.1f})" if se > 0 else f"{mean:+.3f}"


def main(paths: list[str]) -> None:
    merged: dict[str, dict] = {}
    for path in paths:
        report = summary(path)
        entry = merged.setdefault(report["dataset"], {"aubc": {}, "boxes": {}, "matched": {}})
        for name, seeds in report["aubc_per_seed"].items():
            entry["aubc"][name] = seeds  # a later file (the v2 portfolio) overrides
            entry["boxes"][name] = report["boxes_labeled"][name]["mean"]
            entry["matched"][name] = (report.get("labels_to_match_random") or {}).get(name)
    for dataset, entry in merged.items():
        aubc = entry["aubc"]
        print(
            f"\n{dataset}\n\n| strategy | AUBC mAP@.5 | per seed | boxes labeled | images to reach random's mAP@220 |"
        )
        print("|---|---|---|---|---|")
        for name in sorted(aubc, key=lambda n: -statistics.mean(aubc[n])):
            seeds = aubc[name]
            matched = entry["matched"].get(name)
            print(
                f"| {name} | {statistics.mean(seeds):.3f} | {', '.join(f'{s:.3f}' for s in seeds)} "
                f"| {entry['boxes'][name]:.0f} | {'not reached' if matched is None else f'{matched:.0f}'} |"
            )
        singles = [n for n in aubc if n not in ("autoal", "uniform")]
        best = max(singles, key=lambda n: statistics.mean(aubc[n]))
        auto = aubc["autoal"]
        print(
            f"\nAutoAL - random {paired(auto, aubc['random'])}; - uniform {paired(auto, aubc['uniform'])}; "
            f"- best single ({best}) {paired(auto, aubc[best])}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
