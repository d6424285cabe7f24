"""The spans kind: named entities in a text, tagged token by token.

Each text is a ragged run of tokens (``TokenPool``): the frozen encoder's last hidden states,
one row per sub-word token, with each token's character offsets into the text. A tagging head
(``model.task_model.TaskModel``, the same head as for choices, trained on tokens) gives every
token a distribution over BIO tags: O, then B-c and I-c for each entity type c. Decoding is a
Viterbi search constrained to valid BIO sequences (I-c only after B-c or I-c), so every
decoded span is well formed; a span's confidence is the mean probability of its tokens' tags.

Character spans become token tags exactly where they fall on token boundaries; a span that
starts or ends inside a token covers that whole token. Overlapping or nested spans cannot both
be BIO tags: the longest is kept (ties: the earlier one) and the others are left out of
training (``spans_to_tags`` reports how many).

The pool sees each text as the multi-label question "which entity types does it hold":
``targets`` [N, C] marks the types annotated in a text, ``probs`` [N, C] is the model's
probability that the text holds at least one entity of each type, 1 - prod_t (1 - p_t(B-c)).
Label counts, balance and confidence in AutoAL's state then mean what they mean for a
multi-choice project; the span strategies (``model.strategies.spans``) read the tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from model.errors import EmptyPoolError
from model.kinds import register_kind
from model.pool import PoolState
from model.strategies import PORTFOLIO, SPAN_PORTFOLIO
from model.task_model import TaskModel, TaskModelConfig

OUTSIDE = 0
# Token rows scored at once when a pass over every token's tags is needed.
TOKEN_BLOCK = 65536
# The most token rows a tagger trains on: above it, every entity token and a seeded sample of
# the O tokens, weighted by the inverse of their sampling rate (the loss stays unbiased). A
# full-batch fit's cost grows with its rows: at 1,000 labeled texts (22k tokens) a round on
# 10,000 texts took 29 s on 2 cores, 19.6 s with this limit (docs/performance.md). The span
# benchmarks (at most 9,300 labeled tokens at 220 texts) never reach it.
MAX_TRAIN_TOKENS = 16384


def training_rows(tags: torch.Tensor, rows: torch.Tensor, seed: int,
                  limit: int = MAX_TRAIN_TOKENS) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
    """The token ``rows`` [t] a tagger trains on and their loss weights (None: all 1). Within
    ``limit`` every row; above it every entity row (a seeded sample when they alone exceed it)
    and a seeded sample of the O rows, each O row weighted by (O rows) / (O rows kept)."""
    if rows.numel() <= limit:
        return rows, None
    draw = torch.Generator().manual_seed(int(seed) + 104729)
    entity = rows[tags[rows] != OUTSIDE]
    outside = rows[tags[rows] == OUTSIDE]
    if entity.numel() >= limit:
        keep = entity[torch.randperm(entity.numel(), generator=draw)[:limit].to(rows.device)]
        return torch.sort(keep).values, None
    room = limit - entity.numel()
    sampled = outside[torch.randperm(outside.numel(), generator=draw)[:room].to(rows.device)]
    kept = torch.cat((entity, sampled))
    weights = torch.cat(
        (torch.ones(entity.numel()), torch.full((sampled.numel(),), outside.numel() / max(room, 1)))
    )
    order = torch.argsort(kept)
    return kept[order], weights.to(rows.device)[order]


def num_tags(num_types: int) -> int:
    """K = 2C + 1 BIO tags: O, then B-c, I-c for each type c."""
    return 2 * num_types + 1


def begin_tag(c: int) -> int:
    return 1 + 2 * c


def inside_tag(c: int) -> int:
    return 2 + 2 * c


@dataclass(frozen=True)
class Span:
    """An entity over tokens ``start`` .. ``end`` - 1 of its text, of type index ``label``;
    ``score`` its confidence (1 for gold spans)."""

    start: int
    end: int
    label: int
    score: float = 1.0


@dataclass
class TokenPool:
    """The tokens of N texts, flattened.

    Attributes:
        features: [T, d] float32 token features (standardised over the pool's tokens).
        offsets: [N + 1] int64; text i owns token rows ``offsets[i]:offsets[i + 1]``.
        tags: [T] int64 gold BIO tag of each token of a labeled text; -1 elsewhere.
        num_types: C, the entity types.
        probs: [T, K] the model's tag distribution per token; None before training.
        path: [T] int64 the constrained Viterbi tags of each text; None before training.
        chars: [T, 2] int64 each token's character offsets in its text, when known (the
            backend writes predicted spans back as text offsets).
        joined: [T] bool, True where a token continues the previous token's word
            (``joined_tokens``): decoding keeps words whole. None: every token a word.
        stats: the (mean [d], std [d]) the token features were standardised with, when known
            (the exported model standardises new texts' tokens the same way).
    """

    features: torch.Tensor
    offsets: torch.Tensor
    tags: torch.Tensor
    num_types: int
    probs: torch.Tensor | None = None
    path: torch.Tensor | None = None
    chars: torch.Tensor | None = None
    stats: tuple[torch.Tensor, torch.Tensor] | None = None
    joined: torch.Tensor | None = None

    @property
    def num_texts(self) -> int:
        return int(self.offsets.numel()) - 1

    def item_of_token(self) -> torch.Tensor:
        """[T] int64 the text each token belongs to."""
        lengths = self.offsets[1:] - self.offsets[:-1]
        return torch.repeat_interleave(
            torch.arange(self.num_texts, device=self.offsets.device), lengths
        )

    def token_rows(self, items: torch.Tensor) -> torch.Tensor:
        """[t] int64 token rows of the texts ``items`` [n], text by text in the given order."""
        starts, ends = self.offsets[items], self.offsets[items + 1]
        lengths = ends - starts
        if int(lengths.sum()) == 0:
            return torch.zeros(0, dtype=torch.long, device=self.offsets.device)
        base = torch.repeat_interleave(starts - torch.cumsum(lengths, 0) + lengths, lengths)
        return base + torch.arange(int(lengths.sum()), device=self.offsets.device)


def per_item(values: torch.Tensor, item: torch.Tensor, n: int, reduce: str = "sum") -> torch.Tensor:
    """[T] token values -> [n] per-text ``sum``, ``mean`` or ``amax`` (0 for a text without
    tokens); ``item`` [T] says which text each token is in."""
    values = values.float()
    if reduce == "amax":
        out = torch.zeros(n, dtype=values.dtype, device=values.device)
        return (
            out.scatter_reduce(0, item, values, reduce="amax", include_self=True)
            if values.numel()
            else out
        )
    total = torch.zeros(n, dtype=values.dtype, device=values.device).index_add_(0, item, values)
    if reduce == "sum":
        return total
    count = torch.zeros(n, dtype=values.dtype, device=values.device).index_add_(
        0, item, torch.ones_like(values)
    )
    return total / count.clamp_min(1.0)


def spans_to_tags(
    spans: list[tuple[int, int, int]], token_offsets: list[tuple[int, int]]
) -> tuple[list[int], int]:
    """BIO tags [t] for character spans ``(start, end, type)`` over tokens with character
    ``token_offsets`` [(start, end)], and how many spans were left out (overlapping a longer
    one, or covering no token). A token belongs to a span when their characters overlap."""
    tags = [OUTSIDE] * len(token_offsets)
    taken = [False] * len(token_offsets)
    dropped = 0
    for start, end, label in sorted(spans, key=lambda s: (-(s[1] - s[0]), s[0])):
        rows = [j for j, (a, b) in enumerate(token_offsets) if a < end and b > start and b > a]
        if not rows or any(taken[j] for j in rows):
            dropped += 1
            continue
        for position, j in enumerate(rows):
            tags[j] = begin_tag(label) if position == 0 else inside_tag(label)
            taken[j] = True
    return tags, dropped


def tags_to_spans(tags: list[int], scores: list[float] | None = None) -> list[Span]:
    """The spans of a BIO tag sequence (an I-c that does not continue a c span starts one, as
    conlleval reads it); ``scores`` [t] per-token confidences, averaged over each span."""
    spans: list[Span] = []
    start, label = -1, -1

    def close(end: int) -> None:
        if start >= 0:
            value = sum(scores[start:end]) / (end - start) if scores is not None else 1.0
            spans.append(Span(start, end, label, float(value)))

    for j, tag in enumerate(tags):
        if tag == OUTSIDE:
            close(j)
            start, label = -1, -1
            continue
        c, is_begin = (tag - 1) // 2, (tag - 1) % 2 == 0
        if is_begin or start < 0 or c != label:
            close(j)
            start, label = j, c
    close(len(tags))
    return spans


def allowed_transitions(num_types: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """[K, K] 0 where tag i may be followed by tag j, -inf where not (I-c after anything but
    B-c or I-c); and row K (the start) at the end: [K + 1, K]."""
    k = num_tags(num_types)
    allowed = torch.zeros(k + 1, k, device=device)
    for c in range(num_types):
        inside = inside_tag(c)
        allowed[:, inside] = -math.inf
        allowed[begin_tag(c), inside] = 0.0
        allowed[inside, inside] = 0.0
    return allowed


def joined_transitions(num_types: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """[K, K] the transitions into a token that continues the previous one's word: O stays O,
    an entity goes on (B-c or I-c -> I-c); anything else is -inf."""
    k = num_tags(num_types)
    allowed = torch.full((k, k), -math.inf, device=device)
    allowed[OUTSIDE, OUTSIDE] = 0.0
    for c in range(num_types):
        allowed[begin_tag(c), inside_tag(c)] = 0.0
        allowed[inside_tag(c), inside_tag(c)] = 0.0
    return allowed


def _cjk_ideograph(char: str) -> bool:
    """A CJK ideograph: BERT-style tokenizers make each one a word of its own."""
    code = ord(char)
    return (
        0x4E00 <= code <= 0x9FFF
        or 0x3400 <= code <= 0x4DBF
        or 0x20000 <= code <= 0x2A6DF
        or 0x2A700 <= code <= 0x2CEAF
        or 0xF900 <= code <= 0xFAFF
        or 0x2F800 <= code <= 0x2FA1F
    )


def joined_tokens(text: str, token_offsets: list[tuple[int, int]]) -> list[bool]:
    """Per token, True when it continues the previous token's word: no gap between them and
    letters or digits on both sides (a word split into sub-word pieces). Punctuation and
    whitespace start new words, so "Berg," keeps its comma out of an entity; so does every CJK
    ideograph (each is a word of its own, so a span may start at 北 in 我在北京)."""
    joined = [False] * len(token_offsets)
    for j in range(1, len(token_offsets)):
        start, previous_end = token_offsets[j][0], token_offsets[j - 1][1]
        if not (start == previous_end and 0 < start < len(text)):
            continue
        before, after = text[start - 1], text[start]
        if (
            before.isalnum()
            and after.isalnum()
            and not (_cjk_ideograph(before) or _cjk_ideograph(after))
        ):
            joined[j] = True
    return joined


# Texts decoded at once: the padded scores and back-pointers are [texts, longest, K], so texts
# go in chunks of similar length (a 254-token text does not pad 50,000 tweets).
VITERBI_TEXTS = 4096


def viterbi(
    log_probs: torch.Tensor,
    offsets: torch.Tensor,
    num_types: int,
    joined: torch.Tensor | None = None,
) -> torch.Tensor:
    """[T] int64 the most probable valid BIO sequence of each text, from token log-probabilities
    [T, K] (texts ``offsets`` [N + 1]). ``joined`` [T] bool marks tokens that continue the
    previous token's word: there a span can neither start nor end, so every decoded span covers
    whole words. Texts are decoded in chunks of ``VITERBI_TEXTS`` of similar length."""
    t_total = log_probs.shape[0]
    out = torch.zeros(t_total, dtype=torch.long, device=log_probs.device)
    if t_total == 0:
        return out
    lengths = offsets[1:] - offsets[:-1]
    order = torch.argsort(lengths, stable=True)
    for chunk in order.split(VITERBI_TEXTS):
        chunk_lengths = lengths[chunk]
        if int(chunk_lengths.max()) == 0:
            continue
        starts = offsets[chunk]
        rows = torch.repeat_interleave(
            starts - torch.cumsum(chunk_lengths, 0) + chunk_lengths, chunk_lengths
        )
        rows = rows + torch.arange(int(chunk_lengths.sum()), device=rows.device)
        sub_offsets = torch.cat(
            (
                torch.zeros(1, dtype=torch.long, device=offsets.device),
                torch.cumsum(chunk_lengths, 0),
            )
        )
        sub_joined = None if joined is None else joined[rows]
        out[rows] = _viterbi_padded(log_probs[rows], sub_offsets, num_types, sub_joined)
    return out


def _viterbi_padded(
    log_probs: torch.Tensor, offsets: torch.Tensor, num_types: int, joined: torch.Tensor | None
) -> torch.Tensor:
    """``viterbi`` on one chunk of texts, padded to its longest (back-pointers as int16: K is
    at most 2C + 1)."""
    k = log_probs.shape[1]
    n = offsets.numel() - 1
    lengths = offsets[1:] - offsets[:-1]
    longest = int(lengths.max())
    device = log_probs.device
    item = torch.repeat_interleave(torch.arange(n, device=device), lengths)
    position = torch.arange(log_probs.shape[0], device=device) - offsets[item]
    padded = torch.zeros(n, longest, k, device=device)
    padded[item, position] = log_probs.float()
    allowed = allowed_transitions(num_types, device)
    inside_word = joined_transitions(num_types, device)
    joined_padded = torch.zeros(n, longest, dtype=torch.bool, device=device)
    if joined is not None:
        joined_padded[item, position] = joined.to(device)
    score = padded[:, 0] + allowed[k]  # [N, K]
    back = torch.zeros(n, longest, k, dtype=torch.int16, device=device)
    for t in range(1, longest):
        transitions = torch.where(
            joined_padded[:, t, None, None], inside_word.unsqueeze(0), allowed[:k].unsqueeze(0)
        )
        step = score.unsqueeze(2) + transitions  # [N, K_from, K_to]
        best, arg = step.max(dim=1)
        live = (t < lengths).unsqueeze(1)
        score = torch.where(live, best + padded[:, t], score)
        back[:, t] = arg.to(torch.int16)
    tags = torch.zeros(n, longest, dtype=torch.long, device=device)
    current = score.argmax(dim=1)  # [N] the last tag of each text
    for t in range(longest - 1, -1, -1):
        # Past a text's end nothing moves; at its last token ``current`` is the best final
        # tag, and each step back follows the back-pointer of the tag after.
        live = t < lengths
        tags[:, t] = torch.where(live, current, tags[:, t])
        previous = back[:, t].gather(1, current.unsqueeze(1)).squeeze(1).long()
        current = torch.where(live & (t > 0), previous, current)
    return tags[item, position]


class SpanModel:
    """A tagging head over tokens plus the constrained decoding of its output.

    Attributes:
        tagger: the token-level ``TaskModel`` ([T, d] token features -> [T, K] tag logits).
        num_types: C.
    """

    def __init__(self, tagger: TaskModel, num_types: int) -> None:
        self.tagger = tagger
        self.num_types = num_types
        self.config = tagger.config

    @classmethod
    def fit(
        cls, tokens: TokenPool, rows: torch.Tensor, config: TaskModelConfig, seed: int
    ) -> SpanModel:
        """Train on the token ``rows`` [t] (tokens of labeled texts, with their gold tags)."""
        if rows.numel() == 0:
            raise EmptyPoolError("cannot train the tagger on 0 labeled tokens")
        rows, weights = training_rows(tokens.tags, rows, seed)
        k = num_tags(tokens.num_types)
        targets = torch.nn.functional.one_hot(tokens.tags[rows], k).float()
        tagger = TaskModel.fit(
            tokens.features[rows], targets, config=config, seed=seed, sample_weight=weights
        )
        return cls(tagger, tokens.num_types)

    @torch.no_grad()
    def token_probs(self, features: torch.Tensor) -> torch.Tensor:
        """[T, d] -> [T, K] tag distribution per token."""
        return self.tagger.predict_proba(features)

    @torch.no_grad()
    def decode(
        self, probs: torch.Tensor, offsets: torch.Tensor, joined: torch.Tensor | None = None
    ) -> torch.Tensor:
        """[T] the valid BIO path of each text from tag distributions [T, K], spans on whole
        words where ``joined`` [T] marks the tokens that continue a word."""
        return viterbi(torch.log(probs.clamp_min(1e-12)), offsets, self.num_types, joined)

    def spans(
        self, probs: torch.Tensor, path: torch.Tensor, offsets: torch.Tensor, item: int
    ) -> list[Span]:
        """The decoded spans of text ``item``, each scored by its tokens' mean tag probability."""
        a, b = int(offsets[item]), int(offsets[item + 1])
        tags = path[a:b].tolist()
        chosen = probs[a:b].gather(1, path[a:b].unsqueeze(1)).squeeze(1).tolist() if b > a else []
        return tags_to_spans(tags, chosen)

    def state_dict(self) -> dict:
        return {"tagger": self.tagger.state_dict(), "num_types": self.num_types}

    @classmethod
    def from_state_dict(cls, state: dict, device: torch.device | str = "cpu") -> SpanModel:
        return cls(TaskModel.from_state_dict(state["tagger"], device), int(state["num_types"]))


def presence_probs(token_probs: torch.Tensor, tokens: TokenPool) -> torch.Tensor:
    """[N, C] probability that each text holds at least one entity of each type:
    1 - prod_t (1 - p_t(B-c)), summed in log space."""
    begins = token_probs[:, 1::2]  # [T, C] the B-c columns
    item = tokens.item_of_token()
    log_none = torch.zeros(tokens.num_texts, tokens.num_types, device=token_probs.device)
    log_none.index_add_(0, item, torch.log1p(-begins.clamp(0.0, 1.0 - 1e-7)))
    return 1.0 - torch.exp(log_none)


def labeled_token_rows(state: PoolState) -> torch.Tensor:
    """[t] token rows of the labeled texts that carry a gold tag."""
    tokens: TokenPool = state.parts
    rows = tokens.token_rows(state.labeled_indices())
    return rows[tokens.tags[rows] >= 0]


def span_f1(gold: list[list[Span]], predicted: list[list[Span]]) -> tuple[float, float, float]:
    """Entity-level micro precision, recall and F1: a predicted span counts when its start,
    end and type all match a gold span of the same text."""
    tp = fp = fn = 0
    for g, p in zip(gold, predicted, strict=True):
        truth = {(s.start, s.end, s.label) for s in g}
        guess = {(s.start, s.end, s.label) for s in p}
        tp += len(truth & guess)
        fp += len(guess - truth)
        fn += len(truth - guess)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def gold_spans(tokens: TokenPool, item: int) -> list[Span]:
    a, b = int(tokens.offsets[item]), int(tokens.offsets[item + 1])
    return tags_to_spans(tokens.tags[a:b].clamp_min(0).tolist())


@register_kind("spans")
class SpansKind:
    """``<Labels>`` over ``<Text>``: token features in, BIO tags and spans out."""

    name = "spans"
    portfolio = SPAN_PORTFOLIO
    # SPAN_PORTFOLIO is ordered by the choices strategy whose place each member takes.
    roles: dict[str, str] = dict(zip(SPAN_PORTFOLIO, PORTFOLIO, strict=True))

    def cold_start(self, state: PoolState, min_labels: int) -> bool:
        """Too few labeled texts, or not one entity among them (a tagger that has only seen O
        predicts O everywhere: nothing to be uncertain about)."""
        labeled = state.labeled_indices()
        if labeled.numel() < max(min_labels, 1):
            return True
        return not bool((state.targets[labeled].sum() > 0).item())

    def fit(self, state: PoolState, config: TaskModelConfig, seed: int) -> SpanModel:
        return SpanModel.fit(state.parts, labeled_token_rows(state), config, seed)

    def trained(self, state: PoolState, model: SpanModel) -> PoolState:
        tokens: TokenPool = state.parts
        probs = (
            torch.cat([model.token_probs(block) for block in tokens.features.split(TOKEN_BLOCK)])
            if tokens.features.shape[0]
            else torch.zeros(0, num_tags(tokens.num_types), device=tokens.features.device)
        )
        path = model.decode(probs, tokens.offsets, tokens.joined)
        parts = replace(tokens, probs=probs, path=path)
        return replace(state, probs=presence_probs(probs, tokens), model=model, parts=parts)

    def validate(self, state: PoolState, config: TaskModelConfig, folds: int) -> float | None:
        """k-fold entity micro-F1 on the labeled texts (k taggers trained at once)."""
        labeled = state.labeled_indices()
        if folds < 2 or labeled.numel() < 2 * folds:
            return None
        tokens: TokenPool = state.parts
        order = labeled[
            torch.randperm(labeled.numel(), generator=torch.Generator().manual_seed(state.seed)).to(
                labeled.device
            )
        ]
        fold_of_item = torch.full((state.num_items,), -1, dtype=torch.long, device=labeled.device)
        fold_of_item[order] = torch.arange(order.numel(), device=order.device) % folds
        rows, weights = training_rows(tokens.tags, labeled_token_rows(state), state.seed)
        if rows.numel() == 0:
            return None
        row_fold = fold_of_item[tokens.item_of_token()[rows]]  # [t]
        outside = (
            row_fold.unsqueeze(0) != torch.arange(folds, device=rows.device).unsqueeze(1)
        ).float()
        if weights is not None:
            outside = outside * weights.unsqueeze(0)
        k = num_tags(tokens.num_types)
        targets = torch.nn.functional.one_hot(tokens.tags[rows], k).float()
        taggers = TaskModel.fit_weighted(
            tokens.features[rows], targets, outside, config=config, seed=state.seed
        )
        gold, guessed = [], []
        for f, tagger in enumerate(taggers):
            model = SpanModel(tagger, tokens.num_types)
            items = order[f::folds]
            item_rows = tokens.token_rows(items)
            sub_offsets = torch.cat(
                (
                    torch.zeros(1, dtype=torch.long, device=tokens.offsets.device),
                    torch.cumsum(tokens.offsets[items + 1] - tokens.offsets[items], 0),
                )
            )
            probs = model.token_probs(tokens.features[item_rows])
            path = model.decode(
                probs, sub_offsets, None if tokens.joined is None else tokens.joined[item_rows]
            )
            for position, item in enumerate(items.tolist()):
                gold.append(gold_spans(tokens, item))
                guessed.append(model.spans(probs, path, sub_offsets, position))
        return span_f1(gold, guessed)[2]


def make_span_pool(
    features: torch.Tensor,
    token_features: list[torch.Tensor],
    tags: list[list[int] | None],
    num_types: int,
    *,
    labeled_round: torch.Tensor | None = None,
    budget: int = 10,
    seed: int = 0,
    joined: list[list[bool]] | None = None,
) -> PoolState:
    """A span pool from per-text sentence ``features`` [N, d] and each text's token features
    [t_i, d'] (both standardised by the caller: tokens over every token of the pool, so the
    same statistics can serve new texts) and gold BIO ``tags`` per text (None = unlabeled).
    ``joined``: per text, which tokens continue the previous one's word (``joined_tokens``)."""
    device = features.device
    n = features.shape[0]
    lengths = torch.tensor([t.shape[0] for t in token_features], dtype=torch.long)
    offsets = torch.cat((torch.zeros(1, dtype=torch.long), torch.cumsum(lengths, 0))).to(device)
    dim = token_features[0].shape[1] if token_features else features.shape[1]
    flat = (
        torch.cat(token_features).float().to(device)
        if int(lengths.sum())
        else torch.zeros(0, dim, device=device)
    )
    token_tags = torch.full((flat.shape[0],), -1, dtype=torch.long, device=device)
    labeled = torch.zeros(n, dtype=torch.bool, device=device)
    targets = torch.zeros(n, num_types, device=device)
    for i, text_tags in enumerate(tags):
        if text_tags is None:
            continue
        if len(text_tags) != int(lengths[i]):
            raise ValueError(f"text {i}: expected {int(lengths[i])} tags, got {len(text_tags)}")
        labeled[i] = True
        if text_tags:
            token_tags[int(offsets[i]) : int(offsets[i + 1])] = torch.tensor(
                text_tags, device=device
            )
        for span in tags_to_spans(list(text_tags)):
            targets[i, span.label] = 1.0
    if labeled_round is None:
        labeled_round = torch.where(labeled, 0, -1).to(device)
    flags = (
        torch.tensor([f for text in joined for f in text], dtype=torch.bool, device=device)
        if joined
        else None
    )
    tokens = TokenPool(flat, offsets, token_tags, num_types, joined=flags)
    return PoolState(
        features=features.float(),
        targets=targets,
        labeled=labeled,
        labeled_round=labeled_round.long(),
        multilabel=True,
        budget=budget,
        seed=seed,
        kind="spans",
        parts=tokens,
    )
