"""Experiment (not maintained; runs on commit 8aeebb0, the only one whose head has ``l2``):
the task head with and without a Gaussian prior on its weights (``TaskModelConfig.l2``),
trained on random labeled sets, against the majority-class rate. Recorded in
docs/notebook.md ("The task head with a prior on its weights").

For every packaged set, balanced and long-tailed 10:1, at 20 / 60 / 120 / 220 / 520 / 1,020
random labels (5 seeds): test accuracy and macro-F1 of the head with ``l2=0`` (the head before
the change, Adam's 1e-4 decay only) and with the default ``l2``.

    PYTHONPATH=. .venv/bin/python docs/experiments/2026-12-02-task-head.py digits,mnist,bbc,rotten
"""

import sys

import numpy as np
import torch
from torch.nn import functional as F

from benchmarks.datasets import load_dataset
from benchmarks.simulate import held_out_metrics, minority_class, standardise_pair
from model.task_model import TaskModel, TaskModelConfig


def main(names: list[str]) -> None:
    heads = {"no prior": TaskModelConfig(l2=0.0), "prior": TaskModelConfig()}
    for name in names:
        for ratio in (1.0, 10.0):
            data = load_dataset(name, 0, imbalance=ratio, progress=False)
            x, test = standardise_pair(data.pool_embeddings, data.test_embeddings)
            y, ty = data.pool_labels, data.test_labels
            c = int(y.max()) + 1
            majority = float((ty == torch.bincount(ty).argmax()).float().mean())
            rare = minority_class(y, c)
            for n in (20, 60, 120, 220, 520, 1020):
                if n > len(y):
                    continue
                row = {k: ([], []) for k in heads}
                for seed in range(5):
                    idx = torch.from_numpy(
                        np.random.default_rng(seed).choice(len(y), n, replace=False)
                    )
                    targets = F.one_hot(y[idx], c).float()
                    for key, config in heads.items():
                        model = TaskModel.fit(x[idx], targets, config=config, seed=seed)
                        metrics = held_out_metrics(model, test, ty, c, rare)
                        row[key][0].append(metrics.accuracy)
                        row[key][1].append(metrics.macro_f1)
                cells = "  ".join(
                    f"{k} {np.mean(a):.3f} / {np.mean(f):.3f}" for k, (a, f) in row.items()
                )
                print(
                    f"{name}-lt{ratio:g} n={n}: majority {majority:.3f}  accuracy / macro-F1: {cells}",
                    flush=True,
                )


if __name__ == "__main__":
    main(sys.argv[1].split(","))
