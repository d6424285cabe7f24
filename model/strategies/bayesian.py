"""Disagreement between MC-dropout passes of the task head: BALD and mean-STD.

The passes come from ``TaskModel.mc_probabilities`` (T dropout masks shared across the pool,
folded into one matmul), on the head's own dropout layer, so the noise is the one the model
was trained with (AUTOAL.md flaw 5). Multi-label items are C binary distributions
(``as_distributions``), reduced like the single-label case and then over their labels.
"""

from typing import Any

import torch

from model.errors import EmptyPoolError
from model.pool import PoolState, as_distributions
from model.strategies import register
from model.strategies.common import canonical_order, require_candidates, restore_order

MC_PASSES = 20
# Candidates per MC block: [rows, T, C] probabilities stay small whatever M is.
ROWS_PER_BLOCK = 16384


def mc_distributions(mc_probs: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """[M, T, C] MC probabilities -> [M, T, G, K] distributions (``as_distributions`` per pass)."""
    m, t, c = mc_probs.shape
    dist = as_distributions(mc_probs.reshape(m * t, c), multilabel)  # [M*T, G, K]
    return dist.reshape(m, t, dist.shape[1], dist.shape[2])


def _entropy(dist: torch.Tensor) -> torch.Tensor:
    """Entropy over the last axis (natural log)."""
    return -(dist * torch.log(dist.clamp_min(1e-12))).sum(dim=-1)


def bald_from_mc(mc_probs: torch.Tensor, multilabel: bool = False) -> torch.Tensor:
    """[M, T, C] MC probabilities -> [M] BALD mutual information, summed over labels.

    I(y; w) = H(mean_t p_t) - mean_t H(p_t): high where the passes are each confident but
    disagree with one another.
    """
    dist = mc_distributions(mc_probs, multilabel)  # [M, T, G, K]
    predictive = _entropy(dist.mean(dim=1))  # [M, G]
    expected = _entropy(dist).mean(dim=1)  # [M, G]
    # Jensen makes this >= 0; clamp the rounding error so equal passes score exactly 0.
    return (predictive - expected).clamp_min(0.0).sum(dim=1)


def mean_std_from_mc(mc_probs: torch.Tensor, multilabel: bool = False) -> torch.Tensor:
    """[M, T, C] MC probabilities -> [M] mean over classes (and labels) of the standard
    deviation of each class probability across the T passes."""
    dist = mc_distributions(mc_probs, multilabel)  # [M, T, G, K]
    return dist.std(dim=1, correction=0).mean(dim=-1).mean(dim=-1)


REDUCTIONS = {"bald": bald_from_mc, "mean_std": mean_std_from_mc}
CACHE_KEY = "mc_dropout_scores"


def _mc_scores(state: PoolState, ordered: torch.Tensor) -> dict[str, torch.Tensor]:
    """BALD and mean-STD [M] of the sorted candidates, from one set of MC passes.

    Both reductions come from the same passes, so they are computed together and kept in
    ``state.cache``; the entry is reused only for the very same model, features, seed, label
    kind and candidates (``dataclasses.replace`` shares the cache dict between states).
    """
    model: Any = state.model  # checked by the caller to have mc_probabilities
    entry = state.cache.get(CACHE_KEY)
    if (
        entry is not None
        and entry["model"] is model
        and entry["features"] is state.features
        and entry["seed"] == state.seed
        and entry["multilabel"] == state.multilabel
        and torch.equal(entry["candidates"], ordered)
    ):
        return entry["scores"]
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in REDUCTIONS}
    for block in ordered.split(ROWS_PER_BLOCK):
        # Same seed in every block -> the same T masks for the whole pool.
        mc = model.mc_probabilities(state.features[block], passes=MC_PASSES, seed=state.seed)
        for name, reduce in REDUCTIONS.items():
            parts[name].append(reduce(mc, state.multilabel))  # [rows]
    scores = {name: torch.cat(blocks) for name, blocks in parts.items()}
    state.cache[CACHE_KEY] = {
        "model": model,
        "features": state.features,
        "seed": state.seed,
        "multilabel": state.multilabel,
        "candidates": ordered,
        "scores": scores,
    }
    return scores


def _mc_strategy(state: PoolState, candidates: torch.Tensor, name: str) -> torch.Tensor:
    require_candidates(candidates, name)
    model = state.model
    if model is None or not hasattr(model, "mc_probabilities"):
        raise EmptyPoolError(
            f"strategy {name!r} needs a trained task model with MC dropout; the pool has none"
        )
    ordered, order = canonical_order(candidates)
    return restore_order(_mc_scores(state, ordered)[name], order)


@register(
    "bald",
    needs_model=True,
    description="mutual information between label and weights (MC dropout)",
)
def bald(state: PoolState, candidates: torch.Tensor) -> torch.Tensor:
    """[M] BALD scores of the candidates [M] under ``MC_PASSES`` dropout passes."""
    return _mc_strategy(state, candidates, "bald")


@register(
    "mean_std",
    needs_model=True,
    description="mean std of class probabilities over MC-dropout passes",
)
def mean_std(state: PoolState, candidates: torch.Tensor) -> torch.Tensor:
    """[M] mean-STD scores of the candidates [M] under ``MC_PASSES`` dropout passes."""
    return _mc_strategy(state, candidates, "mean_std")
