"""Label configs the backend can learn from: one ``<Choices>`` over one ``<Image>`` or ``<Text>``.

Parsed with label-studio-sdk's ``LabelInterface``, so tag and field names are free
(``$image``, ``$text``, ``$whatever``). Anything else is rejected with a message that names
what is unsupported, so /setup can answer 4xx instead of failing at the first round.
"""

from dataclasses import dataclass

from label_studio_sdk.label_interface import LabelInterface

OBJECT_MODALITY = {"Image": "image", "Text": "text"}


class UnsupportedConfigError(ValueError):
    """A label config this backend cannot learn from; the message says why."""


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

    def class_index(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    def result(
        self, choices: list[str], why: str = "", confidence: list[float] | None = None
    ) -> list[dict]:
        """A Label Studio result list selecting ``choices`` (empty list: no region).

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


def load_interface(config: str) -> LabelInterface:
    """The SDK's view of a label config; UnsupportedConfigError when it is empty or not XML."""
    if not isinstance(config, str) or not config.strip():
        raise UnsupportedConfigError("label config is empty")
    try:
        return LabelInterface(config)
    except Exception as exc:  # the SDK raises several kinds on bad XML
        raise UnsupportedConfigError(f"label config is not valid XML: {exc}") from None


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


# The service serves choices projects; span projects are read by the harness
# (``autoal_backend.kinds.parse_label_config``) until the round loop serves them too.
parse_label_config = parse_choices_config
