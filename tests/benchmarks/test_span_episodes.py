"""Span episodes and the span prior on toy texts: the rule-tagged news family, tasks drawn from a
family's base, each recorded round holding the true span-F1 of every prior action's batch, and
meta-training a span prior that AutoAL picks up for span pools."""

import json

import pytest
import torch

from benchmarks import kind_episodes, meta_train, span_episodes
from benchmarks.kind_episodes import action_batches
from benchmarks.span_data import EmbeddedCorpus, SpanCorpus
from benchmarks.span_simulate import SpanSplit
from benchmarks.span_simulate import test_f1 as span_test_f1
from model.kinds import get_kind
from model.kinds.spans import SpanModel, TokenPool
from model.selectors import make_selector
from model.selectors.autoal import FEATURES, prior
from model.selectors.autoal.prior import action_names
from model.strategies import SPAN_PORTFOLIO, score_matrix
from tests.model.test_spans import toy_span_pool

ACTIONS = len(action_names(list(SPAN_PORTFOLIO)))


def test_news_rules_tag_surface_patterns_and_keep_one_of_overlapping_matches():
    text = "On Monday Mr Cable said 5% of £3.5bn was spent by 12 March 2004."
    types = tuple(span_episodes.NEWS_RULES)
    found = {(text[a:b], types[t]) for a, b, t in span_episodes.rule_spans(text, types)}
    assert found == {("Monday", "weekday"), ("Cable", "titled_person"), ("5%", "percent"),
                     ("£3.5bn", "money"), ("12 March", "date"), ("2004", "year")}  # fmt: skip
    # Only the chosen types are tagged, indexed in the chosen order.
    assert span_episodes.rule_spans(text, ("year", "weekday")) == [(3, 9, 1), (59, 63, 0)]
    # "3.5" inside the money span is not also a percentage or a year.
    spans = span_episodes.rule_spans("Sales rose 2005 % in 2005.", ("percent", "year"))
    assert spans == [(11, 17, 0), (21, 25, 1)]


def test_a_task_draws_its_texts_and_keeps_only_its_types():
    texts = [f"text {i}" for i in range(10)]
    spans = [[(0, 4, i % 3)] for i in range(10)]
    base = EmbeddedCorpus(SpanCorpus("b", texts, spans, ("a", "b", "c")), "toy",
                          torch.arange(10.0)[:, None], [torch.full((2, 1), float(i)) for i in range(10)],
                          [[(0, 4), (5, 6)] for _ in range(10)])  # fmt: skip
    spec = span_episodes.SpanSpec("tweets", ("a", "c"), 6, (), data_seed=3)
    task = span_episodes.task_corpus(spec, base)
    assert len(task.corpus.texts) == 6 and task.corpus.types == ("a", "c")
    for text, kept, pooled, tokens in zip(task.corpus.texts, task.corpus.spans, task.pooled,
                                          task.tokens, strict=True):  # fmt: skip
        i = int(text.split()[1])
        assert float(pooled) == i and float(tokens[0, 0]) == i
        assert kept == ([] if i % 3 == 1 else [(0, 4, 0 if i % 3 == 0 else 1)])
    again = span_episodes.task_corpus(spec, base)
    assert again.corpus.texts == task.corpus.texts


def test_a_mixed_task_draws_its_rare_sources_share_and_each_sources_types():
    # The base of the mixed family: tweets' texts first, then the news sentences.
    sizes = {"tweets": 40, "news": 60}
    texts = [f"{'t' if i < 40 else 'n'} {i}" for i in range(100)]
    spans = [[(0, 1, 0 if i < 40 else 2)] for i in range(100)]
    types = ("tweets:person", "tweets:company", "news:money", "news:year")
    base = EmbeddedCorpus(SpanCorpus("mixed", texts, spans, types), "toy",
                          torch.arange(100.0)[:, None], [torch.zeros(2, 1)] * 100,
                          [[(0, 1), (2, 3)]] * 100)  # fmt: skip
    original = span_episodes._source_sizes
    span_episodes._source_sizes = lambda corpus: sizes
    try:
        spec = span_episodes.SpanSpec("mixed", ("news:money", "tweets:person"), 50, (), 4,
                                      minority="tweets", share=0.2)  # fmt: skip
        task = span_episodes.task_corpus(spec, base)
        drawn = [t.split()[0] for t in task.corpus.texts]
        assert len(drawn) == 50 and drawn.count("t") == 10 and len(set(task.corpus.texts)) == 50
        assert task.corpus.types == ("news:money", "tweets:person")
        for text, kept in zip(task.corpus.texts, task.corpus.spans, strict=True):
            assert kept == [(0, 1, 1 if text.startswith("t") else 0)]
        import numpy as np

        drawn_spec = span_episodes.sample_spec("mixed", base.corpus, np.random.default_rng(0))
        sources = {t.split(":")[0] for t in drawn_spec.types}
        assert sources == {"tweets", "news"} and drawn_spec.minority in sources
        assert 0.05 <= drawn_spec.share <= 0.25
        rare = sizes[drawn_spec.minority]
        assert round(drawn_spec.texts * drawn_spec.share) <= rare
    finally:
        span_episodes._source_sizes = original


def test_leaving_a_family_out_leaves_out_the_families_built_from_it():
    spans = meta_train.kind_episodes("spans")
    assert spans.left_out_with("tweets") == {"tweets", "mixed"}
    assert spans.left_out_with("templates") == {"templates"}
    assert spans.left_out_with("mixed") == {"mixed", "tweets", "news"}
    assert not spans.related("templates", "mixed") and spans.related("news", "mixed")


@pytest.fixture(scope="module")
def split() -> SpanSplit:
    pool, tags = toy_span_pool(labeled=0, n=200, seed=2)
    parts: TokenPool = pool.parts
    tokens = [parts.features[int(parts.offsets[i]) : int(parts.offsets[i + 1])] for i in range(200)]
    test_rows = torch.cat([torch.arange(int(parts.offsets[i]), int(parts.offsets[i + 1]))
                           for i in range(150, 200)])  # fmt: skip
    test = TokenPool(parts.features[test_rows], parts.offsets[150:] - parts.offsets[150],
                     torch.tensor([t for i in range(150, 200) for t in tags[i]]), 2)  # fmt: skip
    return SpanSplit(pool.features[:150], tokens[:150], tags[:150], [[False] * len(t) for t in tags[:150]],
                     test, 2, 0)  # fmt: skip


def episode(split: SpanSplit, seed: int = 3) -> dict:
    return span_episodes.run_episode(split, seed, rounds=2, truth_rounds=(1,))


def test_an_episode_records_every_actions_true_span_f1(split):
    record = episode(split)["rounds"]
    assert [r["round"] for r in record] == [1]
    r = record[0]
    assert r["span_f1"].shape == (ACTIONS,) and r["features"].shape == (len(FEATURES),)
    assert r["span_f1_gain"][0] == 0.0
    assert torch.allclose(r["span_f1_gain"], r["span_f1"] - r["span_f1"][0])
    assert 1 < r["distinct_batches"] <= ACTIONS
    assert r["labeled"] == span_episodes.INITIAL + span_episodes.BATCH
    assert 0.0 <= r["before"] <= 1.0 and 0 <= r["choice"] < ACTIONS


def test_refeaturing_an_episode_re_runs_its_path_without_the_truth(split):
    recorded = episode(split)
    old = recorded | {"rounds": [r | {"features": r["features"][:12]} for r in recorded["rounds"]]}
    fresh = span_episodes.run_episode(split, 3, rounds=2, truth_rounds=(1,), record_truth=False)
    assert "span_f1" not in fresh["rounds"][0]
    updated = kind_episodes.refeature_episode(old, fresh)
    assert torch.equal(updated["rounds"][0]["features"], recorded["rounds"][0]["features"])
    assert torch.equal(updated["rounds"][0]["span_f1"], recorded["rounds"][0]["span_f1"])
    assert updated["feature_names"] == list(FEATURES)
    assert updated["features_version"] == fresh["features_version"]
    other = span_episodes.run_episode(split, 4, rounds=2, truth_rounds=(1,), record_truth=False)
    with pytest.raises(ValueError, match="another path"):
        kind_episodes.refeature_episode(old, other)


def test_the_truth_is_the_test_f1_of_a_tagger_trained_with_the_batchs_gold_tags(split):
    a, b = episode(split), episode(split)
    assert torch.equal(a["rounds"][0]["span_f1"], b["rounds"][0]["span_f1"])
    n = split.pool_features.shape[0]
    known = [split.pool_tags[i] if i < 20 else None for i in range(n)]
    state = span_episodes.make_span_pool(split.pool_features, split.pool_tokens, known, 2,
                                         budget=span_episodes.BATCH, seed=7)  # fmt: skip
    kind = get_kind("spans")
    config = span_episodes.RoundConfig().task_model
    model = kind.fit(state, config, 7)
    state = kind.trained(state, model)
    candidates = state.unlabeled_indices()
    scores = score_matrix(state, list(SPAN_PORTFOLIO), candidates)
    batches = action_batches(scores, SPAN_PORTFOLIO, 7, span_episodes.BATCH)
    gold = span_episodes.gold_pool(split)
    record = span_episodes._truth(split, gold, state, model, candidates, batches, 7)
    for action in (0, 1, ACTIONS - 1):
        items = torch.cat((torch.arange(20), candidates[batches[action].sort().values]))
        # A tagger fitted on the pool with these texts labeled by hand gives the recorded F1.
        labeled = [split.pool_tags[i] if i in set(items.tolist()) else None for i in range(n)]
        by_hand = span_episodes.make_span_pool(split.pool_features, split.pool_tokens, labeled, 2)
        expected = span_test_f1(kind.fit(by_hand, config, 7), split.test)
        assert float(record["span_f1"][action]) == pytest.approx(expected)
    assert record["before"] == pytest.approx(span_test_f1(model, split.test))
    assert isinstance(model, SpanModel)


def test_meta_training_a_span_prior_and_autoal_using_it(split, tmp_path, monkeypatch, capsys):
    for family, seed in (("tweets", 3), ("templates", 5)):
        saved = episode(split, seed) | {"family": family, "regime": "spans", "spec": {}}
        (tmp_path / family).mkdir()
        torch.save(saved, tmp_path / family / "0000.pt")
    meta_train.main(["--kind", "spans", "--episodes", str(tmp_path), "--steps", "30",
                     "--out", str(tmp_path / "spans.json")])  # fmt: skip
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["episodes"] == 2 and summary["rounds"] == 2
    trained = json.loads((tmp_path / "spans.json").read_text())
    assert trained["portfolio"] == list(SPAN_PORTFOLIO)
    assert trained["meta"]["data"]["gain"] == "span_f1_gain"
    assert trained["meta"]["data"]["generator"] == "python -m benchmarks.span_episodes"
    meta_train.main(["--kind", "spans", "--episodes", str(tmp_path), "--steps", "30", "--validate"])
    validation = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["validation"]
    assert set(validation) == {"tweets", "templates"}

    # Shipped beside the others, the span prior is AutoAL's default for span pools only.
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "prior.json").write_text(prior.PRIOR_FILE.read_text())
    (shipped / "prior-spans.json").write_text((tmp_path / "spans.json").read_text())
    monkeypatch.setattr(prior, "PRIOR_FILE", shipped / "prior.json")
    assert prior.default_prior_path(SPAN_PORTFOLIO) == shipped / "prior-spans.json"
    assert make_selector("autoal", kind="spans").prior.portfolio == list(SPAN_PORTFOLIO)
    assert make_selector("autoal", kind="choices").prior.portfolio != list(SPAN_PORTFOLIO)
