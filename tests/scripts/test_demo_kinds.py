"""``make demo``'s project kinds: each label config is one the backend serves as that kind, and
each kind's tasks carry the field its config reads (the whole loop: tests/integration/test_demo.py).
"""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from autoal_backend.kinds import parse_label_config
from benchmarks.box_data import generated_scenes
from benchmarks.span_data import load_wnut16
from scripts.demo import KINDS


@pytest.mark.parametrize(
    ("name", "kind", "field"), [("choices", "choices", "text"), ("boxes", "boxes", "image"),
                                ("spans", "spans", "text")],
)  # fmt: skip
def test_each_demo_kind_is_a_project_the_backend_serves_as_that_kind(name, kind, field):
    demo = KINDS[name]
    spec = parse_label_config(demo.label_config())
    assert spec.kind == kind
    assert spec.data_key == field
    tasks = demo.tasks(10, 0)
    assert 1 <= len(tasks) <= 10
    assert all(set(t) == {field} and t[field] for t in tasks)
    assert demo.tasks(10, 0) == tasks  # the same seed, the same project


def test_the_box_demo_images_are_png_data_uris_of_the_scene_classes():
    demo = KINDS["boxes"]
    classes = ("square", "rectangle", "triangle", "circle")
    assert generated_scenes("boxes-shapes", count=0).classes == classes
    assert parse_label_config(demo.label_config()).labels == classes
    uri = demo.tasks(2, 3)[0]["image"]
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    image = Image.open(io.BytesIO(base64.b64decode(uri[len(prefix) :])))
    assert image.format == "PNG" and image.size[0] > 100


def test_the_span_demo_labels_every_wnut16_entity_type():
    spec = parse_label_config(KINDS["spans"].label_config())
    assert "person" in spec.labels and "company" in spec.labels and len(spec.labels) == 10
    texts = [t["text"] for t in KINDS["spans"].tasks(40, 1)]
    assert len(set(texts)) == 40
    corpus = load_wnut16()
    holding = {t for t, spans in zip(corpus.texts, corpus.spans, strict=True) if spans}
    assert sum(t in holding for t in texts) == 30  # three in four hold an entity
