"""The boxes kind: objects in an image, found by a light detector head on cached feature maps.

Each image is a ``G x G`` grid of frozen backbone features (``MapPool``: MobileNetV2's stride-16
map, 96 channels, of the image squashed to a square; ``model.encoders.image``), computed once
and cached. The detector is a centre heat-map head in the manner of CenterNet (Zhou et al.
2019), small enough to train every round in seconds on a CPU: every grid cell's feature,
beside the mean of its 3 x 3 neighbourhood, goes through one hidden layer to C class heat
values (a sigmoid each: "an object of class c is centred here") and 4 box values (the centre's
offset inside the cell and the log width and height, in cells). Training uses the penalty-
reduced focal loss on Gaussian heat targets and a smooth L1 loss on the box values at each
object's centre cell. Decoding keeps the cells that are the largest in their 3 x 3 window (no
other suppression is needed) and the ``k`` best of them over all classes: each is a box with
its class and its heat value as the score, the per-box class probability.

Boxes are in fractions of the image (x0, y0, x1, y1 in 0..1): the same whatever the image's
pixel size, which the Label Studio side converts to and from its percentages. Uncertainty for
the strategies comes from the head's dropout (MC passes at each image's detections,
``mc_detections``).

The pool sees each image as the multi-label question "which classes does it hold": ``targets``
[N, C] marks the classes annotated in an image, ``probs`` [N, C] is the largest heat value of
each class over the image's cells. Label counts, balance and confidence in AutoAL's state then
mean what they mean for a multi-choice project; the box strategies (``model.strategies.boxes``)
read the detections.

The quality metric is mean average precision (COCO's 101-point interpolation, classes with at
least one gold box) at IoU .5 (``validate``, the benchmarks) and averaged over .5:.95.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.nn import functional as F

from model.errors import EmptyPoolError
from model.kinds import register_kind
from model.pool import PoolState
from model.seeding import generator, seeded
from model.strategies import BOX_PORTFOLIO, PORTFOLIO
from model.task_model import TaskModelConfig

HIDDEN = 128
DROPOUT = 0.1
TRAIN_STEPS = 300
BATCH_IMAGES = 16
LEARNING_RATE = 2e-3
WEIGHT_DECAY = 1e-4
# Detections kept per image (COCO's limit; the strategies, the metric and the most boxes a
# prediction may show, ``AUTOAL_MAX_BOXES``): scenes with more objects lose the weakest.
DETECTIONS = 100
# Detections scoring below this are not objects to anyone: the strategies do not count them and
# the backend does not keep them as guesses (an image's best detection always counts).
DETECTION_FLOOR = 0.05
# Images per forward pass over the pool: [images, G * G, hidden] stays small.
IMAGE_BLOCK = 256
# The initial heat bias, log(0.01 / 0.99): every cell starts as "probably empty" (focal loss).
PRIOR_BIAS = -4.595
COCO_THRESHOLDS = tuple(0.5 + 0.05 * i for i in range(10))


@dataclass
class MapPool:
    """The feature maps of N images, and their boxes where known.

    Attributes:
        maps: [N, G, G, d] feature maps (float16 or float32, standardised per channel).
        boxes: per image, [b, 5] float32 gold boxes (x0, y0, x1, y1 as fractions of the image,
            class index) for a labeled image ([0, 5] for "no object here"); None if unlabeled.
        num_classes: C.
        sizes: [N, 2] int64 each image's (width, height) in pixels, when known (the backend
            writes boxes back with the original size).
        stats: the (mean [d], std [d]) the maps were standardised with, when known.
        detections: after training, the model's ``Detections`` on every image.
    """

    maps: torch.Tensor
    boxes: list[torch.Tensor | None]
    num_classes: int
    sizes: torch.Tensor | None = None
    stats: tuple[torch.Tensor, torch.Tensor] | None = None
    detections: Detections | None = None

    @property
    def num_images(self) -> int:
        return int(self.maps.shape[0])

    @property
    def grid(self) -> int:
        return int(self.maps.shape[1])


@dataclass
class Detections:
    """The ``k`` best peaks of each image's heat map.

    Attributes:
        boxes: [N, k, 4] (x0, y0, x1, y1) fractions of the image.
        classes: [N, k] int64 the class of each peak.
        scores: [N, k] its heat value (the probability that an object of that class is
            centred there).
        cells: [N, k] int64 the grid cell (row * G + column) of each peak.
        probs: [N, k, C] every class's heat value at the peak's cell.
    """

    boxes: torch.Tensor
    classes: torch.Tensor
    scores: torch.Tensor
    cells: torch.Tensor
    probs: torch.Tensor

    def image(
        self, i: int, min_score: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(boxes [b, 4], classes [b], scores [b]) of image ``i`` scoring at least
        ``min_score``, best first."""
        keep = self.scores[i] >= min_score
        return self.boxes[i][keep], self.classes[i][keep], self.scores[i][keep]


def map_standardisation(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean [d], std [d]) of every cell of feature ``maps`` [N, G, G, d], per channel,
    accumulated in float64 over ``IMAGE_BLOCK`` images at a time."""
    d = maps.shape[-1]
    total = torch.zeros(d, dtype=torch.float64)
    square = torch.zeros(d, dtype=torch.float64)
    count = 0
    for block in maps.split(IMAGE_BLOCK):
        rows = block.reshape(-1, d).double().cpu()
        total += rows.sum(0)
        square += (rows * rows).sum(0)
        count += rows.shape[0]
    mean = total / max(count, 1)
    var = (square / max(count, 1) - mean * mean).clamp_min(0.0)
    return mean.float(), var.sqrt().float().clamp_min(1e-6)


def standardise_maps(
    maps: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor], dtype: torch.dtype = torch.float16
) -> torch.Tensor:
    """Feature ``maps`` [N, G, G, d] standardised with ``stats`` per channel, stored as
    ``dtype`` (half precision by default: a 2,000-image pool of 16 x 16 x 96 maps is 98 MB)."""
    mean, std = stats[0].to(maps.device), stats[1].to(maps.device)
    out = torch.empty(maps.shape, dtype=dtype, device=maps.device)
    for source, target in zip(maps.split(IMAGE_BLOCK), out.split(IMAGE_BLOCK), strict=True):
        target.copy_(((source.float() - mean) / std).to(dtype))
    return out


def cell_inputs(maps: torch.Tensor) -> torch.Tensor:
    """[n, G, G, d] maps -> [n, G * G, 2d] float32: each cell's feature and the mean of its
    3 x 3 neighbourhood (cells off the grid left out of the mean)."""
    x = maps.float().permute(0, 3, 1, 2)  # [n, d, G, G]
    context = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    both = torch.cat((x, context), dim=1)
    return both.permute(0, 2, 3, 1).reshape(x.shape[0], -1, both.shape[1])


def heat_targets(
    boxes: torch.Tensor, grid: int, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training targets of one image's gold ``boxes`` [b, 5]: heat [G * G, C] (a Gaussian
    around each box's centre cell, 1 exactly there), box values [G * G, 4] (centre offset in
    its cell, log width and log height in cells) and a mask [G * G] of the centre cells."""
    cells = grid * grid
    heat = torch.zeros(cells, num_classes)
    values = torch.zeros(cells, 4)
    mask = torch.zeros(cells)
    rows, cols = torch.meshgrid(
        torch.arange(grid, dtype=torch.float32),
        torch.arange(grid, dtype=torch.float32),
        indexing="ij",
    )
    for x0, y0, x1, y1, label in boxes.tolist():
        cx, cy = (x0 + x1) / 2 * grid, (y0 + y1) / 2 * grid
        w, h = max((x1 - x0) * grid, 1e-3), max((y1 - y0) * grid, 1e-3)
        col, row = min(int(cx), grid - 1), min(int(cy), grid - 1)
        sigma = max(0.5, min(w, h) / 6.0)
        gauss = torch.exp(-((cols - col) ** 2 + (rows - row) ** 2) / (2 * sigma * sigma)).flatten()
        c = int(label)
        heat[:, c] = torch.maximum(heat[:, c], gauss)
        cell = row * grid + col
        values[cell] = torch.tensor([cx - col, cy - row, math.log(w), math.log(h)])
        mask[cell] = 1.0
    return heat, values, mask


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4), summed over cells and classes
    and divided by the number of object centres."""
    p = logits.sigmoid().clamp(1e-4, 1 - 1e-4)
    centre = (target >= 1.0).float()
    positive = -(centre * (1 - p) ** 2 * torch.log(p)).sum()
    negative = -((1 - centre) * (1 - target) ** 4 * p**2 * torch.log(1 - p)).sum()
    return (positive + negative) / centre.sum().clamp_min(1.0)


class BoxHead(nn.Module):
    """[n, cells, 2d] -> [n, cells, C + 4]: C heat logits, then the 4 box values."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(dim, HIDDEN)
        self.dropout = nn.Dropout(DROPOUT)
        self.out = nn.Linear(HIDDEN, num_classes + 4)
        with torch.no_grad():
            self.out.bias[:num_classes] = PRIOR_BIAS

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.hidden(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(self.embed(x)))


def decode(
    heat: torch.Tensor, values: torch.Tensor, grid: int, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k`` best local maxima of heat [n, G * G, C] over all classes, with their boxes
    from the box values [n, G * G, 4]: (boxes [n, k, 4], classes [n, k], scores [n, k],
    cells [n, k])."""
    n, cells, c = heat.shape
    grid_heat = heat.reshape(n, grid, grid, c).permute(0, 3, 1, 2)
    peaks = grid_heat * (F.max_pool2d(grid_heat, 3, stride=1, padding=1) == grid_heat).float()
    k = min(k, cells * c)
    scores, index = peaks.flatten(1).topk(k, dim=1)  # index = class * G * G + cell
    classes, cell = index // cells, index % cells
    picked = values.gather(1, cell.unsqueeze(-1).expand(-1, -1, 4))  # [n, k, 4]
    return cell_boxes(picked, cell, grid), classes, scores, cell


def cell_boxes(values: torch.Tensor, cell: torch.Tensor, grid: int) -> torch.Tensor:
    """Box values [..., 4] at grid ``cell`` [...] -> (x0, y0, x1, y1) fractions, clipped to
    the image."""
    col, row = (cell % grid).float(), (cell // grid).float()
    cx, cy = (col + values[..., 0]) / grid, (row + values[..., 1]) / grid
    w = values[..., 2].clamp(max=math.log(2 * grid)).exp() / grid
    h = values[..., 3].clamp(max=math.log(2 * grid)).exp() / grid
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=-1).clamp(0.0, 1.0)


class BoxModel:
    """The detector head and how to run it on feature maps.

    Attributes:
        head: the ``BoxHead``.
        num_classes: C.
        grid: G, the side of the feature maps it reads.
    """

    def __init__(self, head: BoxHead, num_classes: int, grid: int) -> None:
        self.head = head.eval()
        self.num_classes = num_classes
        self.grid = grid

    @classmethod
    def fit(cls, pool: MapPool, items: torch.Tensor, seed: int) -> BoxModel:
        """Train on the labeled images ``items`` [L] (their gold boxes; an image without a box
        teaches that its cells are empty). ``TRAIN_STEPS`` AdamW steps on batches of
        ``BATCH_IMAGES`` images drawn with ``seed``."""
        if items.numel() == 0:
            raise EmptyPoolError("cannot train the detector on 0 labeled images")
        device = pool.maps.device
        grid, c = pool.grid, pool.num_classes
        targets = [heat_targets(_gold(pool, i), grid, c) for i in items.tolist()]
        heat = torch.stack([t[0] for t in targets]).to(device)
        values = torch.stack([t[1] for t in targets]).to(device)
        mask = torch.stack([t[2] for t in targets]).to(device)
        dim = 2 * int(pool.maps.shape[-1])
        with seeded(seed, device):
            head = BoxHead(dim, c).to(device)
            optimiser = torch.optim.AdamW(
                head.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY
            )
            draw = generator(seed)
            head.train()
            batch = min(BATCH_IMAGES, items.numel())
            for _ in range(TRAIN_STEPS):
                pick = torch.randint(0, items.numel(), (batch,), generator=draw).to(device)
                out = head(cell_inputs(pool.maps[items[pick]]))
                centres = mask[pick]
                box_loss = (
                    F.smooth_l1_loss(out[..., c:], values[pick], reduction="none").sum(-1) * centres
                ).sum() / centres.sum().clamp_min(1.0)
                loss = focal_loss(out[..., :c], heat[pick]) + box_loss
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        return cls(head, c, grid)

    @torch.no_grad()
    def outputs(self, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[n, G, G, d] -> (heat [n, G * G, C] probabilities, box values [n, G * G, 4])."""
        out = self.head(cell_inputs(maps))
        return out[..., : self.num_classes].sigmoid(), out[..., self.num_classes :]

    @torch.no_grad()
    def detect(self, maps: torch.Tensor, k: int = DETECTIONS) -> tuple[Detections, torch.Tensor]:
        """The detections of every image in ``maps`` [N, G, G, d] (``IMAGE_BLOCK`` images at a
        time), and [N, C] each class's largest heat value per image."""
        parts, presence = [], []
        for block in maps.split(IMAGE_BLOCK):
            heat, values = self.outputs(block)
            boxes, classes, scores, cells = decode(heat, values, self.grid, k)
            probs = heat.gather(1, cells.unsqueeze(-1).expand(-1, -1, self.num_classes))
            parts.append((boxes, classes, scores, cells, probs))
            presence.append(heat.amax(dim=1))
        if not parts:
            c, device = self.num_classes, maps.device
            empty = Detections(
                torch.zeros(0, k, 4, device=device),
                torch.zeros(0, k, dtype=torch.long, device=device),
                torch.zeros(0, k, device=device),
                torch.zeros(0, k, dtype=torch.long, device=device),
                torch.zeros(0, k, c, device=device),
            )
            return empty, torch.zeros(0, c, device=device)
        joined = [torch.cat(column) for column in zip(*parts, strict=True)]
        return Detections(*joined), torch.cat(presence)

    @torch.no_grad()
    def mc_detections(
        self, maps: torch.Tensor, cells: torch.Tensor, passes: int, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Heat [P, n, k, C] and boxes [P, n, k, 4] at each image's detection ``cells`` [n, k]
        under ``passes`` dropout masks of the head (the same masks for every image: the
        passes are P models)."""
        features = cell_inputs(maps)  # [n, G * G, 2d]
        picked = features.gather(1, cells.unsqueeze(-1).expand(-1, -1, features.shape[-1]))
        hidden = self.head.embed(picked)  # [n, k, H]
        draw = generator(seed)
        heats, boxes = [], []
        for _ in range(passes):
            keep = (torch.rand(hidden.shape[-1], generator=draw) >= DROPOUT).to(hidden.device)
            out = self.head.out(hidden * keep / (1 - DROPOUT))
            heats.append(out[..., : self.num_classes].sigmoid())
            boxes.append(cell_boxes(out[..., self.num_classes :], cells, self.grid))
        return torch.stack(heats), torch.stack(boxes)

    @torch.no_grad()
    def embed_at(self, maps: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """[n, k, H] the head's hidden features at each image's ``cells`` [n, k]."""
        features = cell_inputs(maps)
        picked = features.gather(1, cells.unsqueeze(-1).expand(-1, -1, features.shape[-1]))
        return self.head.embed(picked)

    def state_dict(self) -> dict:
        return {
            "head": {k: v.detach().cpu() for k, v in self.head.state_dict().items()},
            "num_classes": self.num_classes,
            "grid": self.grid,
            "dim": int(self.head.hidden.in_features),
        }

    @classmethod
    def from_state_dict(cls, state: dict, device: torch.device | str = "cpu") -> BoxModel:
        head = BoxHead(int(state["dim"]), int(state["num_classes"]))
        head.load_state_dict(state["head"])
        return cls(head.to(device), int(state["num_classes"]), int(state["grid"]))


def _gold(pool: MapPool, item: int) -> torch.Tensor:
    boxes = pool.boxes[item]
    return torch.zeros(0, 5) if boxes is None else boxes.float().cpu()


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[n, 4] x [m, 4] (x0, y0, x1, y1) -> [n, m] intersection over union (0 for empty
    boxes)."""
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp_min(0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp_min(0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp_min(0).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-12), torch.zeros_like(inter))


Detected = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # boxes [b, 4], classes, scores


def mean_average_precision(
    gold: list[torch.Tensor], detected: list[Detected], num_classes: int,
    thresholds: tuple[float, ...] = (0.5,),
) -> float:  # fmt: skip
    """COCO-style mAP: per class and IoU threshold, every image's detections of the class
    sorted by score, each matched greedily to the unmatched gold box of its class it overlaps
    most (at least the threshold); precision made monotone and read at 101 recall points.
    Averaged over the classes with a gold box, then over ``thresholds`` ((.5,) for mAP@.5,
    ``COCO_THRESHOLDS`` for mAP@.5:.95); 0 when no image holds a gold box."""
    entries: list[list[tuple[float, int, int]]] = [[] for _ in range(num_classes)]
    overlaps: list[torch.Tensor] = []
    totals = [0] * num_classes
    for i, (g, (boxes, classes, scores)) in enumerate(zip(gold, detected, strict=True)):
        g = g.float().cpu().reshape(-1, 5)
        labels = g[:, 4].long()
        for c in labels.tolist():
            totals[c] += 1
        boxes, classes = boxes.float().cpu().reshape(-1, 4), classes.cpu().reshape(-1)
        overlap = box_iou(boxes, g[:, :4])  # [k, b]
        # a detection only matches gold boxes of its own class
        overlap[classes.unsqueeze(1) != labels.unsqueeze(0)] = -1.0
        overlaps.append(overlap)
        for j, (c, s) in enumerate(
            zip(classes.tolist(), scores.cpu().reshape(-1).tolist(), strict=True)
        ):
            entries[c].append((float(s), i, j))
    present = [c for c in range(num_classes) if totals[c]]
    if not present:
        return 0.0
    points = torch.linspace(0, 1, 101)
    per_threshold = []
    for threshold in thresholds:
        aps = []
        for c in present:
            ranked = sorted(entries[c], key=lambda e: -e[0])
            used = [torch.zeros(o.shape[1], dtype=torch.bool) for o in overlaps]
            hits = []
            for _, i, j in ranked:
                row = overlaps[i][j].clone()
                row[used[i]] = -1.0
                best = int(row.argmax()) if row.numel() else -1
                hit = best >= 0 and float(row[best]) >= threshold
                if hit:
                    used[i][best] = True
                hits.append(1.0 if hit else 0.0)
            if not hits:
                aps.append(0.0)
                continue
            tp = torch.tensor(hits).cumsum(0)
            precision = tp / torch.arange(1, len(hits) + 1, dtype=torch.float32)
            precision = precision.flip(0).cummax(0).values.flip(0)  # monotone from the right
            at = torch.searchsorted((tp / totals[c]).contiguous(), points)
            read = torch.where(
                at < len(hits), precision[at.clamp(max=len(hits) - 1)], torch.zeros(101)
            )
            aps.append(float(read.mean()))
        per_threshold.append(sum(aps) / len(aps))
    return sum(per_threshold) / len(per_threshold)


def detected_lists(detections: Detections, items: list[int]) -> list[Detected]:
    return [detections.image(i) for i in items]


@register_kind("boxes")
class BoxesKind:
    """``<RectangleLabels>`` over ``<Image>``: feature maps in, scored boxes out."""

    name = "boxes"
    portfolio = BOX_PORTFOLIO
    # BOX_PORTFOLIO is ordered by the choices strategy whose place each member takes.
    roles: dict[str, str] = dict(zip(BOX_PORTFOLIO, PORTFOLIO, strict=True))

    def cold_start(self, state: PoolState, min_labels: int) -> bool:
        """Too few labeled images, or not one box among them (a head that has only seen
        empty images finds nothing: nothing to be uncertain about)."""
        labeled = state.labeled_indices()
        if labeled.numel() < max(min_labels, 1):
            return True
        return not bool((state.targets[labeled].sum() > 0).item())

    def fit(self, state: PoolState, config: TaskModelConfig, seed: int) -> BoxModel:
        return BoxModel.fit(state.parts, state.labeled_indices(), seed)

    def trained(self, state: PoolState, model: BoxModel) -> PoolState:
        pool: MapPool = state.parts
        detections, presence = model.detect(pool.maps)
        return replace(
            state, probs=presence, model=model, parts=replace(pool, detections=detections)
        )

    def validate(self, state: PoolState, config: TaskModelConfig, folds: int) -> float | None:
        """k-fold mAP@.5 on the labeled images (k detectors, one per fold)."""
        labeled = state.labeled_indices()
        if folds < 2 or labeled.numel() < 2 * folds:
            return None
        pool: MapPool = state.parts
        order = labeled[
            torch.randperm(labeled.numel(), generator=generator(state.seed)).to(labeled.device)
        ]
        gold: list[torch.Tensor] = []
        detected: list[Detected] = []
        for f in range(folds):
            held = order[f::folds]
            kept = torch.cat([order[g::folds] for g in range(folds) if g != f])
            model = BoxModel.fit(pool, kept, state.seed + f)
            detections, _ = model.detect(pool.maps[held])
            gold.extend(_gold(pool, i) for i in held.tolist())
            detected.extend(detected_lists(detections, list(range(held.numel()))))
        return mean_average_precision(gold, detected, pool.num_classes)


def make_box_pool(
    features: torch.Tensor,
    maps: torch.Tensor,
    boxes: list[torch.Tensor | None],
    num_classes: int,
    *,
    labeled_round: torch.Tensor | None = None,
    budget: int = 10,
    seed: int = 0,
    sizes: torch.Tensor | None = None,
) -> PoolState:
    """A box pool from per-image ``features`` [N, d] (standardised), feature ``maps``
    [N, G, G, d'] (standardised per channel by the caller, so the same statistics can serve
    new images) and gold ``boxes`` per image ([b, 5]; None = unlabeled)."""
    device = features.device
    n = features.shape[0]
    if len(boxes) != n or maps.shape[0] != n:
        raise ValueError(f"{n} images, but {maps.shape[0]} maps and {len(boxes)} box lists")
    labeled = torch.tensor([b is not None for b in boxes], dtype=torch.bool, device=device)
    targets = torch.zeros(n, num_classes, device=device)
    for i, image_boxes in enumerate(boxes):
        if image_boxes is not None and image_boxes.numel():
            targets[i, image_boxes[:, 4].long().to(device)] = 1.0
    if labeled_round is None:
        labeled_round = torch.where(labeled, 0, -1).to(device)
    return PoolState(
        features=features.float(),
        targets=targets,
        labeled=labeled,
        labeled_round=labeled_round.long().to(device),
        multilabel=True,
        budget=budget,
        seed=seed,
        kind="boxes",
        parts=MapPool(maps.to(device), boxes, num_classes, sizes=sizes),
    )
