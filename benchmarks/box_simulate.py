"""Simulated annotation of a box (object detection) project, driving the backend's own round code.

Reached through ``python -m benchmarks.simulate`` (``--dataset boxes-shapes``, ``boxes-symbols``,
or a Label Studio export with ``--label-config`` holding ``<RectangleLabels>`` over
``<Image>``). Per strategy and seed: the same random initial images; each round a box pool is
built (``model.kinds.boxes.make_box_pool``), ``model.active_round.run_round`` trains the
detector head and asks the selector for priorities, the round's detector is scored on the test
images, and the annotator labels the top ``batch`` images with their gold boxes.

The metric is mAP at IoU .5 on the test images (COCO's 101-point interpolation over the
classes with a gold box); the final round also reports mAP@.5:.95. AUBC is the area under the
mAP@.5 curve over labeled images; the boxes labeled are reported beside the images, since a
strategy may prefer crowded images (a cost per image that grows with its boxes).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from benchmarks.box_data import EmbeddedBoxes, embed_box_corpus, load_box_corpus
from model.active_round import RoundConfig, run_round
from model.kinds import get_kind
from model.kinds.boxes import (
    COCO_THRESHOLDS,
    BoxModel,
    make_box_pool,
    map_standardisation,
    mean_average_precision,
    standardise_maps,
)
from model.selectors import make_selector
from model.task_model import standardisation, standardise

TEST_FRACTION = 0.25
MAX_TEST = 500


@dataclass
class BoxRun:
    strategy: str
    seed: int
    labeled: list[int] = field(default_factory=list)
    boxes: list[int] = field(default_factory=list)
    map50: list[float] = field(default_factory=list)
    final_map: float = 0.0
    rows: list[dict] = field(default_factory=list)


@dataclass
class BoxSplit:
    """Pool and test images, standardised with the pool's statistics only."""

    pool_features: torch.Tensor
    pool_maps: torch.Tensor
    pool_boxes: list[torch.Tensor]
    test_maps: torch.Tensor
    test_boxes: list[torch.Tensor]
    num_classes: int


def split_boxes(data: EmbeddedBoxes, seed: int = 0, test_size: int | None = None) -> BoxSplit:
    """Test and pool images drawn with ``seed``; ``test_size`` test images (default: a
    quarter, at most ``MAX_TEST``)."""
    n = len(data.corpus.images)
    order = np.random.default_rng(seed).permutation(n)
    if test_size is None:
        test_size = min(MAX_TEST, int(round(n * TEST_FRACTION)))
    test, pool = order[:test_size].tolist(), order[test_size:].tolist()
    stats = standardisation(data.pooled[pool])
    map_stats = map_standardisation(data.maps[pool])
    boxes = [torch.from_numpy(b).float() for b in data.corpus.boxes]
    return BoxSplit(standardise(data.pooled[pool], stats=stats), standardise_maps(data.maps[pool], map_stats),
                    [boxes[i] for i in pool], standardise_maps(data.maps[test], map_stats),
                    [boxes[i] for i in test], len(data.corpus.classes))  # fmt: skip


def test_map(model: BoxModel | None, split: BoxSplit, thresholds=(0.5,)) -> float:
    """mAP of ``model`` on the test images (0 without a model: no box predicted)."""
    if model is None:
        return 0.0
    detections, _ = model.detect(split.test_maps)
    detected = [detections.image(i) for i in range(len(split.test_boxes))]
    return mean_average_precision(split.test_boxes, detected, split.num_classes, thresholds)


def run_box_strategy(name: str, seed: int, split: BoxSplit, *, initial: int, batch: int, rounds: int,
                     config: RoundConfig, options: dict | None = None) -> BoxRun:  # fmt: skip
    n = split.pool_features.shape[0]
    run = BoxRun(name, seed)
    labeled = torch.zeros(n, dtype=torch.bool)
    labeled_round = torch.full((n,), -1, dtype=torch.long)
    first = torch.as_tensor(np.random.default_rng(seed).choice(n, initial, replace=False))
    labeled[first] = True
    labeled_round[first] = 0
    selector = make_selector(name, kind="boxes", **(options or {}))
    kind = get_kind("boxes")
    for round_index in range(rounds + 1):
        start = time.perf_counter()
        boxes = [split.pool_boxes[i] if bool(labeled[i]) else None for i in range(n)]
        state = make_box_pool(split.pool_features, split.pool_maps, boxes, split.num_classes,
                              labeled_round=labeled_round, budget=batch, seed=seed * 100_003 + round_index)  # fmt: skip
        last = round_index == rounds or bool(labeled.all())
        if last:
            outcome = None
            model = (
                None
                if kind.cold_start(state, 1)
                else kind.fit(state, config.task_model, state.seed)
            )
        else:
            outcome = run_round(state, selector, config)
            model = outcome.model
            if model is None and not kind.cold_start(state, 1):
                model = kind.fit(state, config.task_model, state.seed)
        score = test_map(model, split)
        run.labeled.append(int(labeled.sum()))
        run.boxes.append(
            sum(
                int(split.pool_boxes[i].shape[0]) for i in torch.nonzero(labeled).flatten().tolist()
            )
        )
        run.map50.append(score)
        if last:
            run.final_map = test_map(model, split, COCO_THRESHOLDS)
        run.rows.append({"strategy": name, "seed": seed, "round": round_index, "labeled": run.labeled[-1],
                         "boxes": run.boxes[-1], "map50": round(score, 6),
                         "cold_start": bool(outcome.cold_start) if outcome else False,
                         "round_s": round(time.perf_counter() - start, 4),
                         "prior_action": (outcome.selection.info.get("prior_action") if outcome else None)})  # fmt: skip
        if last or outcome is None:
            break
        picked = outcome.selection.order(seed=state.seed)[:batch]
        labeled[picked] = True
        labeled_round[picked] = round_index + 1
    return run


def run_box_benchmark(args, strategies: list[str], options: dict[str, dict]) -> int:
    """The box side of ``benchmarks.simulate``: same arguments, same JSON summary shape, with
    ``"metric": "map50"``."""
    from benchmarks.simulate import RunResult, aubc, labels_to_match_random, mean_std

    started = time.perf_counter()
    label_config = Path(args.label_config).read_text() if args.label_config else None
    corpus = load_box_corpus(args.dataset, label_config)
    data = embed_box_corpus(corpus, args.encoder or "mobilenet_v2_maps", args.cache_dir)
    split = split_boxes(data)
    load_s = time.perf_counter() - started
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    n = split.pool_features.shape[0]
    if not 0 < args.initial < n:
        raise SystemExit(
            f"--initial must be between 1 and {n - 1} (the pool of {corpus.name}), got {args.initial}"
        )
    out = Path(args.out or Path("results") / f"simulate-{corpus.name}")
    out.mkdir(parents=True, exist_ok=True)
    print(f"{corpus.name}: pool {n} images, test {len(split.test_boxes)}, {split.num_classes} classes, "
          f"encoder {data.encoder}, loaded in {load_s:.1f} s", file=sys.stderr)  # fmt: skip
    runs: dict[str, list[BoxRun]] = {}
    failed: dict[str, str] = {}
    config = RoundConfig()
    for name in strategies:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            try:
                run = run_box_strategy(name, seed, split, initial=args.initial, batch=args.batch,
                                       rounds=args.rounds, config=config, options=options.get(name))  # fmt: skip
            except Exception as exc:  # reported per strategy, as the choices harness does
                failed[name] = f"{type(exc).__name__}: {exc}"
                print(f"FAILED {name} seed {seed}: {failed[name]}", file=sys.stderr)
                runs.pop(name, None)
                break
            runs.setdefault(name, []).append(run)
            print(f"{name} seed {seed}: AUBC {aubc(run.labeled, run.map50):.4f}, final mAP@.5 {run.map50[-1]:.4f}",
                  file=sys.stderr)  # fmt: skip
    with open(out / "rounds.jsonl", "w") as handle:
        for rs in runs.values():
            for r in rs:
                for row in r.rows:
                    handle.write(json.dumps(row) + "\n")
    report: dict = {
        "dataset": corpus.name,
        "kind": "boxes",
        "metric": "map50",
        "aubc": {k: mean_std([aubc(r.labeled, r.map50) for r in rs]) for k, rs in runs.items()},
        "final": {k: mean_std([r.map50[-1] for r in rs]) for k, rs in runs.items()},
        "final_map50_95": {k: mean_std([r.final_map for r in rs]) for k, rs in runs.items()},
        "aubc_per_seed": {
            k: [round(aubc(r.labeled, r.map50), 5) for r in rs] for k, rs in runs.items()
        },
        "boxes_labeled": {k: mean_std([float(r.boxes[-1]) for r in rs]) for k, rs in runs.items()},
        "labeled": runs[next(iter(runs))][0].labeled if runs else [],
    }
    curves = {
        k: [RunResult(k, r.seed, labeled=r.labeled, accuracy=r.map50) for r in rs]
        for k, rs in runs.items()
    }
    matched = labels_to_match_random(curves)
    if matched:
        report["labels_to_match_random"] = matched
    if failed:
        report["failed"] = failed
    lines = [f"# Simulated box labeling on {corpus.name}", "",
             f"Pool {n} images, test {len(split.test_boxes)}, {split.num_classes} classes; {args.initial} initial, "
             f"batches of {args.batch}, {args.rounds} rounds, seeds {args.first_seed}..{args.first_seed + args.seeds - 1}. "
             "Metric: mAP@.5 on the test images (final mAP@.5:.95 beside it).", "",
             "| strategy | AUBC mAP@.5 | final mAP@.5 | final mAP@.5:.95 | boxes labeled | labels to match random |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for k in sorted(report["aubc"], key=lambda k: -report["aubc"][k]["mean"]):
        a, f, c, b = (
            report["aubc"][k],
            report["final"][k],
            report["final_map50_95"][k],
            report["boxes_labeled"][k],
        )
        m = (matched or {}).get(k)
        lines.append(f"| {k} | {a['mean']:.4f} +- {a['std']:.4f} | {f['mean']:.4f} +- {f['std']:.4f} "
                     f"| {c['mean']:.4f} | {b['mean']:.0f} | {'n/a' if m is None else f'{m:.0f}'} |")  # fmt: skip
    summary = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(summary)
    print(summary)
    print(json.dumps(report))
    return 1 if failed else 0
