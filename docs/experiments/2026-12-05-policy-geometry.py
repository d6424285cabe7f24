"""What the leave-one-out prior chose, against labels per class and the geometry features it
does not read (issue 24 asks what the features taught the policy): one point per AutoAL round of
the 20-220 runs, coloured by the action.

    PYTHONPATH=. python docs/experiments/2026-12-05-policy-geometry.py results/loo-new/small \
        docs/benchmarks/policy-geometry.png
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PANELS = ("knn_label_lift", "cluster_tightness", "uncovered_mass", "knn_head_agreement")


def rounds(root: Path) -> list[dict]:
    out = []
    for path in sorted(root.glob("*/selections.jsonl")):
        for line in path.open():
            row = json.loads(line)
            info = row.get("info", {})
            if row.get("strategy") == "autoal" and "state" in info:
                out.append(
                    {"set": path.parent.name, "action": info["prior_action"], **info["state"]}
                )
    return out


def main(root: Path, out: Path) -> None:
    data = rounds(root)
    actions = sorted({r["action"] for r in data}, key=lambda a: (a != "uniform", a))
    colours = dict(zip(actions, ("tab:grey", "tab:red", "tab:blue", "tab:green"), strict=False))
    figure, axes = plt.subplots(1, len(PANELS), figsize=(14, 3.6), sharex=True)
    for ax, feature in zip(axes, PANELS, strict=True):
        for action in actions:
            points = [r for r in data if r["action"] == action]
            ax.scatter([math.expm1(r["log_labels_per_class"]) for r in points],
                       [r[feature] for r in points], s=6, alpha=0.5, c=colours[action],
                       label=f"{action} ({len(points)})")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("labels per class")
        ax.set_title(feature, fontsize=10)
    axes[0].legend(fontsize=8, loc="best")
    figure.suptitle(
        "The leave-one-out prior's action in each round (8 sets, 10 seeds, 20-220 labels)"
    )
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    counts = {}
    for r in data:
        bucket = "<5" if math.expm1(r["log_labels_per_class"]) < 5 else ">=5"
        counts.setdefault(bucket, {}).setdefault(r["action"], 0)
        counts[bucket][r["action"]] += 1
    print(json.dumps(counts))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
