"""Labeling episodes for meta-training AutoAL's prior: simulated rounds on many tasks, with the
true value of every choice the prior could make.

    python -m benchmarks.episodes --families all --regimes small,large --episodes 24 \\
        --large-episodes 8 --workers 2 --out ~/.cache/autoal-backend/episodes

A task is drawn from one **family**: a packaged data set (digits, MNIST, BBC News, Rotten
Tomatoes) and everything derived from it (a subset of 2 to all classes, classes merged into
groups, a long-tailed version with imbalance ratio 10 or 100, another representation: raw pixels
at two resolutions or MobileNetV2 for the digit sets, MiniLM for the texts), or a synthetic
Gaussian mixture (2-10 classes, 1-3 modes per class, 8-128 dimensions, varied separation and
anisotropy). The family is the unit of the leave-one-data-set-out protocol: a prior judged on a
data set never saw its family (``benchmarks.loo``). No other data source is used.

An episode runs the backend's round protocol with ground truth (20 random initial labels, then
batches: ``small`` 10 rounds of 20, ``mid`` 10 rounds of 50 (the long-tailed sets' judged
20-520), ``noisy`` as small with an annotator wrong on 10-30% of the items, ``large`` 20
rounds of 50). In every round (every other
one in ``large``) it records the round's state features (``model.selectors.autoal.state``), the
portfolio's rank-normalised scores of the candidates, and for 22 candidate weight vectors (each
strategy alone, the uniform mixture, the uniform mixture without each strategy, three random
Dirichlet(1) mixtures) the batch their priority would pick and the **true** test gain of
labeling it (accuracy, macro-F1 and log-likelihood of the task model retrained on labeled +
batch, minus before; the 22 fits share one stacked training, ``TaskModel.fit_extensions``). A
behaviour policy that explores then labels the batch of one of the 22 at random, so the states
cover what any mixture would meet. Episodes are deterministic
functions of (regime, family, index) and cached one file each: reruns and retraining the prior
skip what exists.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

from benchmarks.datasets import default_cache_dir, load_dataset, long_tail_subset
from model.pool import make_pool
from model.ranking import rank_order
from model.selectors.autoal.prior import TrainingRound
from model.selectors.autoal.state import round_features
from model.strategies import PORTFOLIO, score_matrix
from model.task_model import TaskModel, TaskModelConfig

FAMILIES = ("digits", "mnist", "bbc", "rotten", "synthetic")
# Representations of each packaged family (MobileNetV2 only in the small regime: its 1,280-d
# fits at 1,000 labels cost minutes per round).
ENCODERS = {
    "digits": ("pixels", "mobilenet_v2@image_size=64"),
    "mnist": ("pixels", "pixels@side=14", "mobilenet_v2@image_size=64"),
    "bbc": ("minilm",),
    "rotten": ("minilm",),
}
SLOW_ENCODERS = {"mobilenet_v2@image_size=64"}
DIRICHLET_MIXTURES = 3


@dataclass(frozen=True)
class Regime:
    name: str
    initial: int
    batch: int
    rounds: int
    truth_every: int  # record the truth in every n-th round (the others only label)
    min_pool: int
    families: tuple[str, ...] = FAMILIES  # large: digits (1,297) and BBC (1,725) are under min_pool
    noisy: bool = False  # the annotator's labels are wrong for a share of the items (LABEL_NOISE)

    @property
    def big(self) -> bool:
        """Batches of 50 (mid, large): pools of 1,000 and more and fits at up to 1,020 labels,
        so long tails are drawn from the whole source and the slow encoders are left out. The
        other regimes (small, noisy) draw the same tasks."""
        return self.batch > 20


# How often a noisy regime's annotator answers a wrong class: drawn per task.
LABEL_NOISE = (0.1, 0.3)

REGIMES = {
    "small": Regime("small", 20, 20, 10, 1, 600),
    # The judged long-tailed budget (issue 24): batches of 50 up to 520 labels.
    "mid": Regime("mid", 20, 50, 10, 1, 1000),
    # 20-220 labels from an annotator who is wrong on 10-30% of the items (issue 24: pools
    # whose labels disagree with the embedding's geometry).
    "noisy": Regime("noisy", 20, 20, 10, 1, 600, noisy=True),
    "large": Regime("large", 20, 50, 20, 2, 2000, ("mnist", "rotten", "synthetic")),
}


@dataclass(frozen=True)
class TaskSpec:
    """How one task is derived. ``classes``: kept source classes; ``groups``: merged into this
    many; ``imbalance``: long-tail ratio (1 = as is); the rest describes synthetic tasks."""

    family: str
    encoder: str
    data_seed: int
    classes: tuple[int, ...] | None = None
    groups: int | None = None
    imbalance: float = 1.0
    long_tail_at_load: bool = False
    num_classes: int = 0
    dim: int = 0
    modes: int = 1
    separation: float = 0.0
    anisotropy: float = 1.0
    label_noise: float = 0.0  # the share of pool items whose given label is another class

    def describe(self) -> str:
        parts = [self.family, self.encoder]
        if self.classes is not None:
            parts.append(f"classes={len(self.classes)}")
        if self.groups is not None:
            parts.append(f"groups={self.groups}")
        if self.imbalance > 1:
            parts.append(f"lt{self.imbalance:g}")
        if self.family == "synthetic":
            parts.append(
                f"C={self.num_classes},d={self.dim},modes={self.modes},sep={self.separation:.2f}"
            )
        if self.label_noise > 0:
            parts.append(f"noise={self.label_noise:.2f}")
        return " ".join(parts)


@dataclass
class Task:
    """A task ready to simulate: standardised pool and test features, int64 labels."""

    spec: TaskSpec
    pool: torch.Tensor
    pool_labels: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int


def episode_seed(regime: str, family: str, index: int) -> int:
    """A seed that depends only on (regime, family, index)."""
    text = f"{regime}/{family}/{index}"
    return int.from_bytes(text.encode(), "little") % (2**31 - 1)


def sample_spec(family: str, regime: Regime, rng: np.random.Generator) -> TaskSpec:
    """One random derivation of ``family`` that the regime can run (with its annotator's
    error rate in a noisy regime; drawn last, so the other regimes' draws are unchanged)."""
    spec = _derivation(family, regime, rng)
    if regime.noisy:
        spec = replace(spec, label_noise=float(rng.uniform(*LABEL_NOISE)))
    return spec


def _derivation(family: str, regime: Regime, rng: np.random.Generator) -> TaskSpec:
    imbalance = float(rng.choice([1.0, 1.0, 10.0, 100.0]))
    if family == "synthetic":
        return TaskSpec(
            family,
            "synthetic",
            int(rng.integers(1 << 30)),
            imbalance=imbalance,
            num_classes=int(rng.integers(2, 11)),
            dim=int(rng.choice([8, 16, 32, 64, 128])),
            modes=int(rng.integers(1, 4)),
            separation=float(rng.uniform(0.75, 3.0)),
            anisotropy=float(rng.choice([1.0, 3.0, 10.0])),
        )
    encoders = [e for e in ENCODERS[family] if not regime.big or e not in SLOW_ENCODERS]
    encoder = str(rng.choice(encoders))
    data_seed = int(rng.integers(0, 4))
    source_classes = {"digits": 10, "mnist": 10, "bbc": 5, "rotten": 2}[family]
    if regime.big and family in ("mnist", "rotten") and imbalance > 1:
        # A big pool: the long tail is drawn from the whole source.
        return TaskSpec(family, encoder, data_seed, imbalance=imbalance, long_tail_at_load=True)
    classes: tuple[int, ...] | None = None
    groups: int | None = None
    if source_classes > 2 and rng.random() < 0.5:
        size = int(rng.integers(2, source_classes))
        classes = tuple(int(c) for c in rng.permutation(source_classes)[:size])
    kept = len(classes) if classes is not None else source_classes
    if kept >= 4 and rng.random() < 0.3:
        groups = int(rng.integers(2, kept))
    return TaskSpec(family, encoder, data_seed, classes, groups, imbalance)


def synthetic_arrays(spec: TaskSpec, pool_size: int = 3000, test_size: int = 2000):
    """Pool and test features and labels of a synthetic task: each class a mixture of
    ``modes`` Gaussians; centres N(0, s^2/2 I) so that two centres lie ~s noise standard
    deviations apart whatever the dimension; noise scaled per dimension (anisotropy)."""
    rng = np.random.default_rng(spec.data_seed)
    c, d = spec.num_classes, spec.dim
    centres = rng.normal(0.0, spec.separation / math.sqrt(2.0), size=(c, spec.modes, d))
    scale = np.exp(rng.uniform(-0.5, 0.5, size=d) * math.log(spec.anisotropy))
    rotation = np.linalg.qr(rng.normal(size=(d, d)))[0]
    profile = spec.imbalance ** (-np.arange(c) / max(c - 1, 1))
    order = rng.permutation(c)  # which class is the rare one is random
    share = profile[np.argsort(order)] / profile.sum()

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.choice(c, size=n, p=share)
        labels[:c] = np.arange(c)  # every class present
        modes = rng.integers(0, spec.modes, size=n)
        x = centres[labels, modes] + rng.normal(size=(n, d)) * scale
        return (x @ rotation).astype(np.float32), labels.astype(np.int64)

    return (*draw(pool_size), *draw(test_size))


def _derive(labels: np.ndarray, spec: TaskSpec, rng: np.random.Generator) -> np.ndarray:
    """Map source labels to the task's (-1 = not in the task): subset, then merged groups."""
    source = int(labels.max()) + 1
    kept = list(spec.classes) if spec.classes is not None else list(range(source))
    mapping = np.full(source, -1, dtype=np.int64)
    if spec.groups is not None:
        assignment = rng.permutation(np.arange(len(kept)) % spec.groups)
        for position, cls in enumerate(kept):
            mapping[cls] = assignment[position]
    else:
        for position, cls in enumerate(kept):
            mapping[cls] = position
    return mapping[labels]


def build_task(spec: TaskSpec, cache_dir: Path | None = None, pool_cap: int = 3000) -> Task:
    """Load (or generate) and derive the task of ``spec``; features standardised with the
    pool's statistics, as the harness does."""
    rng = np.random.default_rng(spec.data_seed + 17)
    if spec.family == "synthetic":
        px, py, tx, ty = synthetic_arrays(spec)
        pool, pool_labels = torch.from_numpy(px), torch.from_numpy(py)
        test, test_labels = torch.from_numpy(tx), torch.from_numpy(ty)
        num_classes = spec.num_classes
    else:
        data = load_dataset(
            spec.family,
            spec.data_seed,
            encoder=spec.encoder,
            cache_dir=cache_dir,
            progress=False,
            imbalance=spec.imbalance if spec.long_tail_at_load else 1.0,
        )
        arrays = []
        for x, y in (
            (data.pool_embeddings, data.pool_labels),
            (data.test_embeddings, data.test_labels),
        ):
            mapped = _derive(y.numpy(), spec, np.random.default_rng(spec.data_seed + 29))
            keep = np.nonzero(mapped >= 0)[0]
            arrays.append((x[keep], mapped[keep]))
        (pool, py), (test, ty) = arrays
        num_classes = int(py.max()) + 1
        if spec.imbalance > 1 and not spec.long_tail_at_load:
            # Which class becomes rare is random: relabel by a permutation, then cut the tail.
            relabel = rng.permutation(num_classes)
            py, ty = relabel[py], relabel[ty]
            keep_pool = long_tail_subset(
                py, np.arange(len(py)), spec.imbalance, None, spec.data_seed
            )
            keep_test = long_tail_subset(
                ty, np.arange(len(ty)), spec.imbalance, None, spec.data_seed + 1
            )
            pool, py, test, ty = pool[keep_pool], py[keep_pool], test[keep_test], ty[keep_test]
        pool_labels, test_labels = torch.from_numpy(py), torch.from_numpy(ty)
    if pool.shape[0] > pool_cap:
        kept = torch.from_numpy(np.sort(rng.permutation(pool.shape[0])[:pool_cap]))
        pool, pool_labels = pool[kept], pool_labels[kept]
    if spec.label_noise > 0:
        pool_labels = noisy_labels(pool_labels, num_classes, spec.label_noise, spec.data_seed)
    mean, std = pool.mean(dim=0, keepdim=True), pool.std(dim=0, keepdim=True).clamp_min(1e-6)
    return Task(
        spec, (pool - mean) / std, pool_labels, (test - mean) / std, test_labels, num_classes
    )


def noisy_labels(labels: torch.Tensor, num_classes: int, rate: float, seed: int) -> torch.Tensor:
    """What an annotator who is wrong on a share ``rate`` of the items answers: each such item
    another class, uniformly (the test labels stay true)."""
    rng = np.random.default_rng(seed + 41)
    wrong = torch.from_numpy(rng.random(labels.numel()) < rate)
    offset = torch.from_numpy(rng.integers(1, num_classes, size=labels.numel()))
    return torch.where(wrong, (labels + offset) % num_classes, labels)


def macro_f1(predicted: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    scores = []
    for c in range(num_classes):
        tp = float(((predicted == c) & (labels == c)).sum())
        denominator = float((predicted == c).sum() + (labels == c).sum())
        scores.append(2 * tp / denominator if denominator else 0.0)
    return float(np.mean(scores))


def _metrics(model: TaskModel, task: Task) -> tuple[float, float, float]:
    """Test accuracy, macro-F1 and mean log-probability of the true class."""
    probs = model.predict_proba(task.test)
    predicted = probs.argmax(dim=1)
    accuracy = float((predicted == task.test_labels).float().mean())
    log_likelihood = float(
        torch.log(probs.gather(1, task.test_labels[:, None]).clamp_min(1e-12)).mean()
    )
    return accuracy, macro_f1(predicted, task.test_labels, task.num_classes), log_likelihood


def candidate_weights(k: int, rng: np.random.Generator, extras: int = 0) -> torch.Tensor:
    """[J, K + E]: each strategy alone, the uniform mixture, the uniform mixture without each
    one strategy (what moving a little away from uniform does), random Dirichlet(1) mixtures,
    all over the K portfolio members; then each of the E extras alone (no member of any
    mixture: ``model.selectors.autoal.prior.action_names``)."""
    without = (1.0 - np.eye(k)) / (k - 1)
    rows = np.concatenate([
        np.eye(k),
        np.full((1, k), 1.0 / k),
        without,
        rng.dirichlet(np.ones(k), DIRICHLET_MIXTURES),
    ])  # fmt: skip
    rows = np.concatenate([rows, np.zeros((rows.shape[0], extras))], axis=1)
    alone = np.concatenate([np.zeros((extras, k)), np.eye(extras)], axis=1)
    return torch.tensor(np.concatenate([rows, alone]), dtype=torch.float32)


UNIFORM_ROW = len(PORTFOLIO)  # the uniform mixture's row in candidate_weights
# Strategies the prior may choose alone that are no member of the uniform mixture: TypiClust
# (Hacohen et al. 2022) beats k-means at a few labels per class on all eight judged sets, but
# as a member of the mixture it costs on long-tailed digits (docs/benchmarks.md, issue 24).
EXTRAS: tuple[str, ...] = ("typiclust",)


def run_episode(
    task: Task, regime: Regime, seed: int, config: TaskModelConfig | None = None
) -> dict:
    """Simulate one episode; returns the recorded rounds (tensors) and the episode's facts.
    ``config``: the task model's (the backend's default unless a test asks for a faster one)."""
    rng = np.random.default_rng(seed)
    n = task.pool.shape[0]
    config = config or TaskModelConfig()
    labels = torch.full((n,), -1, dtype=torch.int64)
    first = torch.from_numpy(rng.choice(n, regime.initial, replace=False))
    labels[first] = task.pool_labels[first]
    labeled_round = torch.where(labels >= 0, 0, -1)
    names = [*PORTFOLIO, *EXTRAS]
    rounds = []
    for index in range(regime.rounds):
        unlabeled = int((labels < 0).sum())
        if unlabeled <= regime.batch:
            break
        round_seed = seed * 1009 + index
        state = make_pool(
            task.pool, labels, task.num_classes, labeled_round=labeled_round,
            budget=regime.batch, seed=round_seed,
        )  # fmt: skip
        labeled = state.labeled_indices()
        model = TaskModel.fit(
            state.features[labeled], state.targets[labeled], config=config, seed=round_seed
        )
        state.model, state.probs = model, model.predict_proba(state.features)
        candidates = state.unlabeled_indices()
        scores = score_matrix(state, names, candidates)  # [M, K + E]
        weights = candidate_weights(len(PORTFOLIO), rng, len(EXTRAS))  # [J, K + E]
        batches = torch.stack(
            [rank_order(scores @ w, round_seed)[: regime.batch] for w in weights]
        )  # [J, B] candidate positions
        choice = int(rng.integers(weights.shape[0]))
        if index % regime.truth_every == 0:
            rounds.append(
                _truth(task, state, model, scores, weights, batches, choice, round_seed, config)
                | {"round": index}
            )
        picked = candidates[batches[choice]]
        labels[picked] = task.pool_labels[picked]
        labeled_round[picked] = index + 1
    return {"rounds": rounds, "pool": n, "classes": task.num_classes}


def _truth(task, state, model, scores, weights, batches, choice, seed, config) -> dict:
    """The round's record: state, scores and each candidate batch's true gain."""
    candidates = state.unlabeled_indices()
    labeled = state.labeled_indices()
    unique, inverse = torch.unique(torch.sort(batches, dim=1).values, dim=0, return_inverse=True)
    items = candidates[unique]  # [J', B]
    extra_targets = torch.nn.functional.one_hot(task.pool_labels[items], task.num_classes).float()
    fitted = TaskModel.fit_extensions(
        state.features[labeled], state.targets[labeled], state.features[items], extra_targets,
        config=config, seed=seed,
    )  # fmt: skip
    before = _metrics(model, task)
    after = [_metrics(m, task) for m in fitted]
    gains = torch.tensor(
        [[a - b for a, b in zip(after[i], before, strict=True)] for i in inverse.tolist()]
    )
    counts = state.targets[labeled].sum(dim=0)
    return {
        # the state reads the portfolio's scores only, as the selector does
        "features": round_features(state, scores[:, : len(PORTFOLIO)], list(PORTFOLIO), candidates),
        "scores": scores.half(),
        "probs": state.probs[candidates].half(),
        "counts": counts,
        "labeled": int(labeled.numel()),
        "batch": int(batches.shape[1]),
        "weights": weights,
        "batches": batches.to(torch.int32),
        "accuracy_gain": gains[:, 0],
        "macro_f1_gain": gains[:, 1],
        "log_likelihood_gain": gains[:, 2],
        "before": torch.tensor(before),
        "choice": choice,
    }


def episode_path(out: Path, regime: str, family: str, index: int) -> Path:
    return out / regime / family / f"{index:04d}.pt"


def generate_one(out: str, regime_name: str, family: str, index: int, cache_dir: str | None) -> str:
    """Make (or keep) one episode file; returns a one-line report. Runs in a worker process."""
    torch.set_num_threads(1)
    path = episode_path(Path(out), regime_name, family, index)
    if path.is_file():
        return f"{path}: cached"
    regime = REGIMES[regime_name]
    seed = episode_seed(regime_name, family, index)
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    for _attempt in range(20):  # draw until the regime can run the task
        spec = sample_spec(family, regime, rng)
        task = build_task(spec, Path(cache_dir) if cache_dir else None)
        if task.pool.shape[0] >= regime.min_pool:
            break
    else:
        raise RuntimeError(f"{family}: no task large enough for the {regime_name} regime")
    episode = run_episode(task, regime, seed)
    episode |= {"spec": asdict(spec), "family": family, "regime": regime_name, "index": index}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    torch.save(episode, temporary)
    temporary.replace(path)
    seconds = time.perf_counter() - started
    return f"{path}: {spec.describe()}, pool {task.pool.shape[0]}, {len(episode['rounds'])} rounds, {seconds:.0f} s"


def generate(
    out: Path,
    families: list[str],
    regimes: dict[str, int],
    workers: int = 1,
    cache_dir: Path | None = None,
) -> list[Path]:
    """Every episode of ``regimes`` ({regime: episodes per family}) for ``families``."""
    jobs = [
        (r, f, i)
        for r, count in regimes.items()
        for f in families
        if f in REGIMES[r].families
        for i in range(count)
    ]
    cache = str(cache_dir or default_cache_dir())
    if workers <= 1:
        for job in jobs:
            print(generate_one(str(out), *job, cache), file=sys.stderr, flush=True)
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(generate_one, str(out), *job, cache) for job in jobs]
            for future in futures:
                print(future.result(), file=sys.stderr, flush=True)
    return [episode_path(out, *job) for job in jobs]


def load_episodes(paths: list[Path]) -> list[dict]:
    return [torch.load(p, weights_only=False) for p in paths]


def action_gains(record: dict, gain: str = "accuracy_gain") -> torch.Tensor:
    """[A] a recorded round's true gain of each prior action (``model.selectors.autoal.prior``) over the
    uniform mixture: the candidate rows are each strategy (0..K-1), uniform (K), uniform
    without each strategy (K+1..2K), random mixtures (not actions), then each extra alone (as
    many as the record holds rows beyond the random mixtures)."""
    k = len(PORTFOLIO)
    values = record[gain].float()
    first_extra = 2 * k + 1 + DIRICHLET_MIXTURES
    order = torch.cat((torch.tensor([k]), torch.arange(k), torch.arange(k + 1, 2 * k + 1),
                       torch.arange(first_extra, values.numel())))  # fmt: skip
    return values[order] - values[k]


def training_rounds(episodes: list[dict], gain: str = "accuracy_gain") -> list[TrainingRound]:
    """The prior's training rounds from recorded episodes; each family (and regime) weighs
    alike in the objective, however many rounds it holds."""
    rounds = [
        TrainingRound(
            record["features"],
            action_gains(record, gain),
            f"{episode['family']}/{episode['regime']}",
        )
        for episode in episodes
        for record in episode["rounds"]
    ]
    return weigh_by_group(rounds)


def weigh_by_group(rounds: list[TrainingRound]) -> list[TrainingRound]:
    """``rounds`` with each group (family and regime) weighing alike in the objective, however
    many rounds it holds."""
    per_group: dict[str, int] = {}
    for r in rounds:
        per_group[r.group] = per_group.get(r.group, 0) + 1
    for r in rounds:
        r.weight = 1.0 / per_group[r.group]
    return rounds


def parse_counts(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.episodes",
        description="Simulated labeling episodes with the true gain of every candidate batch.",
    )
    parser.add_argument(
        "--families", default="all", help=f"comma-separated of {', '.join(FAMILIES)}, or all"
    )
    parser.add_argument(
        "--regimes",
        default="small,large",
        help="small (20-220 labels), mid (20-520), noisy (20-220, wrong labels), large (20-1,020)",
    )
    parser.add_argument("--episodes", type=int, default=24, help="small-regime episodes per family")
    parser.add_argument(
        "--mid-episodes", type=int, default=12, help="mid-regime episodes per family"
    )
    parser.add_argument(
        "--noisy-episodes", type=int, default=12, help="noisy-regime episodes per family"
    )
    parser.add_argument(
        "--large-episodes", type=int, default=8, help="large-regime episodes per family"
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--cache-dir", default=None, help="embedding cache directory")
    parser.add_argument(
        "--out", default=str(Path.home() / ".cache" / "autoal-backend" / "episodes")
    )
    return parser


def selected_families(text: str) -> list[str]:
    families = list(FAMILIES) if text.strip() == "all" else parse_counts(text)
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise SystemExit(f"unknown families {unknown}; valid: all, {', '.join(FAMILIES)}")
    return families


def regime_counts(args: argparse.Namespace) -> dict[str, int]:
    regimes = parse_counts(args.regimes)
    unknown = sorted(set(regimes) - set(REGIMES))
    if unknown:
        raise SystemExit(f"unknown regimes {unknown}; valid: {', '.join(REGIMES)}")
    counts = {
        "small": args.episodes,
        "mid": args.mid_episodes,
        "noisy": args.noisy_episodes,
        "large": args.large_episodes,
    }
    return {r: counts[r] for r in regimes if counts[r] > 0}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    families = selected_families(args.families)
    regimes = regime_counts(args)
    started = time.perf_counter()
    paths = generate(Path(args.out).expanduser(), families, regimes, args.workers,
                     Path(args.cache_dir) if args.cache_dir else None)  # fmt: skip
    rounds = sum(len(torch.load(p, weights_only=False)["rounds"]) for p in paths)
    print(
        json.dumps(
            {
                "episodes": len(paths),
                "rounds": rounds,
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
