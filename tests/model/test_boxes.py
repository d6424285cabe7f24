"""The box kind's ML core: heat targets, decoding, mAP, the head learning a synthetic scene, each
box strategy on a toy pool, a round through the selectors, the export."""

import math

import pytest
import torch

from model.active_round import run_round
from model.errors import EmptyPoolError
from model.export import ExportedBoxModel, export_state, load
from model.kinds import get_kind
from model.kinds.boxes import (
    COCO_THRESHOLDS,
    BoxModel,
    Detections,
    MapPool,
    box_iou,
    cell_boxes,
    decode,
    heat_targets,
    make_box_pool,
    map_standardisation,
    mean_average_precision,
    standardise_maps,
)
from model.selectors import make_selector
from model.strategies import BOX_PORTFOLIO, score, strategy_names
from model.strategies.boxes import aggregate, counted, outcome_distribution

GRID, CLASSES = 8, 2


def synthetic_scenes(n: int, seed: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Maps [n, 8, 8, 6] where an object of class c marks channel c on the cells it covers and
    channel 4 by its size (plus noise), and its gold boxes: 1-3 squares of 1 or 3 cells a side
    (odd sides: the centre is one cell)."""
    draw = torch.Generator().manual_seed(seed)
    maps = torch.randn(n, GRID, GRID, 6, generator=draw) * 0.3
    boxes = []
    for i in range(n):
        rows = []
        taken = torch.zeros(GRID + 2, GRID + 2, dtype=torch.bool)
        for _ in range(int(torch.randint(1, 4, (1,), generator=draw))):
            side = 1 + 2 * int(torch.randint(0, 2, (1,), generator=draw))
            col, row = (int(v) for v in torch.randint(0, GRID - side + 1, (2,), generator=draw))
            if taken[row : row + side + 2, col : col + side + 2].any():
                continue  # apart by a cell at least
            taken[row : row + side + 2, col : col + side + 2] = True
            c = int(torch.randint(0, CLASSES, (1,), generator=draw))
            maps[i, row : row + side, col : col + side, c] += 2.0
            maps[i, row : row + side, col : col + side, 4] += float(side)
            rows.append([col / GRID, row / GRID, (col + side) / GRID, (row + side) / GRID, c])
        boxes.append(torch.tensor(rows, dtype=torch.float32).reshape(-1, 5))
    return maps, boxes


def toy_pool(labeled: int = 24, total: int = 60, seed: int = 0):
    maps, boxes = synthetic_scenes(total, seed)
    features = maps.mean(dim=(1, 2))
    known = [b if i < labeled else None for i, b in enumerate(boxes)]
    stats = map_standardisation(maps)
    return make_box_pool(
        features, standardise_maps(maps, stats), known, CLASSES, budget=5, seed=seed
    ), boxes


def test_heat_targets_peak_at_the_centre_cell_with_its_offset_and_size():
    heat, values, mask = heat_targets(torch.tensor([[0.25, 0.5, 0.5, 0.75, 1.0]]), GRID, CLASSES)
    cell = 5 * GRID + 3  # centre (3.0, 5.0) in cells: column 3, row 5
    assert mask.nonzero().flatten().tolist() == [cell]
    assert heat[cell, 1] == 1.0 and heat[:, 0].sum() == 0 and heat[:, 1].max() == 1.0
    assert torch.allclose(values[cell], torch.tensor([0.0, 0.0, math.log(2.0), math.log(2.0)]))
    back = cell_boxes(values[cell].view(1, 4), torch.tensor([cell]), GRID)
    assert torch.allclose(back, torch.tensor([[0.25, 0.5, 0.5, 0.75]]))


def test_decode_keeps_local_maxima_over_every_class():
    heat = torch.zeros(1, GRID * GRID, CLASSES)
    heat[0, 10, 0] = 0.9
    heat[0, 11, 0] = 0.5  # beside a stronger cell of the same class: not a peak
    heat[0, 40, 1] = 0.7
    values = torch.zeros(1, GRID * GRID, 4)
    boxes, classes, scores, cells = decode(heat, values, GRID, k=3)
    assert cells[0, :2].tolist() == [10, 40] and classes[0, :2].tolist() == [0, 1]
    assert scores[0].tolist() == pytest.approx([0.9, 0.7, 0.0])
    # zero box values: centred on the cell's corner (column 2, row 1), one cell wide and high
    assert torch.allclose(
        boxes[0, 0], torch.tensor([2 / 8 - 1 / 16, 1 / 8 - 1 / 16, 2 / 8 + 1 / 16, 1 / 8 + 1 / 16])
    )


def test_box_iou():
    a = torch.tensor([[0.0, 0.0, 0.5, 0.5]])
    b = torch.tensor(
        [[0.0, 0.0, 0.5, 0.5], [0.25, 0.0, 0.75, 0.5], [0.6, 0.6, 0.7, 0.7], [0.1, 0.1, 0.1, 0.3]]
    )
    assert box_iou(a, b)[0].tolist() == pytest.approx([1.0, 1 / 3, 0.0, 0.0])


def detected(rows):
    """[(x0, y0, x1, y1, class, score)] -> (boxes, classes, scores)."""
    t = torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)
    return t[:, :4], t[:, 4].long(), t[:, 5]


def test_map_is_one_for_perfect_detections_and_counts_misses():
    gold = [
        torch.tensor([[0.1, 0.1, 0.3, 0.3, 0], [0.5, 0.5, 0.9, 0.9, 1]]),
        torch.tensor([[0.2, 0.2, 0.4, 0.4, 0]]),
    ]
    perfect = [
        detected([[0.1, 0.1, 0.3, 0.3, 0, 0.9], [0.5, 0.5, 0.9, 0.9, 1, 0.8]]),
        detected([[0.2, 0.2, 0.4, 0.4, 0, 0.7]]),
    ]
    assert mean_average_precision(gold, perfect, 2) == pytest.approx(1.0)
    # the class-0 box of image 2 missed: class 0 recall stops at 1/2; class 1 still perfect
    missing = [perfect[0], detected([])]
    assert mean_average_precision(gold, missing, 2) == pytest.approx((51 / 101 + 1.0) / 2)
    # a wrong class never matches
    swapped = [detected([[0.1, 0.1, 0.3, 0.3, 1, 0.9], [0.5, 0.5, 0.9, 0.9, 0, 0.8]]), detected([])]
    assert mean_average_precision(gold, swapped, 2) == 0.0
    # a confident false positive ranked first halves the precision at the first recall points
    fp_first = [detected([[0.6, 0.0, 0.7, 0.1, 0, 0.99], [0.1, 0.1, 0.3, 0.3, 0, 0.9], [0.5, 0.5, 0.9, 0.9, 1, 0.8]]),
                detected([[0.2, 0.2, 0.4, 0.4, 0, 0.7]])]  # fmt: skip
    assert mean_average_precision(gold, fp_first, 2) == pytest.approx((2 / 3 + 1.0) / 2)
    # a box shifted to IoU 1/3 counts at .3 but not at .5, and not over .5:.95
    shifted = [
        detected([[0.2, 0.1, 0.4, 0.3, 0, 0.9], [0.5, 0.5, 0.9, 0.9, 1, 0.8]]),
        detected([[0.2, 0.2, 0.4, 0.4, 0, 0.7]]),
    ]
    assert mean_average_precision(gold, shifted, 2, (0.3,)) == pytest.approx(1.0)
    assert mean_average_precision(gold, shifted, 2) < 1.0
    assert mean_average_precision(gold, perfect, 2, COCO_THRESHOLDS) == pytest.approx(1.0)
    assert mean_average_precision([torch.zeros(0, 5)], [detected([[0, 0, 1, 1, 0, 0.5]])], 2) == 0.0


def test_the_head_learns_a_synthetic_scene():
    pool, boxes = toy_pool(labeled=60, total=100)
    state_maps = pool.parts.maps
    model = BoxModel.fit(pool.parts, torch.arange(60), seed=0)
    detections, presence = model.detect(state_maps[60:])
    got = mean_average_precision(boxes[60:], [detections.image(i) for i in range(40)], CLASSES)
    assert got > 0.8
    assert presence.shape == (40, CLASSES)
    truth = torch.stack([torch.bincount(b[:, 4].long(), minlength=CLASSES) > 0 for b in boxes[60:]])
    assert ((presence > 0.5) == truth).float().mean() > 0.9


def test_training_is_seeded():
    pool, _ = toy_pool()
    a = BoxModel.fit(pool.parts, torch.arange(24), seed=3).head.out.weight
    b = BoxModel.fit(pool.parts, torch.arange(24), seed=3).head.out.weight
    assert torch.equal(a, b)
    with pytest.raises(EmptyPoolError):
        BoxModel.fit(pool.parts, torch.zeros(0, dtype=torch.long), seed=0)


@pytest.fixture(scope="module")
def trained_pool():
    pool = toy_pool()[0]
    kind = get_kind("boxes")
    return kind.trained(pool, kind.fit(pool, None, pool.seed))


@pytest.mark.parametrize("name", list(BOX_PORTFOLIO) + ["box_mean_entropy", "box_stability"])
def test_every_box_strategy_scores_a_toy_pool(name, trained_pool):
    state = trained_pool
    candidates = state.unlabeled_indices()
    first = score(state, name, candidates)
    assert first.shape == candidates.shape and torch.isfinite(first).all()
    assert torch.equal(first, score(state, name, candidates))  # deterministic
    assert name in strategy_names("boxes")


def test_entropy_aggregates_prefer_the_uncertain_detection():
    probs = torch.tensor(
        [[[0.5, 0.05], [0.01, 0.01]], [[0.99, 0.0], [0.02, 0.01]]]
    )  # [2 images, 2 detections, C]
    scores = probs.amax(-1)
    values = -(
        outcome_distribution(probs) * outcome_distribution(probs).clamp_min(1e-12).log()
    ).sum(-1)
    top = aggregate(values, counted(scores), "max")
    assert top[0] > top[1]
    assert counted(scores).tolist() == [
        [True, False],
        [True, False],
    ]  # the weak ones are not counted


def test_box_strategies_refuse_an_untrained_pool():
    pool, _ = toy_pool()
    with pytest.raises(EmptyPoolError):
        score(pool, "box_max_entropy", pool.unlabeled_indices())


@pytest.mark.parametrize("selector", ["autoal", "uniform", "margin", "random"])
def test_a_box_round_through_the_selectors(selector):
    pool, _ = toy_pool()
    result = run_round(pool, make_selector(selector, kind="boxes"))
    assert not result.cold_start and isinstance(result.model, BoxModel)
    assert result.probs.shape == (60, CLASSES) and isinstance(result.parts, MapPool)
    assert isinstance(result.parts.detections, Detections)
    assert result.selection.candidates.numel() == 36


def test_cold_start_without_a_labeled_box():
    maps, _ = synthetic_scenes(20, 0)
    empty = [torch.zeros(0, 5)] * 12 + [None] * 8
    pool = make_box_pool(maps.mean(dim=(1, 2)), maps, empty, CLASSES)
    assert get_kind("boxes").cold_start(pool, 10)
    assert run_round(pool, make_selector("autoal", kind="boxes")).cold_start


def test_validation_is_k_fold_map():
    pool, _ = toy_pool(labeled=40)
    value = get_kind("boxes").validate(pool, None, 3)
    assert value is not None and 0.3 < value <= 1.0
    assert get_kind("boxes").validate(pool, None, 0) is None


def test_the_export_predicts_the_same_boxes(tmp_path):
    pool, _ = toy_pool()
    model = get_kind("boxes").fit(pool, None, 0)
    stats = (torch.zeros(6), torch.ones(6))
    state = export_state(model, torch.zeros(6), torch.ones(6), encoder="mobilenet_v2_maps", labels=["a", "b"],
                         model_version="v1", part_stats=stats)  # fmt: skip
    torch.save(state, tmp_path / "m.pt")
    loaded = load(tmp_path / "m.pt")
    assert isinstance(loaded, ExportedBoxModel) and loaded.labels == ["a", "b"]
    mine, _ = model.detect(pool.parts.maps[:5])
    theirs, _ = loaded.model.detect(pool.parts.maps[:5])
    assert torch.equal(mine.boxes, theirs.boxes) and torch.equal(mine.scores, theirs.scores)
