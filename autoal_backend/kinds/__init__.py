"""The Label Studio side of task kinds: which kind a label config is, and for each kind how
its annotations become training answers and its predictions become result regions.

``parse_label_config`` reads any config and returns the spec of the kind it belongs to
(``LabelSpec`` for ``<Choices>``, ``SpanSpec`` for ``<Labels>`` over ``<Text>``), or raises
``UnsupportedConfigError`` naming what no kind can learn from. The ML side of each kind is in
``model.kinds``.
"""

from collections.abc import Callable
from typing import Any, Protocol

import torch

from autoal_backend.kinds.boxes import OTHER_REGIONS, parse_box_config
from autoal_backend.kinds.choices import parse_choices_config
from autoal_backend.kinds.spans import parse_span_config
from autoal_backend.label_config import UnsupportedConfigError, load_interface


class ProjectSpec(Protocol):
    """What the round loop asks a project's kind; it never asks which kind it holds.

    Attributes:
        kind: the ML kind (``model.kinds``) the pool is built for.
        data_key: the task data field the object tag reads; ``modality`` ``image`` or ``text``.
        labels: the classes or entity types, in config order.
        parts: what the pool needs of each item beyond one vector: ``tokens`` (a text's token
            states, spans), ``maps`` (an image's feature map, boxes), or None.
    """

    @property
    def kind(self) -> str: ...
    @property
    def from_name(self) -> str: ...
    @property
    def to_name(self) -> str: ...
    @property
    def data_key(self) -> str: ...
    @property
    def modality(self) -> str: ...
    @property
    def labels(self) -> tuple[str, ...]: ...
    @property
    def multilabel(self) -> bool: ...
    @property
    def value_type(self) -> str: ...
    @property
    def parts(self) -> str | None: ...

    def vote(self, annotation: dict, text: str | None = None) -> tuple[Any, str]:
        """One annotation's answer, or (None, why it is unusable)."""
        ...

    def agree(self, votes: list) -> Any:
        """The answer a task trains on from its annotations' votes (oldest first)."""
        ...

    def keys(self, answer: Any) -> list[str]:
        """An answer as strings: compared, tallied and stored in the ranking."""
        ...

    def counts(self, answer: Any) -> dict[str, int]:
        """Labels per class (entities per type) that an answer adds."""
        ...

    def targets(self, answers: list, parts: list | None, device: torch.device,
                texts: list[str | None] | None = None) -> tuple[torch.Tensor, Any]:  # fmt: skip
        """[N, C] pool targets of the answers (None = unlabeled), and the kind's pool parts
        (``texts``: each task's text, where the kind reads it)."""
        ...

    def predict(
        self, result: Any, candidates: torch.Tensor, texts: list[str | None]
    ) -> tuple[list, list, list]:
        """Per candidate: the guess as keys, a confidence per region, the certainty of the
        whole guess (empty in a cold start)."""
        ...

    def shown(
        self, picked: list[str], confidence: list[float], settings: Any
    ) -> tuple[list[str], list[float]]:
        """The part of a guess annotators see, and its confidences, as the project's
        ``settings`` say (a span kind leaves out the spans below ``AUTOAL_SPAN_MIN_SCORE``, a
        box kind the boxes below ``AUTOAL_BOX_MIN_SCORE`` and beyond ``AUTOAL_MAX_BOXES``)."""
        ...

    def names(self, picked: list[str], text: str | None = None) -> list[str]:
        """The guess in words, for the prediction's one-line reason."""
        ...

    def result(self, picked: list[str], why: str = "", confidence: list[float] | None = None,
               text: str | None = None) -> list[dict]:  # fmt: skip
        """Label Studio result regions for a guess (what ``shown`` kept of it)."""
        ...


# Control tag -> the parser of the kind that owns it.
PARSERS: dict[str, Callable[[str], ProjectSpec]] = {
    "Choices": parse_choices_config,
    "Labels": parse_span_config,
    "RectangleLabels": parse_box_config,
}
SUPPORTED = (
    "<Choices> over one <Image> or <Text>, one <Labels> over one <Text>, or one "
    "<RectangleLabels> over one <Image>"
)


def parse_label_config(config: str) -> ProjectSpec:
    """The spec of the kind that ``config`` (XML) belongs to; UnsupportedConfigError names the
    problem (unknown control tags, two kinds in one config, an invalid config)."""
    interface = load_interface(config)
    tags = sorted({c.tag for c in interface.controls})
    known = [t for t in tags if t in PARSERS]
    unknown = [t for t in tags if t not in PARSERS]
    if unknown:
        named = ", ".join(f"{t} ({OTHER_REGIONS[t]})" if t in OTHER_REGIONS else t for t in unknown)
        raise UnsupportedConfigError(
            f"unsupported control tag(s) {named}: this backend cannot learn from them; supported "
            f"are one {SUPPORTED}"
        )
    if not known:
        raise UnsupportedConfigError(f"expected exactly one {SUPPORTED}; got no control tag")
    if len(known) != 1:
        raise UnsupportedConfigError(
            f"control tags {', '.join(known)}: a project must hold one kind, one {SUPPORTED}"
        )
    return PARSERS[known[0]](config)
