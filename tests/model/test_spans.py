"""The spans kind: offsets to tags, decoding that always yields valid spans, the tagger on a
toy whose answer is known, and each span strategy on a pool where the right order is known."""

import itertools
import math
from dataclasses import replace

import pytest
import torch

from model.active_round import RoundConfig, run_round
from model.errors import EmptyPoolError, UnknownNameError
from model.kinds import counterpart, get_kind, kind_names, prior_role
from model.kinds.spans import (
    TokenPool,
    allowed_transitions,
    joined_tokens,
    make_span_pool,
    per_item,
    presence_probs,
    span_f1,
    spans_to_tags,
    tags_to_spans,
    viterbi,
)
from model.selectors import make_selector
from model.strategies import PORTFOLIO, SPAN_PORTFOLIO, get_strategy, score, strategy_names

SPAN_ONLY = [n for n in SPAN_PORTFOLIO if n not in PORTFOLIO]


def test_kinds_are_registered_and_unknown_names_listed():
    assert kind_names() == ["boxes", "choices", "spans"]
    with pytest.raises(UnknownNameError, match="valid: boxes, choices, spans"):
        get_kind("polygons")


def test_span_portfolio_takes_the_choices_roles_in_order():
    assert [prior_role(n) for n in SPAN_PORTFOLIO] == list(PORTFOLIO)
    assert counterpart("margin", "spans") == "token_margin"
    assert counterpart("kmeans", "spans") == "kmeans"
    assert strategy_names("spans") == list(SPAN_PORTFOLIO)
    assert not set(SPAN_ONLY) & set(strategy_names("choices"))


def test_character_spans_become_bio_tags_on_token_boundaries():
    text = "Empire State Building = ESB ."
    offsets = [(0, 6), (7, 12), (13, 21), (22, 23), (24, 26), (26, 27), (28, 29)]
    tags, dropped = spans_to_tags([(0, 21, 0), (24, 27, 1)], offsets)
    assert tags == [1, 2, 2, 0, 3, 4, 0] and dropped == 0
    # A span inside a token covers the whole token; one covering no token is dropped.
    tags, dropped = spans_to_tags([(25, 26, 1), (22, 22, 0)], offsets)
    assert tags == [0, 0, 0, 0, 3, 0, 0] and dropped == 1
    assert text[0:21] == "Empire State Building"


def test_overlapping_spans_keep_the_longest():
    offsets = [(0, 3), (4, 7), (8, 11)]
    tags, dropped = spans_to_tags([(4, 7, 1), (0, 11, 0), (8, 11, 1)], offsets)
    assert tags == [1, 2, 2] and dropped == 2


def test_tags_to_spans_reads_a_stray_inside_tag_as_a_start():
    assert [(s.start, s.end, s.label) for s in tags_to_spans([2, 2, 0, 1, 4, 3])] == [
        (0, 2, 0),
        (3, 4, 0),
        (4, 5, 1),
        (5, 6, 1),
    ]


def _brute_force(log_probs: torch.Tensor, num_types: int) -> list[int]:
    allowed = allowed_transitions(num_types)
    k = log_probs.shape[1]
    best, best_tags = -math.inf, None
    for tags in itertools.product(range(k), repeat=log_probs.shape[0]):
        total = float(allowed[k, tags[0]] + log_probs[0, tags[0]])
        for t in range(1, len(tags)):
            total += float(allowed[tags[t - 1], tags[t]] + log_probs[t, tags[t]])
        if total > best:
            best, best_tags = total, list(tags)
    return best_tags


def test_viterbi_matches_brute_force_and_is_always_valid():
    generator = torch.Generator().manual_seed(0)
    lengths = [1, 4, 3, 0, 5]
    offsets = torch.tensor([0] + list(itertools.accumulate(lengths)))
    log_probs = torch.log_softmax(torch.randn(sum(lengths), 5, generator=generator) * 3, dim=1)
    path = viterbi(log_probs, offsets, num_types=2)
    for i, length in enumerate(lengths):
        a, b = int(offsets[i]), int(offsets[i + 1])
        got = path[a:b].tolist()
        assert got == (_brute_force(log_probs[a:b], 2) if length else [])
        for previous, tag in zip([0] + got, got, strict=False):
            if tag in (2, 4):  # an inside tag continues its own type
                assert previous in (tag - 1, tag)


def test_per_item_reductions_and_empty_texts():
    values = torch.tensor([1.0, 3.0, 2.0])
    item = torch.tensor([0, 0, 2])
    assert per_item(values, item, 3, "sum").tolist() == [4.0, 0.0, 2.0]
    assert per_item(values, item, 3, "mean").tolist() == [2.0, 0.0, 2.0]
    assert per_item(values, item, 3, "amax").tolist() == [3.0, 0.0, 2.0]


def test_presence_probability_of_a_type():
    tokens = TokenPool(torch.zeros(3, 2), torch.tensor([0, 2, 3]), torch.full((3,), -1), 1)
    probs = torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    assert presence_probs(probs, tokens)[:, 0].tolist() == pytest.approx([0.75, 0.0])


def test_span_f1_counts_exact_matches_only():
    gold = [tags_to_spans([1, 2, 0]), tags_to_spans([0, 3])]
    guess = [tags_to_spans([1, 0, 0]), tags_to_spans([0, 3])]
    assert span_f1(gold, guess) == pytest.approx((0.5, 0.5, 0.5))


def toy_span_pool(labeled: int = 40, n: int = 160, seed: int = 0):
    """Texts whose entity tokens carry a type direction in their features: a tagger learns
    them; a third of the texts hold no entity."""
    generator = torch.Generator().manual_seed(seed)
    tokens, tags = [], []
    for i in range(n):
        length = int(torch.randint(3, 10, (1,), generator=generator))
        features = torch.randn(length, 8, generator=generator) * 0.5
        text_tags = [0] * length
        if i % 3:
            c, j = i % 2, int(torch.randint(0, length - 1, (1,), generator=generator))
            text_tags[j], text_tags[j + 1] = 1 + 2 * c, 2 + 2 * c
            features[j, c] += 3.0
            features[j + 1, c] += 3.0
            features[j + 1, 2] += 2.0
        tokens.append(features)
        tags.append(text_tags)
    pooled = torch.stack([t.mean(dim=0) for t in tokens])
    pool = make_span_pool(
        pooled, tokens, [t if i < labeled else None for i, t in enumerate(tags)], 2, budget=8
    )
    return pool, tags


def test_the_tagger_learns_a_toy_and_decodes_its_spans():
    pool, tags = toy_span_pool()
    kind = get_kind("spans")
    assert not kind.cold_start(pool, 10)
    model = kind.fit(pool, RoundConfig().task_model, 0)
    trained = kind.trained(pool, model)
    unlabeled = trained.unlabeled_indices().tolist()
    hits = 0
    for i in unlabeled:
        predicted = {
            (s.start, s.end, s.label)
            for s in model.spans(trained.parts.probs, trained.parts.path, trained.parts.offsets, i)
        }
        gold = {(s.start, s.end, s.label) for s in tags_to_spans(tags[i])}
        hits += predicted == gold
    assert hits / len(unlabeled) > 0.9
    assert kind.validate(trained, RoundConfig().task_model, 3) > 0.8


def test_a_span_pool_without_any_entity_is_a_cold_start():
    pool, _ = toy_span_pool(labeled=30)
    none = replace(pool, targets=torch.zeros_like(pool.targets))
    assert get_kind("spans").cold_start(none, 10)
    assert run_round(none, make_selector("uniform", kind="spans")).cold_start


@pytest.fixture(scope="module")
def trained_span_pool():
    pool, _ = toy_span_pool()
    kind = get_kind("spans")
    return kind.trained(pool, kind.fit(pool, RoundConfig().task_model, 0))


@pytest.mark.parametrize("name", SPAN_PORTFOLIO)
def test_span_strategy_contract(name, trained_span_pool):
    candidates = trained_span_pool.unlabeled_indices()
    raw = get_strategy(name).fn(trained_span_pool, candidates)
    assert raw.shape == candidates.shape and torch.isfinite(raw).all()
    again = get_strategy(name).fn(replace(trained_span_pool, cache={}), candidates.clone())
    assert torch.equal(raw, again)
    permutation = torch.randperm(candidates.numel(), generator=torch.Generator().manual_seed(3))
    assert torch.equal(
        get_strategy(name).fn(trained_span_pool, candidates[permutation]), raw[permutation]
    )
    assert score(trained_span_pool, name, candidates[:1]).tolist() == [1.0]


@pytest.mark.parametrize("name", SPAN_ONLY)
def test_span_strategies_need_a_trained_span_pool(name, trained_span_pool):
    with pytest.raises(EmptyPoolError):
        get_strategy(name).fn(replace(trained_span_pool, parts=replace(trained_span_pool.parts, probs=None)),
                              trained_span_pool.unlabeled_indices())  # fmt: skip


def _one_text_each(probs: list[list[list[float]]]):
    """A trained-looking span pool of texts with the given token tag distributions."""
    lengths = [len(p) for p in probs]
    flat = torch.tensor([row for text in probs for row in text])
    offsets = torch.tensor([0] + list(itertools.accumulate(lengths)))
    tokens = TokenPool(torch.zeros(flat.shape[0], 4), offsets, torch.full((flat.shape[0],), -1), 1,
                       probs=flat, path=viterbi(torch.log(flat), offsets, 1))  # fmt: skip
    n = len(probs)
    pool = make_span_pool(torch.zeros(n, 4), [torch.zeros(x, 4) for x in lengths], [None] * n, 1)
    return replace(pool, parts=tokens, probs=presence_probs(flat, tokens), model=object())


def test_token_uncertainty_strategies_rank_the_known_order():
    sure = [0.98, 0.01, 0.01]
    unsure = [0.4, 0.35, 0.25]
    # Text 0: two sure tokens; text 1: one unsure token among two; text 2: six sure tokens.
    pool = _one_text_each([[sure, sure], [sure, unsure], [sure] * 6])
    candidates = torch.arange(3)
    for name in ("mnlp", "token_entropy", "max_token_entropy", "token_margin"):
        raw = get_strategy(name).fn(pool, candidates)
        assert int(raw.argmax()) == 1, name
    # Total entropy grows with length; its normalised and max forms do not.
    assert (
        get_strategy("token_entropy").fn(pool, candidates)[2]
        > get_strategy("token_entropy").fn(pool, candidates)[0]
    )
    assert get_strategy("mnlp").fn(pool, candidates)[2] == pytest.approx(
        float(get_strategy("mnlp").fn(pool, candidates)[0]), rel=1e-4
    )


def test_token_bald_is_zero_without_dropout_and_positive_with_it(trained_span_pool):
    candidates = trained_span_pool.unlabeled_indices()
    assert float(get_strategy("token_bald").fn(trained_span_pool, candidates).max()) > 0
    tagger = trained_span_pool.model.tagger
    still = replace(tagger.config, dropout=0.0)
    model = type(trained_span_pool.model)(type(tagger)(tagger.head, False, still), 2)
    assert (
        float(
            get_strategy("token_bald")
            .fn(replace(trained_span_pool, model=model, cache={}), candidates)
            .max()
        )
        < 1e-5
    )


@pytest.mark.parametrize(
    "selector", ["uniform", "autoal", "albl", "tailor", "schedule", "margin", "span_badge"]
)
def test_every_selector_serves_a_span_pool(selector):
    pool, _ = toy_span_pool()
    result = run_round(pool, make_selector(selector, kind="spans"), RoundConfig())
    assert not result.cold_start
    assert sorted(result.selection.candidates.tolist()) == pool.unlabeled_indices().tolist()
    assert all(n in SPAN_PORTFOLIO for n in result.selection.strategy_names)


def test_autoal_reads_the_prior_through_the_span_roles():
    pool, _ = toy_span_pool()
    result = run_round(pool, make_selector("autoal", kind="spans"), RoundConfig())
    assert result.selection.info["prior_action"].split(" ")[-1] in {"uniform", *SPAN_PORTFOLIO}


def test_strategies_are_read_as_roles_of_the_kind_and_other_kinds_refused():
    assert make_selector("uniform", kind="spans", portfolio=["random", "badge"]).portfolio == [
        "random",
        "span_badge",
    ]
    with pytest.raises(UnknownNameError, match="strategy for choices projects"):
        make_selector("uniform", portfolio=["random", "mnlp"])
    with pytest.raises(UnknownNameError, match="strategy for choices projects"):
        make_selector("token_bald")


def test_the_online_search_refuses_span_pools_clearly():
    for name in ("autoal_online", "autoal_labels"):
        with pytest.raises(
            UnknownNameError, match="online search trains a choices head"
        ) as refused:
            make_selector(name, kind="spans")
        valid = str(refused.value).split("valid: ")[1]
        assert "autoal_online" not in valid and "autoal_labels" not in valid and "autoal," in valid
    with pytest.raises(UnknownNameError):
        make_selector("autoal", kind="spans", online=True)
    pool, _ = toy_span_pool()  # a choices selector on a span pool: its strategies say why
    with pytest.raises(UnknownNameError, match="strategy for spans pools"):
        run_round(pool, make_selector("autoal_online"), RoundConfig())


def test_joined_tokens_mark_sub_word_pieces_only():
    text = "Congrats to Diego Berg, 東京!"
    offsets = [
        (0, 4),
        (4, 7),
        (7, 8),
        (9, 11),
        (12, 17),
        (18, 22),
        (22, 23),
        (24, 25),
        (25, 26),
        (26, 27),
    ]
    # CJK ideographs are words of their own (BERT splits them): 東 and 京 are not joined.
    assert joined_tokens(text, offsets) == [False, True, True] + [False] * 7


def test_decoding_keeps_words_whole():
    # Three tokens of one word; the middle one looks like an entity start on its own.
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.9, 0.05, 0.05], [0.1, 0.8, 0.1]])
    offsets = torch.tensor([0, 4])
    free = viterbi(torch.log(probs), offsets, 1)
    assert free.tolist() == [0, 1, 0, 1]
    whole = viterbi(torch.log(probs), offsets, 1, torch.tensor([False, True, True, False]))
    assert whole.tolist() == [0, 0, 0, 1]
    # A word that starts an entity keeps its pieces in it.
    starts = torch.tensor([[0.1, 0.8, 0.1], [0.5, 0.2, 0.3], [0.9, 0.05, 0.05]])
    assert viterbi(
        torch.log(starts), torch.tensor([0, 3]), 1, torch.tensor([False, True, False])
    ).tolist() == [1, 2, 0]


def test_training_rows_keep_every_entity_and_weigh_the_sampled_o_tokens():
    from model.kinds.spans import training_rows

    tags = torch.tensor([0] * 90 + [1, 2] * 5)
    rows = torch.arange(100)
    same, weights = training_rows(tags, rows, seed=0, limit=100)
    assert torch.equal(same, rows) and weights is None
    kept, weights = training_rows(tags, rows, seed=0, limit=40)
    assert kept.numel() == 40 and set(range(90, 100)) <= set(kept.tolist())
    assert torch.equal(kept, torch.sort(kept).values)
    outside = tags[kept] == 0
    assert float(weights[outside].sum()) == pytest.approx(90.0) and bool(
        (weights[~outside] == 1).all()
    )
    again, _ = training_rows(tags, rows, seed=0, limit=40)
    assert torch.equal(kept, again)


def test_viterbi_in_chunks_of_texts_decodes_as_one_batch(monkeypatch):
    import model.kinds.spans as spans

    generator = torch.Generator().manual_seed(1)
    lengths = [5, 0, 2, 7, 1, 3, 0, 4]
    offsets = torch.tensor([0] + list(itertools.accumulate(lengths)))
    log_probs = torch.log_softmax(torch.randn(sum(lengths), 5, generator=generator) * 3, dim=1)
    joined = torch.rand(sum(lengths), generator=generator) < 0.3
    whole = viterbi(log_probs, offsets, 2, joined)
    monkeypatch.setattr(spans, "VITERBI_TEXTS", 3)
    assert torch.equal(viterbi(log_probs, offsets, 2, joined), whole)
