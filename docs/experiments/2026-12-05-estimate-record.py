"""Screen (recorder): everything an accuracy estimator of the current model could read, per
round, so estimators can be compared offline without rerunning the loop.

    PYTHONPATH=. python docs/experiments/2026-12-05-estimate-record.py --dataset mnist \\
        --imbalance 1 --seeds 5 --audit-fraction 0.1 --out results/estimate-screen/mnist-a10.pt

Mirrors ``benchmarks.simulate.run_strategy`` (the same pool, round, order, audit interleave and
serving), selector ``autoal`` with its shipped prior, 20 random initial labels, batches of 20,
10 rounds. Per round it keeps: the round model's probabilities on the whole pool [N, C]; which
items were labeled before the round and in which round; the served batch and which of it was
audited; out-of-fold probabilities of the labeled items under two cross-fits (5 folds over
every labeled item; folds over the audited items only, every other label in every fold), and
the model's test accuracy. ``--audit-mode weighted`` draws the audit tasks with probability
proportional to a defensive mixture of uniform and the model's uncertainty instead of
uniformly (``--audit-mix``), and keeps each draw's probability.
"""

import argparse
import time

import numpy as np
import torch

from benchmarks.datasets import load_dataset
from benchmarks.simulate import (
    _fit,
    accuracy_of,
    initial_labels,
    round_seed,
    served,
    standardise_pair,
)
from model.active_round import RoundConfig, run_round
from model.estimate import interleave_audit
from model.pool import make_pool
from model.selectors import make_selector
from model.task_model import TaskModel


def cross_fit(pool, labels, labeled, folds_of, k, num_classes, config, seed):
    """Out-of-fold probabilities [L, C] of the labeled rows ``labeled`` [L]: ``folds_of`` [L]
    gives each row's fold (-1: in every fold's training), k heads trained at once."""
    targets = torch.nn.functional.one_hot(labels[labeled], num_classes).float()
    weights = (folds_of.unsqueeze(0) != torch.arange(k).unsqueeze(1)).float()  # [k, L]
    models = TaskModel.fit_weighted(
        pool[labeled], targets, weights, config=config.task_model, seed=seed
    )
    out = torch.full((labeled.numel(), num_classes), float("nan"))
    for f, m in enumerate(models):
        rows = torch.nonzero(folds_of == f).flatten()
        if rows.numel():
            out[rows] = m.predict_proba(pool[labeled[rows]]).float()
    return out


def weighted_audit(order, fraction, probs_of_order, mix, seed):
    """Audit positions as interleave_audit places them, the tasks drawn (without replacement,
    successively) with probability proportional to mix * uniform + (1 - mix) * (1 - confidence)
    normalised; returns the new order, the audit flags and each audit draw's probability
    under the distribution it was drawn from (the first draw's: the pool is large)."""
    m = order.numel()
    audit = torch.zeros(m, dtype=torch.bool)
    q = torch.zeros(m, dtype=torch.float64)
    if fraction <= 0 or m < 2:
        return order, audit, q
    step = max(1, round(1.0 / fraction))
    slots = torch.arange(step - 1, m, step)
    uncertainty = (1.0 - probs_of_order.max(dim=1).values.double()).clamp_min(1e-6)
    dist = mix / m + (1 - mix) * uncertainty / uncertainty.sum()
    gen = torch.Generator().manual_seed(seed + 17)
    picks = torch.multinomial(dist, slots.numel(), replacement=False, generator=gen)
    chosen = order[picks]
    rest = order[~torch.isin(order, chosen)]
    out = torch.empty_like(order)
    audit[slots] = True
    out[audit] = chosen
    out[~audit] = rest
    q[slots] = dist[picks]
    return out, audit, q


def run(data, seed, args):
    pool, test = standardise_pair(data.pool_embeddings, data.test_embeddings)
    pool_labels, test_labels = data.pool_labels, data.test_labels
    n, c = pool.shape[0], data.num_classes
    config = RoundConfig()
    labels = torch.full((n,), -1, dtype=torch.int64)
    labeled_round = torch.full((n,), -1, dtype=torch.int64)
    first = torch.as_tensor(initial_labels(n, args.initial, seed))
    labels[first] = pool_labels[first]
    labeled_round[first] = 0
    audited = torch.zeros(n, dtype=torch.bool)
    audit_q = torch.zeros(n, dtype=torch.float64)  # draw probability of audited items
    audit_pool = torch.zeros(n, dtype=torch.int64)  # |U| when drawn
    selector = make_selector("autoal")
    rounds = []
    for r in range(args.rounds):
        state = make_pool(pool, labels, c, labeled_round=labeled_round, budget=args.batch,
                          seed=round_seed(seed, r))  # fmt: skip
        state.ids = torch.arange(n)
        outcome = run_round(state, selector, config)
        model = outcome.model or _fit(pool, labels, c, config, state.seed)
        probs = model.predict_proba(pool).float()
        order = outcome.selection.order(seed=state.seed).cpu()
        if args.audit_mode == "weighted" and args.audit_fraction > 0:
            order, audit, q = weighted_audit(order, args.audit_fraction, probs[order],
                                             args.audit_mix, state.seed)  # fmt: skip
        else:
            order, audit = interleave_audit(order, args.audit_fraction, state.seed)
            q = audit.double() / max(order.numel(), 1)
        picked = served(order, args.batch, None, state.seed)
        flags = audit[: picked.numel()]
        labeled = torch.nonzero(labels >= 0).flatten()
        # cross-fit 1: 5 folds over every labeled item
        g = torch.Generator().manual_seed(state.seed + 3)
        folds_all = torch.randperm(labeled.numel(), generator=g) % 5
        oof_all = cross_fit(pool, pool_labels, labeled, folds_all, 5, c, config, state.seed)
        # cross-fit 2: folds over the audited items only
        is_audit = audited[labeled]
        k = min(5, int(is_audit.sum()))
        oof_audit = None
        if k >= 2:
            folds_a = torch.full((labeled.numel(),), -1, dtype=torch.int64)
            rows = torch.nonzero(is_audit).flatten()
            folds_a[rows] = torch.randperm(rows.numel(), generator=g) % k
            oof_audit = cross_fit(pool, pool_labels, labeled, folds_a, k, c, config, state.seed)
        elif k == 1:
            folds_a = torch.full((labeled.numel(),), -1, dtype=torch.int64)
            folds_a[torch.nonzero(is_audit).flatten()] = 0
            oof_audit = cross_fit(pool, pool_labels, labeled, folds_a, 1, c, config, state.seed)
        rounds.append({
            "labels_before": labels.clone(),
            "labeled_round": labeled_round.clone(),
            "audited_before": audited.clone(),
            "audit_q": audit_q.clone(),
            "audit_pool": audit_pool.clone(),
            "probs": probs.half(),
            "picked": picked.clone(),
            "picked_audit": flags.clone(),
            "picked_q": q[: picked.numel()].clone(),
            "oof_all": oof_all.half(),
            "oof_audit": None if oof_audit is None else oof_audit.half(),
            "test_accuracy": accuracy_of(model, test, test_labels),
            "cold_start": bool(outcome.cold_start),
        })  # fmt: skip
        unlabeled_count = int((labels < 0).sum())
        labels[picked] = pool_labels[picked]
        labeled_round[picked] = r + 1
        audited[picked[flags]] = True
        audit_q[picked[flags]] = q[: picked.numel()][flags]
        audit_pool[picked[flags]] = unlabeled_count
    return {"pool_labels": pool_labels, "rounds": rounds}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--imbalance", type=float, default=1.0)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--initial", type=int, default=20)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--audit-fraction", type=float, default=0.0)
    parser.add_argument("--audit-mode", choices=("uniform", "weighted"), default="uniform")
    parser.add_argument("--audit-mix", type=float, default=0.5)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset(args.dataset, 0, imbalance=args.imbalance, progress=False)
    runs = {}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        start = time.time()
        runs[seed] = run(data, seed, args)
        accs = [r["test_accuracy"] for r in runs[seed]["rounds"]]
        print(
            data.name, seed, f"{time.time() - start:.1f}s", np.round(accs, 3).tolist(), flush=True
        )
    torch.save({"dataset": data.name, "args": vars(args), "runs": runs}, args.out)


if __name__ == "__main__":
    main()
