"""The strategy oracle: what each strategy's next batch is truly worth, and which label-only
signal could have told.

    python -m benchmarks.oracle --dataset mnist --labeled 100 --batch 20 --seeds 5 \\
        --out results/oracle/mnist

A search over the portfolio (AutoAL) can only be as good as the signal it optimises, and that
signal may use labels the annotators already gave, never the test set. This benchmark puts the
candidate signals next to the truth, per seed:

- **truth**: the test-accuracy gain of one step. A random labeled set of ``--labeled`` items,
  the task model trained on it, each strategy's top ``--batch`` of the pool labeled with ground
  truth, the model retrained, test accuracy minus the accuracy before.
- **autoal**: the default search's view (``model.selectors.autoal``): each strategy's mean cross-fitted
  influence signal over its top ``budget_fraction`` of the held-out labeled folds.
- **replay**: AL re-enacted on the labeled set: split it into thirds (fit, pseudo-pool,
  validation), let each strategy pick ``budget_fraction`` of the pseudo-pool, retrain, mean
  probability of the true class on the validation third; ``--repeats`` random splits.
- **eer**: expected error reduction (Roy & McCallum 2001) at the batch level: the strategy's real
  picks labeled by draws from the model's own predictions, retrained, mean top-class
  probability on 1,000 unlabeled items; ``--samples`` draws.
- **emoc**: expected model output change (Freytag et al. 2014) from the same fits: the mean L1
  change of the predicted class probabilities on those 1,000 items.
- **holdout**: the same batch-level EER, but judged on labeled items: in each of 3 folds the
  model trained on the other two picks its batch from the real pool, the picks are labeled by
  draws from its predictions, and the retrained model's mean true-class probability on the
  held-out fold counts. **holdout_true** gives the picks their *true* labels instead, which no
  real signal can: it says whether the labeled items could judge a batch even then.

It reports each signal's Spearman correlation with the truth per seed, and how consistent the
truth itself is from seed to seed (mean pairwise Spearman of the truth rankings): a ranking
that changes with the seed cannot be learned from one project's labels. Writes
``oracle.csv`` (one row per seed and strategy) to ``--out``; the last line on stdout is a JSON
summary.

    python -m benchmarks.oracle --dataset mnist --curve --initial 20 --batch 20 --rounds 10 \\
        --seeds 5

``--curve`` measures the headroom of any per-round strategy choice instead: the simulation of
``benchmarks.simulate`` with a *hindsight* selector that, every round, labels the batch of the
strategy whose batch raises test accuracy most (it peeks at the test set: an upper bound for a
search that picks one strategy per round, not a method), next to the uniform mixture. The last
line is ``{"dataset", "aubc": {"hindsight": {"mean", "std"}, "uniform": {...}}, "picked": {...}}``.
"""

import argparse
import csv
import itertools
import json
import sys
from pathlib import Path

import torch

from benchmarks.datasets import add_dataset_arguments, load_dataset_for_cli
from benchmarks.simulate import (
    accuracy_of,
    initial_labels,
    mean_std,
    run_strategy,
    standardise_pair,
)
from model.active_round import RoundConfig
from model.device import resolve_device
from model.pool import PoolState, make_pool
from model.selectors import Selection
from model.selectors.autoal import AutoALConfig, cross_fit, normalise_signal, strategy_rewards
from model.strategies import resolve_portfolio, score_matrix
from model.task_model import TaskModel

SIGNALS = ("autoal", "replay", "eer", "emoc", "holdout", "holdout_true")
CSV_FIELDS = ["dataset", "seed", "strategy", "truth", *SIGNALS]
EER_POOL = 1000


def spearman(a: list[float], b: list[float]) -> float:
    """Rank correlation of two equal-length lists (average ranks for ties); 0 when either is
    constant."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"expected two lists of equal length >= 2, got {len(a)} and {len(b)}")

    def ranks(values: list[float]) -> torch.Tensor:
        x = torch.tensor(values, dtype=torch.float64)
        order = x.argsort()
        r = torch.empty_like(x)
        r[order] = torch.arange(len(values), dtype=torch.float64)
        for value in x.unique():  # ties share their mean rank
            tied = x == value
            r[tied] = r[tied].mean()
        return r - r.mean()

    ra, rb = ranks(a), ranks(b)
    denominator = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / denominator if denominator > 0 else 0.0


class Oracle:
    """One data set's standardised pool and test set, and the task model's settings."""

    def __init__(self, pool, pool_labels, test, test_labels, batch: int, device) -> None:
        self.pool, self.pool_labels = pool, pool_labels
        self.test, self.test_labels = test, test_labels
        self.num_classes = int(max(pool_labels.max(), test_labels.max())) + 1
        self.batch = batch
        self.device = device
        self.config = RoundConfig().task_model
        self.search = AutoALConfig()
        self.names = resolve_portfolio(None, "oracle")

    def fit(self, items: torch.Tensor, classes: torch.Tensor, seed: int) -> TaskModel:
        targets = torch.nn.functional.one_hot(classes, self.num_classes).float()
        return TaskModel.fit(self.pool[items], targets, config=self.config, seed=seed)

    def true_class_probability(
        self, items: torch.Tensor, classes: torch.Tensor, valid: torch.Tensor, seed: int
    ) -> float:
        """Mean probability of the true class on ``valid`` of a model fit on items/classes."""
        p = self.fit(items, classes, seed).predict_proba(self.pool[valid])
        return float(p.gather(1, self.pool_labels[valid, None]).mean())

    def truth(self, labeled: torch.Tensor, picks: list[torch.Tensor], seed: int) -> list[float]:
        """Test-accuracy gain [K] of adding each strategy's picks with their true labels."""
        before = accuracy_of(
            self.fit(labeled, self.pool_labels[labeled], seed), self.test, self.test_labels
        )
        gains = []
        for chosen in picks:
            items = torch.cat((labeled, chosen))
            model = self.fit(items, self.pool_labels[items], seed)
            gains.append(accuracy_of(model, self.test, self.test_labels) - before)
        return gains

    def eer(
        self,
        labeled: torch.Tensor,
        probs: torch.Tensor,
        picks: list[torch.Tensor],
        samples: int,
        seed: int,
    ) -> tuple[list[float], list[float]]:
        """Expected confidence [K] on unlabeled items after adding each strategy's picks with
        labels drawn from ``probs`` [N, C] (the current model's predictions), and the expected
        change of the predictions there [K] (mean L1 distance to ``probs``) from the same fits."""
        gen = torch.Generator().manual_seed(seed)
        unlabeled = torch.ones(self.pool.shape[0], dtype=torch.bool, device=self.device)
        unlabeled[labeled] = False
        rest = torch.nonzero(unlabeled).flatten()
        probe = rest[torch.randperm(rest.numel(), generator=gen)[:EER_POOL].to(self.device)]
        confidence, change = [], []
        for chosen in picks:
            total_confidence = total_change = 0.0
            for _ in range(samples):
                drawn = torch.multinomial(probs[chosen].cpu(), 1, generator=gen).flatten()
                items = torch.cat((labeled, chosen))
                classes = torch.cat((self.pool_labels[labeled], drawn.to(self.device)))
                after = self.fit(items, classes, seed).predict_proba(self.pool[probe])
                total_confidence += float(after.max(dim=1).values.mean())
                total_change += float((after - probs[probe]).abs().sum(dim=1).mean())
            confidence.append(total_confidence / samples)
            change.append(total_change / samples)
        return confidence, change

    def replay(self, labeled: torch.Tensor, repeats: int, seed: int) -> list[float]:
        """Mean validation true-class probability [K] of each strategy's picks from a pseudo-
        pool of labeled items, over ``repeats`` random fit / pseudo-pool / validation thirds."""
        gen = torch.Generator().manual_seed(seed)
        third = labeled.numel() // 3
        totals = [0.0] * len(self.names)
        for repeat in range(repeats):
            shuffled = labeled[torch.randperm(labeled.numel(), generator=gen).to(self.device)]
            fit_part, pseudo, valid = (
                shuffled[:third],
                shuffled[third : 2 * third],
                shuffled[2 * third :],
            )
            model = self.fit(fit_part, self.pool_labels[fit_part], seed + repeat)
            items = torch.cat((fit_part, pseudo))
            classes = torch.cat(
                (self.pool_labels[fit_part], torch.full_like(pseudo, -1))
            )  # the pseudo-pool is "unlabeled" to the strategies
            take = max(1, round(self.search.budget_fraction * pseudo.numel()))
            sub = make_pool(
                self.pool[items], classes, self.num_classes, budget=take, seed=seed + repeat
            )
            sub.model, sub.probs = model, model.predict_proba(sub.features)
            rows = torch.arange(third, items.numel(), device=self.device)
            scores = score_matrix(sub, self.names, rows)  # [P, K]
            for j in range(len(self.names)):
                chosen = pseudo[scores[:, j].topk(take).indices]
                grown = torch.cat((fit_part, chosen))
                totals[j] += self.true_class_probability(
                    grown, self.pool_labels[grown], valid, seed + repeat
                )
        return [t / repeats for t in totals]

    def holdout(
        self, labeled: torch.Tensor, candidates: torch.Tensor, samples: int, seed: int
    ) -> tuple[list[float], list[float]]:
        """Mean held-out true-class probability [K] after adding each strategy's pool batch
        (picked by a model that has not seen the fold) with drawn labels, and with true ones."""
        gen = torch.Generator().manual_seed(seed)
        shuffled = labeled[torch.randperm(labeled.numel(), generator=gen).to(self.device)]
        drawn_totals, true_totals = [0.0] * len(self.names), [0.0] * len(self.names)
        n = self.pool.shape[0]
        for fold in range(3):
            held = shuffled[fold::3]
            train = torch.cat([shuffled[k::3] for k in range(3) if k != fold])
            labels = torch.full((n,), -1, dtype=torch.long, device=self.device)
            labels[train] = self.pool_labels[train]
            state = make_pool(self.pool, labels, self.num_classes, budget=self.batch, seed=seed)
            model = self.fit(train, self.pool_labels[train], seed + fold)
            state.model, state.probs = model, model.predict_proba(self.pool)
            scores = score_matrix(state, self.names, candidates)  # [M, K]
            for j in range(len(self.names)):
                chosen = candidates[scores[:, j].topk(self.batch).indices]
                items = torch.cat((train, chosen))
                for _ in range(samples):
                    drawn = torch.multinomial(state.probs[chosen].cpu(), 1, generator=gen)
                    classes = torch.cat((self.pool_labels[train], drawn.flatten().to(self.device)))
                    probability = self.true_class_probability(items, classes, held, seed + fold)
                    drawn_totals[j] += probability / (3 * samples)
                probability = self.true_class_probability(
                    items, self.pool_labels[items], held, seed + fold
                )
                true_totals[j] += probability / 3
        return drawn_totals, true_totals

    def autoal(self, state) -> list[float]:
        """The default AutoAL search's per-strategy reward [K] on this labeled set."""
        split = cross_fit(state, self.names, self.search, self.config)
        signal = normalise_signal(split.influence, self.search.signal)
        return strategy_rewards(split.scores, signal, self.search.budget_fraction).tolist()

    def run_seed(
        self, labeled_count: int, seed: int, repeats: int, samples: int
    ) -> dict[str, list[float]]:
        """Truth and every signal [K] for one seed's random labeled set."""
        n = self.pool.shape[0]
        labeled = torch.as_tensor(initial_labels(n, labeled_count, seed), device=self.device)
        labels = torch.full((n,), -1, dtype=torch.long, device=self.device)
        labels[labeled] = self.pool_labels[labeled]
        state = make_pool(self.pool, labels, self.num_classes, budget=self.batch, seed=seed)
        model = self.fit(labeled, self.pool_labels[labeled], seed)
        state.model, state.probs = model, model.predict_proba(self.pool)
        candidates = state.unlabeled_indices()
        scores = score_matrix(state, self.names, candidates)  # [M, K]
        picks = [candidates[scores[:, j].topk(self.batch).indices] for j in range(len(self.names))]
        holdout, holdout_true = self.holdout(labeled, candidates, samples, seed)
        eer, emoc = self.eer(labeled, state.probs, picks, samples, seed)
        return {
            "truth": self.truth(labeled, picks, seed),
            "autoal": self.autoal(state),
            "replay": self.replay(labeled, repeats, seed),
            "eer": eer,
            "emoc": emoc,
            "holdout": holdout,
            "holdout_true": holdout_true,
        }


class HindsightSelector:
    """Each round, the portfolio member whose top batch, labeled with ground truth, raises test
    accuracy most (ties: the earlier member). Peeks at the test set: an upper bound on what a
    per-round choice of strategy can gain, never a selector for real use."""

    name = "hindsight"

    def __init__(self, oracle: "Oracle") -> None:
        self.oracle = oracle
        self.picked: list[str] = []

    def select(self, state: PoolState, candidates: torch.Tensor) -> Selection:
        oracle = self.oracle
        scores = score_matrix(state, oracle.names, candidates)  # [M, K]
        labeled = state.labeled_indices()
        batch = min(state.budget, candidates.numel())
        picks = [candidates[scores[:, j].topk(batch).indices] for j in range(len(oracle.names))]
        gains = oracle.truth(labeled, picks, state.seed)
        best = max(range(len(gains)), key=lambda j: (gains[j], -j))
        self.picked.append(oracle.names[best])
        contributions = torch.zeros_like(scores)
        contributions[:, best] = scores[:, best]
        info = {"picked": oracle.names[best], "gains": [round(g, 4) for g in gains]}
        return Selection(candidates, scores[:, best], list(oracle.names), contributions, info)

    def state_dict(self) -> dict:
        return {"picked": list(self.picked)}

    def load_state_dict(self, state: dict) -> None:
        self.picked = list(state.get("picked", []))


def headroom(oracle: "Oracle", args: argparse.Namespace) -> dict:
    """AUBC of the hindsight selector and of the uniform mixture, same seeds and protocol as
    ``benchmarks.simulate``; how often each strategy was the round's best."""
    config = RoundConfig()
    runs: dict[str, list[float]] = {"hindsight": [], "uniform": []}
    picked: dict[str, int] = dict.fromkeys(oracle.names, 0)
    for seed in range(args.seeds):
        for name in runs:
            selector = HindsightSelector(oracle) if name == "hindsight" else None
            result = run_strategy(
                name, seed, oracle.pool, oracle.pool_labels, oracle.test, oracle.test_labels,
                oracle.num_classes, initial=args.initial, batch=args.batch, rounds=args.rounds,
                config=config, device=oracle.device, selector=selector,
            )  # fmt: skip
            runs[name].append(result.aubc)
            if selector is not None:
                for strategy in selector.picked:
                    picked[strategy] += 1
        print(
            f"seed {seed}: AUBC hindsight {runs['hindsight'][-1]:.4f}, "
            f"uniform {runs['uniform'][-1]:.4f}",
            file=sys.stderr,
        )
    return {
        "aubc": {name: mean_std(values) for name, values in runs.items()},
        "per_seed": {name: [round(v, 4) for v in values] for name, values in runs.items()},
        "picked": picked,
    }


def summarise(dataset: str, names: list[str], per_seed: dict[int, dict[str, list[float]]]) -> dict:
    """Spearman of each signal with the truth per seed, their means, the truth's seed-to-seed
    consistency and each strategy's mean true gain."""
    correlations = {
        signal: {
            str(seed): round(spearman(values[signal], values["truth"]), 3)
            for seed, values in per_seed.items()
        }
        for signal in SIGNALS
    }
    seeds = list(per_seed)
    pairs = [
        spearman(per_seed[a]["truth"], per_seed[b]["truth"])
        for a, b in itertools.combinations(seeds, 2)
    ]
    mean_truth = {
        name: round(sum(per_seed[s]["truth"][j] for s in seeds) / len(seeds), 4)
        for j, name in enumerate(names)
    }
    return {
        "dataset": dataset,
        "spearman_with_truth": correlations,
        "mean_spearman_with_truth": {
            signal: round(sum(c.values()) / len(c), 3) for signal, c in correlations.items()
        },
        "truth_consistency": round(sum(pairs) / len(pairs), 3) if pairs else None,
        "mean_truth_gain": mean_truth,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.oracle",
        description="Each strategy's true one-step gain against label-only search signals.",
    )
    add_dataset_arguments(parser)
    parser.add_argument("--labeled", type=int, default=100, help="random labeled items per seed")
    parser.add_argument("--batch", type=int, default=20, help="items each strategy picks")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=10, help="replay splits per seed")
    parser.add_argument("--samples", type=int, default=2, help="label draws per strategy (eer)")
    parser.add_argument(
        "--curve", action="store_true", help="hindsight selector vs uniform over whole runs"
    )
    parser.add_argument("--initial", type=int, default=20, help="--curve: random initial labels")
    parser.add_argument("--rounds", type=int, default=10, help="--curve: rounds")
    parser.add_argument(
        "--out", default=None, help="output directory (default results/oracle-<dataset>)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.labeled < 6 or args.batch < 1 or args.seeds < 1 or args.repeats < 1 or args.samples < 1:
        raise SystemExit("--labeled must be >= 6 and --batch, --seeds, --repeats, --samples >= 1")
    device = resolve_device(args.device)
    data = load_dataset_for_cli(
        args.dataset,
        encoder=args.encoder,
        device=device,
        cache_dir=args.cache_dir,
        progress=False,
    )
    pool, test = standardise_pair(data.pool_embeddings.to(device), data.test_embeddings.to(device))
    oracle = Oracle(
        pool, data.pool_labels.to(device), test, data.test_labels.to(device), args.batch, device
    )
    out = Path(args.out or Path("results") / f"oracle-{data.name}")
    out.mkdir(parents=True, exist_ok=True)
    if args.curve:
        if not 0 < args.initial < data.pool_embeddings.shape[0] or args.rounds < 1:
            raise SystemExit("--initial must lie inside the pool and --rounds be at least 1")
        report = {"dataset": data.name} | headroom(oracle, args)
        (out / "headroom.json").write_text(json.dumps(report, indent=2))
        print(json.dumps(report))
        return 0
    if args.labeled + args.batch >= data.pool_embeddings.shape[0]:
        raise SystemExit(
            f"--labeled + --batch must stay below the pool of {data.pool_embeddings.shape[0]}"
        )
    per_seed: dict[int, dict[str, list[float]]] = {}
    with open(out / "oracle.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for seed in range(args.seeds):
            values = oracle.run_seed(args.labeled, seed, args.repeats, args.samples)
            per_seed[seed] = values
            for j, name in enumerate(oracle.names):
                writer.writerow(
                    {"dataset": data.name, "seed": seed, "strategy": name}
                    | {key: round(values[key][j], 5) for key in ("truth", *SIGNALS)}
                )
            line = " ".join(f"{s}={spearman(values[s], values['truth']):+.2f}" for s in SIGNALS)
            print(f"seed {seed}: Spearman with the truth: {line}", file=sys.stderr)
    print(json.dumps(summarise(data.name, oracle.names, per_seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
