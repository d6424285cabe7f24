"""Simulated annotation of a span (named-entity) project, driving the backend's own round code.

Reached through ``python -m benchmarks.simulate`` (``--dataset wnut16``, ``spans-synthetic``, or
a Label Studio export with ``--label-config`` holding ``<Labels>`` over ``<Text>``). Per
strategy and seed: the same random initial texts; each round a span pool is built
(``model.kinds.spans.make_span_pool``), ``model.active_round.run_round`` trains the tagger and
asks the selector for priorities, the round's tagger is scored on the test texts, and the
annotator labels the top ``batch`` texts with their gold spans.

The metric is entity-level micro-F1 (a predicted span counts when start, end and type all match
a gold span), over token boundaries (a gold span inside a token covers the token, as in
training). AUBC is its area under the curve over labeled texts; the tokens labeled are reported
beside the texts, since a span strategy may prefer long texts.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from benchmarks.span_data import EmbeddedCorpus, embed_corpus, load_span_corpus
from model.active_round import RoundConfig, run_round
from model.kinds import get_kind
from model.kinds.spans import (
    SpanModel,
    TokenPool,
    gold_spans,
    joined_tokens,
    make_span_pool,
    span_f1,
    spans_to_tags,
)
from model.selectors import make_selector
from model.task_model import standardisation, standardise

TEST_FRACTION = 0.25
MAX_TEST = 1000


@dataclass
class SpanRun:
    strategy: str
    seed: int
    labeled: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    f1: list[float] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)


@dataclass
class SpanSplit:
    """Pool and test texts, standardised: sentence ``features`` [N, d] and token rows."""

    pool_features: torch.Tensor
    pool_tokens: list[torch.Tensor]
    pool_tags: list[list[int]]
    pool_joined: list[list[bool]]
    test: TokenPool
    num_types: int
    dropped: int


def split_corpus(data: EmbeddedCorpus, seed: int = 0) -> SpanSplit:
    """A seeded pool/test split; features standardised with the pool's statistics only."""
    n = len(data.corpus.texts)
    order = np.random.default_rng(seed).permutation(n)
    test_size = min(MAX_TEST, int(round(n * TEST_FRACTION)))
    test, pool = order[:test_size].tolist(), order[test_size:].tolist()
    tags, dropped = [], 0
    for i in range(n):
        t, d = spans_to_tags(data.corpus.spans[i], data.offsets[i])
        tags.append(t)
        dropped += d
    stats = standardisation(data.pooled[pool])
    features = standardise(data.pooled[pool], stats=stats)
    token_stats = standardisation(torch.cat([data.tokens[i] for i in pool]))
    pool_tokens = [standardise(data.tokens[i], stats=token_stats) for i in pool]
    test_tokens = [standardise(data.tokens[i], stats=token_stats) for i in test]
    lengths = torch.tensor([t.shape[0] for t in test_tokens])
    offsets = torch.cat((torch.zeros(1, dtype=torch.long), torch.cumsum(lengths, 0)))
    test_tags = torch.tensor([tag for i in test for tag in tags[i]], dtype=torch.long)
    joined = [joined_tokens(data.corpus.texts[i], data.offsets[i]) for i in range(n)]
    test_joined = torch.tensor([f for i in test for f in joined[i]], dtype=torch.bool)
    test_pool = TokenPool(
        torch.cat(test_tokens), offsets, test_tags, len(data.corpus.types), joined=test_joined
    )
    return SpanSplit(features, pool_tokens, [tags[i] for i in pool], [joined[i] for i in pool], test_pool,
                     len(data.corpus.types), dropped)  # fmt: skip


def test_f1(model: SpanModel | None, test: TokenPool) -> float:
    """Entity micro-F1 of ``model`` on the test texts (0 without a model: no span predicted)."""
    gold = [gold_spans(test, i) for i in range(test.num_texts)]
    if model is None:
        return span_f1(gold, [[] for _ in gold])[2]
    probs = model.token_probs(test.features)
    path = model.decode(probs, test.offsets, test.joined)
    return span_f1(
        gold, [model.spans(probs, path, test.offsets, i) for i in range(test.num_texts)]
    )[2]


def run_span_strategy(name: str, seed: int, split: SpanSplit, *, initial: int, batch: int, rounds: int,
                      config: RoundConfig, options: dict | None = None, on_round=None) -> SpanRun:  # fmt: skip
    n = split.pool_features.shape[0]
    run = SpanRun(name, seed)
    labeled = torch.zeros(n, dtype=torch.bool)
    labeled_round = torch.full((n,), -1, dtype=torch.long)
    first = torch.as_tensor(np.random.default_rng(seed).choice(n, initial, replace=False))
    labeled[first] = True
    labeled_round[first] = 0
    selector = make_selector(name, kind="spans", **(options or {}))
    kind = get_kind("spans")
    for round_index in range(rounds + 1):
        start = time.perf_counter()
        tags = [split.pool_tags[i] if bool(labeled[i]) else None for i in range(n)]
        state = make_span_pool(split.pool_features, split.pool_tokens, tags, split.num_types,
                               labeled_round=labeled_round, budget=batch, seed=seed * 100_003 + round_index,
                               joined=split.pool_joined)  # fmt: skip
        last = round_index == rounds or bool(labeled.all())
        if last:
            outcome = None
            model = (
                None
                if kind.cold_start(state, 1)
                else kind.fit(state, config.task_model, state.seed)
            )
        else:
            outcome = run_round(state, selector, config)
            model = outcome.model
            if model is None and not kind.cold_start(state, 1):
                model = kind.fit(state, config.task_model, state.seed)
        f1 = test_f1(model, split.test)
        run.labeled.append(int(labeled.sum()))
        run.tokens.append(
            sum(len(split.pool_tags[i]) for i in torch.nonzero(labeled).flatten().tolist())
        )
        run.f1.append(f1)
        run.rows.append({"strategy": name, "seed": seed, "round": round_index, "labeled": run.labeled[-1],
                         "tokens": run.tokens[-1], "span_f1": round(f1, 6),
                         "cold_start": bool(outcome.cold_start) if outcome else False,
                         "round_s": round(time.perf_counter() - start, 4),
                         "prior_action": (outcome.selection.info.get("prior_action") if outcome else None)})  # fmt: skip
        if last or outcome is None:
            break
        picked = outcome.selection.order(seed=state.seed)[:batch]
        labeled[picked] = True
        labeled_round[picked] = round_index + 1
        if on_round is not None:
            on_round()
    return run


def run_span_benchmark(args, strategies: list[str], options: dict[str, dict]) -> int:
    """The span side of ``benchmarks.simulate``: same arguments, same JSON summary shape, with
    ``"metric": "span_f1"``."""
    from benchmarks.simulate import RunResult, aubc, labels_to_match_random, mean_std

    started = time.perf_counter()
    label_config = Path(args.label_config).read_text() if args.label_config else None
    corpus = load_span_corpus(args.dataset, label_config)
    data = embed_corpus(corpus, args.encoder or "minilm", args.cache_dir)
    split = split_corpus(data)
    load_s = time.perf_counter() - started
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    n = split.pool_features.shape[0]
    if not 0 < args.initial < n:
        raise SystemExit(
            f"--initial must be between 1 and {n - 1} (the pool of {corpus.name}), got {args.initial}"
        )
    out = Path(args.out or Path("results") / f"simulate-{corpus.name}")
    out.mkdir(parents=True, exist_ok=True)
    print(f"{corpus.name}: pool {n} texts, test {split.test.num_texts}, {split.num_types} types, "
          f"{split.dropped} overlapping span(s) left out, encoder {data.encoder}, loaded in {load_s:.1f} s",
          file=sys.stderr)  # fmt: skip
    runs: dict[str, list[SpanRun]] = {}
    failed: dict[str, str] = {}
    config = RoundConfig()
    for name in strategies:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            try:
                run = run_span_strategy(name, seed, split, initial=args.initial, batch=args.batch,
                                        rounds=args.rounds, config=config, options=options.get(name))  # fmt: skip
            except Exception as exc:  # reported per strategy, as the choices harness does
                failed[name] = f"{type(exc).__name__}: {exc}"
                print(f"FAILED {name} seed {seed}: {failed[name]}", file=sys.stderr)
                runs.pop(name, None)
                break
            runs.setdefault(name, []).append(run)
            print(f"{name} seed {seed}: AUBC {aubc(run.labeled, run.f1):.4f}, final F1 {run.f1[-1]:.4f}",
                  file=sys.stderr)  # fmt: skip
    with open(out / "rounds.jsonl", "w") as handle:
        for rs in runs.values():
            for r in rs:
                for row in r.rows:
                    handle.write(json.dumps(row) + "\n")

    report: dict = {
        "dataset": corpus.name,
        "kind": "spans",
        "metric": "span_f1",
        "aubc": {k: mean_std([aubc(r.labeled, r.f1) for r in rs]) for k, rs in runs.items()},
        "final": {k: mean_std([r.f1[-1] for r in rs]) for k, rs in runs.items()},
        "aubc_per_seed": {
            k: [round(aubc(r.labeled, r.f1), 5) for r in rs] for k, rs in runs.items()
        },
        "tokens_labeled": {
            k: mean_std([float(r.tokens[-1]) for r in rs]) for k, rs in runs.items()
        },
        "labeled": runs[next(iter(runs))][0].labeled if runs else [],
    }
    curves = {
        k: [RunResult(k, r.seed, labeled=r.labeled, accuracy=r.f1) for r in rs]
        for k, rs in runs.items()
    }
    matched = labels_to_match_random(curves)
    if matched:
        report["labels_to_match_random"] = matched
    if failed:
        report["failed"] = failed
    lines = [f"# Simulated span labeling on {corpus.name}", "",
             f"Pool {n} texts, test {split.test.num_texts}, {split.num_types} entity types; {args.initial} initial, "
             f"batches of {args.batch}, {args.rounds} rounds, seeds {args.first_seed}..{args.first_seed + args.seeds - 1}. "
             "Metric: entity micro-F1 on the test texts.", "",
             "| strategy | AUBC span-F1 | final span-F1 | tokens labeled | labels to match random |", "|---|---|---|---|---|"]  # fmt: skip
    for k in sorted(report["aubc"], key=lambda k: -report["aubc"][k]["mean"]):
        a, f, t = report["aubc"][k], report["final"][k], report["tokens_labeled"][k]
        m = (matched or {}).get(k)
        lines.append(f"| {k} | {a['mean']:.4f} +- {a['std']:.4f} | {f['mean']:.4f} +- {f['std']:.4f} "
                     f"| {t['mean']:.0f} | {'n/a' if m is None else f'{m:.0f}'} |")  # fmt: skip
    summary = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(summary)
    print(summary)
    print(json.dumps(report))
    return 1 if failed else 0
