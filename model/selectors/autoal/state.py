"""The round's state as SearchNet's prior sees it: a few numbers that mean the same on any task.

What kind of strategy pays depends on the regime (TypiClust: typical points at low budgets,
uncertain ones later; SelectAL and DCoM switch on such tests): how many labels there are per
class, how balanced they are, how sure the model is, how much the strategies agree. None of
these features names a data set, a representation or its dimension, so a prior trained on
simulated labeling of some tasks can be applied to any other (docs/benchmarks.md). The last
ones (``geometry.py``) say whether the embedding's clusters follow the labels, that is,
whether diversity can pay on this pool.

Features are only ever appended: a prior names the features it was trained on and reads those
(``prior.Prior``), so a prior trained before a feature existed keeps working.
"""

from __future__ import annotations

import math

import torch

from model.pool import PoolState, as_distributions
from model.selectors.autoal.geometry import GEOMETRY_FEATURES, GEOMETRY_VERSION, geometry_features

FEATURES: tuple[str, ...] = (
    "log_labeled",  # log(1 + L)
    "log_classes",  # log C
    "log_labels_per_class",  # log(1 + L / C)
    "min_class_share",  # fewest labels of one class / (L / C): 1 = balanced, 0 = a class unseen
    "class_spread",  # coefficient of variation of the labels per class
    "balance_entropy",  # entropy of the labels' class distribution / log C
    "mean_confidence",  # mean over candidates of the model's top probability
    "confidence_spread",  # its standard deviation
    "predicted_balance",  # entropy of the mean predicted class distribution / log C
    "top_agreement",  # mean pairwise Jaccard overlap of the strategies' top-B picks
    "labeled_fraction",  # L / N: the share of the pool already labeled
    "log_batch",  # log B
    *GEOMETRY_FEATURES,  # whether the embedding's geometry follows the labels (geometry.py)
)


# What a recorded feature vector means: the names and how they were computed.
FEATURES_VERSION = f"{len(FEATURES)}.{GEOMETRY_VERSION}"


def label_counts(state: PoolState) -> torch.Tensor:
    """[C] labeled items per class (positives per class when multi-label)."""
    labeled = state.labeled_indices()
    if labeled.numel() == 0:
        return torch.zeros(state.num_classes, device=state.device)
    return state.targets[labeled].sum(dim=0)


def _normalised_entropy(p: torch.Tensor) -> float:
    """Entropy of a distribution [C] divided by log C (1 = uniform); 0 for C < 2."""
    c = p.numel()
    if c < 2:
        return 0.0
    p = p / p.sum().clamp_min(1e-12)
    h = -(p * torch.log(p.clamp_min(1e-12))).sum()
    return float(h) / math.log(c)


def top_agreement(scores: torch.Tensor, names: list[str], batch: int) -> float:
    """Mean pairwise Jaccard overlap of the top-``batch`` candidates of each strategy in
    ``scores`` [M, K] (``random`` left out: it agrees with nobody by design); 1 when fewer
    than two strategies remain. O(K M) to find the tops, O(K^2 B) to compare them."""
    columns = [j for j, n in enumerate(names) if n != "random"]
    m = scores.shape[0]
    b = max(1, min(batch, m))
    if len(columns) < 2 or b >= m:
        return 1.0
    tops = scores[:, columns].topk(b, dim=0).indices  # [B, K']
    member = torch.zeros(m, len(columns), dtype=torch.float32, device=scores.device)
    member.scatter_(0, tops, 1.0)
    shared = member[tops.flatten().unique()]  # [U, K'] rows of items in any top set
    inter = shared.t() @ shared  # [K', K'] items in both tops
    union = 2 * b - inter
    k = len(columns)
    pairs = (inter / union).sum() - k  # off-diagonal sum (the diagonal is k ones)
    return float(pairs) / (k * (k - 1))


def round_features(
    state: PoolState, scores: torch.Tensor, names: list[str], candidates: torch.Tensor
) -> torch.Tensor:
    """[F] the features in ``FEATURES`` for a trained pool ``state``, its portfolio ``scores``
    [M, K] over ``candidates`` [M] (strategy order ``names``)."""
    probs = state.require_probs()[candidates]  # [M, C]
    counts = label_counts(state)  # [C]
    num_labeled = int(state.labeled.sum())
    c = state.num_classes
    per_class = num_labeled / max(c, 1)
    dists = as_distributions(probs, state.multilabel)  # [M, G, K]
    confidence = dists.max(dim=-1).values.mean(dim=1)  # [M]
    mean_prediction = probs.mean(dim=0)  # [C]
    if state.multilabel:  # the predicted share of each label among predicted labels
        mean_prediction = mean_prediction / mean_prediction.sum().clamp_min(1e-12)
    values = {
        "log_labeled": math.log1p(num_labeled),
        "log_classes": math.log(max(c, 1)),
        "log_labels_per_class": math.log1p(per_class),
        "min_class_share": float(counts.min()) / per_class if per_class > 0 else 0.0,
        "class_spread": float(counts.std(unbiased=False) / counts.mean().clamp_min(1e-12))
        if c > 1
        else 0.0,
        "balance_entropy": _normalised_entropy(counts) if num_labeled else 0.0,
        "mean_confidence": float(confidence.mean()),
        "confidence_spread": float(confidence.std(unbiased=False)),
        "predicted_balance": _normalised_entropy(mean_prediction),
        "top_agreement": top_agreement(scores, names, state.budget),
        "labeled_fraction": num_labeled / max(state.num_items, 1),
        "log_batch": math.log(max(state.budget, 1)),
        **geometry_features(state, candidates),
    }
    return torch.tensor([values[name] for name in FEATURES], dtype=torch.float32)
