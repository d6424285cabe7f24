"""What the episode generators of the non-choices kinds share (``benchmarks.box_episodes``,
``benchmarks.span_episodes``): the episode loop with ground truth, the batches of the prior's
actions, the training rounds and the command line.

An episode runs the backend's round with ground truth: ``initial`` random tasks, then rounds of
``batch``. In the rounds of ``truth_rounds`` it records the round's state features
(``model.selectors.autoal.state``, computed on the kind's pool exactly as the backend does) and,
for each action of the prior (the uniform mixture, each strategy alone, the uniform mixture
without each), what the kind's ``truth`` says of the batch its priority picks (the test metric
of the model retrained with it). A behaviour policy then labels the batch of one action drawn
at random.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.episodes import episode_seed, parse_counts, weigh_by_group
from model.kinds import get_kind
from model.pool import PoolState
from model.ranking import rank_order
from model.selectors.autoal.geometry import GEOMETRY_FEATURES
from model.selectors.autoal.prior import TrainingRound, action_names, action_weights
from model.selectors.autoal.state import FEATURES, FEATURES_VERSION, round_features
from model.strategies import score_matrix
from model.task_model import TaskModelConfig

# (state, model, candidates [M], batches [A, B], seed) -> the round's recorded truth
Truth = Callable[[PoolState, object, torch.Tensor, torch.Tensor, int], dict]
# (labeled [N] bool, labeled_round [N], seed) -> the kind's pool with the labeled tasks' gold
MakePool = Callable[[torch.Tensor, torch.Tensor, int], PoolState]


@dataclass(frozen=True)
class EpisodeTask:
    """One task to run episodes on: the kind, its pool size, and how to build and judge it."""

    kind: str
    portfolio: tuple[str, ...]
    size: int
    make_pool: MakePool
    truth: Truth
    config: TaskModelConfig = TaskModelConfig()


def action_batches(scores: torch.Tensor, portfolio: tuple[str, ...] | list[str], seed: int,
                   batch: int) -> torch.Tensor:  # fmt: skip
    """[A, B] the candidate positions each prior action's priority puts first."""
    weights = action_weights(list(portfolio))  # [A, K]
    return torch.stack([rank_order(scores @ w, seed)[:batch] for w in weights])


def unique_batches(batches: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """The distinct batches [U, B] (each sorted) and, per action, the index of its batch."""
    unique, inverse = torch.unique(torch.sort(batches, dim=1).values, dim=0, return_inverse=True)
    return unique, inverse.tolist()


def run_episode(task: EpisodeTask, seed: int, *, initial: int, batch: int, rounds: int,
                truth_rounds: tuple[int, ...], record_truth: bool = True) -> dict:  # fmt: skip
    """Simulate one episode; returns the recorded rounds and the pool size. Without
    ``record_truth`` the same episode (the truth draws no random numbers) records only the
    state features: how ``refeature_episode`` brings cached episodes to new features."""
    rng = np.random.default_rng(seed)
    kind = get_kind(task.kind)
    names = list(task.portfolio)
    n = task.size
    labeled = torch.zeros(n, dtype=torch.bool)
    labeled_round = torch.full((n,), -1, dtype=torch.long)
    first = torch.as_tensor(rng.choice(n, initial, replace=False))
    labeled[first] = True
    labeled_round[first] = 0
    records = []
    for index in range(rounds):
        if int((~labeled).sum()) <= batch:
            break
        round_seed = seed * 1009 + index
        state = task.make_pool(labeled, labeled_round, round_seed)
        if kind.cold_start(state, 1):
            picked = torch.as_tensor(rng.choice(torch.nonzero(~labeled).flatten().numpy(), batch,
                                                replace=False))  # fmt: skip
        else:
            model = kind.fit(state, task.config, round_seed)
            state = kind.trained(state, model)
            candidates = state.unlabeled_indices()
            scores = score_matrix(state, names, candidates)  # [M, K]
            batches = action_batches(scores, task.portfolio, round_seed, batch)  # [A, B]
            choice = int(rng.integers(batches.shape[0]))
            if index in truth_rounds:
                record = (
                    task.truth(state, model, candidates, batches, round_seed)
                    if record_truth
                    else {}
                )
                record |= {
                    "round": index,
                    "features": round_features(state, scores, names, candidates),
                    "choice": choice,
                }
                records.append(record)
            picked = candidates[batches[choice]]
        labeled[picked] = True
        labeled_round[picked] = index + 1
    return {"rounds": records, "pool": n, "feature_names": list(FEATURES),
            "features_version": FEATURES_VERSION}  # fmt: skip


def training_rounds(episodes: list[dict], gain: str, regime: str) -> list[TrainingRound]:
    """A kind's prior training rounds; each family weighs alike in the objective."""
    rounds = [
        TrainingRound(record["features"], record[gain].float(), f"{episode['family']}/{regime}")
        for episode in episodes
        for record in episode["rounds"]
    ]
    return weigh_by_group(rounds)


def episode_path(out: Path, family: str, index: int) -> Path:
    return out / family / f"{index:04d}.pt"


def refeature_episode(episode: dict, fresh: dict) -> dict:
    """``episode`` with the state features of ``fresh`` (the same episode re-run without the
    truth): checks that the re-run took the same path (the same pool, the same choices, and the
    features before the geometry ones equal) before adopting them."""
    old, new = episode["rounds"], fresh["rounds"]
    if episode.get("pool", fresh["pool"]) != fresh["pool"]:
        raise ValueError(
            f"the re-run drew a pool of {fresh['pool']}, the episode {episode['pool']}"
        )
    if [r["round"] for r in old] != [r["round"] for r in new]:
        raise ValueError("the re-run recorded other rounds than the episode")
    base = FEATURES.index(GEOMETRY_FEATURES[0])  # computed the same way since they were recorded
    for a, b in zip(old, new, strict=True):
        width = min(base, a["features"].numel())
        if a["choice"] != b["choice"] or not torch.allclose(a["features"][:width], b["features"][:width],
                                                            atol=1e-3, rtol=1e-3):  # fmt: skip
            raise ValueError(f"the re-run of round {a['round']} took another path")
    rounds = [a | {"features": b["features"]} for a, b in zip(old, new, strict=True)]
    return episode | {"rounds": rounds, "feature_names": fresh["feature_names"],
                      "features_version": fresh["features_version"]}  # fmt: skip


def _save(episode: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    torch.save(episode, temporary)
    temporary.replace(path)


def generate_episode(out: str, family: str, index: int, regime: str, portfolio: tuple[str, ...],
                     simulate: Callable[[int, bool], tuple[Any, dict]],
                     refeature: bool = False) -> str:  # fmt: skip
    """Make (or keep) one episode file of a kind; returns a one-line report.
    ``simulate(seed, record_truth)`` draws the task (a dataclass with ``describe()``) and runs
    its episode. With ``refeature`` a cached episode recorded with other state features (another
    ``FEATURES_VERSION``) gets the current ones (``refeature_episode``). Runs in a worker."""
    torch.set_num_threads(1)
    path = episode_path(Path(out), family, index)
    seed = episode_seed(regime, family, index)
    started = time.perf_counter()
    if path.is_file():
        if not refeature:
            return f"{path}: cached"
        episode = torch.load(path, weights_only=False)
        if episode.get("features_version") == FEATURES_VERSION:
            return f"{path}: features current"
        episode = refeature_episode(episode, simulate(seed, False)[1])
        _save(episode, path)
        return f"{path}: refeatured, {time.perf_counter() - started:.0f} s"
    spec, episode = simulate(seed, True)
    episode |= {"spec": asdict(spec), "family": family, "regime": regime, "index": index,
                "portfolio": list(portfolio)}  # fmt: skip
    _save(episode, path)
    seconds = time.perf_counter() - started
    return f"{path}: {spec.describe()}, {len(episode['rounds'])} rounds, {seconds:.0f} s"


def build_parser(prog: str, families: tuple[str, ...], out: Path) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Simulated labeling episodes with the true gain of every prior action.",
    )
    parser.add_argument("--families", default="all", help=f"of {', '.join(families)}, or all")
    parser.add_argument("--episodes", type=int, default=4, help="episodes per family")
    parser.add_argument("--first", type=int, default=0, help="index of the first episode")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--cache-dir", default=None, help="embedding cache directory")
    parser.add_argument("--out", default=str(out))
    parser.add_argument("--refeature", action="store_true",
                        help="bring cached episodes to the current state features (re-run "
                        "without the truth) instead of keeping them as they are")  # fmt: skip
    return parser


def generate_main(argv: list[str] | None, prog: str, families: tuple[str, ...], out: Path,
                  portfolio: tuple[str, ...],
                  generate_one: Callable[[str, str, int, str | None, bool], str]) -> int:  # fmt: skip
    """The generators' command line: episodes of the chosen families, in worker processes,
    each family's first episode before any family's second."""
    args = build_parser(prog, families, out).parse_args(argv)
    chosen = list(families) if args.families == "all" else parse_counts(args.families)
    unknown = sorted(set(chosen) - set(families))
    if unknown:
        raise SystemExit(f"unknown families {unknown}; valid: all, {', '.join(families)}")
    started = time.perf_counter()
    jobs = [(f, i) for i in range(args.first, args.first + args.episodes) for f in chosen]
    target = str(Path(args.out).expanduser())
    if args.workers <= 1:
        for f, i in jobs:
            print(generate_one(target, f, i, args.cache_dir, args.refeature), file=sys.stderr,
                  flush=True)  # fmt: skip
    else:
        with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(generate_one, target, f, i, args.cache_dir, args.refeature)
                       for f, i in jobs]  # fmt: skip
            for future in futures:
                print(future.result(), file=sys.stderr, flush=True)
    print(json.dumps({"episodes": len(jobs), "seconds": round(time.perf_counter() - started, 1),
                      "actions": action_names(list(portfolio))}))  # fmt: skip
    return 0
