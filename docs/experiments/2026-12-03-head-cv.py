"""Experiment (screen, not maintained): the task head's weight prior with its strength chosen per
labeled set by k-fold cross-validation, against no prior and the fixed prior of 8aeebb0.
Recorded in docs/notebook.md ("The prior's strength chosen per project by cross-validation").

The fixed prior (mean loss + 0.5 * sum(W^2) / n) fixed long-tailed Rotten Tomatoes and cost
macro-F1 on six of eight sets. Here the strength is picked from the grid ``GRID`` by 3-fold
cross-validation on the labeled set alone (folds stratified by class), by held-out
log-likelihood (best, or the weakest within one paired standard error of the
best) or by held-out macro-F1, then refitted on all labels: the way a project could
pick it from its own labels. Trained on random labeled sets (5 seeds) of every packaged set,
balanced and long-tailed 10:1, at 20 / 60 / 120 / 220 labels. The penalty is applied here, on
the current code, so no commit has to be checked out.

    PYTHONPATH=. .venv/bin/python docs/experiments/2026-12-03-head-cv.py digits,mnist,bbc,rotten
"""

import sys

import numpy as np
import torch
from torch.nn import functional as F

from benchmarks.datasets import load_dataset
from benchmarks.simulate import held_out_metrics, minority_class, standardise_pair
from model.seeding import seeded
from model.task_model import DropoutMasks, TaskHead, TaskModel, TaskModelConfig, task_loss

GRID = (0.0, 0.05, 0.5, 5.0)
FOLDS = 3
CONFIG = TaskModelConfig()


def fit(x: torch.Tensor, targets: torch.Tensor, l2: float, seed: int) -> TaskModel:
    """``TaskModel.fit`` (linear head) plus ``l2 * sum(W^2) / n``; with l2 = 0 it is the same fit."""
    with seeded(seed):
        head = TaskHead(x.shape[1], targets.shape[1], CONFIG)
        optimiser = torch.optim.Adam(
            head.parameters(), lr=CONFIG.lr, weight_decay=CONFIG.weight_decay
        )
        masks = DropoutMasks(CONFIG.dropout, int(torch.randint(2**62, (1,))))
        head.train()
        for _ in range(CONFIG.steps):
            optimiser.zero_grad(set_to_none=True)
            loss = task_loss(head.out(masks.apply(x)), targets, False).mean()
            if l2 > 0:
                loss = loss + l2 * head.out.weight.square().sum() / x.shape[0]
            loss.backward()
            optimiser.step()
    return TaskModel(head, False, CONFIG)


def folds(labels: torch.Tensor, seed: int) -> np.ndarray:
    """[L] fold of each labeled item: each class's items shuffled and dealt round-robin."""
    rng = np.random.default_rng(seed)
    out = np.zeros(len(labels), dtype=int)
    start = 0
    for c in torch.unique(labels).tolist():
        members = rng.permutation(np.flatnonzero(labels.numpy() == c))
        out[members] = (start + np.arange(len(members))) % FOLDS
        start += len(members)
    return out


def cross_validated(x: torch.Tensor, y: torch.Tensor, c: int, seed: int) -> dict[str, float]:
    """Held-out log-likelihood and macro-F1 of each grid strength, 3 folds."""
    fold = folds(y, seed)
    scores, per_item = {}, {}
    for l2 in GRID:
        log_lik, predicted = torch.zeros(len(y)), torch.zeros(len(y), dtype=torch.long)
        for k in range(FOLDS):
            train, held = torch.from_numpy(fold != k), torch.from_numpy(fold == k)
            model = fit(x[train], F.one_hot(y[train], c).float(), l2, seed)
            probs = model.predict_proba(x[held])
            log_lik[held] = probs.gather(1, y[held].unsqueeze(1)).squeeze(1).clamp_min(1e-12).log()
            predicted[held] = probs.argmax(dim=1)
        f1 = []
        for cls in torch.unique(y).tolist():
            tp = float(((predicted == cls) & (y == cls)).sum())
            f1.append(2 * tp / float((predicted == cls).sum() + (y == cls).sum()))
        scores[f"ll {l2:g}"] = float(log_lik.mean())
        per_item[l2] = log_lik
        scores[f"f1 {l2:g}"] = float(np.mean(f1))
    # One-standard-error rule toward less regularisation: the weakest strength whose held-out
    # log-likelihood is within one paired standard error of the best one's.
    best = max(GRID, key=lambda s: scores[f"ll {s:g}"])
    for l2 in GRID:
        diff = per_item[l2] - per_item[best]
        if float(diff.mean()) >= -float(diff.std()) / len(diff) ** 0.5:
            scores["1se"] = l2
            break
    return scores


def main(names: list[str]) -> None:
    for name in names:
        for ratio in (1.0, 10.0):
            data = load_dataset(name, 0, imbalance=ratio, progress=False)
            x, test = standardise_pair(data.pool_embeddings, data.test_embeddings)
            y, ty = data.pool_labels, data.test_labels
            c = int(y.max()) + 1
            majority = float((ty == torch.bincount(ty).argmax()).float().mean())
            rare = minority_class(y, c)
            for n in (20, 60, 120, 220):
                rows: dict[str, list[tuple[float, float, float]]] = {}
                for seed in range(5):
                    idx = torch.from_numpy(
                        np.random.default_rng(seed).choice(len(y), n, replace=False)
                    )
                    scores = cross_validated(x[idx], y[idx], c, seed)
                    by_ll = max(GRID, key=lambda s: (scores[f"ll {s:g}"], -s))
                    by_f1 = max(GRID, key=lambda s: (scores[f"f1 {s:g}"], -s))
                    by_1se = scores["1se"]
                    chosen = {0.0, 0.5, by_ll, by_f1, by_1se}
                    fitted = {s: fit(x[idx], F.one_hot(y[idx], c).float(), s, seed) for s in chosen}
                    variants = (
                        ("none", 0.0),
                        ("fixed .5", 0.5),
                        ("cv-ll", by_ll),
                        ("cv-f1", by_f1),
                        ("cv-1se", by_1se),
                    )
                    for key, s in variants:
                        m = held_out_metrics(fitted[s], test, ty, c, rare)
                        rows.setdefault(key, []).append((m.accuracy, m.macro_f1, s))
                cells = "  ".join(
                    f"{k} {np.mean([r[0] for r in v]):.3f}/{np.mean([r[1] for r in v]):.3f}"
                    + (f" [{','.join(f'{r[2]:g}' for r in v)}]" if k.startswith("cv") else "")
                    for k, v in rows.items()
                )
                print(
                    f"{name}-lt{ratio:g} n={n}: majority {majority:.3f}  acc/F1: {cells}",
                    flush=True,
                )


if __name__ == "__main__":
    main(sys.argv[1].split(","))
