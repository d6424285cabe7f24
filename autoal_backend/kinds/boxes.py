"""Box projects on the Label Studio side: ``<RectangleLabels>`` over ``<Image>``, any tag and field
names.

- **Config**: one ``<RectangleLabels>`` pointing at one ``<Image>`` that reads a task field
  (``$image``); anything else is refused with a message naming it (polygons, key points,
  brushes, ellipses, two ``<RectangleLabels>`` on one image). Images are read as the choices
  kind reads them (uploads, URLs, ``data:`` URIs, cloud storage), EXIF orientation applied, as
  the labeling editor shows them.
- **Annotations**: each region ``{"type": "rectanglelabels", "value": {"x", "y", "width",
  "height", "rotation", "rectanglelabels"}}`` of our tag is a box in percent of the image (top-
  left corner, size). A rotated box becomes the upright box that encloses it (the detector
  learns upright boxes; the rotation is applied in pixels when the region gives the image's
  size). A region with several labels counts as its first; one outside the image, or with an
  unknown label, makes the annotation unusable (the reason is reported).
- **Agreement**: a box of the most recent annotation is agreed when more than half of a
  task's usable annotations hold a box of the same label overlapping it by IoU .5 or more; at
  exactly half it is kept (it is the most recent). One annotation is simply that annotation.
- **Results**: one ``rectanglelabels`` region per predicted box (percent, rotation 0) with
  ``original_width`` and ``original_height`` and the box's class probability as ``score``; the
  boxes shown are those scoring at least ``AUTOAL_BOX_MIN_SCORE``, at most ``AUTOAL_MAX_BOXES``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from autoal_backend.label_config import UnsupportedConfigError, load_interface
from model.kinds.boxes import (
    DETECTION_FLOOR,
    MapPool,
    box_iou,
    map_standardisation,
    standardise_maps,
)

# (x0, y0, x1, y1) fractions of the image, then the label.
Box = tuple[float, float, float, float, str]
AGREEMENT_IOU = 0.5
# Region tags the detector cannot learn from, with what to use instead.
OTHER_REGIONS = {
    "PolygonLabels": "polygons",
    "KeyPointLabels": "key points",
    "BrushLabels": "brush masks",
    "EllipseLabels": "ellipses",
    "Polygon": "polygons",
    "KeyPoint": "key points",
    "Brush": "brush masks",
    "Ellipse": "ellipses",
    "Rectangle": "unlabeled rectangles",
    "VideoRectangle": "video boxes",
}


@dataclass(frozen=True)
class BoxSpec:
    """What the backend needs from a box label config.

    Attributes:
        from_name: the ``<RectangleLabels>`` tag's name.
        to_name: the ``<Image>`` tag's name.
        data_key: the task data field the image reads (``$image`` -> ``image``).
        labels: the classes in config order; class index i is ``labels[i]``.
    """

    from_name: str
    to_name: str
    data_key: str
    labels: tuple[str, ...]
    kind = "boxes"
    modality = "image"
    multilabel = True
    value_type = ""
    parts = "maps"

    def class_index(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    # --- the kind's hooks (autoal_backend.kinds.ProjectSpec) --------------------------------
    def vote(self, annotation: dict, text: str | None = None) -> tuple[list[Box] | None, str]:
        """The boxes an annotation draws with our tag, or (None, why it is unusable). An
        annotation without any of our regions says "no object here": an empty list."""
        result = annotation.get("result")
        boxes: list[Box] = []
        for region in result if isinstance(result, list) else []:
            if not isinstance(region, dict) or region.get("from_name") != self.from_name:
                continue
            box, why = self.region_box(region)
            if box is None:
                return None, why
            boxes.append(box)
        return sorted(set(boxes)), ""

    def region_box(self, region: dict) -> tuple[Box | None, str]:
        value = region.get("value")
        if not isinstance(value, dict):
            return None, "a box region without a value"
        numbers = [value.get(k) for k in ("x", "y", "width", "height")]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in numbers):
            return None, f"a box region needs numeric x, y, width, height; got {numbers}"
        x, y, w, h = (float(v) for v in numbers)  # type: ignore[arg-type]
        if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
            return None, f"a box of {w} x {h} percent at ({x}, {y}): sizes must be positive"
        labels = value.get("rectanglelabels")
        if not isinstance(labels, list) or not labels:
            return None, "a box region without a label"
        if labels[0] not in self.labels:
            return None, f"unknown label {labels[0]!r}"
        rotation = value.get("rotation") or 0.0
        if not isinstance(rotation, int | float) or isinstance(rotation, bool):
            return None, f"a box rotation must be a number, got {rotation!r}"
        x0, y0, x1, y1 = upright(x, y, w, h, float(rotation), region.get("original_width"),
                                 region.get("original_height"))  # fmt: skip
        slack = 0.5  # percent: the editor lets a box edge sit a hair outside the image
        if x0 < -slack or y0 < -slack or x1 > 100 + slack or y1 > 100 + slack:
            return (
                None,
                f"a box at {x0:.1f}..{x1:.1f} x {y0:.1f}..{y1:.1f} percent lies outside the image",
            )
        clip = [min(max(v / 100.0, 0.0), 1.0) for v in (x0, y0, x1, y1)]
        return (*(round(v, 5) for v in clip), str(labels[0])), ""  # type: ignore[return-value]

    def agree(self, votes: list[list[Box]]) -> list[Box]:
        return agreed_boxes(votes)[0]

    def keys(self, answer: list[Box]) -> list[str]:
        return [box_key(box) for box in sorted(answer)]

    def counts(self, answer: list[Box]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for *_, label in answer:
            counts[label] = counts.get(label, 0) + 1
        return counts

    def targets(self, answers: list[list[Box] | None], parts: list | None, device: torch.device,
                texts: list[str | None] | None = None) -> tuple[torch.Tensor, MapPool]:  # fmt: skip
        """[N, C] which classes each labeled image holds, and the pool's maps: standardised per
        channel over every image of the pool, with each labeled image's boxes and each image's
        size in pixels."""
        if parts is None:
            raise ValueError("a box pool needs each image's feature map")
        index = self.class_index()
        maps = torch.stack([p[0] for p in parts]) if parts else torch.zeros(0, 1, 1, 1)
        sizes = torch.tensor([list(p[1]) for p in parts], dtype=torch.long).reshape(-1, 2)
        stats = map_standardisation(maps)
        targets = torch.zeros(len(answers), len(self.labels))
        boxes: list[torch.Tensor | None] = []
        for row, answer in enumerate(answers):
            if answer is None:
                boxes.append(None)
                continue
            rows = [[x0, y0, x1, y1, index[label]] for x0, y0, x1, y1, label in answer]
            tensor = torch.tensor(rows, dtype=torch.float32).reshape(-1, 5)
            boxes.append(tensor)
            if rows:
                targets[row, tensor[:, 4].long()] = 1.0
        pool = MapPool(
            standardise_maps(maps, stats).to(device), boxes, len(self.labels),
            sizes=sizes.to(device), stats=stats,
        )  # fmt: skip
        return targets.to(device), pool

    def predict(
        self, result, candidates: torch.Tensor, texts: list[str | None]
    ) -> tuple[list, list, list]:
        """Per candidate: its detections as keys (``box_key``: the box, the image's size and
        the label), best first, those scoring at least ``DETECTION_FLOOR`` (and always the best
        one: the ranking stays small), each one's class probability; and the certainty of the
        whole guess: the product over all its detections of max(score, 1 - score), the chance
        that every "object here" and "no object here" it implies is right. Nothing in a cold
        start."""
        m = candidates.numel()
        pool = result.parts
        if result.model is None or not isinstance(pool, MapPool) or pool.detections is None:
            return [[] for _ in range(m)], [[] for _ in range(m)], []
        detections = pool.detections
        sizes = pool.sizes.cpu() if pool.sizes is not None else None
        picked, confidence, certainty = [], [], []
        for row in candidates.tolist():
            boxes, classes, scores = detections.image(row)
            width, height = (int(v) for v in sizes[row]) if sizes is not None else (0, 0)
            keys, values = [], []
            kept = max(1, int((scores >= DETECTION_FLOOR).sum()))  # scores are sorted
            for box, label, score in zip(
                boxes[:kept].tolist(), classes[:kept].tolist(), scores[:kept].tolist(), strict=True
            ):
                keys.append(box_key((*box, self.labels[label]), width, height))
                values.append(round(float(score), 6))
            picked.append(keys)
            confidence.append(values)
            sure = torch.maximum(scores, 1.0 - scores).clamp_min(1e-12).log().sum()
            certainty.append(round(float(sure.exp()), 6))
        return picked, confidence, certainty

    def shown(self, picked: list[str], confidence: list[float], settings) -> tuple[list[str], list[float]]:  # fmt: skip
        """The boxes annotators see: those scoring at least ``AUTOAL_BOX_MIN_SCORE``, at most
        ``AUTOAL_MAX_BOXES`` of them (the best), with their scores."""
        kept = [
            (key, score)
            for key, score in zip(picked, confidence, strict=False)
            if score >= settings.box_min_score
        ][: settings.max_boxes]
        return [key for key, _ in kept], [score for _, score in kept]

    def names(self, picked: list[str], text: str | None = None) -> list[str]:
        return [parse_box_key(key)[4] for key in picked]

    def result(self, picked: list[str], why: str = "", confidence: list[float] | None = None,
               text: str | None = None) -> list[dict]:  # fmt: skip
        """``rectanglelabels`` regions for the boxes ``picked`` (as ``shown`` keeps them); ``why``
        goes into the first region's ``meta.text`` (kept by Label Studio)."""
        scores = list(confidence or []) + [0.0] * len(picked)
        regions = []
        for position, (key, score) in enumerate(zip(picked, scores, strict=False)):
            x0, y0, x1, y1, label, width, height = parse_box_key(key)
            region: dict = {
                "from_name": self.from_name,
                "to_name": self.to_name,
                "type": "rectanglelabels",
                "value": {
                    "x": round(x0 * 100, 3),
                    "y": round(y0 * 100, 3),
                    "width": round((x1 - x0) * 100, 3),
                    "height": round((y1 - y0) * 100, 3),
                    "rotation": 0,
                    "rectanglelabels": [label],
                },
                "score": float(score),
            }
            if width and height:
                region["original_width"], region["original_height"] = width, height
                region["image_rotation"] = 0
            if why and position == 0:
                region["meta"] = {"text": [why]}
            regions.append(region)
        return regions


def upright(x: float, y: float, w: float, h: float, rotation: float,
            width: object = None, height: object = None) -> tuple[float, float, float, float]:  # fmt: skip
    """The upright box (x0, y0, x1, y1, percent) that encloses a Label Studio box: top-left
    corner (``x``, ``y``), size ``w`` x ``h``, turned ``rotation`` degrees clockwise about that
    corner. The turn is made in pixels when the image's ``width`` and ``height`` are known (a
    percent is not the same length across and down a non-square image)."""
    if not rotation % 360:
        return x, y, x + w, y + h
    sx, sy = (
        (float(width) / 100.0, float(height) / 100.0)
        if isinstance(width, int | float) and isinstance(height, int | float) and width > 0 and height > 0
        else (1.0, 1.0)
    )  # fmt: skip
    angle = math.radians(rotation)
    cos, sin = math.cos(angle), math.sin(angle)
    xs, ys = [], []
    for dx, dy in ((0.0, 0.0), (w * sx, 0.0), (w * sx, h * sy), (0.0, h * sy)):
        xs.append(x + (dx * cos - dy * sin) / sx)
        ys.append(y + (dx * sin + dy * cos) / sy)
    return min(xs), min(ys), max(xs), max(ys)


def agreed_boxes(votes: list[list[Box]]) -> tuple[list[Box], int]:
    """The boxes agreed among annotations' ``votes`` (oldest first) and how many annotations
    differ from them: each box of the most recent vote held (same label, IoU at least
    ``AGREEMENT_IOU``) by more than half of the votes, or by exactly half."""
    n = len(votes)
    if n == 0:
        return [], 0
    latest = votes[-1]
    agreed = [box for box in latest if 2 * sum(holds(v, box) for v in votes) >= n]
    differing = sum(
        len(v) != len(agreed) or not all(holds(v, box) for box in agreed) for v in votes
    )
    return sorted(agreed), differing


def holds(vote: list[Box], box: Box) -> bool:
    """True when ``vote`` has a box of ``box``'s label overlapping it by ``AGREEMENT_IOU``."""
    same = [b[:4] for b in vote if b[4] == box[4]]
    if not same:
        return False
    overlap = box_iou(torch.tensor([box[:4]]), torch.tensor(same))
    return bool((overlap >= AGREEMENT_IOU).any())


def box_key(box: tuple, width: int = 0, height: int = 0) -> str:
    """``x0 y0 x1 y1 WxH label``: a box (fractions, 5 decimals) with its image's size in pixels
    (0x0 when unknown), as the ranking and the history store it."""
    x0, y0, x1, y1, label = box
    return f"{x0:.5f} {y0:.5f} {x1:.5f} {y1:.5f} {int(width)}x{int(height)} {label}"


def parse_box_key(key: str) -> tuple[float, float, float, float, str, int, int]:
    x0, y0, x1, y1, size, label = key.split(" ", 5)
    width, _, height = size.partition("x")
    return float(x0), float(y0), float(x1), float(y1), label, int(width), int(height)


def parse_box_config(config: str) -> BoxSpec:
    """The ``BoxSpec`` of a ``<RectangleLabels>`` config; UnsupportedConfigError names the
    problem."""
    interface = load_interface(config)
    tags = [c for c in interface.controls if c.tag == "RectangleLabels"]
    if len(tags) != 1:
        targets = sorted({t for c in tags for t in c.to_name})
        raise UnsupportedConfigError(
            f"expected one <RectangleLabels> tag, got {len(tags)} (on {', '.join(targets)}): one "
            "<RectangleLabels> over one <Image> is supported"
        )
    control = tags[0]
    if len(control.to_name) != 1:
        raise UnsupportedConfigError(
            f"<RectangleLabels name={control.name!r}> must point at one object, got toName={control.to_name}"
        )
    objects = {o.name: o for o in interface.objects}
    obj = objects.get(control.to_name[0])
    if obj is None:
        raise UnsupportedConfigError(
            f"<RectangleLabels name={control.name!r}> points at {control.to_name[0]!r}, which is not an object tag"
        )
    if obj.tag != "Image":
        raise UnsupportedConfigError(
            f"<RectangleLabels> over <{obj.tag}> is not supported: only <RectangleLabels> over <Image>"
        )
    value = obj.value or ""
    if not value.startswith("$") or len(value) < 2:
        raise UnsupportedConfigError(
            f"<Image name={obj.name!r}> must read a task field ($name), got value={value!r}"
        )
    if str(obj.attr.get("valueList", "")):
        raise UnsupportedConfigError(
            f"<Image name={obj.name!r} valueList=...>: a task with several images is not supported"
        )
    labels = tuple(control.labels)
    if not labels:
        raise UnsupportedConfigError(
            f"<RectangleLabels name={control.name!r}> needs at least 1 <Label>"
        )
    if len(set(labels)) != len(labels):
        raise UnsupportedConfigError(
            f"<RectangleLabels name={control.name!r}> repeats a label value"
        )
    return BoxSpec(from_name=control.name, to_name=obj.name, data_key=value[1:], labels=labels)
