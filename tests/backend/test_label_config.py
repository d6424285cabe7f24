import pytest

from autoal_backend.kinds import parse_label_config
from autoal_backend.label_config import UnsupportedConfigError


def test_single_choice_over_text_with_any_field_name():
    spec = parse_label_config(
        '<View><Text name="review" value="$whatever"/>'
        '<Choices name="mood" toName="review"><Choice value="happy"/><Choice value="sad"/>'
        '<Choice value="meh"/></Choices></View>'
    )
    assert (spec.from_name, spec.to_name, spec.data_key, spec.modality) == (
        "mood",
        "review",
        "whatever",
        "text",
    )
    assert spec.labels == ("happy", "sad", "meh") and spec.multilabel is False
    assert spec.class_index() == {"happy": 0, "sad": 1, "meh": 2}


def test_multiple_choice_over_image_uses_aliases_in_config_order():
    spec = parse_label_config(
        '<View><Header value="Pick"/><Image name="photo" value="$img"/>'
        '<Choices name="tags" toName="photo" choice="multiple">'
        '<Choice value="Cat" alias="cat"/><Choice value="Dog"/></Choices></View>'
    )
    assert spec.modality == "image" and spec.data_key == "img" and spec.multilabel is True
    assert spec.labels == ("cat", "Dog")
    assert spec.result(["cat"]) == [
        {"from_name": "tags", "to_name": "photo", "type": "choices", "value": {"choices": ["cat"]}}
    ]
    assert spec.result([]) == []


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ("", "empty"),
        ("<View><Text name='t' value='$t'/>", "not valid XML"),
        (
            "<View><Image name='i' value='$i'/><KeyPointLabels name='r' toName='i'>"
            "<Label value='a'/></KeyPointLabels></View>",
            "KeyPointLabels (key points)",
        ),
        (
            "<View><Audio name='a' value='$a'/><Choices name='c' toName='a'>"
            "<Choice value='x'/><Choice value='y'/></Choices></View>",
            "<Audio>",
        ),
        ("<View><Text name='t' value='$t'/></View>", "exactly one <Choices>"),
        (
            "<View><Text name='t' value='$t'/><Choices name='c' toName='t'><Choice value='x'/>"
            "<Choice value='y'/></Choices><Choices name='d' toName='t'><Choice value='x'/>"
            "<Choice value='y'/></Choices></View>",
            "got 2",
        ),
        (
            "<View><Text name='t' value='$t'/><Choices name='c' toName='t'><Choice value='x'/>"
            "</Choices></View>",
            "at least 2",
        ),
        (
            "<View><Text name='t' value='$t'/><Choices name='c' toName='t'><Choice value='x'/>"
            "<Choice value='y'/></Choices><TextArea name='n' toName='t'/></View>",
            "TextArea",
        ),
        (
            "<View><Text name='t' value='plain'/><Choices name='c' toName='t'><Choice value='x'/>"
            "<Choice value='y'/></Choices></View>",
            "$name",
        ),
    ],
)
def test_unsupported_configs_name_the_problem(config, words):
    with pytest.raises(UnsupportedConfigError) as error:
        parse_label_config(config)
    assert words in str(error.value)
