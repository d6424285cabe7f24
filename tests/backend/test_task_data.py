import base64

import pytest

from autoal_backend.kinds import parse_label_config
from autoal_backend.task_data import TaskDataError, content_key, decode_data_uri, load_item
from tests.backend.fakes import IMAGE_CONFIG, LS_URL, TEXT_CONFIG, FakeLabelStudio, png_bytes

IMAGE = parse_label_config(IMAGE_CONFIG)
TEXT = parse_label_config(TEXT_CONFIG)


def test_data_uri_image_decodes_to_rgb():
    uri = "data:image/png;base64," + base64.b64encode(png_bytes((10, 20, 30))).decode()
    image = load_item({"id": 1, "data": {"image": uri}}, IMAGE)
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (10, 20, 30)


def test_data_uri_without_base64_is_percent_decoded():
    assert decode_data_uri("data:text/plain,hello%20world") == b"hello world"


def test_text_is_inline():
    assert load_item({"id": 1, "data": {"text": "good film"}}, TEXT) == "good film"


def test_label_studio_path_is_fetched_with_auth():
    ls = FakeLabelStudio()
    ls.files["a.png"] = png_bytes((1, 2, 3))
    from autoal_backend.ls_client import LabelStudioClient

    client = LabelStudioClient(LS_URL, ls.token, session=ls.session())
    image = load_item(
        {"id": 1, "data": {"image": "/data/upload/a.png"}},
        IMAGE,
        label_studio_url=LS_URL,
        headers_for=client.headers_for,
        session=client.session,
    )
    assert image.getpixel((0, 0)) == (1, 2, 3)
    # Without the token Label Studio refuses: the task is skipped with the status.
    with pytest.raises(TaskDataError, match="HTTP 401"):
        load_item(
            {"id": 1, "data": {"image": "/data/upload/a.png"}},
            IMAGE,
            label_studio_url=LS_URL,
            session=client.session,
        )


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"image": "s3://bucket/a.png"}, "unsupported reference"),
        ({"image": "http://127.0.0.1:9/nothing.png"}, "cannot fetch"),
        ({"image": "data:image/png;base64,@@@"}, "invalid base64"),
        (
            {"image": "data:image/png;base64," + base64.b64encode(b"not a png").decode()},
            "not a readable image",
        ),
        ({"picture": "x"}, "no field 'image'"),
        ({"image": 5}, "non-empty string"),
        ({"image": "/data/upload/a.png"}, "LABEL_STUDIO_URL is not set"),
    ],
)
def test_unreadable_data_raises_task_data_error(data, words):
    with pytest.raises(TaskDataError, match=words.replace("(", r"\(")):
        load_item({"id": 1, "data": data}, IMAGE)


def test_content_key_depends_on_modality_and_value():
    assert content_key("a", TEXT) != content_key("b", TEXT)
    assert content_key("a", TEXT) != content_key("a", IMAGE)
    assert len(content_key("a", TEXT)) == 64
