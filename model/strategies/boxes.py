"""Query strategies for box (object detection) pools: detection uncertainty aggregated per image.

Each reads the trained pool's ``MapPool`` (``model.kinds.boxes``): the ``k`` best peaks of
every image's heat map (``Detections``). The detections an image is judged by are its peaks
scoring at least ``DETECTION_FLOOR``, and always its best one (an image where the model finds
nothing is judged by its strongest hint of an object). A detection's class distribution is
over the C classes and "no object": the class heat values scaled to the detection's score,
and 1 - score for no object.

- ``box_max_entropy``, ``box_mean_entropy``, ``box_sum_entropy``: the entropy of the
  detections' distributions, aggregated by max, mean or sum (Brust et al. 2019).
- ``box_margin``: 1 - the smallest gap between a detection's two most probable outcomes.
- ``box_bald``: BALD (mutual information) of the detections' distributions under MC-dropout
  passes of the head, summed over the image's detections.
- ``box_mean_std``: mean-STD (Kampffmeyer et al. 2016) at the detections: the standard
  deviation of each class's heat value over MC-dropout passes, averaged over the classes,
  summed over the image's detections.
- ``box_stability``: localisation instability (after Kao et al. 2018, who perturb the image;
  here the head's dropout perturbs the model): 1 - the IoU between a detection's box and its
  box under each dropout pass, averaged over passes and weighted by the detections' scores.
- ``box_badge``: BADGE (Ash et al. 2020) on an image's pooled gradient embedding, the sum over
  its detections of (q - y) (x) h, with q the class heat values, y their rounding to 0 or 1,
  and h the head's hidden features at the detection's cell through a seeded random projection.
"""

import torch

from model.errors import EmptyPoolError
from model.kinds.boxes import DETECTION_FLOOR, IMAGE_BLOCK, BoxModel, Detections, MapPool
from model.pool import PoolState
from model.seeding import generator
from model.strategies import register
from model.strategies.badge import badge_picks
from model.strategies.common import canonical_order, picks_on_top, require_candidates, restore_order

BOXES = ("boxes",)
MC_PASSES = 10
BADGE_DIMS = 32
MC_CACHE = "box_mc"


def trained_detections(state: PoolState, name: str) -> tuple[MapPool, Detections]:
    """The pool's maps and the model's detections; EmptyPoolError otherwise."""
    pool = state.parts
    if not isinstance(pool, MapPool) or pool.detections is None:
        raise EmptyPoolError(f"strategy {name!r} needs a box pool with a trained detector")
    return pool, pool.detections


def detector_of(state: PoolState, name: str) -> BoxModel:
    if not isinstance(state.model, BoxModel):
        raise EmptyPoolError(f"strategy {name!r} needs a trained detector; the pool has none")
    return state.model


def counted(scores: torch.Tensor) -> torch.Tensor:
    """[n, k] bool: the detections an image is judged by (at least ``DETECTION_FLOOR``, and
    always the best)."""
    mask = scores >= DETECTION_FLOOR
    mask[:, 0] = True
    return mask


def outcome_distribution(probs: torch.Tensor) -> torch.Tensor:
    """[..., C] class heat values at a detection -> [..., C + 1] a distribution over the
    classes and "no object": the heat values scaled to sum to the detection's score (the
    largest), then 1 - score."""
    score = probs.amax(dim=-1, keepdim=True)
    classes = probs / probs.sum(dim=-1, keepdim=True).clamp_min(1e-12) * score
    return torch.cat((classes, 1.0 - score), dim=-1)


def entropy(dist: torch.Tensor) -> torch.Tensor:
    return -(dist * torch.log(dist.clamp_min(1e-12))).sum(dim=-1)


def aggregate(values: torch.Tensor, mask: torch.Tensor, reduce: str) -> torch.Tensor:
    """[n, k] per-detection values -> [n] their ``max``, ``mean`` or ``sum`` over ``mask``."""
    if reduce == "max":
        return torch.where(mask, values, torch.full_like(values, -torch.inf)).amax(dim=1)
    total = (values * mask).sum(dim=1)
    return total / mask.sum(dim=1).clamp_min(1) if reduce == "mean" else total


def _entropy_scores(state: PoolState, candidates: torch.Tensor, name: str, reduce: str):
    require_candidates(candidates, name)
    _, detections = trained_detections(state, name)
    values = entropy(outcome_distribution(detections.probs[candidates]))
    return aggregate(values, counted(detections.scores[candidates]), reduce)


@register(
    "box_max_entropy",
    needs_model=True,
    kinds=BOXES,
    description="the most uncertain detection's entropy (Brust et al. 2019, max)",
)
def box_max_entropy(state: PoolState, candidates: torch.Tensor) -> torch.Tensor:
    return _entropy_scores(state, candidates, "box_max_entropy", "max")


@register(
    "box_mean_entropy",
    needs_model=True,
    kinds=BOXES,
    description="the detections' mean entropy (Brust et al. 2019, average)",
)
def box_mean_entropy(state: PoolState, candidates: torch.Tensor) -> torch.Tensor:
    return _entropy_scores(state, candidates, "box_mean_entropy", "mean")


@register(
    "box_sum_entropy",
    needs_model=True,
    kinds=BOXES,
    description="the detections' total entropy (Brust et al. 2019, sum)",
)
def box_sum_entropy(state: PoolState, candidates: torch.Tensor) -> torch.Tensor:
    return _entropy_scores(state, candidates, "box_sum_entropy", "sum")


@register(
    "box_margin",
    needs_model=True,
    kinds=BOXES,
    description="the smallest gap between a detection's two most probable outcomes",
)
def box_margin(state: PoolState, candidates: torch.Tensor) -> torch.Tensor:
    require_candidates(candidates, "box_margin")
    _, detections = trained_detections(state, "box_margin")
    top2 = outcome_distribution(detections.probs[candidates]).topk(2, dim=-1).values
    margin = 1.0 - (top2[..., 0] - top2[..., 1])
    return aggregate(margin, counted(detections.scores[candidates]), "max")


def mc_at_detections(state: PoolState, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Heat [P, N, k, C] and boxes [P, N, k, 4] of every image's detections under
    ``MC_PASSES`` dropout passes; computed once per pool (``state.cache``)."""
    pool, detections = trained_detections(state, name)
    model = detector_of(state, name)
    cached = state.cache.get(MC_CACHE)
    if cached is not None and cached[0] is model:
        return cached[1], cached[2]
    heats, boxes = [], []
    for maps, cells in zip(
        pool.maps.split(IMAGE_BLOCK), detections.cells.split(IMAGE_BLOCK), strict=True
    ):
        h, b = model.mc_detections(maps, cells, MC_PASSES, state.seed)
        heats.append(h)
        boxes.append(b)
    heat, box = torch.cat(heats, dim=1), torch.cat(boxes, dim=1)
    state.cache[MC_CACHE] = (model, heat, box)
    return heat, box


@register(
    "box_bald",
    needs_model=True,
    kinds=BOXES,
    description="MC-dropout mutual information of the detections, summed per image",
)
def box_bald(state: PoolState, candidates: torch.Tensor) -> torch.Tensor:
    require_candidates(candidates, "box_bald")
    _, detections = trained_detections(state, "box_bald")
    heat, _ = mc_at_detections(state, "box_bald")
    dist = outcome_distribution(heat[:, candidates])  # [P, M, k, C + 1]
    mutual = entropy(dist.mean(dim=0)) - entropy(dist).mean(dim=0)  # [M, k]
    return aggregate(mutual.clamp_min(0.0), counted(detections.scores[candidates]), "sum")


@register(
    "box_mean_std",
    needs_model=True,
    kinds=BOXES,
    description="MC-dropout standard deviation of the detections' class heat, summed per image",
)
def box_mean_std(state: PoolState, candidates: torch.Tensor) -> torch.Tensor:
    require_candidates(candidates, "box_mean_std")
    _, detections = trained_detections(state, "box_mean_std")
    heat, _ = mc_at_detections(state, "box_mean_std")
    spread = heat[:, candidates].std(dim=0).mean(dim=-1)  # [M, k]
    return aggregate(spread, counted(detections.scores[candidates]), "sum")


def paired_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[..., 4] x [..., 4] -> [...] IoU of boxes paired position by position."""
    top_left = torch.maximum(a[..., :2], b[..., :2])
    bottom_right = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (bottom_right - top_left).clamp_min(0).prod(-1)
    union = (a[..., 2:] - a[..., :2]).clamp_min(0).prod(-1) + (b[..., 2:] - b[..., :2]).clamp_min(
        0
    ).prod(-1)
    union = union - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-12), torch.zeros_like(inter))


@register(
    "box_stability",
    needs_model=True,
    kinds=BOXES,
    description="how far the detections' boxes move under MC dropout (localisation stability)",
)
def box_stability(state: PoolState, candidates: torch.Tensor) -> torch.Tensor:
    require_candidates(candidates, "box_stability")
    _, detections = trained_detections(state, "box_stability")
    _, boxes = mc_at_detections(state, "box_stability")
    mine = detections.boxes[candidates].unsqueeze(0)  # [1, M, k, 4]
    moved = 1.0 - paired_iou(boxes[:, candidates], mine).mean(dim=0)  # [M, k]
    weight = detections.scores[candidates] * counted(detections.scores[candidates])
    return (moved * weight).sum(dim=1) / weight.sum(dim=1).clamp_min(1e-12)


def pooled_gradients(state: PoolState, images: torch.Tensor, seed: int) -> torch.Tensor:
    """[n, C * BADGE_DIMS] each image's gradient embedding, summed over its detections."""
    pool, detections = trained_detections(state, "box_badge")
    model = detector_of(state, "box_badge")
    projection = None
    out = []
    for block in images.split(IMAGE_BLOCK):
        hidden = model.embed_at(pool.maps[block], detections.cells[block])  # [b, k, H]
        if projection is None:
            projection = (
                torch.randn(hidden.shape[-1], BADGE_DIMS, generator=generator(seed)).to(
                    hidden.device
                )
                / BADGE_DIMS**0.5
            )
        q = detections.probs[block]  # [b, k, C]
        a = (q - (q >= 0.5).float()) * counted(detections.scores[block]).unsqueeze(-1)
        h = hidden @ projection  # [b, k, D]
        out.append(torch.einsum("bkc,bkd->bcd", a, h).flatten(1))
    return torch.cat(out) if out else torch.zeros(0, 0)


@register(
    "box_badge",
    needs_model=True,
    sequential=True,
    kinds=BOXES,
    description="k-means++ seeding on images' pooled detection gradient embeddings (BADGE)",
)
def box_badge(state: PoolState, candidates: torch.Tensor) -> torch.Tensor:
    """[M] the B BADGE picks first, in pick order, then the rest by their distance to the
    nearest pick."""
    require_candidates(candidates, "box_badge")
    trained_detections(state, "box_badge")
    ordered, order = canonical_order(candidates)
    g = pooled_gradients(state, ordered, state.seed)
    ones = torch.ones(g.shape[0], 1, device=g.device)
    picks, min_d2 = badge_picks(g, ones, state.budget, generator(state.seed))
    return restore_order(picks_on_top(min_d2.sqrt(), picks), order)
