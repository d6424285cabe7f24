"""The span harness: a Label Studio export of a <Labels> project through benchmarks.simulate,
as the README tells users to run it, and the corpora behind it."""

import json

import pytest

from benchmarks import simulate
from benchmarks.span_data import bio_sentences_to_corpus, load_synthetic_spans, load_wnut16

CONFIG = """<View><Text name="text" value="$sentence"/>
<Labels name="ner" toName="text"><Label value="company"/><Label value="location"/><Label value="person"/><Label value="product"/></Labels></View>"""


def test_bio_sentences_become_character_spans():
    corpus = bio_sentences_to_corpus(
        "t",
        [
            [
                ("Empire", "B-facility"),
                ("State", "I-facility"),
                ("=", "O"),
                ("ESB", "B-facility"),
                ("rocks", "I-band"),
            ]
        ],
    )
    text = corpus.texts[0]
    assert text == "Empire State = ESB rocks"
    assert [(text[a:b], corpus.types[c]) for a, b, c in corpus.spans[0]] == [
        ("Empire State", "facility"),
        ("ESB", "facility"),
        ("rocks", "band"),
    ]


def test_packaged_and_generated_corpora():
    wnut = load_wnut16()
    assert len(wnut.texts) == 2394 and len(wnut.types) == 10
    assert sum(bool(s) for s in wnut.spans) == 918
    synthetic = load_synthetic_spans(seed=0, count=200)
    assert synthetic.types == ("company", "location", "person", "product")
    assert all(
        0 <= a < b <= len(t)
        for t, s in zip(synthetic.texts, synthetic.spans, strict=True)
        for a, b, _ in s
    )
    assert load_synthetic_spans(seed=0, count=200).texts == synthetic.texts


def label_studio_export(count: int) -> list[dict]:
    corpus = load_synthetic_spans(seed=3, count=count)
    tasks = []
    for i, (text, spans) in enumerate(zip(corpus.texts, corpus.spans, strict=True)):
        result = [{"id": f"r{j}", "from_name": "ner", "to_name": "text", "type": "labels",
                   "value": {"start": a, "end": b, "text": text[a:b], "labels": [corpus.types[c]]}}
                  for j, (a, b, c) in enumerate(spans)]  # fmt: skip
        tasks.append(
            {
                "id": i + 1,
                "data": {"sentence": text},
                "annotations": [{"id": i + 1, "result": result, "was_cancelled": False}],
            }
        )
    tasks.append({"id": 999, "data": {"sentence": "never annotated"}, "annotations": []})
    return tasks


@pytest.mark.slow
def test_a_label_studio_export_runs_through_the_harness(tmp_path, capsys):
    export, config = tmp_path / "export.json", tmp_path / "config.xml"
    export.write_text(json.dumps(label_studio_export(160)))
    config.write_text(CONFIG)
    code = simulate.main(["--dataset", str(export), "--label-config", str(config), "--strategies", "random,mnlp,uniform,autoal",
                          "--initial", "10", "--batch", "10", "--rounds", "2", "--seeds", "1", "--out", str(tmp_path / "out"),
                          "--cache-dir", str(tmp_path / "cache")])  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (
        report["kind"] == "spans"
        and report["metric"] == "span_f1"
        and report["dataset"] == "export"
    )
    assert set(report["aubc"]) == {"random", "mnlp", "uniform", "autoal"}
    assert report["labeled"] == [10, 20, 30]
    assert all(0.0 <= v["mean"] <= 1.0 for v in report["final"].values())
    assert max(v["mean"] for v in report["final"].values()) > 0.3  # the tagger learns the scenes
    assert (
        (tmp_path / "out" / "summary.md")
        .read_text()
        .startswith("# Simulated span labeling on export")
    )


def choices_export(tmp_path, images: bool) -> tuple:
    """A Label Studio export of a choices project: 40 tasks, two annotators on some, images as
    data: URIs and as files beside the export (Label Studio's /data/upload/ paths)."""
    import base64
    import io

    from PIL import Image

    tasks = []
    upload = tmp_path / "data" / "upload" / "1"
    upload.mkdir(parents=True)
    for i in range(40):
        label = "red" if i % 2 else "blue"
        if images:
            buffer = io.BytesIO()
            Image.new("RGB", (8, 8), (200, 30, 30) if label == "red" else (30, 30, 200)).save(
                buffer, format="PNG"
            )
            if i % 4 < 2:
                value = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
            else:
                (upload / f"{i}.png").write_bytes(buffer.getvalue())
                value = f"/data/upload/1/{i}.png"
        else:
            value = (
                "a fiery crimson rose" if label == "red" else "the deep calm ocean"
            ) + f" number {i}"
        result = [
            {
                "from_name": "colour",
                "to_name": "item",
                "type": "choices",
                "value": {"choices": [label]},
            }
        ]
        annotations = [{"id": i, "result": result}]
        if i % 5 == 0:  # a second annotator agreeing
            annotations.append({"id": 100 + i, "result": result})
        tasks.append({"id": i + 1, "data": {"thing": value}, "annotations": annotations})
    tasks.append({"id": 99, "data": {"thing": "unlabeled"}, "annotations": []})
    tag = "Image" if images else "Text"
    config = (f'<View><{tag} name="item" value="$thing"/><Choices name="colour" toName="item">'
              '<Choice value="red"/><Choice value="blue"/></Choices></View>')  # fmt: skip
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    (tmp_path / "config.xml").write_text(config)
    return export, tmp_path / "config.xml"


@pytest.mark.parametrize(("images", "encoder"), [(True, "pixels@side=8"), (False, "minilm")])
def test_a_choices_export_runs_through_the_harness(tmp_path, capsys, images, encoder):
    export, config = choices_export(tmp_path, images)
    code = simulate.main(["--dataset", str(export), "--label-config", str(config), "--encoder", encoder,
                          "--strategies", "random,uniform", "--initial", "6", "--batch", "4", "--rounds", "2",
                          "--seeds", "1", "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
                          "--no-progress"])  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["dataset"] == "export" and set(report["aubc"]) == {"random", "uniform"}
    assert report["final_accuracy"]["uniform"]["mean"] == 1.0  # red and blue are easy


def test_an_export_without_its_label_config_is_refused(tmp_path):
    export, _ = choices_export(tmp_path, images=False)
    with pytest.raises(SystemExit, match="label-config"):
        simulate.main(["--dataset", str(export)])
