"""The span kind on the Label Studio side: configs recognised or refused by name, annotation
offsets read exactly, agreement across annotators, result regions whose text is the slice."""

import pytest

from autoal_backend.kinds import parse_label_config
from autoal_backend.kinds.choices import LabelSpec
from autoal_backend.kinds.spans import SpanSpec, agreed_spans
from autoal_backend.label_config import UnsupportedConfigError
from autoal_backend.settings import Settings

NER = """<View><Labels name="ent" toName="tweet"><Label value="person"/><Label value="place"/></Labels>
<Text name="tweet" value="$content"/></View>"""


def test_a_labels_config_with_any_names_is_a_span_project():
    spec = parse_label_config(NER)
    assert isinstance(spec, SpanSpec) and spec.kind == "spans"
    assert (spec.from_name, spec.to_name, spec.data_key, spec.labels) == (
        "ent",
        "tweet",
        "content",
        ("person", "place"),
    )


def test_a_choices_config_is_still_a_choices_project():
    spec = parse_label_config(
        '<View><Text name="t" value="$t"/><Choices name="c" toName="t"><Choice value="a"/><Choice value="b"/></Choices></View>'
    )
    assert isinstance(spec, LabelSpec) and spec.kind == "choices"


@pytest.mark.parametrize(
    ("config", "named"),
    [
        (
            NER.replace(
                "</View>", '<Labels name="e2" toName="tweet"><Label value="x"/></Labels></View>'
            ),
            "expected one <Labels>",
        ),
        (
            NER.replace(
                '<Text name="tweet" value="$content"/>',
                '<Text name="tweet" value="$content" valueType="url"/>',
            ),
            "valueType",
        ),
        (
            NER.replace("<Text ", "<HyperText ").replace(
                'value="$content"/>', 'value="$content"/>'
            ),
            "over <HyperText>",
        ),
        (
            NER.replace(
                "</View>", '<Choices name="c" toName="tweet"><Choice value="a"/></Choices></View>'
            ),
            "one kind",
        ),
        (
            '<View><Image name="i" value="$i"/><PolygonLabels name="p" toName="i"><Label value="a"/></PolygonLabels></View>',
            "PolygonLabels",
        ),
    ],
)
def test_configs_no_kind_can_learn_from_are_refused_by_name(config, named):
    with pytest.raises(UnsupportedConfigError, match=named):
        parse_label_config(config)


def region(start, end, label="person", name="ent"):
    return {
        "from_name": name,
        "to_name": "tweet",
        "type": "labels",
        "value": {"start": start, "end": end, "labels": [label]},
    }


def test_annotation_offsets_are_read_exactly_unicode_included():
    spec = parse_label_config(NER)
    text = "😀 Zoë  met\tJosé in São Paulo"
    start = text.index("José")
    spans, reason = spec.annotation_spans(
        {"result": [region(start, start + 4), region(text.index("São"), len(text), "place")]}, text
    )
    assert reason == "" and [text[a:b] for a, b, _ in spans] == ["José", "São Paulo"]
    assert spec.annotation_spans({"result": []}, text) == ([], "")
    assert spec.annotation_spans({"result": [region(3, 99)]}, text)[0] is None
    assert "unknown label" in spec.annotation_spans({"result": [region(0, 1, "org")]}, text)[1]


def test_result_regions_carry_the_exact_slice_and_a_score():
    spec = parse_label_config(NER)
    text = "  Zoë\u00a0Smith lives in\nOslo "
    regions = spec.regions(
        [(2, 11, "person", 0.8), (text.index("Oslo"), text.index("Oslo") + 4, "place", 0.6)],
        text,
        "why",
    )
    assert [r["value"]["text"] for r in regions] == ["Zoë\u00a0Smith", "Oslo"]
    assert (
        regions[0]["type"] == "labels"
        and regions[0]["score"] == 0.8
        and regions[0]["meta"] == {"text": ["why"]}
    )
    assert "meta" not in regions[1]
    assert all(text[r["value"]["start"] : r["value"]["end"]] == r["value"]["text"] for r in regions)


def test_agreement_is_a_majority_per_span_ties_to_the_latest():
    a, b, c = (0, 3, "person"), (5, 9, "place"), (5, 9, "person")
    assert agreed_spans([[a, b], [a, b], [a, c]]) == ([a, b], 1)
    assert agreed_spans([[a, b], [a, c]]) == ([a, c], 1)  # a tie: the latest annotation
    assert agreed_spans([[a]]) == ([a], 0)
    assert agreed_spans([]) == ([], 0)


def test_regions_below_the_minimum_score_are_left_out():
    spec = parse_label_config(NER)
    text = "Anna met Bob in Oslo"
    picked = ["0:4:person", "9:12:person", "16:20:place"]
    shown = spec.result(picked, "why", [0.9, 0.3, 0.5], text, min_score=0.5)
    assert [r["value"]["text"] for r in shown] == ["Anna", "Oslo"]
    assert shown[0]["meta"] == {"text": ["why"]}
    assert len(spec.result(picked, "", [0.9, 0.3, 0.5], text)) == 3


def test_the_spans_shown_are_those_at_or_above_the_minimum_score():
    spec = parse_label_config(NER)
    strict, lenient = Settings(span_min_score=0.5), Settings(span_min_score=0.0)
    assert spec.shown(["0:4:person", "9:12:person"], [0.9, 0.3], strict) == (["0:4:person"], [0.9])
    assert spec.shown(["0:4:person"], [0.9], lenient) == (["0:4:person"], [0.9])
