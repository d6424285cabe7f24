"""The span harness: a Label Studio export of a <Labels> project through benchmarks.simulate,
as the README tells users to run it, and the corpora behind it."""

import json

import pytest

from benchmarks import simulate
from benchmarks.span_data import bio_sentences_to_corpus, load_synthetic_spans, load_wnut16

CONFIG = """<View><Text name="text" value="$sentence"/>
<Labels name="ner" toName="text"><Label value="company"/><Label value="location"/><Label value="person"/><Label value="product"/></Labels></View>"""


def test_bio_sentences_become_character_spans():
    corpus = bio_sentences_to_corpus("t", [[("Empire", "B-facility"), ("State", "I-facility"), ("=", "O"), ("ESB", "B-facility"), ("rocks", "I-band")]])
    text = corpus.texts[0]
    assert text == "Empire State = ESB rocks"
    assert [(text[a:b], corpus.types[c]) for a, b, c in corpus.spans[0]] == [("Empire State", "facility"), ("ESB", "facility"), ("rocks", "band")]


def test_packaged_and_generated_corpora():
    wnut = load_wnut16()
    assert len(wnut.texts) == 2394 and len(wnut.types) == 10
    assert sum(bool(s) for s in wnut.spans) == 918
    synthetic = load_synthetic_spans(seed=0, count=200)
    assert synthetic.types == ("company", "location", "person", "product")
    assert all(0 <= a < b <= len(t) for t, s in zip(synthetic.texts, synthetic.spans, strict=True) for a, b, _ in s)
    assert load_synthetic_spans(seed=0, count=200).texts == synthetic.texts


def label_studio_export(count: int) -> list[dict]:
    corpus = load_synthetic_spans(seed=3, count=count)
    tasks = []
    for i, (text, spans) in enumerate(zip(corpus.texts, corpus.spans, strict=True)):
        result = [{"id": f"r{j}", "from_name": "ner", "to_name": "text", "type": "labels",
                   "value": {"start": a, "end": b, "text": text[a:b], "labels": [corpus.types[c]]}}
                  for j, (a, b, c) in enumerate(spans)]  # fmt: skip
        tasks.append({"id": i + 1, "data": {"sentence": text}, "annotations": [{"id": i + 1, "result": result, "was_cancelled": False}]})
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
    assert report["kind"] == "spans" and report["metric"] == "span_f1" and report["dataset"] == "export"
    assert set(report["aubc"]) == {"random", "mnlp", "uniform", "autoal"}
    assert report["labeled"] == [10, 20, 30]
    assert all(0.0 <= v["mean"] <= 1.0 for v in report["final"].values())
    assert max(v["mean"] for v in report["final"].values()) > 0.3  # the tagger learns the scenes
    assert (tmp_path / "out" / "summary.md").read_text().startswith("# Simulated span labeling on export")


def test_an_export_with_a_choices_config_is_refused_for_now(tmp_path):
    export, config = tmp_path / "export.json", tmp_path / "config.xml"
    export.write_text("[]")
    config.write_text('<View><Text name="t" value="$t"/><Choices name="c" toName="t"><Choice value="a"/><Choice value="b"/></Choices></View>')
    with pytest.raises(SystemExit, match="only span projects"):
        simulate.main(["--dataset", str(export), "--label-config", str(config)])
