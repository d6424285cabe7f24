"""Labeling episodes of box (object detection) tasks, with the true value of every choice AutoAL's
prior could make: what ``benchmarks.episodes`` is for choices, for the box prior.

    python -m benchmarks.box_episodes --families all --episodes 4 --workers 2 \\
        --out ~/.cache/autoal-backend/episodes-boxes

A task is drawn from one vision-synth shape **family** (``primitives``, ``symbols``,
``animals``, ``letters``): 2 to 8 of its shapes as the classes, a background (texture, noise,
gradient or a plain colour), up to 3-10 objects per image of varied sizes, and 0-2 unlabeled
distractor shapes from another family; 600 pool and 200 test scenes, embedded as the backend
embeds uploads (``mobilenet_v2_maps``). The family is the unit of the leave-one-data-set-out
protocol: the harness's ``boxes-shapes`` are primitives, ``boxes-symbols`` symbols, so a prior
judged on one of them is trained without its family (``benchmarks.meta_train --kind boxes
--exclude primitives``).

An episode runs the backend's box round with ground truth: 20 random images, then 10 rounds of
20. In the rounds of ``TRUTH_ROUNDS`` it records the round's state features
(``model.selectors.autoal.state``, computed on the box pool exactly as the backend does) and,
for each action of the prior (the uniform mixture, each strategy alone, the uniform mixture
without each), the batch its priority picks and the **true** mAP@.5 on the test scenes of the
detector retrained on the labeled images plus that batch (every action's detector with the same
seed, so the gains differ by the batch only). A behaviour policy then labels the batch of one
action drawn at random. Detector fits dominate the cost (19 per recorded round); rounds are
recorded more densely early, where the prior's choices differ most. Episodes are deterministic
functions of (family, index) and cached one file each.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from benchmarks.box_data import BoxCorpus, _require_vision_synth, embed_box_corpus, render_scenes
from benchmarks.box_simulate import BoxSplit, split_boxes, test_map
from benchmarks.kind_episodes import (
    EpisodeTask,
    generate_episode,
    generate_main,
    unique_batches,
)
from benchmarks.kind_episodes import run_episode as run_episode_on
from benchmarks.kind_episodes import training_rounds as kind_training_rounds
from model.kinds.boxes import BOX_PORTFOLIO, BoxModel, MapPool, make_box_pool
from model.pool import PoolState
from model.selectors.autoal.prior import TrainingRound

FAMILIES = ("primitives", "symbols", "animals", "letters")
POOL_SCENES = 600
TEST_SCENES = 200
SCENE_PIXELS = 320
INITIAL = 20
BATCH = 20
ROUNDS = 10
TRUTH_ROUNDS = (0, 1, 2, 3, 5, 7)
DEFAULT_OUT = Path.home() / ".cache" / "autoal-backend" / "episodes-boxes"
REGIME = "boxes"  # the group tag of the training rounds (one regime)


@dataclass(frozen=True)
class SceneSpec:
    """How one box task's scenes are drawn (everything vision-synth is told)."""

    family: str
    shapes: tuple[str, ...]
    background: str
    max_objects: int
    min_size: float
    max_size: float
    distractors: int
    data_seed: int

    def describe(self) -> str:
        return (
            f"{self.family} classes={len(self.shapes)} bg={self.background} "
            f"objects<={self.max_objects} size={self.min_size:.2f}-{self.max_size:.2f} "
            f"distractors={self.distractors}"
        )


def _synth():
    return _require_vision_synth()


def sample_spec(family: str, rng: np.random.Generator) -> SceneSpec:
    """One random box task of ``family``."""
    s = _synth()
    members = [str(m.value) for m in next(f for f in s.SHAPE_FAMILIES if f.name == family).members]
    count = int(rng.integers(2, min(8, len(members)) + 1))
    shapes = tuple(str(m) for m in rng.permutation(members)[:count])
    min_size = float(rng.uniform(0.05, 0.12))
    return SceneSpec(
        family=family,
        shapes=shapes,
        background=str(rng.choice(["texture", "noise", "gradient", "solid"])),
        max_objects=int(rng.integers(3, 11)),
        min_size=min_size,
        max_size=float(min_size + rng.uniform(0.08, 0.2)),
        distractors=int(rng.integers(0, 3)),
        data_seed=int(rng.integers(1 << 30)),
    )


def scene_corpus(spec: SceneSpec) -> BoxCorpus:
    """The pool and test scenes of ``spec`` (``POOL_SCENES + TEST_SCENES``)."""
    s = _synth()
    by_name = {str(m.value): m for f in s.SHAPE_FAMILIES for m in f.members}
    shapes = tuple(by_name[n] for n in spec.shapes)
    others = tuple(m for f in s.SHAPE_FAMILIES if f.name != spec.family for m in f.members)
    rng = np.random.default_rng(spec.data_seed)
    backgrounds = {
        "texture": lambda: s.TextureBackground(),
        "noise": lambda: s.NoiseBackground(sigma=float(rng.uniform(8, 32))),
        "gradient": lambda: s.GradientBackground(),
        "solid": lambda: s.SolidBackground(),
    }
    config = s.SyntheticConfig(
        img_size=SCENE_PIXELS, min_objects=1, max_objects=spec.max_objects,
        min_size_ratio=spec.min_size, max_size_ratio=spec.max_size,
        background=backgrounds[spec.background](), shapes=shapes,
        distractors=spec.distractors,
        distractor_shapes=tuple(others[i] for i in rng.permutation(len(others))[:6]),
    )  # fmt: skip
    return render_scenes(spec.family, config, shapes, POOL_SCENES + TEST_SCENES, spec.data_seed)


def build_split(spec: SceneSpec, cache_dir: Path | None = None) -> BoxSplit:
    """Embedded scenes split into pool and test, standardised as the harness does."""
    data = embed_box_corpus(scene_corpus(spec), cache_dir=cache_dir)
    return split_boxes(data, seed=spec.data_seed, test_size=TEST_SCENES)


def run_episode(split: BoxSplit, seed: int, rounds: int = ROUNDS,
                truth_rounds: tuple[int, ...] = TRUTH_ROUNDS, record_truth: bool = True) -> dict:  # fmt: skip
    """Simulate one episode (``benchmarks.kind_episodes.run_episode`` on the box pool)."""
    n = split.pool_features.shape[0]

    def make_pool(labeled: torch.Tensor, labeled_round: torch.Tensor, seed: int) -> PoolState:
        boxes = [split.pool_boxes[i] if bool(labeled[i]) else None for i in range(n)]
        return make_box_pool(split.pool_features, split.pool_maps, boxes, split.num_classes,
                             labeled_round=labeled_round, budget=BATCH, seed=seed)  # fmt: skip

    def truth(state, model, candidates, batches, seed):
        return _truth(split, state, model, candidates, batches, seed)

    task = EpisodeTask("boxes", tuple(BOX_PORTFOLIO), n, make_pool, truth)
    episode = run_episode_on(task, seed, initial=INITIAL, batch=BATCH, rounds=rounds,
                             truth_rounds=truth_rounds, record_truth=record_truth)  # fmt: skip
    return episode | {"classes": split.num_classes}


def _truth(split: BoxSplit, state, model: BoxModel, candidates: torch.Tensor,
           batches: torch.Tensor, seed: int) -> dict:  # fmt: skip
    """Each action's true mAP@.5 after retraining with its batch (distinct batches fitted once)."""
    gold = replace_boxes(state.parts, split.pool_boxes)
    labeled = state.labeled_indices()
    unique, inverse = unique_batches(batches)
    after = []
    for row in unique:
        items = torch.cat((labeled, candidates[row]))
        after.append(test_map(BoxModel.fit(gold, items, seed), split))
    values = torch.tensor([after[i] for i in inverse], dtype=torch.float64)
    before = test_map(model, split)
    return {
        "map50": values,  # [A] in the order of action_names(BOX_PORTFOLIO)
        "map50_gain": values - values[0],  # over the uniform mixture's batch
        "before": before,
        "labeled": int(labeled.numel()),
        "distinct_batches": int(unique.shape[0]),
    }


def replace_boxes(pool: MapPool, boxes: list[torch.Tensor]) -> MapPool:
    """``pool`` with every image's gold boxes (the truth fits label the candidate batches)."""
    return replace(pool, boxes=list(boxes))


def generate_one(out: str, family: str, index: int, cache_dir: str | None,
                 refeature: bool = False) -> str:  # fmt: skip
    """Make (or keep) one episode file; returns a one-line report. Runs in a worker process."""

    def simulate(seed: int, record_truth: bool) -> tuple[SceneSpec, dict]:
        spec = sample_spec(family, np.random.default_rng(seed))
        split = build_split(spec, Path(cache_dir) if cache_dir else None)
        return spec, run_episode(split, seed, record_truth=record_truth)

    return generate_episode(out, family, index, REGIME, tuple(BOX_PORTFOLIO), simulate,
                            refeature)  # fmt: skip


def training_rounds(episodes: list[dict], gain: str = "map50_gain") -> list[TrainingRound]:
    """The box prior's training rounds; each family weighs alike in the objective."""
    return kind_training_rounds(episodes, gain, REGIME)


def main(argv: list[str] | None = None) -> int:
    return generate_main(argv, "python -m benchmarks.box_episodes", FAMILIES, DEFAULT_OUT,
                         tuple(BOX_PORTFOLIO), generate_one)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
