"""Experiment (not maintained; runs on commit 76541c9, before model/selectors/autoal became a package):
seven per-sample search signals, screened against the truth.

For SEEDS random labeled sets of LABELED items: each portfolio strategy's true next-batch gain
(as ``benchmarks.oracle``), and for each signal computed on the cross-fitted held-out folds (as
``model.selectors.autoal.cross_fit``), each strategy's reward (mean signal over its top 25%); prints the
Spearman correlation of rewards and truth per seed and their means. DATASEED 0 is the split of
docs/benchmarks.md; 1 draws another pool and test set (a development split for MNIST and Rotten
Tomatoes, which have data to spare). Signals: loss (the paper's), influence (the default),
cosine (direction-only influence), kfac (Koh & Liang influence with a Kronecker-factored
Gauss-Newton inverse, damping 0.1 of the mean diagonal), kfac_lev (the same over 1 + the item's
leverage), loss_density and infl_density (times the mean cosine similarity to 500 unlabeled
items), loss_resid and infl_resid (what log distance to the nearest training item does not
explain), brier (squared error of the probabilities: bounded, so confident mistakes cannot
dominate) and margin_loss (1 - p_true + the largest other p, in [0, 2]). Also prints diagnostics of the held-out loss: its Spearman correlation with that
distance, the share of items the fold model gets wrong with probability > .7 and their share of
the loss, and which strategies the loss rewards most (top three per seed, counted).

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python docs/experiments/2026-11-25-signal-screen.py \\
        mnist 100 5 1
"""

import json
import math
import sys
from collections import Counter

import torch
from torch.nn.functional import normalize

from benchmarks.datasets import load_dataset
from benchmarks.oracle import Oracle, spearman
from benchmarks.simulate import initial_labels, standardise_pair
from model.pool import make_pool
from model.seeding import generator
from model.selectors.autoal import (
    _sub_pool,
    leave_one_out_influence,
    normalise_signal,
    strategy_rewards,
)
from model.strategies import score_matrix
from model.task_model import TaskModel

SIGNALS = (
    "loss",
    "influence",
    "cosine",
    "kfac",
    "kfac_lev",
    "loss_density",
    "infl_density",
    "loss_resid",
    "infl_resid",
    "brier",
    "margin_loss",
)


def residual(signal: torch.Tensor, covariate: torch.Tensor) -> torch.Tensor:
    """``signal`` minus its least-squares fit on [1, covariate]: what the covariate does not
    explain."""
    design = torch.stack((torch.ones_like(covariate), covariate), dim=1)
    coef = torch.linalg.lstsq(design, signal[:, None]).solution
    return signal - (design @ coef).flatten()


def with_bias(x: torch.Tensor) -> torch.Tensor:
    return torch.cat((x, torch.ones(len(x), 1)), dim=1)


def fold_signals(model, pool, state, held, train, probe) -> dict[str, torch.Tensor]:
    """Every signal [h] for the held-out items of one fold, from the fold's model, and two
    diagnostics: ``distance`` (log distance to the nearest training item) and ``confident_wrong``
    (1 where the model is wrong with probability > .7)."""
    features, targets = pool[held], state.targets[held]
    loss = model.per_sample_loss(features, targets)
    probs = model.predict_proba(features)
    confident_wrong = ((probs.argmax(1) != targets.argmax(1)) & (probs.max(1).values > 0.7)).float()
    influence = leave_one_out_influence(model, features, targets)
    a = with_bias(model.embed(features))  # [h, D]
    r = model.predict_proba(features) - targets  # [h, C]
    g = (r[:, :, None] * a[:, None, :]).flatten(1)  # [h, C*D]
    rest = (g.sum(0)[None] - g) / (len(g) - 1)
    cosine = (g * rest).sum(1) / (g.norm(dim=1) * rest.norm(dim=1)).clamp_min(1e-12)
    # Kronecker-factored Gauss-Newton of the fold's training loss: A (inputs) x S (softmax).
    a_train = with_bias(model.embed(pool[train]))
    p_train = model.predict_proba(pool[train])
    a_cov = a_train.T @ a_train / len(a_train)
    s_cov = (torch.diag_embed(p_train) - p_train[:, :, None] * p_train[:, None, :]).mean(0)
    a_inv = torch.linalg.inv(a_cov + 0.1 * a_cov.diagonal().mean() * torch.eye(len(a_cov)))
    s_inv = torch.linalg.inv(s_cov + 0.1 * s_cov.diagonal().mean() * torch.eye(len(s_cov)))
    total = r.T @ a  # [C, D]
    kfac = torch.tensor(
        [
            float(
                r[i]
                @ s_inv
                @ ((total - r[i : i + 1].T @ a[i : i + 1]) / (len(a) - 1))
                @ a_inv
                @ a[i]
            )
            for i in range(len(a))
        ]
    )
    leverage = ((a @ a_inv) * a).sum(1) / len(a_train)
    # Distance to the nearest item the fold model was trained on: far items have high loss.
    distance = torch.cdist(features, pool[train]).min(dim=1).values.log()
    a_probe = with_bias(model.embed(pool[probe]))
    density = (normalize(a, dim=1) @ normalize(a_probe, dim=1).T).clamp_min(0).mean(1)
    return {
        "loss": loss,
        "influence": influence,
        "cosine": cosine,
        "kfac": kfac,
        "kfac_lev": kfac / (1 + leverage),
        "loss_density": loss * density,
        "infl_density": influence * density,
        "loss_resid": residual(loss, distance),
        "infl_resid": residual(influence, distance),
        "brier": (probs - targets).pow(2).sum(1),
        "margin_loss": 1
        - (probs * targets).sum(1)
        + probs.masked_fill(targets.bool(), -1).max(1).values,
        "distance": distance,
        "confident_wrong": confident_wrong,
    }


def screen_seed(oracle: Oracle, pool: torch.Tensor, labeled_count: int, seed: int) -> dict:
    """Spearman of each signal's strategy rewards with the truth for one random labeled set."""
    n = pool.shape[0]
    labeled = torch.as_tensor(initial_labels(n, labeled_count, seed))
    labels = torch.full((n,), -1, dtype=torch.long)
    labels[labeled] = oracle.pool_labels[labeled]
    state = make_pool(pool, labels, oracle.num_classes, budget=20, seed=seed)
    model = oracle.fit(labeled, oracle.pool_labels[labeled], seed)
    state.model, state.probs = model, model.predict_proba(pool)
    candidates = state.unlabeled_indices()
    scores = score_matrix(state, oracle.names, candidates)
    picks = [candidates[scores[:, j].topk(20).indices] for j in range(len(oracle.names))]
    truth = oracle.truth(labeled, picks, seed)

    gen = generator(seed + 7919)
    shuffled = labeled[torch.randperm(labeled.numel(), generator=gen)]
    unlabeled = state.unlabeled_indices()
    context = unlabeled[torch.randperm(unlabeled.numel(), generator=gen)[:1000]]
    items = torch.cat((shuffled, context))
    position = torch.arange(shuffled.numel())
    fold_scores, signals = [], {name: [] for name in (*SIGNALS, "distance", "confident_wrong")}
    for fold in range(3):
        held_mask = position % 3 == fold
        held, train = shuffled[held_mask], shuffled[~held_mask]
        fold_model = TaskModel.fit(
            pool[train], state.targets[train], config=oracle.config, seed=seed + 101 * (fold + 1)
        )
        sub = _sub_pool(state, items, train)
        sub.model, sub.probs = fold_model, fold_model.predict_proba(sub.features)
        sub.budget = max(1, math.ceil(0.25 * held.numel()))
        fold_scores.append(score_matrix(sub, oracle.names, torch.nonzero(held_mask).flatten()))
        for name, values in fold_signals(
            fold_model, pool, state, held, train, context[:500]
        ).items():
            signals[name].append(values)
    fold_scores = torch.cat(fold_scores)
    result, rewards = {}, {}
    for name in SIGNALS:
        signal = normalise_signal(torch.cat(signals[name]), "influence")
        rewards[name] = strategy_rewards(fold_scores, signal, 0.25)
        result[name] = spearman(rewards[name].tolist(), truth)
    loss, wrong = torch.cat(signals["loss"]), torch.cat(signals["confident_wrong"])
    diagnostics = {
        "loss_vs_distance": spearman(loss.tolist(), torch.cat(signals["distance"]).tolist()),
        "confident_wrong_items": float(wrong.mean()),
        "confident_wrong_loss": float((loss * wrong).sum() / loss.sum()),
        "top3_by_loss": [oracle.names[j] for j in rewards["loss"].argsort(descending=True)[:3]],
    }
    return result, diagnostics


def main() -> None:
    torch.set_num_threads(1)
    name, labeled_count, seeds, data_seed = sys.argv[1], *map(int, sys.argv[2:5])
    data = load_dataset(name, data_seed, progress=False)
    pool, test = standardise_pair(data.pool_embeddings, data.test_embeddings)
    oracle = Oracle(pool, data.pool_labels, test, data.test_labels, 20, torch.device("cpu"))
    per_seed, top3 = [], []
    diagnostics = dict.fromkeys(
        ("loss_vs_distance", "confident_wrong_items", "confident_wrong_loss"), 0.0
    )
    for seed in range(seeds):
        result, diagnostic = screen_seed(oracle, pool, labeled_count, seed)
        per_seed.append(result)
        top3.extend(diagnostic.pop("top3_by_loss"))
        for key, value in diagnostic.items():
            diagnostics[key] += value / seeds
        line = " ".join(f"{k}={v:+.2f}" for k, v in result.items())
        print(f"seed {seed}: {line}", file=sys.stderr, flush=True)
    mean = {k: round(sum(r[k] for r in per_seed) / len(per_seed), 3) for k in SIGNALS}
    summary = {"dataset": name, "labeled": labeled_count, "dataseed": data_seed, "mean": mean}
    summary["diagnostics"] = {k: round(v, 3) for k, v in diagnostics.items()}
    summary["top3_by_loss_reward"] = dict(Counter(top3).most_common())
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
