"""Simulated annotation: a ground-truth annotator drives the backend's own round code.

    python -m benchmarks.simulate --dataset digits --strategies random,entropy,margin,uniform \\
        --initial 20 --batch 20 --rounds 10 --seeds 5 --out results/digits

Per strategy and seed: the same ``initial`` random labels; then ``rounds`` times, the pool state
is built (``make_pool`` on standardised embeddings), ``model.active_round.run_round`` trains the
task model and asks the selector (``make_selector(name)``, one object for the whole run) for
priorities, the round's model is scored on the test set, and the annotator labels the top
``batch`` of ``selection.order()``. A last model is trained on the final labels. There is no
second implementation of a round here: what the benchmark measures is what the backend runs.

Writes to ``--out``: ``rounds.csv`` (test accuracy per strategy, seed and round),
``learning_curves.png`` (mean +- std per strategy), ``summary.md`` (AUBC and final accuracy,
mean +- std, and the labels each strategy needs to match random labeling's final accuracy),
``selections.jsonl`` (each round's mean strategy weights). The last line on stdout is a JSON
object ``{"dataset", "aubc": {name: {"mean", "std"}}, "final_accuracy": {...}}``, with
``"labels_to_match_random": {name: labels or null}`` added when ``random`` ran and
``"failed": {name: error}`` only when a strategy crashed.
"""

import argparse
import csv
import json
import math
import sys
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from benchmarks.datasets import add_dataset_arguments, load_dataset_for_cli
from model.active_round import RoundConfig, run_round
from model.device import resolve_device
from model.estimate import Verdict, audit_share, current_accuracy, interleave_audit
from model.pool import make_pool
from model.selectors import make_selector, parse_selector_options, selector_names
from model.task_model import TaskModel

CSV_FIELDS = [
    "dataset",
    "encoder",
    "strategy",
    "seed",
    "round",
    "labeled",
    "accuracy",
    "macro_f1",
    "minority_recall",
    "unlabeled_accuracy",
    "estimate",
    "estimate_low",
    "estimate_high",
    "estimate_shown",
    "audited",
    "audit_share",
    "cold_start",
    "train_s",
    "select_s",
    "round_s",
]


@dataclass
class RunResult:
    """One strategy on one seed: accuracy after each round's labels."""

    strategy: str
    seed: int
    labeled: list[int] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    macro_f1: list[float] = field(default_factory=list)
    minority_recall: list[float] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    selections: list[dict] = field(default_factory=list)

    @property
    def aubc(self) -> float:
        return aubc(self.labeled, self.accuracy)


class StrategyFailed(Exception):
    """A selector raised during a run; carries where, for the report."""

    def __init__(self, strategy: str, seed: int, round_index: int, cause: BaseException) -> None:
        super().__init__(
            f"strategy {strategy!r} failed at seed {seed}, round {round_index}: "
            f"{type(cause).__name__}: {cause}"
        )
        self.strategy = strategy
        self.detail = "".join(traceback.format_exception(cause))


def aubc(labeled: list[int], accuracy: list[float]) -> float:
    """Area under the budget curve: trapezoid of accuracy over labeled counts, divided by the
    label range, so it is an accuracy in [0, 1]. One point gives its accuracy."""
    if len(labeled) != len(accuracy) or not labeled:
        raise ValueError(
            f"expected matching non-empty curves, got {len(labeled)} and {len(accuracy)}"
        )
    if len(labeled) == 1 or labeled[-1] == labeled[0]:
        return float(accuracy[-1])
    x = np.asarray(labeled, dtype=np.float64)
    y = np.asarray(accuracy, dtype=np.float64)
    area = float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))
    return area / float(x[-1] - x[0])


def aubc_per_seed(points: Iterable[tuple[str, int, int, float]]) -> dict[str, dict[int, float]]:
    """AUBC per strategy and seed from (strategy, seed, labeled, metric) rows in any order (the
    rows of a run's ``rounds.csv`` or ``rounds.jsonl``)."""
    curves: dict[tuple[str, int], list[tuple[int, float]]] = {}
    for name, seed, labeled, value in points:
        curves.setdefault((name, seed), []).append((labeled, value))
    out: dict[str, dict[int, float]] = {}
    for (name, seed), curve in curves.items():
        curve.sort()
        out.setdefault(name, {})[seed] = aubc([p[0] for p in curve], [p[1] for p in curve])
    return out


def paired_text(a: dict[int, float], b: dict[int, float]) -> str:
    """The mean paired per-seed difference a - b on their common seeds, with its t."""
    seeds = sorted(set(a) & set(b))
    d = [a[s] - b[s] for s in seeds]
    mean = float(np.mean(d))
    se = float(np.std(d, ddof=1)) / len(d) ** 0.5 if len(d) > 1 else 0.0
    return f"{mean:+.4f} ({len(seeds)} seeds, t {mean / se:+.1f})" if se > 0 else f"{mean:+.4f}"


def labels_to_reach(labeled: list[int], accuracy: list[float], target: float) -> float | None:
    """The labeled count from which the curve (linear between rounds) stays at or above
    ``target``, interpolated at the crossing; None when the curve ends below it."""
    if len(labeled) != len(accuracy) or not labeled:
        raise ValueError(
            f"expected matching non-empty curves, got {len(labeled)} and {len(accuracy)}"
        )
    if accuracy[-1] < target:
        return None
    i = len(accuracy) - 1
    while i > 0 and accuracy[i - 1] >= target:
        i -= 1
    if i == 0:
        return float(labeled[0])
    x0, x1, y0, y1 = labeled[i - 1], labeled[i], accuracy[i - 1], accuracy[i]
    return float(x0 + (x1 - x0) * (target - y0) / (y1 - y0))


def seed_curves(results: list[RunResult]) -> tuple[np.ndarray, np.ndarray]:
    """One strategy's runs aligned on their common rounds: labeled counts [L] and accuracy
    [S, L] (seeds x points)."""
    length = min(len(r.accuracy) for r in results)
    x = np.asarray(results[0].labeled[:length])
    return x, np.asarray([r.accuracy[:length] for r in results])


def labels_to_match_random(runs: dict[str, list[RunResult]]) -> dict[str, float | None]:
    """For each strategy, the labels its mean curve (over seeds) needs to reach, and keep,
    the mean final accuracy of random labeling: how many labels it saves against labeling in
    random order. Empty without a ``random`` run."""
    if "random" not in runs:
        return {}

    def mean_curve(results: list[RunResult]) -> tuple[list[int], list[float]]:
        x, y = seed_curves(results)
        return x.tolist(), y.mean(axis=0).tolist()

    target = mean_curve(runs["random"])[1][-1]
    reached = {
        name: labels_to_reach(*mean_curve(results), target) for name, results in runs.items()
    }
    return {name: None if n is None else round(n, 1) for name, n in reached.items()}


def standardise_pair(
    pool: torch.Tensor, test: torch.Tensor, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardise pool [N, d] and test [T, d] with the pool's statistics, as the backend
    standardises its pool (``model.task_model.standardise``); the test set must not leak in."""
    mean = pool.mean(dim=0, keepdim=True)
    std = pool.std(dim=0, keepdim=True).clamp_min(eps)
    return (pool - mean) / std, (test - mean) / std


def initial_labels(num_items: int, initial: int, seed: int) -> np.ndarray:
    """The seed's random initial labels [initial]: the same for every strategy."""
    if not 0 < initial < num_items:
        raise ValueError(f"--initial must be between 1 and {num_items - 1}, got {initial}")
    return np.random.default_rng(seed).choice(num_items, initial, replace=False)


def round_seed(seed: int, round_index: int) -> int:
    # Fresh randomness every round (random sampling, tie-breaks, the task model's init), still
    # a pure function of (seed, round).
    return seed * 100_003 + round_index


def accuracy_of(model: TaskModel, features: torch.Tensor, labels: torch.Tensor) -> float:
    predicted = model.predict_proba(features).argmax(dim=1)
    return float((predicted == labels).float().mean())


@dataclass(frozen=True)
class HeldOutMetrics:
    """Test-set figures of one model: accuracy, macro-F1 (the mean over classes of per-class
    F1, 0 for a class never predicted) and the recall of the minority class (the rarest in the
    pool: the class users with rare classes care about)."""

    accuracy: float
    macro_f1: float
    minority_recall: float


def held_out_metrics(
    model: TaskModel, features: torch.Tensor, labels: torch.Tensor, num_classes: int, minority: int
) -> HeldOutMetrics:
    predicted = model.predict_proba(features).argmax(dim=1)
    hit = predicted == labels
    f1 = []
    for c in range(num_classes):
        true_c, pred_c = labels == c, predicted == c
        tp = float((true_c & pred_c).sum())
        denominator = float(true_c.sum() + pred_c.sum())
        f1.append(2 * tp / denominator if denominator > 0 else 0.0)
    in_minority = labels == minority
    recall = float(hit[in_minority].float().mean()) if bool(in_minority.any()) else 0.0
    return HeldOutMetrics(float(hit.float().mean()), float(np.mean(f1)), recall)


def minority_class(labels: torch.Tensor, num_classes: int) -> int:
    """The rarest class among ``labels`` (ties: the last one)."""
    counts = torch.bincount(labels.cpu(), minlength=num_classes).tolist()
    return max(range(num_classes), key=lambda c: (-counts[c], c))


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return _json_safe(value.item())
    return repr(value)


def run_strategy(
    name: str,
    seed: int,
    pool: torch.Tensor,
    pool_labels: torch.Tensor,
    test: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    *,
    initial: int,
    batch: int,
    rounds: int,
    config: RoundConfig,
    device: torch.device,
    on_round=None,
    selector=None,
    options: dict | None = None,
    serve_window: int | None = None,
    audit_fraction: float = 0.0,
    audit_until_trusted: float = 0.0,
    shortlist: int = 0,
) -> RunResult:
    """Simulate one strategy on one seed. ``pool`` [N, d] and ``test`` [T, d] are standardised
    and on ``device``; labels are int64 class indices on the same device. ``selector``: a ready
    selector to use instead of ``make_selector(name, **options)`` (the oracle's hindsight
    selector). ``serve_window`` W: the annotators get a random task among the top W of the
    order each time instead of the first one (see ``served``). ``audit_fraction`` and
    ``audit_until_trusted``: the share of the queue served at random once the accuracy figure
    is trusted, and before (``model.estimate.audit_share``), as the backend's
    AUTOAL_AUDIT_FRACTION and AUTOAL_AUDIT_UNTIL_TRUSTED; the share of the initial labels
    counted as audited is the one the backend's cold-start queue serves at random.
    ``shortlist``: the most candidates k-means, core-set and BADGE see (AUTOAL_SHORTLIST).

    Every round also computes the project page's accuracy figure for its model
    (``model.estimate.current_accuracy``, from the audited labels so far), as the backend
    does, next to the truth it estimates: the model's accuracy on the still unlabeled items."""
    num_items = pool.shape[0]
    minority = minority_class(pool_labels, num_classes)
    result = RunResult(name, seed)
    labels = torch.full((num_items,), -1, dtype=torch.int64, device=device)
    labeled_round = torch.full((num_items,), -1, dtype=torch.int64, device=device)
    # Tasks served at random: the round whose queue drew them (-1: the cold start's) and how
    # many tasks that queue held (0: not audited).
    audit_round = torch.full((num_items,), -1, dtype=torch.int64)
    audit_pool = torch.zeros(num_items, dtype=torch.int64)
    first = torch.as_tensor(initial_labels(num_items, initial, seed), device=device)
    labels[first] = pool_labels[first]
    labeled_round[first] = 0
    share = audit_share(False, audit_fraction, audit_until_trusted)
    # The initial labels are random: the share the cold-start queue audits counts as audited.
    audit_pool[first[: round(share * first.numel())].cpu()] = num_items
    ids = torch.arange(num_items, device=device)
    round_index = 0
    try:
        if selector is None:
            selector = make_selector(name, device=device, **(options or {}))
        for round_index in range(rounds):
            start = time.perf_counter()
            state = make_pool(
                pool,
                labels,
                num_classes,
                labeled_round=labeled_round,
                budget=batch,
                seed=round_seed(seed, round_index),
            )
            state.ids = ids
            state.shortlist = shortlist
            outcome = run_round(state, selector, config)
            model = outcome.model
            if (
                model is None
            ):  # cold start: the round trained nothing, the curve still needs a point
                model = _fit(pool, labels, num_classes, config, state.seed)
            metrics = held_out_metrics(model, test, test_labels, num_classes, minority)
            order = outcome.selection.order(seed=state.seed)
            # The backend sizes a round's audit share by the last round's figure.
            order, audit = interleave_audit(order.cpu(), share, state.seed)
            order = order.to(device)
            picked = served(order, batch, serve_window, state.seed)
            estimates = page_estimates(
                model, state, pool_labels, audit_round, audit_pool, config, share
            )
            _record(
                result,
                name,
                seed,
                round_index,
                labels,
                metrics,
                outcome,
                start,
                estimates=estimates,
            )
            result.selections.append(
                {
                    "strategy": name,
                    "seed": seed,
                    "round": round_index,
                    "labeled": int((labels >= 0).sum()),
                    "mean_weights": outcome.selection.mean_weights(),
                    "info": _json_safe(outcome.selection.info),
                }
            )
            served_at_random = order[audit.to(device)]
            drawn = served_at_random[torch.isin(served_at_random, picked)].cpu()
            audit_round[drawn] = round_index
            audit_pool[drawn] = int((labels < 0).sum())
            labels[picked] = pool_labels[picked]
            labeled_round[picked] = round_index + 1
            share = audit_share(
                bool(estimates.get("estimate_shown")), audit_fraction, audit_until_trusted
            )
            if on_round is not None:
                on_round()
            if bool((labels >= 0).all()):
                break
        round_index += 1
        start = time.perf_counter()
        model = _fit(pool, labels, num_classes, config, round_seed(seed, round_index))
        final = {"train": time.perf_counter() - start}
        metrics = held_out_metrics(model, test, test_labels, num_classes, minority)
        _record(result, name, seed, round_index, labels, metrics, None, start, final)
    except Exception as error:  # reported per strategy, so one crash does not hide the others
        raise StrategyFailed(name, seed, round_index, error) from error
    return result


def served(order: torch.Tensor, batch: int, window: int | None, seed: int) -> torch.Tensor:
    """The ``batch`` items the annotators label from a round's ``order`` [M].

    Top-first (``window`` None): the first ``batch``, as Label Studio's uncertainty sampling
    serves them. With a window W, as Label Studio Enterprise serves a project with members
    (``_get_random_unlocked``: a random task among all that hold a current prediction, i.e. the
    top W pushed): a random ``batch`` of the top W; when W < batch, the rest at random from
    everything else (Label Studio falls back to random once no task holds a prediction)."""
    batch = min(batch, order.numel())
    if window is None:
        return order[:batch]
    rng = torch.Generator().manual_seed(int(seed) + 7)
    top = order[: min(window, order.numel())]
    rest = order[top.numel() :]
    shuffled = torch.cat((top[torch.randperm(top.numel(), generator=rng)],
                          rest[torch.randperm(rest.numel(), generator=rng)]))  # fmt: skip
    return shuffled[:batch]


def _fit(
    pool: torch.Tensor, labels: torch.Tensor, num_classes: int, config: RoundConfig, seed: int
) -> TaskModel:
    """The task model run_round would train on these labels (same config, same seed)."""
    labeled = torch.nonzero(labels >= 0).flatten()
    targets = torch.nn.functional.one_hot(labels[labeled], num_classes).float()
    return TaskModel.fit(pool[labeled], targets, config=config.task_model, seed=seed)


def page_estimates(
    model: TaskModel,
    state,
    pool_labels: torch.Tensor,
    audit_round: torch.Tensor,
    audit_pool: torch.Tensor,
    config: RoundConfig,
    share: float,
) -> dict:
    """The project page's accuracy figure for ``model`` (``model.estimate.current_accuracy``
    from the labeled items of ``state``; ``audit_round`` and ``audit_pool`` [N] say which were
    served at random, from which round's queue and how large it was) and the truth it
    estimates: ``model``'s accuracy on the items still unlabeled."""
    probs = model.predict_proba(state.features)
    unlabeled = ~state.labeled
    truth = float((probs.argmax(dim=1) == pool_labels)[unlabeled].float().mean())
    audited = int(((audit_pool > 0) & state.labeled.cpu()).sum())
    out: dict = {"unlabeled_accuracy": truth, "audited": audited, "audit_share": share}
    verdict: Verdict = current_accuracy(
        state.features, state.targets, state.labeled, state.labeled_round, audit_round,
        audit_pool, probs, multilabel=state.multilabel, config=config.task_model,
        seed=state.seed,
    )  # fmt: skip
    if verdict.estimate is not None:
        out |= {
            "estimate": verdict.estimate.value,
            "estimate_low": verdict.estimate.low,
            "estimate_high": verdict.estimate.high,
        }
    out["estimate_shown"] = verdict.trusted
    return out


def _record(
    result, name, seed, round_index, labels, metrics, outcome, start, seconds=None, estimates=None
):
    """Append one point of the learning curve and its CSV row."""
    count = int((labels >= 0).sum())
    seconds = outcome.seconds if outcome is not None else (seconds or {})
    result.labeled.append(count)
    result.accuracy.append(metrics.accuracy)
    result.macro_f1.append(metrics.macro_f1)
    result.minority_recall.append(metrics.minority_recall)
    result.rows.append(
        {
            "strategy": name,
            "seed": seed,
            "round": round_index,
            "labeled": count,
            "accuracy": round(metrics.accuracy, 6),
            "macro_f1": round(metrics.macro_f1, 6),
            "minority_recall": round(metrics.minority_recall, 6),
            **{k: round(v, 6) if isinstance(v, float) else v for k, v in (estimates or {}).items()},
            "cold_start": bool(outcome.cold_start) if outcome is not None else False,
            "train_s": round(seconds.get("train", 0.0), 4),
            "select_s": round(seconds.get("select", 0.0), 4),
            "round_s": round(time.perf_counter() - start, 4),
        }
    )


def estimate_error(results: list[RunResult]) -> dict[str, float | int | None]:
    """How the page's accuracy figure did against the truth it estimates (the round model's
    accuracy on the items still unlabeled), over the rounds of every seed that trained a model:
    over the rounds where the figure was shown (trusted), its bias (mean of figure - truth),
    mean absolute error and how often the 95% band held the truth; how many rounds showed a
    figure and how many showed none; and the same error and coverage over every round with an
    estimate, shown or not (``*_all``)."""
    shown_err, shown_in, all_err, all_in, withheld = [], [], [], [], 0
    for result in results:
        for row in result.rows:
            if "unlabeled_accuracy" not in row or row.get("cold_start"):
                continue
            truth = row["unlabeled_accuracy"]
            if "estimate" in row:
                inside = row["estimate_low"] <= truth <= row["estimate_high"]
                all_err.append(row["estimate"] - truth)
                all_in.append(inside)
            if row.get("estimate_shown"):
                shown_err.append(row["estimate"] - truth)
                shown_in.append(inside)
            else:
                withheld += 1

    def mean(values, digits=4):
        return round(float(np.mean(values)), digits) if len(values) else None

    return {
        "bias": mean(shown_err),
        "mae": mean(np.abs(shown_err)),
        "band_coverage": mean(shown_in, 3),
        "shown": len(shown_err),
        "withheld": withheld,
        "mae_all": mean(np.abs(all_err)),
        "band_coverage_all": mean(all_in, 3),
        "estimated": len(all_err),
    }


def mean_std(values: list[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    std = float(array.std(ddof=1)) if array.size > 1 else 0.0
    return {"mean": round(float(array.mean()), 4), "std": round(std, 4)}


MIXTURES = ("autoal", "uniform", "albl")


def plot_curves(runs: dict[str, list[RunResult]], title: str, path: Path) -> None:
    """Mean test accuracy per strategy over the labeled count, with a +-1 std band.

    Twelve curves need more than matplotlib's ten default colours: each strategy gets its own
    from tab20, and the mixtures (AutoAL and its baselines) are drawn solid and thicker than
    the single strategies (dashed), with the legend outside the axes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    palette = [plt.get_cmap("tab20")(i) for i in range(20)]
    figure, axes = plt.subplots(figsize=(9, 4.8))
    for index, (name, results) in enumerate(runs.items()):
        x, y = seed_curves(results)
        mean, std = y.mean(axis=0), y.std(axis=0)
        colour = palette[(2 * index) % 20 if index < 10 else (2 * index + 1) % 20]
        mixture = name in MIXTURES
        axes.plot(
            x,
            mean,
            color=colour,
            linestyle="-" if mixture else "--",
            linewidth=2.2 if mixture else 1.2,
            marker="o",
            markersize=3,
            label=f"{name} ({mean_std([r.aubc for r in results])['mean']:.3f})",
        )
        axes.fill_between(x, mean - std, mean + std, color=colour, alpha=0.12 if mixture else 0.06)
    axes.set_xlabel("labeled items")
    axes.set_ylabel("test accuracy")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(title="strategy (AUBC)", fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def summary_markdown(report: dict, runs: dict[str, list[RunResult]], header: dict) -> str:
    lines = [
        f"# Simulated active learning on {header['dataset']}",
        "",
        f"Encoder `{header['encoder']}`, pool {header['pool']}, test {header['test']}, "
        f"{header['classes']} classes; {header['initial']} initial labels, batches of "
        f"{header['batch']}, {header['rounds']} rounds, seeds {header['seeds']}, device "
        f"{header['device']}. AUBC: trapezoid of test accuracy over the labeled counts divided "
        "by the label range. Mean +- std over seeds. Labels to match random: the labeled count "
        "from which the strategy's mean curve stays at or above random labeling's mean final "
        "accuracy, and the share of the full budget that saves.",
        "",
        "| strategy | AUBC | final accuracy | labels to match random | AUBC macro-F1 "
        "| final minority recall | seconds / round |",
        "|---|---|---|---|---|---|---|",
    ]
    budget = max((r.labeled[-1] for rs in runs.values() for r in rs), default=0)
    matched = report.get("labels_to_match_random", {})
    order = sorted(report["aubc"], key=lambda n: -report["aubc"][n]["mean"])
    for name in order:
        a, f = report["aubc"][name], report["final_accuracy"][name]
        per_round = np.mean([row["round_s"] for r in runs[name] for row in r.rows])
        if name not in matched:
            match = "n/a (no random run)"
        elif matched[name] is None:
            match = f"not within {budget}"
        else:
            match = f"{matched[name]:.0f} (saves {1 - matched[name] / budget:.0%})"
        f1, minority = report["aubc_macro_f1"][name], report["final_minority_recall"][name]
        lines.append(
            f"| {name} | {a['mean']:.4f} +- {a['std']:.4f} | {f['mean']:.4f} +- {f['std']:.4f} "
            f"| {match} | {f1['mean']:.4f} +- {f1['std']:.4f} "
            f"| {minority['mean']:.4f} +- {minority['std']:.4f} | {per_round:.2f} |"
        )
    for name, error in report.get("failed", {}).items():
        lines.append(f"| {name} | failed | {error} | | | | |")
    lines.append("")
    lines += figure_lines(report.get("estimate_error", {}))
    return "\n".join(lines)


def figure_lines(errors: dict[str, dict]) -> list[str]:
    """The page's accuracy figure against the truth it estimates, per strategy: in how many
    trained rounds it was shown, its mean absolute error and band coverage there."""
    if not any(e.get("estimated") for e in errors.values()):
        return ["The accuracy figure: no task was served at random, so no round showed one.", ""]
    lines = [
        "The accuracy figure (the round model's accuracy on the unlabeled items, from the "
        "items served at random) against the truth, over the rounds that showed it:",
        "",
        "| strategy | rounds shown / withheld | mean abs. error | bias | band coverage |",
        "|---|---|---|---|---|",
    ]
    for name, e in errors.items():
        if not e.get("shown"):
            lines.append(f"| {name} | 0 / {e['withheld']} | | | |")
            continue
        lines.append(f"| {name} | {e['shown']} / {e['withheld']} | {e['mae']:.3f} "
                     f"| {e['bias']:+.3f} | {e['band_coverage']:.0%} |")  # fmt: skip
    return lines + [""]


def parse_strategies(text: str) -> list[str]:
    valid = selector_names()
    if text.strip() == "all":
        return valid
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        raise SystemExit(f"unknown strategies {unknown or text!r}; valid: all, {', '.join(valid)}")
    return list(dict.fromkeys(names))


def selector_options_for(strategies: list[str], pairs: list[str]) -> dict[str, dict]:
    """{strategy: its options} from ``--selector-option`` pairs; an option that none of the
    chosen selectors takes, or a bad value, ends the run with the reason."""
    try:
        options = {name: parse_selector_options(name, pairs) for name in strategies}
    except ValueError as exc:
        raise SystemExit(f"--selector-option: {exc}") from None
    for pair in pairs:
        key = pair.partition("=")[0].strip()
        owner, dot, bare = key.rpartition(".")
        used = [
            n
            for n in strategies
            if (not dot or n == owner) and (bare if dot else key) in options[n]
        ]
        if not used:
            raise SystemExit(
                f"--selector-option {pair!r}: none of the strategies run ({', '.join(strategies)}) "
                "takes it"
            )
    return options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.simulate",
        description="Simulate annotation with ground truth and compare AL strategies.",
    )
    add_dataset_arguments(parser)
    parser.add_argument("--strategies", default="all", help="comma-separated names, or 'all'")
    parser.add_argument(
        "--selector-option",
        action="append",
        default=[],
        metavar="[SELECTOR.]KEY=VALUE",
        help="an option of the selectors that take it (autoal.prior=none, online=true, "
        "albl.horizon=10); repeatable",
    )
    parser.add_argument("--initial", type=int, default=20, help="random initial labels")
    parser.add_argument("--batch", type=int, default=20, help="labels per round")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument(
        "--seeds", type=int, default=5, help="how many seeds: F..F+S-1 (F: --first-seed)"
    )
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="the first seed (default 0): extends an earlier run with new seeds, each the same "
        "as it would be in one longer run",
    )
    parser.add_argument("--out", default=None, help="output directory (default results/<dataset>)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for the rounds (default 1: the heads are small, and extra threads "
        "only add synchronisation, up to 20x slower on a busy machine); 0 keeps torch's default",
    )
    parser.add_argument(
        "--serve-window",
        type=int,
        default=None,
        metavar="W",
        help="serve a random task among the top W each time (Label Studio Enterprise projects "
        "with members) instead of the first one",
    )
    parser.add_argument(
        "--audit-fraction",
        type=float,
        default=0.0,
        help="serve this share of the queue at random once the accuracy figure is trusted, as "
        "AUTOAL_AUDIT_FRACTION does (0: none)",
    )
    parser.add_argument(
        "--audit-until-trusted",
        type=float,
        default=0.0,
        help="serve this share of the queue at random while the accuracy figure is not trusted "
        "yet, as AUTOAL_AUDIT_UNTIL_TRUSTED does (0: --audit-fraction throughout)",
    )
    parser.add_argument(
        "--shortlist",
        type=int,
        default=0,
        metavar="N",
        help="k-means, core-set and BADGE see at most N candidates, a seeded random subset, as "
        "the backend's AUTOAL_SHORTLIST (default 20,000, which no packaged pool reaches); "
        "0: every candidate",
    )
    parser.add_argument(
        "--label-config",
        default=None,
        metavar="XML",
        help="the project's label config, with --dataset EXPORT.json (Label Studio's JSON export)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when every strategy ran, 1 when one crashed."""
    args = build_parser().parse_args(argv)
    threads = torch.get_num_threads()
    try:
        return run_benchmark(args)
    finally:
        torch.set_num_threads(threads)  # callers in the same process keep their setting


def run_kind(args: argparse.Namespace) -> str:
    """The task kind a run simulates: ``spans`` or ``boxes`` for their data sets or for a Label
    Studio export whose label config has ``<Labels>`` or ``<RectangleLabels>``; else
    ``choices``."""
    from benchmarks.box_data import BOX_DATASETS
    from benchmarks.span_data import SPAN_DATASETS

    if args.dataset in SPAN_DATASETS:
        return "spans"
    if args.dataset in BOX_DATASETS:
        return "boxes"
    if not args.label_config:
        return "choices"
    from autoal_backend.kinds import parse_label_config
    from autoal_backend.label_config import UnsupportedConfigError

    try:
        spec = parse_label_config(Path(args.label_config).read_text())
    except (OSError, UnsupportedConfigError) as exc:
        raise SystemExit(f"--label-config {args.label_config}: {exc}") from None
    return spec.kind


def run_benchmark(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    kind = run_kind(args)
    if kind != "choices":
        from benchmarks.box_simulate import run_box_benchmark
        from benchmarks.span_simulate import run_span_benchmark
        from model.selectors import mixture_names
        from model.strategies import strategy_names

        valid = mixture_names() + strategy_names(kind)
        names = (
            valid
            if args.strategies.strip() == "all"
            else [n.strip() for n in args.strategies.split(",") if n.strip()]
        )
        run = run_span_benchmark if kind == "spans" else run_box_benchmark
        return run(args, names, selector_options_for(names, args.selector_option))
    strategies = parse_strategies(args.strategies)
    options = selector_options_for(strategies, args.selector_option)
    if args.batch < 1 or args.rounds < 1 or args.seeds < 1:
        raise SystemExit("--batch, --rounds and --seeds must be at least 1")
    if args.first_seed < 0:
        raise SystemExit(f"--first-seed must be 0 or more, got {args.first_seed}")
    for flag, value in (("--audit-fraction", args.audit_fraction),
                        ("--audit-until-trusted", args.audit_until_trusted)):  # fmt: skip
        if not 0.0 <= value <= 1.0:
            raise SystemExit(f"{flag} must lie in [0, 1], got {value}")
    if args.serve_window is not None and args.serve_window < 1:
        raise SystemExit(f"--serve-window must be at least 1, got {args.serve_window}")
    if args.shortlist < 0:
        raise SystemExit(f"--shortlist must be 0 (every candidate) or more, got {args.shortlist}")
    device = resolve_device(args.device)
    started = time.perf_counter()
    data = load_dataset_for_cli(
        args.dataset,
        encoder=args.encoder,
        device=device,
        cache_dir=args.cache_dir,
        progress=not args.no_progress,
        imbalance=args.imbalance,
        label_config=Path(args.label_config).read_text() if args.label_config else None,
    )
    load_s = time.perf_counter() - started
    # Encoding (big matmuls) ran with every thread; the rounds' small heads do not gain from them.
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if not 0 < args.initial < data.pool_embeddings.shape[0]:
        raise SystemExit(
            f"--initial must be between 1 and {data.pool_embeddings.shape[0] - 1} "
            f"(the pool of {data.name}), got {args.initial}"
        )
    out = Path(args.out or Path("results") / f"simulate-{data.name}")
    out.mkdir(parents=True, exist_ok=True)
    pool, test = standardise_pair(data.pool_embeddings.to(device), data.test_embeddings.to(device))
    pool_labels, test_labels = data.pool_labels.to(device), data.test_labels.to(device)
    config = RoundConfig()
    print(
        f"{data.name}: pool {tuple(pool.shape)}, test {tuple(test.shape)}, encoder {data.encoder}, "
        f"device {device}, loaded in {load_s:.1f} s",
        file=sys.stderr,
    )

    runs: dict[str, list[RunResult]] = {}
    failed: dict[str, str] = {}
    seconds: dict[str, float] = {}
    total = len(strategies) * args.seeds * args.rounds
    bar = tqdm(
        total=total,
        file=sys.stderr,
        unit="round",
        disable=args.no_progress,
    )
    # Strategies outside, seeds inside: a strategy that crashes fails on its first seed, is
    # reported at once, and the others still run.
    for name in strategies:
        start = time.perf_counter()
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            bar.set_postfix_str(f"{name} seed {seed}")
            try:
                result = run_strategy(
                    name,
                    seed,
                    pool,
                    pool_labels,
                    test,
                    test_labels,
                    data.num_classes,
                    initial=args.initial,
                    batch=args.batch,
                    rounds=args.rounds,
                    config=config,
                    device=device,
                    on_round=lambda: bar.update(1),
                    options=options[name],
                    serve_window=args.serve_window,
                    audit_fraction=args.audit_fraction,
                    audit_until_trusted=args.audit_until_trusted,
                    shortlist=args.shortlist,
                )
            except StrategyFailed as failure:
                failed[name] = str(failure)
                tqdm.write(f"FAILED: {failure}\n{failure.detail}", file=sys.stderr)
                with open(out / "errors.log", "a") as log:
                    log.write(f"{failure}\n{failure.detail}\n")
                runs.pop(name, None)
                # Skip the bar past this strategy's remaining rounds.
                planned = (strategies.index(name) + 1) * args.seeds * args.rounds
                bar.update(max(planned - bar.n, 0))
                break
            runs.setdefault(name, []).append(result)
        seconds[name] = time.perf_counter() - start
    bar.close()

    with open(out / "rounds.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for results in runs.values():
            for result in results:
                for row in result.rows:
                    writer.writerow({"dataset": data.name, "encoder": data.encoder, **row})
    with open(out / "selections.jsonl", "w") as handle:
        for results in runs.values():
            for result in results:
                for entry in result.selections:
                    handle.write(json.dumps(entry) + "\n")

    report: dict = {
        "dataset": data.name,
        "aubc": {n: mean_std([r.aubc for r in rs]) for n, rs in runs.items()},
        "final_accuracy": {n: mean_std([r.accuracy[-1] for r in rs]) for n, rs in runs.items()},
        "aubc_macro_f1": {
            n: mean_std([aubc(r.labeled, r.macro_f1) for r in rs]) for n, rs in runs.items()
        },
        "final_macro_f1": {n: mean_std([r.macro_f1[-1] for r in rs]) for n, rs in runs.items()},
        "final_minority_recall": {
            n: mean_std([r.minority_recall[-1] for r in rs]) for n, rs in runs.items()
        },
    }
    if args.serve_window is not None:
        report["serve_window"] = args.serve_window
    if args.shortlist:
        report["shortlist"] = args.shortlist
    report["estimate_error"] = {n: estimate_error(rs) for n, rs in runs.items()}
    if args.audit_fraction > 0 or args.audit_until_trusted > 0:
        report["audit_fraction"] = args.audit_fraction
        report["audit_until_trusted"] = args.audit_until_trusted
    if any(options.values()):
        report["selector_options"] = {n: _json_safe(o) for n, o in options.items() if o}
    matched = labels_to_match_random(runs)
    if matched:
        report["labels_to_match_random"] = matched
    if failed:
        report["failed"] = failed
    header = {
        "dataset": data.name,
        "encoder": data.encoder,
        "pool": pool.shape[0],
        "test": test.shape[0],
        "classes": data.num_classes,
        "initial": args.initial,
        "batch": args.batch,
        "rounds": args.rounds,
        "seeds": f"{args.first_seed}..{args.first_seed + args.seeds - 1}",
        "device": device,
    }
    summary = summary_markdown(report, runs, header)
    timing = ", ".join(f"{n} {s:.1f} s" for n, s in seconds.items())
    summary += f"\nWall time: loading {load_s:.1f} s; per strategy (all seeds): {timing}.\n"
    (out / "summary.md").write_text(summary)
    if runs:
        plot_curves(runs, f"{data.name} ({data.encoder})", out / "learning_curves.png")
    print(summary)
    print(json.dumps(report))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
