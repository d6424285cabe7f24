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

from autoal_backend.label_config import UnsupportedConfigError, load_interface

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

    def class_index(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

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
                return None, f"span offsets {start!r}..{end!r} outside the text of {len(text)} characters"
            if not isinstance(labels, list) or not labels:
                return None, "a span region without a label"
            if labels[0] not in self.labels:
                return None, f"unknown label {labels[0]!r}"
            spans.append((start, end, str(labels[0])))
        return sorted(set(spans)), ""

    def regions(self, spans: list[tuple[int, int, str, float]], text: str, why: str = "") -> list[dict]:
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
        raise UnsupportedConfigError(f"<Labels name={control.name!r}> must point at one object, got toName={control.to_name}")
    objects = {o.name: o for o in interface.objects}
    obj = objects.get(control.to_name[0])
    if obj is None:
        raise UnsupportedConfigError(f"<Labels name={control.name!r}> points at {control.to_name[0]!r}, which is not an object tag")
    if obj.tag != "Text":
        raise UnsupportedConfigError(f"<Labels> over <{obj.tag}> is not supported: only <Labels> over <Text>")
    value = obj.value or ""
    if not value.startswith("$") or len(value) < 2:
        raise UnsupportedConfigError(f"<Text name={obj.name!r}> must read a task field ($name), got value={value!r}")
    if str(obj.attr.get("valueType", "")).lower() == "url":
        raise UnsupportedConfigError(
            f"<Text name={obj.name!r} valueType=\"url\">: span offsets index the text itself, so span "
            "projects need the text in the task data, not a URL to it"
        )
    labels = tuple(control.labels)
    if not labels:
        raise UnsupportedConfigError(f"<Labels name={control.name!r}> needs at least 1 <Label>")
    if len(set(labels)) != len(labels):
        raise UnsupportedConfigError(f"<Labels name={control.name!r}> repeats a label value")
    return SpanSpec(from_name=control.name, to_name=obj.name, data_key=value[1:], labels=labels)
