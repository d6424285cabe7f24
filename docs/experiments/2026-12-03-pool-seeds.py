"""Pool the 20-1,020-label leave-one-out runs of 2026-12-02 (seeds 0-9, MNIST 0-4) with this
session's seeds (10-19; MNIST 5-19), for docs/benchmarks.md ("20-1,020 labels, 20 seeds").

The earlier runs' per-seed rows were not kept (results/ is not tracked), so their side enters
as the group figures docs/notebook.md recorded: each selector's mean AUBC and, for AutoAL
minus each baseline, the paired mean, standard deviation (ddof 1) and wins. Pooling two groups
of paired differences exactly: n = n1 + n2, mean = (n1 m1 + n2 m2) / n, and
var = ((n1 - 1) s1^2 + (n2 - 1) s2^2 + n1 (m1 - m)^2 + n2 (m2 - m)^2) / (n - 1). The recorded
figures are rounded to 4 decimals, so pooled means and stds are good to about 1e-4.

    PYTHONPATH=. .venv/bin/python docs/experiments/2026-12-03-pool-seeds.py \\
        mnist=results/loo-mnist-large-5to9/large/mnist/rounds.csv,results/loo20-large-b/large/mnist/rounds.csv \\
        digits=results/loo20-large-b/large/digits/rounds.csv ...
"""

import sys
from pathlib import Path

import numpy as np

from benchmarks.loo import final_values, per_seed_aubc

SELECTORS = ("autoal", "uniform", "schedule", "albl", "random", "margin", "badge")
# docs/notebook.md, "20-1,020 labels (batches of 50), 10 seeds (MNIST 5)": seeds, mean AUBC per
# selector, and AutoAL minus each as (mean, std, wins); "best" is that run's best single strategy.
OLD = {
    "digits": (10, (0.9390, 0.9383, 0.9390, 0.9351, 0.9245, 0.9382, 0.9390),
               {"uniform": (0.0007, 0.0029, 6), "schedule": (-0.0000, 0.0016, 6), "albl": (0.0039, 0.0043, 8),
                "random": (0.0145, 0.0039, 10), "badge": (-0.0000, 0.0033, 3)}),
    "mnist": (5, (0.8370, 0.8335, 0.8360, 0.8212, 0.8106, 0.8349, 0.8369),
              {"uniform": (0.0036, 0.0031, 4), "schedule": (0.0010, 0.0041, 4), "albl": (0.0158, 0.0124, 5),
               "random": (0.0265, 0.0048, 5), "badge": (0.0001, 0.0032, 2)}),
    "mnist-lt10": (10, (0.8799, 0.8774, 0.8760, 0.8663, 0.8561, 0.8767, 0.8785),
                   {"uniform": (0.0025, 0.0037, 8), "schedule": (0.0039, 0.0032, 8), "albl": (0.0136, 0.0045, 10),
                    "random": (0.0238, 0.0073, 10), "badge": (0.0014, 0.0035, 5)}),
    "bbc": (10, (0.9570, 0.9556, 0.9555, 0.9549, 0.9494, 0.9565, 0.9553),
            {"uniform": (0.0014, 0.0019, 8), "schedule": (0.0015, 0.0011, 10), "albl": (0.0021, 0.0017, 8),
             "random": (0.0076, 0.0036, 10), "margin": (0.0005, 0.0017, 7)}),
    # Rotten's best single was least confidence, which equals margin on two classes (same AUBC).
    "rotten": (10, (0.6929, 0.6969, 0.6959, 0.6849, 0.6808, 0.6959, 0.6946),
               {"uniform": (-0.0040, 0.0093, 3), "schedule": (-0.0030, 0.0114, 3), "albl": (0.0080, 0.0080, 8),
                "random": (0.0121, 0.0121, 9), "margin": (-0.0030, 0.0114, 3)}),
    "rotten-lt10": (10, (0.8290, 0.8276, 0.8302, 0.8306, 0.8167, 0.8302, 0.8314),
                    {"uniform": (0.0014, 0.0061, 6), "schedule": (-0.0012, 0.0044, 4), "albl": (-0.0016, 0.0059, 3),
                     "random": (0.0123, 0.0064, 10), "badge": (-0.0024, 0.0047, 2)}),
}  # fmt: skip


def pooled(n1: int, m1: float, s1: float, d2: np.ndarray) -> tuple[int, float, float]:
    n2, m2, s2 = d2.size, float(d2.mean()), float(d2.std(ddof=1))
    n = n1 + n2
    m = (n1 * m1 + n2 * m2) / n
    var = ((n1 - 1) * s1**2 + (n2 - 1) * s2**2 + n1 * (m1 - m) ** 2 + n2 * (m2 - m) ** 2) / (n - 1)
    return n, m, var**0.5


def merged(paths: list[str], metric: str, final: bool = False) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for path in paths:
        values = final_values(Path(path), metric) if final else per_seed_aubc(Path(path), metric)
        for strategy, seeds in values.items():
            out.setdefault(strategy, {}).update(seeds)
    return out


def main(args: list[str]) -> None:
    for arg in args:
        name, paths = arg.split("=", 1)
        n_old, old_means, old_minus = OLD[name]
        new = merged(paths.split(","), "accuracy")
        seeds = sorted(new["autoal"])
        n_new = len(seeds)
        print(f"## {name}: {n_old} earlier seeds + {n_new} new ({seeds[0]}-{seeds[-1]})")
        means = {}
        for s, old in zip(SELECTORS, old_means, strict=True):
            new_mean = float(np.mean([new[s][k] for k in seeds]))
            means[s] = (n_old * old + n_new * new_mean) / (n_old + n_new)
            print(f"  {s:9s} AUBC new seeds {new_mean:.4f}  pooled {means[s]:.4f}")
        best = max(("margin", "badge"), key=lambda s: means[s])
        print(f"  best single over all seeds: {best}")
        for other, (m1, s1, w1) in old_minus.items():
            d = np.array([new["autoal"][k] - new[other][k] for k in seeds])
            n, m, sd = pooled(n_old, m1, s1, d)
            wins = w1 + int((d > 0).sum())
            print(
                f"  autoal - {other:8s} new {d.mean():+.4f} ({d.std(ddof=1):.4f}; {int((d > 0).sum())}/{n_new})"
                f"  pooled {m:+.4f} ({sd:.4f}; {wins}/{n}; t {m / (sd / n**0.5):+.1f})"
            )
        f1 = merged(paths.split(","), "macro_f1")
        recall = merged(paths.split(","), "minority_recall", final=True)
        cells = "  ".join(
            f"{s} {np.mean([f1[s][k] for k in seeds]):.3f}/{np.mean([recall[s][k] for k in seeds]):.3f}"
            for s in SELECTORS
        )
        print(f"  new seeds' macro-F1 AUBC / final minority recall: {cells}")


if __name__ == "__main__":
    main(sys.argv[1:])
