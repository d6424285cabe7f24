"""Span projects on the Label Studio side: ``<Labels>`` over ``<Text>``, any tag and field names.

- **Config**: one ``<Labels>`` pointing at one ``<Text>`` that reads a task field (``$text``,
  ``$tweet``); anything else is refused with a message naming it (two ``<Labels>`` on one text, a
  ``<HyperText>``, a text read from a URL: span offsets must index the text in the task data).
- **Annotations**: each region ``{"type": "labels", "value": {"start", "end", "labels"}}`` of our
  ``<Labels>`` tag is a span of character offsets into the text (Python string indices, what
  ``text[start:end]`` reads). A region with several labels counts as its first; a region whose
  offsets fall outside the text, or whose label is unknown, makes the annotation unusable (the
  reason is reported, as for choices).
- **Agreement**: a span (start, end, label) is agreed when more than half of a task's usable
  annotations hold it; at exactly half it follows the most recent annotation (as multi-choice
  labels do). One annotation is simply that annotation.
- **Results**: ``regions`` writes what the annotators see: one region per predicted span with
  ``value.text == text[start:end]`` and the span's confidence as ``score``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from autoal_backend.label_config import UnsupportedConfigError, load_interface
from model.kinds.spans import TokenPool, joined_tokens, spans_to_tags, tags_to_spans
from model.task_model import standardisation, standardise

CharSpan = tuple[int, int, str]


@dataclass(frozen=True)
class SpanSpec:
    """What the backend needs from a span label config.

    Attributes:
        from_name: the ``<Labels>`` tag's name.
        to_name: the ``<Text>`` tag's name.
        data_key: the task data field the text reads (``$text`` -> ``text``).
        labels: the entity types in config order; type index i is ``labels[i]``.
    """

    from_name: str
    to_name: str
    data_key: str
    labels: tuple[str, ...]
    kind = "spans"
    modality = "text"
    multilabel = True
    value_type = ""
    parts = "tokens"

    def class_index(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    # --- the kind's hooks (autoal_backend.kinds.ProjectSpec) --------------------------------
    def vote(self, annotation: dict, text: str | None = None) -> tuple[list[CharSpan] | None, str]:
        if not isinstance(text, str):
            return None, "the task has no text to read spans from"
        return self.annotation_spans(annotation, text)

    def agree(self, votes: list[list[CharSpan]]) -> list[CharSpan]:
        return agreed_spans(votes)[0]

    def keys(self, answer: list[CharSpan]) -> list[str]:
        return [span_key(span) for span in sorted(answer)]

    def counts(self, answer: list[CharSpan]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, _, label in answer:
            counts[label] = counts.get(label, 0) + 1
        return counts

    def targets(self, answers: list[list[CharSpan] | None], parts: list | None, device: torch.device,
                texts: list[str | None] | None = None) -> tuple[torch.Tensor, TokenPool]:  # fmt: skip
        """[N, C] which entity types each labeled text holds, and the pool's tokens: their
        states standardised over every token of the pool, BIO tags for the labeled texts, and
        each token's character offsets (to write predicted spans back as text offsets)."""
        if parts is None:
            raise ValueError("a span pool needs each text's token states")
        index = self.class_index()
        states = [p[0] for p in parts]
        chars = [p[1] for p in parts]
        lengths = torch.tensor([len(c) for c in chars], dtype=torch.long)
        offsets = torch.cat((torch.zeros(1, dtype=torch.long), torch.cumsum(lengths, 0)))
        flat = torch.cat(states).float() if int(lengths.sum()) else torch.zeros(0, 1)
        stats = (
            standardisation(flat)
            if flat.shape[0] > 1
            else (flat.mean(0), torch.ones(flat.shape[1]))
        )
        tags = torch.full((flat.shape[0],), -1, dtype=torch.long)
        targets = torch.zeros(len(answers), len(self.labels))
        for row, answer in enumerate(answers):
            if answer is None:
                continue
            spans = [(a, b, index[label]) for a, b, label in answer]
            row_tags, _ = spans_to_tags(spans, [tuple(c) for c in chars[row]])
            if row_tags:
                tags[int(offsets[row]) : int(offsets[row + 1])] = torch.tensor(row_tags)
            for span in tags_to_spans(row_tags):
                targets[row, span.label] = 1.0
        char_rows = torch.tensor([c for text in chars for c in text], dtype=torch.long).reshape(
            -1, 2
        )
        texts = texts if texts is not None else [None] * len(chars)
        joined = [
            f
            for text, c in zip(texts, chars, strict=True)
            for f in joined_tokens(text or "", [tuple(x) for x in c])
        ]
        tokens = TokenPool(
            standardise(flat, stats=stats).to(device), offsets.to(device), tags.to(device), len(self.labels),
            chars=char_rows.to(device), stats=stats, joined=torch.tensor(joined, dtype=torch.bool).to(device),
        )  # fmt: skip
        return targets.to(device), tokens

    def predict(
        self, result, candidates: torch.Tensor, texts: list[str | None]
    ) -> tuple[list, list, list]:
        """Per candidate: its predicted spans as keys (``start:end:label``), each span's
        confidence, and the probability of the whole decoded path (the product of its tokens'
        tag probabilities). Nothing in a cold start."""
        m = candidates.numel()
        if result.model is None or result.parts is None:
            return [[] for _ in range(m)], [[] for _ in range(m)], []
        tokens: TokenPool = result.parts
        assert tokens.probs is not None and tokens.path is not None and tokens.chars is not None
        chosen = tokens.probs.gather(1, tokens.path.unsqueeze(1)).squeeze(1).clamp_min(1e-12)  # [T]
        log_path = torch.zeros(tokens.num_texts).index_add_(
            0, tokens.item_of_token().cpu(), chosen.log().cpu()
        )
        picked, confidence = [], []
        for row in candidates.tolist():
            keys, scores = [], []
            for span in result.model.spans(tokens.probs, tokens.path, tokens.offsets, row):
                start = int(tokens.chars[int(tokens.offsets[row]) + span.start, 0])
                end = int(tokens.chars[int(tokens.offsets[row]) + span.end - 1, 1])
                keys.append(span_key((start, end, self.labels[span.label])))
                scores.append(round(span.score, 6))
            picked.append(keys)
            confidence.append(scores)
        certainty = [round(float(v), 6) for v in log_path[candidates.cpu()].exp().tolist()]
        return picked, confidence, certainty

    def names(self, picked: list[str], text: str | None = None) -> list[str]:
        out = []
        for key in picked:
            start, end, label = parse_span_key(key)
            out.append(f"{text[start:end]!r} {label}" if isinstance(text, str) else label)
        return out

    def annotation_spans(self, annotation: dict, text: str) -> tuple[list[CharSpan] | None, str]:
        """The spans an annotation gives ``text`` for our tag, or (None, why it is unusable).
        An annotation without any of our regions says "no entity here": an empty list."""
        result = annotation.get("result")
        spans: list[CharSpan] = []
        for region in result if isinstance(result, list) else []:
            if not isinstance(region, dict) or region.get("from_name") != self.from_name:
                continue
            value = region.get("value")
            if not isinstance(value, dict):
                return None, "a span region without a value"
            start, end, labels = value.get("start"), value.get("end"), value.get("labels")
            if type(start) is not int or type(end) is not int or not 0 <= start < end <= len(text):
                return (
                    None,
                    f"span offsets {start!r}..{end!r} outside the text of {len(text)} characters",
                )
            if not isinstance(labels, list) or not labels:
                return None, "a span region without a label"
            if labels[0] not in self.labels:
                return None, f"unknown label {labels[0]!r}"
            spans.append((start, end, str(labels[0])))
        return sorted(set(spans)), ""

    def shown(
        self, picked: list[str], confidence: list[float], settings
    ) -> tuple[list[str], list[float]]:
        """The predicted spans annotators see: those whose confidence is at least
        ``AUTOAL_SPAN_MIN_SCORE`` (``settings.span_min_score``), with their confidences."""
        kept = [
            (key, score)
            for key, score in zip(picked, confidence, strict=False)
            if score >= settings.span_min_score
        ]
        return [key for key, _ in kept], [score for _, score in kept]

    def result(self, picked: list[str], why: str = "", confidence: list[float] | None = None,
               text: str | None = None, min_score: float = 0.0) -> list[dict]:  # fmt: skip
        """Result regions for predicted span keys (``predict``) on ``text``, those whose
        confidence is at least ``min_score`` (a span the model doubts is one more region for
        the annotator to delete); no text, no region."""
        if not isinstance(text, str):
            return []
        scores = list(confidence or []) + [0.0] * len(picked)
        spans = []
        for key, score in zip(picked, scores, strict=False):
            start, end, label = parse_span_key(key)
            if score < min_score:
                continue
            if 0 <= start < end <= len(text):  # a ranking kept across an edited task
                spans.append((start, end, label, score))
        return self.regions(spans, text, why)

    def regions(
        self, spans: list[tuple[int, int, str, float]], text: str, why: str = ""
    ) -> list[dict]:
        """Label Studio result regions for predicted ``spans`` (start, end, label, confidence)
        of ``text``; ``why`` goes into the first region's ``meta.text`` (kept by Label Studio)."""
        regions = []
        for position, (start, end, label, score) in enumerate(spans):
            region: dict = {
                "from_name": self.from_name,
                "to_name": self.to_name,
                "type": "labels",
                "value": {"start": start, "end": end, "text": text[start:end], "labels": [label]},
                "score": float(score),
            }
            if why and position == 0:
                region["meta"] = {"text": [why]}
            regions.append(region)
        return regions


def span_key(span: CharSpan) -> str:
    """``start:end:label``: a span as the round history and the ranking store it."""
    start, end, label = span
    return f"{start}:{end}:{label}"


def parse_span_key(key: str) -> CharSpan:
    start, end, label = key.split(":", 2)
    return int(start), int(end), label


def agreed_spans(votes: list[list[CharSpan]]) -> tuple[list[CharSpan], int]:
    """The spans a task trains on from its annotations' ``votes`` (oldest first), and how many
    annotations differ from them."""
    n = len(votes)
    if n == 0:
        return [], 0
    counts: dict[CharSpan, int] = {}
    for vote in votes:
        for span in set(vote):
            counts[span] = counts.get(span, 0) + 1
    latest = set(votes[-1])
    agreed = sorted(s for s, k in counts.items() if 2 * k > n or (2 * k == n and s in latest))
    differing = sum(sorted(set(v)) != agreed for v in votes)
    return agreed, differing


def parse_span_config(config: str) -> SpanSpec:
    """The ``SpanSpec`` of a ``<Labels>`` config; UnsupportedConfigError names the problem."""
    interface = load_interface(config)
    labels_tags = [c for c in interface.controls if c.tag == "Labels"]
    if len(labels_tags) != 1:
        targets = sorted({t for c in labels_tags for t in c.to_name})
        raise UnsupportedConfigError(
            f"expected one <Labels> tag, got {len(labels_tags)} (on {', '.join(targets)}): each token "
            "can carry one entity type, so one <Labels> over one <Text> is supported"
        )
    control = labels_tags[0]
    if len(control.to_name) != 1:
        raise UnsupportedConfigError(
            f"<Labels name={control.name!r}> must point at one object, got toName={control.to_name}"
        )
    objects = {o.name: o for o in interface.objects}
    obj = objects.get(control.to_name[0])
    if obj is None:
        raise UnsupportedConfigError(
            f"<Labels name={control.name!r}> points at {control.to_name[0]!r}, which is not an object tag"
        )
    if obj.tag != "Text":
        raise UnsupportedConfigError(
            f"<Labels> over <{obj.tag}> is not supported: only <Labels> over <Text>"
        )
    value = obj.value or ""
    if not value.startswith("$") or len(value) < 2:
        raise UnsupportedConfigError(
            f"<Text name={obj.name!r}> must read a task field ($name), got value={value!r}"
        )
    if str(obj.attr.get("valueType", "")).lower() == "url":
        raise UnsupportedConfigError(
            f'<Text name={obj.name!r} valueType="url">: span offsets index the text itself, so span '
            "projects need the text in the task data, not a URL to it"
        )
    labels = tuple(control.labels)
    if not labels:
        raise UnsupportedConfigError(f"<Labels name={control.name!r}> needs at least 1 <Label>")
    if len(set(labels)) != len(labels):
        raise UnsupportedConfigError(f"<Labels name={control.name!r}> repeats a label value")
    return SpanSpec(from_name=control.name, to_name=obj.name, data_key=value[1:], labels=labels)
