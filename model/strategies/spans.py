"""Query strategies for span (named-entity) pools: token uncertainty reduced over a text.

Each reads the trained pool's ``TokenPool`` (``model.kinds.spans``): the tag distribution of
every token (``probs`` [T, K]) and the constrained Viterbi path (``path`` [T]).

- ``mnlp``: the path's negative log-probability divided by the text's length (Maximum
  Normalized Log-Probability, Shen et al. 2017): sequence least confidence that does not
  simply prefer long texts.
- ``token_entropy``: total token entropy, the sum over tokens (Settles and Craven 2008).
- ``max_token_entropy``: the most uncertain token's entropy.
- ``token_margin``: 1 - the smallest gap between a token's two most probable tags.
- ``token_bald``: BALD (mutual information) of each token under MC-dropout passes of the
  tagger's own dropout, summed over the text's tokens.
- ``span_badge``: BADGE (Ash et al. 2020) on a text's pooled gradient embedding, the sum over
  its tokens of (p_t - onehot(path_t)) (x) h_t, with h_t the tagger's penultimate features
  through a seeded random projection to ``BADGE_DIMS`` dimensions.

A text without tokens scores 0 on every strategy.
"""

import torch

from model.errors import EmptyPoolError
from model.kinds.spans import SpanModel, TokenPool, per_item
from model.pool import PoolState
from model.seeding import generator
from model.strategies import register
from model.strategies.badge import badge_picks
from model.strategies.bayesian import MC_PASSES, bald_from_mc
from model.strategies.common import canonical_order, picks_on_top, require_candidates, restore_order
from model.task_model import TaskModel

SPANS = ("spans",)
BADGE_DIMS = 32
# Token rows per MC-dropout or gradient block: [rows, T, K] stays small.
TOKEN_ROWS = 16384


def tagger_of(state: PoolState, name: str) -> TaskModel:
    """The trained span model's token tagger; EmptyPoolError when the pool has none."""
    model = state.model
    if not isinstance(model, SpanModel):
        raise EmptyPoolError(f"strategy {name!r} needs a trained span model; the pool has none")
    return model.tagger


def trained_tokens(state: PoolState, name: str) -> TokenPool:
    """The pool's tokens with the model's tag distributions; EmptyPoolError otherwise."""
    tokens = state.parts
    if not isinstance(tokens, TokenPool) or tokens.probs is None or tokens.path is None:
        raise EmptyPoolError(f"strategy {name!r} needs a span pool with a trained tagger")
    return tokens


def token_entropies(probs: torch.Tensor) -> torch.Tensor:
    """[T, K] -> [T] entropy of each token's tag distribution."""
    return -(probs * torch.log(probs.clamp_min(1e-12))).sum(dim=1)


def _per_text(
    state: PoolState, candidates: torch.Tensor, values: torch.Tensor, reduce: str
) -> torch.Tensor:
    tokens: TokenPool = state.parts
    return per_item(values, tokens.item_of_token(), tokens.num_texts, reduce)[candidates]


@register(
    "mnlp",
    needs_model=True,
    kinds=SPANS,
    description="the decoded path's log-probability over its length (MNLP)",
)
def mnlp(state: PoolState, candidates: torch.Tensor) -> torch.Tensor:
    require_candidates(candidates, "mnlp")
    tokens = trained_tokens(state, "mnlp")
    assert tokens.probs is not None and tokens.path is not None
    chosen = tokens.probs.gather(1, tokens.path.unsqueeze(1)).squeeze(1)  # [T]
    return _per_text(state, candidates, -torch.log(chosen.clamp_min(1e-12)), "mean")


@register(
    "token_entropy",
    needs_model=True,
    kinds=SPANS,
    description="total entropy of the tokens' tag distributions",
)
def token_entropy(state: PoolState, candidates: torch.Tensor) -> torch.Tensor:
    require_candidates(candidates, "token_entropy")
    tokens = trained_tokens(state, "token_entropy")
    assert tokens.probs is not None
    return _per_text(state, candidates, token_entropies(tokens.probs), "sum")


@register(
    "max_token_entropy",
    needs_model=True,
    kinds=SPANS,
    description="the most uncertain token's entropy",
)
def max_token_entropy(state: PoolState, candidates: torch.Tensor) -> torch.Tensor:
    require_candidates(candidates, "max_token_entropy")
    tokens = trained_tokens(state, "max_token_entropy")
    assert tokens.probs is not None
    return _per_text(state, candidates, token_entropies(tokens.probs), "amax")


@register(
    "token_margin",
    needs_model=True,
    kinds=SPANS,
    description="the smallest gap between a token's two top tags",
)
def token_margin(state: PoolState, candidates: torch.Tensor) -> torch.Tensor:
    require_candidates(candidates, "token_margin")
    tokens = trained_tokens(state, "token_margin")
    assert tokens.probs is not None
    top2 = tokens.probs.topk(2, dim=1).values  # [T, 2]
    return _per_text(state, candidates, 1.0 - (top2[:, 0] - top2[:, 1]), "amax")


@register(
    "token_bald",
    needs_model=True,
    kinds=SPANS,
    description="MC-dropout mutual information summed over tokens",
)
def token_bald(state: PoolState, candidates: torch.Tensor) -> torch.Tensor:
    """[M] the sum over each candidate's tokens of BALD under ``MC_PASSES`` dropout passes (the
    same masks for every token: the passes are T models)."""
    require_candidates(candidates, "token_bald")
    tokens = trained_tokens(state, "token_bald")
    ordered, order = canonical_order(candidates)
    tagger = tagger_of(state, "token_bald")
    rows = tokens.token_rows(ordered)
    item = tokens.item_of_token()[rows]
    values = []
    for block in rows.split(TOKEN_ROWS):
        mc = tagger.mc_probabilities(tokens.features[block], passes=MC_PASSES, seed=state.seed)
        values.append(bald_from_mc(mc))  # [rows]
    bald = torch.cat(values) if values else torch.zeros(0, device=rows.device)
    scores = per_item(bald, item, tokens.num_texts, "sum")[ordered]
    return restore_order(scores, order)


def pooled_gradients(state: PoolState, texts: torch.Tensor, seed: int) -> torch.Tensor:
    """[n, K * BADGE_DIMS] each text's gradient embedding, summed over its tokens."""
    tokens: TokenPool = state.parts
    assert tokens.probs is not None and tokens.path is not None
    tagger = tagger_of(state, "span_badge")
    rows = tokens.token_rows(texts)
    position = torch.repeat_interleave(
        torch.arange(texts.numel(), device=rows.device),
        tokens.offsets[texts + 1] - tokens.offsets[texts],
    )
    k = tokens.probs.shape[1]
    hidden_dim = tagger.embed(tokens.features[:1]).shape[1]
    projection = (
        torch.randn(hidden_dim, BADGE_DIMS, generator=generator(seed)).to(rows.device)
        / BADGE_DIMS**0.5
    )
    out = torch.zeros(texts.numel(), k * BADGE_DIMS, device=rows.device)
    for block, where in zip(rows.split(TOKEN_ROWS), position.split(TOKEN_ROWS), strict=True):
        a = (
            tokens.probs[block] - torch.nn.functional.one_hot(tokens.path[block], k).float()
        )  # [r, K]
        h = tagger.embed(tokens.features[block]) @ projection  # [r, D]
        out.index_add_(0, where, (a.unsqueeze(2) * h.unsqueeze(1)).reshape(block.numel(), -1))
    return out


@register(
    "span_badge",
    needs_model=True,
    sequential=True,
    kinds=SPANS,
    description="k-means++ seeding on texts' pooled token gradient embeddings (BADGE)",
)
def span_badge(state: PoolState, candidates: torch.Tensor) -> torch.Tensor:
    """[M] the B BADGE picks first, in pick order, then the rest by their distance to the
    nearest pick."""
    require_candidates(candidates, "span_badge")
    trained_tokens(state, "span_badge")
    ordered, order = canonical_order(candidates)
    g = pooled_gradients(state, ordered, state.seed)  # [M, K * D]
    ones = torch.ones(g.shape[0], 1, device=g.device)
    picks, min_d2 = badge_picks(g, ones, state.budget, generator(state.seed))
    return restore_order(picks_on_top(min_d2.sqrt(), picks), order)
