"""Choices projects on the Label Studio side: one ``<Choices>`` over one ``<Image>`` or ``<Text>``.

Parsed with label-studio-sdk's ``LabelInterface``, so tag and field names are free
(``$image``, ``$text``, ``$whatever``). An annotation's answer is its list of choice values;
a task trains on the answer most annotators gave (``agreed_choices``); a prediction is one
region per answer (one per label for multi-choice) with the model's probability as ``score``.
"""

from dataclasses import dataclass

import numpy as np
import torch

from autoal_backend.label_config import UnsupportedConfigError, load_interface

OBJECT_MODALITY = {"Image": "image", "Text": "text"}


@dataclass(frozen=True)
class LabelSpec:
    """What the backend needs from a label config.

    Attributes:
        from_name: the ``<Choices>`` tag's name (``from_name`` of results).
        to_name: the object tag's name (``to_name`` of results).
        data_key: the task data field the object reads (``$image`` -> ``image``).
        modality: ``image`` or ``text``.
        labels: the choice values in config order; class index i is ``labels[i]``.
        multilabel: True for ``choice="multiple"``.
        value_type: the object's ``valueType`` (``url`` means text is fetched from a URL).
    """

    from_name: str
    to_name: str
    data_key: str
    modality: str
    labels: tuple[str, ...]
    multilabel: bool
    value_type: str = ""
    kind = "choices"
    parts = None

    def class_index(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    # --- the kind's hooks (autoal_backend.kinds.ProjectSpec) --------------------------------
    def vote(self, annotation: dict, text: str | None = None) -> tuple[list[str] | None, str]:
        return annotation_vote(annotation, self)

    def agree(self, votes: list[list[str]]) -> list[str]:
        return agreed_choices(votes, self)

    def keys(self, answer: list[str]) -> list[str]:
        return list(answer)

    def counts(self, answer: list[str]) -> dict[str, int]:
        return {label: 1 for label in answer}

    def targets(self, answers: list[list[str] | None], parts: list | None, device: torch.device,
                texts: list[str | None] | None = None) -> tuple[torch.Tensor, None]:  # fmt: skip
        """[N, C] one-hot (multi-hot) rows of the labeled tasks, zeros elsewhere."""
        index = self.class_index()
        targets = torch.zeros(len(answers), len(self.labels))
        for row, answer in enumerate(answers):
            for choice in answer or []:
                targets[row, index[choice]] = 1.0
        return targets.to(device), None

    def predict(
        self, result, candidates: torch.Tensor, texts: list[str | None]
    ) -> tuple[list, list, list]:
        """Per candidate: the guess, its confidence per region, the certainty of the whole."""
        return predicted_choices(result.probs, candidates, self)

    def shown(
        self, picked: list[str], confidence: list[float], settings
    ) -> tuple[list[str], list[float]]:
        """The guess annotators see: all of it (a choice is shown whatever its confidence)."""
        return picked, confidence

    def names(self, picked: list[str], text: str | None = None) -> list[str]:
        return list(picked)

    def result(
        self,
        choices: list[str],
        why: str = "",
        confidence: list[float] | None = None,
        text: str | None = None,
        min_score: float = 0.0,
    ) -> list[dict]:
        """A Label Studio result list selecting ``choices`` (empty list: no region); the guess is
        always shown whatever its confidence (``min_score`` is for span projects).

        Each region carries the model's probability for its choice as ``score`` (given in
        ``confidence``, one per choice); a multi-choice answer is one region per chosen label,
        each with its own score. ``why`` goes into the first region's ``meta.text``: Label
        Studio keeps a result region's extra fields (checked on 1.23.2) but drops unknown
        top-level prediction fields.
        """
        if not choices:
            return []
        groups = [[c] for c in choices] if self.multilabel else [list(choices)]
        scores = list(confidence) if confidence is not None else []
        regions = []
        for position, group in enumerate(groups):
            region: dict = {
                "from_name": self.from_name,
                "to_name": self.to_name,
                "type": "choices",
                "value": {"choices": group},
            }
            if position < len(scores):
                region["score"] = float(scores[position])
            if why and position == 0:
                region["meta"] = {"text": [why]}
            regions.append(region)
        return regions


def parse_choices_config(config: str) -> LabelSpec:
    """The ``LabelSpec`` of a ``<Choices>`` config (XML); UnsupportedConfigError names the
    problem. ``autoal_backend.kinds.parse_label_config`` reads a config of any kind."""
    interface = load_interface(config)
    controls = list(interface.controls)
    choices = [c for c in controls if c.tag == "Choices"]
    others = sorted({c.tag for c in controls if c.tag != "Choices"})
    if others:
        raise UnsupportedConfigError(
            f"unsupported control tag(s) {', '.join(others)}: only one <Choices> over one "
            "<Image> or <Text> is supported"
        )
    if len(choices) != 1:
        raise UnsupportedConfigError(
            f"expected exactly one <Choices> tag, got {len(choices)}: only one <Choices> over "
            "one <Image> or <Text> is supported"
        )
    control = choices[0]
    if len(control.to_name) != 1:
        raise UnsupportedConfigError(
            f"<Choices name={control.name!r}> must point at one object, got toName={control.to_name}"
        )
    target = control.to_name[0]
    objects = {o.name: o for o in interface.objects}
    if target not in objects:
        raise UnsupportedConfigError(
            f"<Choices name={control.name!r}> points at {target!r}, which is not an object tag"
        )
    obj = objects[target]
    if obj.tag not in OBJECT_MODALITY:
        raise UnsupportedConfigError(
            f"unsupported object tag <{obj.tag}>: only <Image> and <Text> are supported"
        )
    value = obj.value or ""
    if not value.startswith("$") or len(value) < 2:
        raise UnsupportedConfigError(
            f"<{obj.tag} name={obj.name!r}> must read a task field ($name), got value={value!r}"
        )
    labels = tuple(control.labels)
    if len(labels) < 2:
        raise UnsupportedConfigError(
            f"<Choices name={control.name!r}> needs at least 2 <Choice> values, got {len(labels)}"
        )
    if len(set(labels)) != len(labels):
        raise UnsupportedConfigError(f"<Choices name={control.name!r}> repeats a choice value")
    mode = str(control.attr.get("choice", "single")).lower()
    if mode not in {"single", "single-radio", "multiple"}:
        raise UnsupportedConfigError(
            f"<Choices choice={mode!r}> is not supported: use single, single-radio or multiple"
        )
    return LabelSpec(
        from_name=control.name,
        to_name=obj.name,
        data_key=value[1:],
        modality=OBJECT_MODALITY[obj.tag],
        labels=labels,
        multilabel=mode == "multiple",
        value_type=str(obj.attr.get("valueType", "")).lower(),
    )


def annotation_choices(annotation: dict, spec: LabelSpec) -> list[str] | None:
    """The choices an annotation gives for our ``<Choices>`` tag; None when it gives none."""
    result = annotation.get("result")
    for region in result if isinstance(result, list) else []:
        if not isinstance(region, dict) or region.get("from_name") != spec.from_name:
            continue
        value = region.get("value")
        choices = value.get("choices") if isinstance(value, dict) else None
        if isinstance(choices, list):
            return [str(c) for c in choices]
    return None


def annotation_vote(annotation: dict, spec: LabelSpec) -> tuple[list[str] | None, str]:
    """One annotation's answer for our tag, or (None, why it is not a usable vote)."""
    choices = annotation_choices(annotation, spec)
    if choices is None and spec.multilabel:
        choices = []  # a multi-choice annotation with nothing ticked: "none of these"
    if choices is None:
        return None, "annotated without a choice"
    index = spec.class_index()
    unknown = [c for c in choices if c not in index]
    if unknown:
        return None, f"unknown choice(s) {unknown}"
    if not spec.multilabel and len(choices) != 1:
        return None, f"{len(choices)} choices in a single-choice task"
    return choices, ""


def agreed_choices(votes: list[list[str]], spec: LabelSpec) -> list[str]:
    """The label a task trains on from its annotations' ``votes`` (oldest first).

    Single-choice: the choice most annotators gave; a tie goes to the most recent annotation
    among the tied choices. Multi-choice: each label on which more than half agree; a label
    with exactly half follows the most recent annotation. One vote is simply that vote.
    """
    n = len(votes)
    if spec.multilabel:
        agreed = []
        for label in spec.labels:
            count = sum(label in vote for vote in votes)
            if 2 * count > n or (2 * count == n and label in votes[-1]):
                agreed.append(label)
        return agreed
    counts: dict[str, int] = {}
    for vote in votes:
        counts[vote[0]] = counts.get(vote[0], 0) + 1
    top = max(counts.values())
    tied = {c for c, k in counts.items() if k == top}
    return next([vote[0]] for vote in reversed(votes) if vote[0] in tied)


def predicted_choices(
    probs: torch.Tensor | None, candidates: torch.Tensor, spec: LabelSpec
) -> tuple[list[list[str]], list[list[float]], list[float]]:
    """Per candidate, the model's guess, its probability for each chosen label, and its
    probability that the whole guess is right: the top class (single-choice), or every label
    above 0.5 with the product over labels of max(p, 1 - p) (multi-choice). Nothing in a cold
    start."""
    m = candidates.numel()
    if probs is None:
        return [[] for _ in range(m)], [[] for _ in range(m)], []
    rows = probs[candidates].cpu().double().numpy()  # [M, C]; numpy: no per-row tensor objects
    if spec.multilabel:
        chosen = [np.flatnonzero(row > 0.5) for row in rows]
        confidence = [np.round(row[js], 6).tolist() for row, js in zip(rows, chosen, strict=True)]
        certainty = np.maximum(rows, 1 - rows).prod(axis=1)
        picked = [[spec.labels[j] for j in js.tolist()] for js in chosen]
    else:
        top = rows.argmax(axis=1)  # [M]
        certainty = rows[np.arange(len(rows)), top]
        picked = [[spec.labels[j]] for j in top.tolist()]
        confidence = [[c] for c in np.round(certainty, 6).tolist()]
    return picked, confidence, np.round(certainty, 6).tolist()
