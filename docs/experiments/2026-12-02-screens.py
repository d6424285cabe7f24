"""Experiment (not maintained; runs on commit 73f7057): two screens after the leave-one-out
update of 2026-12-02, recorded in docs/notebook.md ("Screens").

``binary-npz PATH``: writes a binary task derived from MNIST (4,000 train-split images, class
"0-4" against "5-9", seed 7) as a .npz that ``benchmarks.simulate --dataset PATH`` reads; the
MNIST family is what a leave-Rotten-out prior trains on, so this asks whether a binary task of
another family shows the Rotten pattern (uncertainty above the uniform mixture at 20-1,020).

``majority``: the task model's test accuracy from random labeled sets (5 seeds) on long-tailed
and balanced sets against the majority-class rate, plain and with the log of the labeled class
counts (+1) added to its logits.

    PYTHONPATH=. .venv/bin/python docs/experiments/2026-12-02-screens.py binary-npz /tmp/mnist-binary.npz
    .venv/bin/python -m benchmarks.simulate --dataset /tmp/mnist-binary.npz --encoder pixels \\
        --strategies uniform,least_confidence,badge,schedule,kmeans --initial 20 --batch 50 \\
        --rounds 20 --seeds 5 --out results/screen-binary --no-progress
    PYTHONPATH=. .venv/bin/python docs/experiments/2026-12-02-screens.py majority
"""

import gzip
import pickle
import sys

import numpy as np
import torch

from benchmarks.datasets import load_dataset, package_dir
from benchmarks.simulate import standardise_pair
from model.task_model import TaskModel


def binary_npz(path: str) -> None:
    with gzip.open(package_dir("mnist") / "data" / "mnist.pkl.gz", "rb") as handle:
        train, _validation, _test = pickle.load(handle, encoding="latin1")
    index = np.sort(np.random.default_rng(7).choice(len(train[1]), 4000, replace=False))
    images = np.rint(train[0][index] * 255).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)
    labels = (train[1][index] >= 5).astype(np.int64)
    np.savez(path, images=images, labels=labels, class_names=np.array(["0-4", "5-9"]))


def majority() -> None:
    for name, ratio in [("rotten", 10.0), ("rotten", 1.0), ("digits", 10.0), ("bbc", 10.0)]:
        data = load_dataset(name, 0, imbalance=ratio, progress=False)
        x, test = standardise_pair(data.pool_embeddings, data.test_embeddings)
        y, ty = data.pool_labels, data.test_labels
        c = int(y.max()) + 1
        rate = float((ty == torch.bincount(ty).argmax()).float().mean())
        for n in (20, 120, 220, 1020):
            if n > len(y):
                continue
            plain, adjusted = [], []
            for seed in range(5):
                idx = torch.from_numpy(np.random.default_rng(seed).choice(len(y), n, replace=False))
                targets = torch.nn.functional.one_hot(y[idx], c).float()
                logits = TaskModel.fit(x[idx], targets, seed=seed).logits(test)
                counts = torch.bincount(y[idx], minlength=c).float() + 1
                plain.append(float((logits.argmax(1) == ty).float().mean()))
                adjusted.append(float(((logits + counts.log()).argmax(1) == ty).float().mean()))
            print(f"{name}-lt{ratio:g} n={n}: majority {rate:.3f}  model {np.mean(plain):.3f}  "
                  f"+log prior {np.mean(adjusted):.3f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    if sys.argv[1] == "binary-npz":
        binary_npz(sys.argv[2])
    else:
        majority()
