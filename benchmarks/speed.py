"""Speed of one backend round, stage by stage, and of the embedding path against the encoders.

    python -m benchmarks.speed --pool 1000,10000,100000 --dim 384 --classes 10 --labeled 1000 \\
        --repeats 3 --plot docs/round_time.png

**Rounds.** For each pool size P the pool holds P unlabeled items plus ``--labeled`` labeled
ones (synthetic embeddings: a seeded Gaussian mixture, one component per class, as cached
encoder outputs would be). One round is exactly what ``autoal_backend.rounds.runner.RoundRunner.run``
does between reading the embeddings and talking to Label Studio: ``standardise`` the
embeddings, ``model.active_round.run_round`` with the AutoAL selector (task model, cross-fitted
search, every portfolio strategy on the unlabeled items, SearchNet weighting, the backend's
3-fold validation) and ``RoundRunner.rank`` (scores for every task, predictions for the top
window). Every strategy function is wrapped with a timer while the round runs, so the per-
strategy figures are their cost inside the real round (BALD and mean-STD share one set of MC
passes: the first one called pays for it), split into the pool-wide call and the cross-fitting
calls on small sub-pools. Each pool size runs in a fresh process, so ``peak_memory_mb`` is that
process's peak resident memory (``ru_maxrss``: interpreter, torch and the pool included;
``baseline_memory_mb`` is the same process just before its first round). On CUDA the peak of
allocated GPU memory is added. Figures are medians over ``--repeats`` rounds, each with a fresh
selector (no warm start) and the same data.

**Encoders.** For each encoder, the same N items go through ``encoder.encode`` alone (raw) and
through the backend's own embedding path, ``RoundRunner.embed``: task dicts -> data field ->
content key -> ``EmbeddingCache`` lookup -> ``load_item`` (data-URI decoding for images) ->
``encoder.encode`` in the loop's batches -> cache store, into an empty cache each repeat.
Texts are Rotten Tomatoes snippets when the offline package is installed (synthetic sentences
otherwise); images are seeded synthetic PNGs sent as data URIs, so no HTTP is timed.

The last line printed is one JSON object:
``{"pools": {"<P>": {"round_seconds", "peak_memory_mb", "stages": {...}, ...}}, "encoders":
{...}, "environment": {...}}``.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import dataclasses
import io
import json
import multiprocessing
import os
import platform
import resource
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

# As the backend's entry point (_wsgi.py) does, before torch loads: idle OpenMP threads sleep.
# Set OMP_WAIT_POLICY=ACTIVE to measure OpenMP's default spinning instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

# The stages of a round, in the order they run; strategies are added as "strategy:<name>".
ROUND_STAGES = (
    "standardise",
    "train",
    "autoal.cross_fit",
    "autoal.search",
    "autoal.portfolio",
    "autoal.prior",
    "autoal.weigh",
    "validate",
    "ranking",
)
DEFAULT_ENCODERS = ("minilm", "mobilenet_v2", "pixels")


# --- synthetic pools ----------------------------------------------------------------------
def synthetic_embeddings(
    n: int, dim: int, classes: int, seed: int, device: torch.device, chunk: int = 16384
) -> tuple[torch.Tensor, torch.Tensor]:
    """[n, dim] float32 raw embeddings (a Gaussian mixture, one component per class) and their
    [n] int64 classes, generated in chunks so that generating never holds more than the result
    plus one chunk (the peak memory should be the round's, not the generator's)."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=generator) * 1.5  # [C, d]
    labels = torch.randint(classes, (n,), generator=generator)  # [n]
    out = torch.empty(n, dim, device=device)
    for start in range(0, n, chunk):
        rows = labels[start : start + chunk]
        block = centres[rows] + torch.randn(rows.numel(), dim, generator=generator)
        out[start : start + rows.numel()] = block.to(device)
    # A constant offset and scale, as real encoder outputs have: standardise must undo them.
    return out.mul_(0.05).add_(0.3), labels.to(device)


def labeled_targets(labels: torch.Tensor, labeled: int, classes: int) -> torch.Tensor:
    """[N, C] one-hot targets for the first ``labeled`` items, zeros elsewhere."""
    targets = torch.zeros(labels.numel(), classes, device=labels.device)
    rows = torch.arange(labeled, device=labels.device)
    targets[rows, labels[:labeled]] = 1.0
    return targets


class StrategyTimer:
    """Wraps every registered strategy function with a timer for as long as it is active.

    Calls on the round's own pool (whose ``features`` are ``pool_features``, shared by the
    trained copy of the state) are charged to ``strategy:<name>``; calls on AutoAL's
    cross-fitting sub-pools (gathered copies) to ``cross_fit:<name>``.
    """

    def __init__(self, pool_features: torch.Tensor | None, device: torch.device) -> None:
        self.pool_features = pool_features
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)
        self._saved: dict = {}

    def __enter__(self) -> StrategyTimer:
        from model import strategies

        strategies.strategy_names()  # load every strategy module first
        self._saved = dict(strategies._REGISTRY)
        for name, entry in self._saved.items():
            strategies._REGISTRY[name] = dataclasses.replace(entry, fn=self._wrap(name, entry.fn))
        return self

    def __exit__(self, *exc) -> None:
        from model import strategies

        strategies._REGISTRY.update(self._saved)

    def _wrap(self, name: str, fn):
        def timed(state, candidates):
            start = time.perf_counter()
            out = fn(state, candidates)
            synchronise(self.device)
            own = self.pool_features is not None and (
                state.features.data_ptr() == self.pool_features.data_ptr()
            )
            where = "strategy" if own else "cross_fit"
            self.seconds[f"{where}:{name}"] += time.perf_counter() - start
            return out

        return timed


def synchronise(device: torch.device) -> None:
    """Wait for queued CUDA work, so that wall times belong to the stage that caused them."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def one_round(
    raw: torch.Tensor,
    targets: torch.Tensor,
    labeled_mask: torch.Tensor,
    budget: int,
    seed: int,
    validation_folds: int,
    device: torch.device,
    task_steps: int = 0,
    selector_name: str = "autoal",
    shortlist: int = 20_000,
) -> tuple[float, float, dict[str, float]]:
    """Run one backend round on raw embeddings [N, d]; (wall seconds, CPU seconds of this
    process, wall seconds per stage)."""
    from autoal_backend.kinds.choices import LabelSpec
    from autoal_backend.rounds.sync import TaskView
    from autoal_backend.settings import Settings
    from model.active_round import RoundConfig
    from model.pool import PoolState
    from model.selectors import make_selector
    from model.task_model import TaskModelConfig, standardise

    task_model = TaskModelConfig(steps=task_steps) if task_steps > 0 else TaskModelConfig()
    config = RoundConfig(task_model=task_model, validation_folds=validation_folds)
    classes = targets.shape[1]
    spec = LabelSpec("label", "text", "text", "text", tuple(f"c{i}" for i in range(classes)), False)
    settings = Settings(push_window=budget, shortlist=shortlist)
    timer = StrategyTimer(None, device)
    stages: dict[str, float] = {}
    synchronise(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    t = time.perf_counter()
    state = PoolState(
        features=standardise(raw),
        targets=targets,
        labeled=labeled_mask,
        labeled_round=torch.where(labeled_mask, 0, -1),
        budget=budget,
        seed=seed,
        ids=torch.arange(raw.shape[0], device=device),
        shortlist=settings.shortlist,
    )
    synchronise(device)
    stages["standardise"] = time.perf_counter() - t
    views = [TaskView(int(i), {"id": int(i), "data": {}}, None) for i in range(raw.shape[0])]
    selector = make_selector(selector_name, device=device)
    timed_round(state, selector, config, spec, settings, views, timer, stages, device)
    return time.perf_counter() - start, time.process_time() - cpu_start, stages


def timed_round(state, selector, config, spec, settings, views, timer, stages, device) -> None:
    """``run_round`` (each strategy timed by ``timer``) and the ranking, as the backend runs
    them, their seconds added to ``stages``."""
    from autoal_backend.rounds.rank import rank
    from model.active_round import run_round

    timer.pool_features = state.features
    with timer:
        result = run_round(state, selector, config)
    synchronise(device)
    t = time.perf_counter()
    rank(state, result, spec, "speed-r1", settings, views)
    stages["ranking"] = time.perf_counter() - t
    stages["train"] = result.seconds.get("train", 0.0)
    stages["validate"] = result.seconds.get("validate", 0.0)
    for key, value in (result.selection.info.get("seconds") or {}).items():
        stages[f"autoal.{key}"] = float(value)
    stages.update(timer.seconds)


def synthetic_span_texts(
    n: int, dim: int, types: int, labeled: int, seed: int
) -> tuple[list, list, list, list]:
    """``n`` synthetic texts of 5-40 words ("w0 w1 ..."): their token states [t, dim] (the words
    of an entity share a type direction), character offsets, texts, and for the first
    ``labeled`` the gold spans (start, end, type name) as an annotation gives them."""
    generator = torch.Generator().manual_seed(seed)
    directions = torch.randn(types, dim, generator=generator)
    states, offsets, texts, answers = [], [], [], []
    for i in range(n):
        words = int(torch.randint(5, 41, (1,), generator=generator))
        text = " ".join(f"w{j}" for j in range(words))
        spans, position, chars = [], 0, []
        for j in range(words):
            start = text.index(f"w{j}", position)
            position = start + len(f"w{j}")
            chars.append((start, position))
        rows = torch.randn(words, dim, generator=generator)
        if i % 2:
            c, j = (
                int(torch.randint(types, (1,), generator=generator)),
                int(torch.randint(words - 1, (1,), generator=generator)),
            )
            rows[j : j + 2] += 2.0 * directions[c]
            spans.append((chars[j][0], chars[j + 1][1], f"t{c}"))
        states.append(rows.mul_(0.05).add_(0.3))
        offsets.append(chars)
        texts.append(text)
        answers.append(spans if i < labeled else None)
    return states, offsets, texts, answers


def one_span_round(states, offsets, texts, answers, types: int, budget: int, seed: int, validation_folds: int,
                   device: torch.device, selector_name: str, shortlist: int,
                   task_steps: int = 0) -> tuple[float, float, dict[str, float]]:  # fmt: skip
    """One backend round of a span project once its texts are embedded: the kind's pool
    (token standardisation, BIO targets, word boundaries), ``run_round`` (tagger, constrained
    decoding of every text, the span portfolio, the selector, validation) and the ranking
    with every pushed task's span regions; (wall s, CPU s, stages)."""
    from autoal_backend.kinds.spans import SpanSpec
    from autoal_backend.rounds.sync import TaskView
    from autoal_backend.settings import Settings
    from model.active_round import RoundConfig
    from model.pool import PoolState
    from model.selectors import make_selector
    from model.task_model import TaskModelConfig, standardise

    spec = SpanSpec("entity", "text", "text", tuple(f"t{c}" for c in range(types)))
    settings = Settings(push_window=budget, shortlist=shortlist)
    task_model = TaskModelConfig(steps=task_steps) if task_steps > 0 else TaskModelConfig()
    config = RoundConfig(task_model=task_model, validation_folds=validation_folds)
    timer = StrategyTimer(None, device)
    stages: dict[str, float] = {}
    start, cpu_start = time.perf_counter(), time.process_time()
    t = time.perf_counter()
    targets, tokens = spec.targets(answers, list(zip(states, offsets, strict=True)), device, texts)
    pooled = torch.stack([s.mean(dim=0) for s in states]).to(device)
    labeled = torch.tensor([a is not None for a in answers], device=device)
    state = PoolState(features=standardise(pooled), targets=targets, labeled=labeled,
                      labeled_round=torch.where(labeled, 0, -1), multilabel=True, budget=budget, seed=seed,
                      ids=torch.arange(len(texts), device=device), shortlist=shortlist, kind="spans", parts=tokens)  # fmt: skip
    stages["standardise"] = time.perf_counter() - t
    views = [TaskView(i, {"id": i, "data": {"text": text}}, None) for i, text in enumerate(texts)]
    selector = make_selector(selector_name, device=device, kind="spans")
    timed_round(state, selector, config, spec, settings, views, timer, stages, device)
    return time.perf_counter() - start, time.process_time() - cpu_start, stages


def synthetic_box_scenes(n: int, grid: int, channels: int, classes: int, labeled: int, seed: int) -> tuple[list, list]:  # fmt: skip
    """``n`` synthetic feature maps [grid, grid, channels] (seeded Gaussian: a round's cost
    depends on their shape, not their content) with the image size (320, 320), and for the
    first ``labeled`` their gold boxes (1-4 per image, as an annotation gives them)."""
    generator = torch.Generator().manual_seed(seed)
    maps = torch.randn(n, grid, grid, channels, generator=generator)
    parts = [(maps[i], (320, 320)) for i in range(n)]
    answers: list = []
    for i in range(n):
        if i >= labeled:
            answers.append(None)
            continue
        boxes = []
        for _ in range(int(torch.randint(1, 5, (1,), generator=generator))):
            x0, y0 = (float(v) for v in torch.rand(2, generator=generator) * 0.7)
            w, h = (float(v) for v in torch.rand(2, generator=generator) * 0.25 + 0.05)
            boxes.append(
                (
                    x0,
                    y0,
                    x0 + w,
                    y0 + h,
                    f"c{int(torch.randint(classes, (1,), generator=generator))}",
                )
            )
        answers.append(boxes)
    return parts, answers


def one_box_round(parts, answers, classes: int, budget: int, seed: int, validation_folds: int,
                  device: torch.device, selector_name: str, shortlist: int) -> tuple[float, float, dict[str, float]]:  # fmt: skip
    """One backend round of a box project once its images are embedded: the kind's pool (the
    maps standardised, the boxes as heat targets), ``run_round`` (the detector head, decoding
    every image, the box portfolio, the selector, validation) and the ranking with every
    pushed task's box regions; (wall s, CPU s, stages)."""
    from autoal_backend.kinds.boxes import BoxSpec
    from autoal_backend.rounds.sync import TaskView
    from autoal_backend.settings import Settings
    from model.active_round import RoundConfig
    from model.pool import PoolState
    from model.selectors import make_selector
    from model.task_model import standardise

    spec = BoxSpec("objects", "image", "image", tuple(f"c{c}" for c in range(classes)))
    settings = Settings(push_window=budget, shortlist=shortlist)
    config = RoundConfig(validation_folds=validation_folds)
    timer = StrategyTimer(None, device)
    stages: dict[str, float] = {}
    start, cpu_start = time.perf_counter(), time.process_time()
    t = time.perf_counter()
    targets, pool = spec.targets(answers, parts, device)
    pooled = pool.maps.float().mean(dim=(1, 2))
    labeled = torch.tensor([a is not None for a in answers], device=device)
    state = PoolState(features=standardise(pooled), targets=targets, labeled=labeled,
                      labeled_round=torch.where(labeled, 0, -1), multilabel=True, budget=budget, seed=seed,
                      ids=torch.arange(len(answers), device=device), shortlist=shortlist, kind="boxes", parts=pool)  # fmt: skip
    stages["standardise"] = time.perf_counter() - t
    views = [TaskView(i, {"id": i, "data": {"image": ""}}, None) for i in range(len(answers))]
    selector = make_selector(selector_name, device=device, kind="boxes")
    timed_round(state, selector, config, spec, settings, views, timer, stages, device)
    return time.perf_counter() - start, time.process_time() - cpu_start, stages


def measure_pool(
    pool: int,
    labeled: int,
    dim: int,
    classes: int,
    budget: int,
    repeats: int,
    seed: int,
    validation_folds: int,
    device_name: str,
    task_steps: int = 0,
    selector: str = "autoal",
    shortlist: int = 20_000,
    kind: str = "choices",
) -> dict:
    """Every repeat of the round on one pool size (run in a fresh process by ``main``);
    ``kind`` ``spans``: texts of 5-40 words, ``classes`` entity types; ``boxes``: images as
    16 x 16 x 96 feature maps (``mobilenet_v2_maps`` at 256 pixels), ``classes`` classes."""
    from model.device import resolve_device

    device = resolve_device(device_name)
    budget = max(1, min(budget, pool))  # as the backend: the window never exceeds the pool
    if kind == "boxes":
        scenes = synthetic_box_scenes(pool + labeled, 16, 96, classes, labeled, seed)

        def round_once():
            return one_box_round(
                *scenes, classes, budget, seed, validation_folds, device, selector, shortlist
            )
    elif kind == "spans":
        texts = synthetic_span_texts(pool + labeled, dim, classes, labeled, seed)

        def round_once():
            return one_span_round(*texts, classes, budget, seed, validation_folds, device, selector, shortlist,
                                  task_steps)  # fmt: skip
    else:
        raw, labels = synthetic_embeddings(pool + labeled, dim, classes, seed, device)
        targets = labeled_targets(labels, labeled, classes)
        labeled_mask = torch.zeros(pool + labeled, dtype=torch.bool, device=device)
        labeled_mask[:labeled] = True

        def round_once():
            return one_round(raw, targets, labeled_mask, budget, seed, validation_folds, device, task_steps,
                             selector, shortlist)  # fmt: skip

    baseline = peak_rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    walls, cpus, per_stage = [], [], defaultdict(list)
    for _ in range(repeats):
        wall, cpu, stages = round_once()
        walls.append(wall)
        cpus.append(cpu)
        for key, value in stages.items():
            per_stage[key].append(value)
    out = {
        "round_seconds": statistics.median(walls),
        "round_seconds_all": [round(w, 4) for w in walls],
        # CPU time of the process (all threads): on a busy machine it shows the work done,
        # independent of how long the scheduler kept the process waiting.
        "round_cpu_seconds": round(statistics.median(cpus), 4),
        "peak_memory_mb": round(peak_rss_mb(), 1),
        "baseline_memory_mb": round(baseline, 1),
        "stages": {k: round(statistics.median(v), 4) for k, v in sorted(per_stage.items())},
        # The backend pushes the new order before it computes the validation score.
        "seconds_to_push": round(
            statistics.median(w - v for w, v in zip(walls, per_stage["validate"], strict=True)), 4
        ),
        "items": pool + labeled,
        "unlabeled": pool,
        "labeled": labeled,
    }
    if device.type == "cuda":
        out["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out


def run_pool_in_fresh_process(**kwargs) -> dict:
    """``measure_pool`` in a spawned child: its ru_maxrss is this pool's peak alone."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as executor:
        return executor.submit(measure_pool, **kwargs).result()


# --- encoders -----------------------------------------------------------------------------
def benchmark_texts(n: int, seed: int) -> list[str]:
    """``n`` distinct texts: Rotten Tomatoes snippets when installed, synthetic otherwise."""
    from benchmarks.datasets import rotten_tomatoes_rows

    try:
        texts = [text for text, _ in rotten_tomatoes_rows(distinct=True)]
    except FileNotFoundError:
        texts = []
    rng = np.random.default_rng(seed)
    if len(texts) >= n:
        return [texts[i] for i in sorted(rng.choice(len(texts), n, replace=False))]
    words = [
        "the",
        "a",
        "film",
        "movie",
        "story",
        "plot",
        "actor",
        "actress",
        "scene",
        "director",
        "music",
        "long",
        "short",
        "slow",
        "funny",
        "sad",
        "brilliant",
        "dull",
        "charming",
        "clumsy",
        "warm",
        "cold",
        "bright",
        "dark",
        "honest",
        "clever",
    ]
    while len(texts) < n:
        length = int(rng.integers(8, 40))
        texts.append(f"{len(texts)} " + " ".join(rng.choice(words, length)))
    return texts[:n]


def benchmark_images(n: int, side: int, seed: int) -> list[bytes]:
    """``n`` distinct PNG files [side x side RGB], smooth random images (PNG compresses them
    like photographs rather than like noise)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        coarse = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((side, side), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def measure_encoder(name: str, items: int, repeats: int, seed: int, device_name: str) -> dict:
    """Raw ``encoder.encode`` against ``RoundRunner.embed`` on the same ``items`` inputs."""
    from PIL import Image

    from autoal_backend.kinds.choices import LabelSpec
    from autoal_backend.ls_client import LabelStudioClient
    from autoal_backend.rounds.runner import RoundRunner
    from autoal_backend.rounds.sync import TaskView
    from autoal_backend.settings import Settings
    from autoal_backend.store import ProjectStore
    from model.device import resolve_device
    from model.encoders import encoder_modality, get_encoder

    device = resolve_device(device_name)
    modality = encoder_modality(name)
    encoder: Any = get_encoder(name, device)
    maps = hasattr(encoder, "encode_maps")
    raw_items: list
    if maps:  # a box project's encoder: photos of the size the scenes are generated at
        from autoal_backend.kinds.boxes import BoxSpec

        pngs = benchmark_images(items, 320, seed)
        raw_items = [Image.open(io.BytesIO(b)).convert("RGB") for b in pngs]
        values = ["data:image/png;base64," + base64.b64encode(b).decode() for b in pngs]
        spec: Any = BoxSpec("objects", "image", "image", ("a", "b"))
    elif modality == "text":
        texts = benchmark_texts(items, seed)
        raw_items = texts
        values = texts
        spec = LabelSpec("label", "text", "text", "text", ("a", "b"), False)
    else:
        pngs = benchmark_images(items, 96, seed)
        raw_items = [Image.open(io.BytesIO(b)).convert("RGB") for b in pngs]
        values = ["data:image/png;base64," + base64.b64encode(b).decode() for b in pngs]
        spec = LabelSpec("label", "image", "image", "image", ("a", "b"), False)
    views = [
        TaskView(i + 1, {"id": i + 1, "data": {spec.data_key: v}}, None)
        for i, v in enumerate(values)
    ]
    settings = Settings(
        image_encoder=name if modality == "image" else "",
        text_encoder=name if modality == "text" else "",
    )
    # Never contacted: data URIs and inline texts need no request.
    client = LabelStudioClient("http://127.0.0.1:9", "unused-token")
    run = encoder.encode_maps if maps else encoder.encode
    run(raw_items[: min(16, items)])  # warm-up: first-call allocations, lazy init
    raw_s, path_s = [], []
    for _ in range(repeats):
        synchronise(device)
        start = time.perf_counter()
        run(raw_items)
        synchronise(device)
        raw_s.append(time.perf_counter() - start)
        with tempfile.TemporaryDirectory(prefix="autoal-speed-") as root:
            runner = RoundRunner(
                settings, ProjectStore(Path(root)), device, lambda *_: client, lambda *_: encoder
            )
            start = time.perf_counter()
            kept, embeddings, _, skipped = runner.embedder.embed(1, views, spec, client, settings)
            synchronise(device)
            path_s.append(time.perf_counter() - start)
            if skipped or embeddings.shape[0] != items:
                raise RuntimeError(f"{name}: the embedding path skipped {len(skipped)} items")
    raw_rate = items / statistics.median(raw_s)
    path_rate = items / statistics.median(path_s)
    return {
        "modality": modality,
        "items": items,
        "raw_items_per_s": round(raw_rate, 1),
        "path_items_per_s": round(path_rate, 1),
        "path_to_raw": round(path_rate / raw_rate, 3),
        "raw_seconds_all": [round(s, 3) for s in raw_s],
        "path_seconds_all": [round(s, 3) for s in path_s],
    }


def run_encoder_in_fresh_process(**kwargs) -> dict:
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as executor:
        return executor.submit(measure_encoder, **kwargs).result()


# --- report -------------------------------------------------------------------------------
def scaling_exponent(pools: dict[str, dict], part=None) -> float | None:
    """Least-squares slope of log(seconds) against log(items): 1.0 = linear cost. ``part``
    maps a pool's entry to the seconds to fit (default: the whole round)."""
    part = part or (lambda entry: entry["round_seconds"])
    points = [(v["items"], part(v)) for v in pools.values() if part(v) > 0]
    if len(points) < 2:
        return None
    x = np.log([p[0] for p in points])
    y = np.log([p[1] for p in points])
    return round(float(np.polyfit(x, y, 1)[0]), 3)


def pool_dependent_seconds(stages: dict[str, float]) -> float:
    """The part of a round that grows with the pool: scoring every unlabeled item (the
    portfolio and SearchNet's weighting), standardising and ranking them."""
    keys = ("autoal.portfolio", "autoal.weigh", "standardise", "ranking")
    return sum(stages.get(k, 0.0) for k in keys)


# The round-time targets (issue: past one machine), seconds per unlabeled pool size.
ROUND_TARGETS = {100_000: 5.0, 1_000_000: 60.0}


def plot(pools: dict[str, dict], path: Path, title: str) -> None:
    """Round time against pool size (log-log, with a linear-cost reference) and where the
    time goes at each size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(pools, key=int)
    items = [pools[s]["unlabeled"] for s in sizes]
    seconds = [pools[s]["round_seconds"] for s in sizes]
    variable = [pool_dependent_seconds(pools[s]["stages"]) for s in sizes]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.6))
    left.loglog(items, seconds, "o-", label="whole round (median)")
    left.loglog(items, variable, "s-", label="pool-dependent part")
    reference = [variable[-1] * n / items[-1] for n in items]
    left.loglog(items, reference, "--", color="grey", label="linear in the pool")
    targets = [(n, t) for n, t in ROUND_TARGETS.items() if items[0] <= n <= items[-1]]
    if targets:
        left.plot(
            *zip(*targets, strict=True),
            "r*",
            markersize=11,
            linestyle="none",
            label="targets: " + ", ".join(f"{n:,}: {t:g} s" for n, t in targets),
        )
    left.set_xlabel("unlabeled items in the pool")
    left.set_ylabel("seconds per round")
    left.legend(fontsize=8)
    left.grid(True, which="both", alpha=0.3)

    names = list(stage_groups(pools[sizes[-1]]["stages"]))
    colours = [plt.get_cmap("tab20")(i) for i in range(20)]
    bottom = np.zeros(len(sizes))
    for number, name in enumerate(names):
        values = np.array([stage_groups(pools[s]["stages"]).get(name, 0.0) for s in sizes])
        right.bar(
            range(len(sizes)),
            values,
            bottom=bottom,
            label=name,
            color=colours[number % len(colours)],
        )
        bottom += values
    right.set_xticks(range(len(sizes)), [f"{int(s):,}" for s in sizes])
    right.set_xlabel("unlabeled items in the pool")
    right.set_ylabel("seconds (median)")
    right.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


CHEAP_STRATEGIES = ("random", "least_confidence", "margin", "entropy")


def stage_groups(stages: dict[str, float]) -> dict[str, float]:
    """Stages folded for the plot, fixed costs first: the task-model fits, the search, then
    each expensive pool-wide strategy, the cheap ones together, and what is left of the
    portfolio call (rank normalisation) with SearchNet's weighting."""
    groups = {
        "train (1 fit)": stages.get("train", 0.0),
        "cross_fit (3 fits + folds)": stages.get("autoal.cross_fit", 0.0),
        "search (SearchNet)": stages.get("autoal.search", 0.0),
        "validate (3 folds in one fit, after push)": stages.get("validate", 0.0),
    }
    strategy_total = 0.0
    cheap = 0.0
    for key, value in sorted(stages.items()):
        if not key.startswith("strategy:"):
            continue
        strategy_total += value
        name = key.split(":", 1)[1]
        if name in CHEAP_STRATEGIES:
            cheap += value
        else:
            groups[name] = value
    groups["random + LC + margin + entropy"] = cheap
    groups["rank-normalise + weigh"] = max(
        0.0, stages.get("autoal.portfolio", 0.0) - strategy_total
    ) + stages.get("autoal.weigh", 0.0)
    groups["standardise + ranking"] = stages.get("standardise", 0.0) + stages.get("ranking", 0.0)
    return groups


def environment(device_name: str) -> dict:
    load = None
    with contextlib.suppress(OSError):
        load = [round(x, 2) for x in os.getloadavg()]
    return {
        "device": device_name,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
        "load_average_1_5_15": load,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pool",
        default="1000,10000,100000",
        help="comma-separated unlabeled pool sizes; 'none' skips the rounds",
    )
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--labeled", type=int, default=1000)
    parser.add_argument(
        "--budget", type=int, default=100, help="batch size B (the backend's push window)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--validation-folds",
        type=int,
        default=3,
        help="the backend's cross-validated accuracy (0 = off)",
    )
    parser.add_argument(
        "--task-steps",
        type=int,
        default=0,
        help="task-model Adam steps (0: the backend's default); for smoke tests",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--selector",
        default="autoal",
        help="the round's selector (autoal, autoal_online, uniform, ...)",
    )
    parser.add_argument(
        "--shortlist",
        type=int,
        default=20_000,
        help="AUTOAL_SHORTLIST: the most candidates k-means, core-set and BADGE "
        "see (default: the backend's 20,000); 0: every candidate",
    )
    parser.add_argument(
        "--kind",
        default="choices",
        choices=("choices", "spans", "boxes"),
        help="spans: a round of a span project (texts of 5-40 words, --classes entity types); "
        "boxes: a round of a box project (16 x 16 x 96 feature maps, --classes classes)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--encoders",
        default=",".join(DEFAULT_ENCODERS),
        help="comma-separated encoders to compare with the embedding path; 'none' skips them",
    )
    parser.add_argument("--texts", type=int, default=2000, help="items per text encoder run")
    parser.add_argument("--images", type=int, default=384, help="items per image encoder run")
    parser.add_argument("--encoder-repeats", type=int, default=3)
    parser.add_argument("--plot", default=None, help="write the round-time plot (PNG) here")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="no fresh process per measurement (peak memory is then cumulative)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from model.device import resolve_device
    from model.encoders import encoder_modality

    device = resolve_device(args.device)
    pools_wanted = (
        []
        if args.pool.strip().lower() == "none"
        else [int(p) for p in args.pool.split(",") if p.strip()]
    )
    if any(p < 1 for p in pools_wanted) or args.labeled < 10:
        raise SystemExit("--pool sizes must be >= 1 and --labeled >= 10 (a trained round)")
    encoders = (
        []
        if args.encoders.strip().lower() == "none"
        else [e.strip() for e in args.encoders.split(",") if e.strip()]
    )
    pool_runner = measure_pool if args.in_process else run_pool_in_fresh_process
    encoder_runner = measure_encoder if args.in_process else run_encoder_in_fresh_process

    pools: dict[str, dict] = {}
    for pool in pools_wanted:
        result = pool_runner(
            pool=pool,
            labeled=args.labeled,
            dim=args.dim,
            classes=args.classes,
            budget=args.budget,
            repeats=args.repeats,
            seed=args.seed,
            validation_folds=args.validation_folds,
            device_name=str(device),
            task_steps=args.task_steps,
            selector=args.selector,
            shortlist=args.shortlist,
            kind=args.kind,
        )
        pools[str(pool)] = result
        top = sorted(result["stages"].items(), key=lambda kv: -kv[1])[:4]
        print(
            f"pool {pool:>7,} (+{args.labeled} labeled): round {result['round_seconds']:.2f} s, "
            f"peak {result['peak_memory_mb']:.0f} MiB; "
            + ", ".join(f"{k} {v:.2f}" for k, v in top),
            flush=True,
        )

    encoder_results: dict[str, dict] = {}
    for name in encoders:
        items = args.texts if encoder_modality(name) == "text" else args.images
        result = encoder_runner(
            name=name,
            items=items,
            repeats=args.encoder_repeats,
            seed=args.seed,
            device_name=str(device),
        )
        encoder_results[name] = result
        print(
            f"encoder {name}: raw {result['raw_items_per_s']:.0f} items/s, embedding path "
            f"{result['path_items_per_s']:.0f} items/s ({100 * result['path_to_raw']:.0f}%)",
            flush=True,
        )

    env = environment(str(device))
    report = {
        "pools": pools,
        "scaling_exponent": scaling_exponent(pools),
        "pool_dependent_exponent": scaling_exponent(
            pools, lambda entry: pool_dependent_seconds(entry["stages"])
        ),
        "encoders": encoder_results,
        "config": {
            "dim": args.dim,
            "classes": args.classes,
            "labeled": args.labeled,
            "budget": args.budget,
            "repeats": args.repeats,
            "validation_folds": args.validation_folds,
            "seed": args.seed,
            "task_steps": args.task_steps or "default",
            "selector": args.selector,
            "shortlist": args.shortlist,
            "kind": args.kind,
        },
        "environment": env,
    }
    if args.plot:
        title = (
            f"{args.selector} round (AUTOAL_SHORTLIST={args.shortlist:,}), d={args.dim}, "
            f"C={args.classes}, {args.labeled} labeled, "
            f"B={args.budget}; {env['device']}, {env['torch_threads']} threads, "
            f"load {env['load_average_1_5_15']}"
        )
        plot(pools, Path(args.plot), title)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
