"""The Label Studio side of task kinds: which kind a label config is, and for each kind how
its annotations become training answers and its predictions become result regions.

``parse_label_config`` reads any config and returns the spec of the kind it belongs to
(``LabelSpec`` for ``<Choices>``, ``SpanSpec`` for ``<Labels>`` over ``<Text>``), or raises
``UnsupportedConfigError`` naming what no kind can learn from. The ML side of each kind is in
``model.kinds``.
"""

from autoal_backend.kinds.spans import SpanSpec, parse_span_config
from autoal_backend.label_config import (
    LabelSpec,
    UnsupportedConfigError,
    load_interface,
    parse_choices_config,
)

# Control tag -> the parser of the kind that owns it.
PARSERS = {"Choices": parse_choices_config, "Labels": parse_span_config}


def parse_label_config(config: str) -> LabelSpec | SpanSpec:
    """The spec of the kind that ``config`` (XML) belongs to; UnsupportedConfigError names the
    problem (unknown control tags, two kinds in one config, an invalid config)."""
    interface = load_interface(config)
    tags = sorted({c.tag for c in interface.controls})
    known = [t for t in tags if t in PARSERS]
    unknown = [t for t in tags if t not in PARSERS]
    if unknown:
        raise UnsupportedConfigError(
            f"unsupported control tag(s) {', '.join(unknown)}: supported are one <Choices> over one "
            "<Image> or <Text>, or one <Labels> over one <Text>"
        )
    if len(known) != 1:
        raise UnsupportedConfigError(
            f"control tags {', '.join(known) or 'none'}: a project must hold one kind, one <Choices> "
            "over one <Image> or <Text>, or one <Labels> over one <Text>"
        )
    return PARSERS[known[0]](config)
