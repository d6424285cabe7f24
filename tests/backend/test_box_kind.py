"""The box kind on the Label Studio side: its config, rectangles to boxes (percent, pixels,
rotation, non-square and EXIF-rotated images), agreement between annotators, result regions."""

import io

import pytest
import torch
from PIL import Image

from autoal_backend.kinds import parse_label_config
from autoal_backend.kinds.boxes import BoxSpec, agreed_boxes, box_key, parse_box_key, upright
from autoal_backend.label_config import UnsupportedConfigError
from autoal_backend.settings import Settings
from autoal_backend.task_data import decode_image

CONFIG = (
    '<View><Image name="photo" value="$picture"/><RectangleLabels name="things" toName="photo">'
    '<Label value="car"/><Label value="person"/></RectangleLabels></View>'
)


def rect(x, y, w, h, label="car", rotation=0, size=(200, 100), from_name="things") -> dict:
    return {"from_name": from_name, "to_name": "photo", "type": "rectanglelabels",
            "original_width": size[0], "original_height": size[1],
            "value": {"x": x, "y": y, "width": w, "height": h, "rotation": rotation, "rectanglelabels": [label]}}  # fmt: skip


def test_a_rectangle_config_with_any_names_is_a_box_project():
    spec = parse_label_config(CONFIG)
    assert isinstance(spec, BoxSpec)
    assert (spec.from_name, spec.to_name, spec.data_key, spec.labels) == (
        "things",
        "photo",
        "picture",
        ("car", "person"),
    )
    assert spec.kind == "boxes" and spec.modality == "image" and spec.parts == "maps"


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ('<View><Image name="i" value="$i"/><PolygonLabels name="p" toName="i"><Label value="a"/></PolygonLabels></View>',
         "PolygonLabels (polygons)"),
        ('<View><Image name="i" value="$i"/><KeyPointLabels name="p" toName="i"><Label value="a"/></KeyPointLabels></View>',
         "KeyPointLabels (key points)"),
        ('<View><Image name="i" value="$i"/><BrushLabels name="p" toName="i"><Label value="a"/></BrushLabels></View>',
         "BrushLabels (brush masks)"),
        ('<View><Image name="i" value="$i"/><RectangleLabels name="r" toName="i"><Label value="a"/></RectangleLabels>'
         '<PolygonLabels name="p" toName="i"><Label value="a"/></PolygonLabels></View>', "polygons"),
        ('<View><Text name="t" value="$t"/><RectangleLabels name="r" toName="t"><Label value="a"/></RectangleLabels></View>',
         "only <RectangleLabels> over <Image>"),
        ('<View><Image name="i" value="$i"/><RectangleLabels name="r" toName="i"><Label value="a"/></RectangleLabels>'
         '<RectangleLabels name="s" toName="i"><Label value="b"/></RectangleLabels></View>', "one <RectangleLabels>"),
        ('<View><Image name="i" value="$i"/><RectangleLabels name="r" toName="i"><Label value="a"/></RectangleLabels>'
         '<Choices name="c" toName="i"><Choice value="x"/><Choice value="y"/></Choices></View>', "one kind"),
        ('<View><Image name="i" value="https://x/a.png"/><RectangleLabels name="r" toName="i"><Label value="a"/>'
         "</RectangleLabels></View>", "must read a task field"),
    ],
)  # fmt: skip
def test_what_the_box_kind_cannot_learn_from_is_refused_by_name(config, words):
    with pytest.raises(UnsupportedConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        parse_label_config(config)


def test_rectangles_become_boxes_in_fractions_of_the_image():
    spec = parse_label_config(CONFIG)
    vote, why = spec.vote({"result": [rect(10, 20, 30, 40), rect(50, 0, 50, 100, "person")]})
    assert why == "" and vote == [(0.1, 0.2, 0.4, 0.6, "car"), (0.5, 0.0, 1.0, 1.0, "person")]
    assert spec.vote({"result": []}) == ([], "")  # "no object here"
    assert spec.vote({"result": [rect(10, 20, 30, 40, from_name="other")]}) == ([], "")
    assert spec.counts(vote) == {"car": 1, "person": 1}


@pytest.mark.parametrize(
    ("region", "words"),
    [
        (rect(10, 20, 30, 40, "bus"), "unknown label 'bus'"),
        (rect(80, 20, 30, 40), "outside the image"),
        (rect(10, 20, 0, 40), "sizes must be positive"),
        ({"from_name": "things", "value": {"x": "1", "y": 2, "width": 3, "height": 4, "rectanglelabels": ["car"]}},
         "numeric"),
        ({"from_name": "things", "value": {"x": 1, "y": 2, "width": 3, "height": 4}}, "without a label"),
    ],
)  # fmt: skip
def test_an_unusable_rectangle_says_why(region, words):
    vote, why = parse_label_config(CONFIG).vote({"result": [region]})
    assert vote is None and words in why


def test_a_rotated_rectangle_trains_as_the_upright_box_around_it_turned_in_pixels():
    # 200 x 100 pixels: a 20 x 20 percent box at (50, 10) is 40 x 20 pixels; turned 90 degrees
    # clockwise about its top-left corner it covers x 80..100 px (40..50 %) and y 10..50 px.
    assert upright(50, 10, 20, 20, 90, 200, 100) == pytest.approx((40.0, 10.0, 50.0, 50.0))
    # without the image's size, the turn is made in percent
    assert upright(50, 10, 20, 20, 90) == pytest.approx((30.0, 10.0, 50.0, 30.0))
    assert upright(50, 10, 20, 20, 360, 200, 100) == (50, 10, 70, 30)
    x0, y0, x1, y1 = upright(50, 50, 20, 10, 45, 100, 100)
    assert x0 < 50 < x1 and y0 == pytest.approx(50) and x1 - x0 > 20
    vote, _ = parse_label_config(CONFIG).vote({"result": [rect(50, 10, 20, 20, rotation=90)]})
    assert vote == [(0.4, 0.1, 0.5, 0.5, "car")]


def test_annotators_agree_on_overlapping_boxes_of_the_same_label():
    a = (0.1, 0.1, 0.3, 0.3, "car")
    a_moved = (0.12, 0.1, 0.32, 0.3, "car")  # IoU about .82 with a
    b = (0.5, 0.5, 0.9, 0.9, "person")
    b_wrong = (0.5, 0.5, 0.9, 0.9, "car")
    assert agreed_boxes([[a, b], [a_moved, b]]) == ([a_moved, b], 0)
    assert agreed_boxes([[a, b], [a, b_wrong], [a, b]]) == ([a, b], 1)
    assert agreed_boxes([[a, b], [a]]) == ([a], 1)  # a tie: the latest annotation's box is kept
    assert agreed_boxes([[a], [a, b]]) == ([a, b], 1)
    assert agreed_boxes([]) == ([], 0)


def test_predicted_boxes_become_rectanglelabels_regions():
    spec = parse_label_config(CONFIG)
    keys = [
        box_key((0.1, 0.2, 0.4, 0.6, "car"), 640, 480),
        box_key((0.5, 0.5, 0.6, 0.9, "person"), 640, 480),
    ]
    assert parse_box_key(keys[0]) == (0.1, 0.2, 0.4, 0.6, "car", 640, 480)
    regions = spec.result(keys, "why", [0.9, 0.4])
    assert regions[0] == {
        "from_name": "things", "to_name": "photo", "type": "rectanglelabels",
        "value": {"x": 10.0, "y": 20.0, "width": 30.0, "height": 40.0, "rotation": 0, "rectanglelabels": ["car"]},
        "score": 0.9, "original_width": 640, "original_height": 480, "image_rotation": 0, "meta": {"text": ["why"]},
    }  # fmt: skip
    assert "meta" not in regions[1] and regions[1]["value"]["rectanglelabels"] == ["person"]
    assert spec.names(keys) == ["car", "person"]
    label_with_spaces = box_key((0.0, 0.0, 1.0, 1.0, "traffic light"))
    assert parse_box_key(label_with_spaces)[4] == "traffic light"


def test_the_boxes_shown_follow_the_projects_settings():
    spec = parse_label_config(CONFIG)
    keys = ["k1", "k2", "k3"]
    assert spec.shown(keys, [0.9, 0.5, 0.2], Settings()) == (["k1", "k2"], [0.9, 0.5])
    assert spec.shown(keys, [0.9, 0.5, 0.2], Settings(max_boxes=1)) == (["k1"], [0.9])
    assert spec.shown(keys, [0.9, 0.5, 0.2], Settings(box_min_score=0.0)) == (keys, [0.9, 0.5, 0.2])


def test_box_settings_are_validated():
    with pytest.raises(ValueError, match="AUTOAL_MAX_BOXES"):
        Settings.from_env({"AUTOAL_MAX_BOXES": "0"})
    with pytest.raises(ValueError, match="AUTOAL_MAX_BOXES"):
        Settings.from_env({"AUTOAL_MAX_BOXES": "101"})
    with pytest.raises(ValueError, match="AUTOAL_BOX_MIN_SCORE"):
        Settings.from_env({"AUTOAL_BOX_MIN_SCORE": "1.5"})
    settings = Settings.from_env({"AUTOAL_MAX_BOXES": "5", "AUTOAL_BOX_MIN_SCORE": "0.6"})
    assert (settings.max_boxes, settings.box_min_score) == (5, 0.6)


def test_the_targets_hold_standardised_maps_boxes_and_sizes():
    spec = parse_label_config(CONFIG)
    maps = [torch.randn(4, 4, 3) for _ in range(3)]
    parts = [(m, (640, 480)) for m in maps]
    answers = [[(0.1, 0.2, 0.4, 0.6, "person")], None, []]
    targets, pool = spec.targets(answers, parts, torch.device("cpu"))
    assert targets.tolist() == [[0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]
    assert pool.boxes[1] is None and pool.boxes[2].shape == (0, 5)
    assert pool.boxes[0].tolist() == [
        [pytest.approx(0.1), pytest.approx(0.2), pytest.approx(0.4), pytest.approx(0.6), 1.0]
    ]
    assert pool.sizes.tolist() == [[640, 480]] * 3
    flat = pool.maps.float().reshape(-1, 3)
    assert flat.mean(0).abs().max() < 0.01 and (flat.std(0) - 1).abs().max() < 0.05


def test_an_exif_rotated_image_is_turned_as_the_editor_shows_it():
    image = Image.new("RGB", (60, 20), (200, 0, 0))
    exif = image.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    assert decode_image(buffer.getvalue()).size == (20, 60)
