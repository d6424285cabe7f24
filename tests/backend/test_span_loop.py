"""A span project through the real round loop (fake Label Studio, a fake token encoder):
annotations with spans in, predicted span regions whose text is the exact slice out, the queue
ranked, entities counted per type, annotators' disagreement agreed, the model exported."""

from autoal_backend.store import round_version
from model.export import ExportedSpanModel, load
from tests.backend.conftest import make_backend, make_settings
from tests.backend.fakes import (
    NER_CONFIG,
    PLACES,
    FakeLabelStudio,
    FakeTokenEncoder,
    span_annotation,
)

PEOPLE = ("Anna", "Bob", "Chen", "Dana", "Emil")


def span_project(
    ls: FakeLabelStudio, project_id: int = 9, labeled: int = 12, unlabeled: int = 30
) -> None:
    ls.add_project(project_id, NER_CONFIG)
    for i in range(labeled + unlabeled):
        person, place = PEOPLE[i % len(PEOPLE)], PLACES[i % len(PLACES)]
        text = (
            f"yesterday {person} flew to {place} again"
            if i % 3
            else f"  nothing  much\thappened {i} ok"
        )
        task = ls.add_task(project_id, 1000 + i, {"text": text})
        if i < labeled:
            spans = [(person, "person"), (place, "place")] if i % 3 else []
            task["annotations"].append(span_annotation(i + 1, text, spans))


def test_a_span_project_runs_a_round_end_to_end(tmp_path):
    ls = FakeLabelStudio()
    span_project(ls)
    encoder = FakeTokenEncoder()
    backend = make_backend(make_settings(tmp_path, AUTOAL_PUSH_WINDOW="50"), ls, encoder)
    backend.setup({"project": 9, "schema": NER_CONFIG})
    backend.worker.wait_idle(60)
    backend.worker.stop()
    history = backend.store.load_history(9)
    assert history and not history[-1]["cold_start"]
    assert history[-1]["label_distribution"] == {"person": 8, "place": 8}
    assert history[-1]["selection"] == "entropy"  # read as its span counterpart, token entropy
    assert ls.projects[9]["model_version"] == round_version(9, 1)
    texts = {t["id"]: t["data"]["text"] for t in ls.tasks[9]}
    predictions = [p for p in ls.predictions if p["model_version"] == round_version(9, 1)]
    assert len(predictions) == 30  # every unlabeled task, entity or not, is ranked
    found = 0
    for prediction in predictions:
        for region in prediction["result"]:
            value = region["value"]
            assert (
                region["type"] == "labels"
                and region["from_name"] == "ent"
                and region["to_name"] == "text"
            )
            assert texts[prediction["task"]][value["start"] : value["end"]] == value["text"]
            assert 0.0 <= region["score"] <= 1.0
            found += 1
            expected = "place" if value["text"] in PLACES else "person"
            assert value["labels"] == [expected]
    assert found >= 30  # about two entities per text that holds any
    first = min(predictions, key=lambda p: p["score"])
    text_regions = [r for r in first["result"] if "meta" in r]
    assert not first["result"] or "AutoAL" in text_regions[0]["meta"]["text"][0]
    exported = load(backend.store.directory(9) / "model.pt")
    assert isinstance(exported, ExportedSpanModel) and exported.labels == ["person", "place"]


def test_predict_answers_span_regions_from_the_ranking(tmp_path):
    ls = FakeLabelStudio()
    span_project(ls)
    backend = make_backend(make_settings(tmp_path), ls, FakeTokenEncoder())
    backend.register(9, NER_CONFIG)
    backend._run_round(9)
    task = next(t for t in ls.tasks[9] if t["id"] == 1013)
    reply = backend.predict({"project": 9, "tasks": [task]})["results"][0]
    assert reply["model_version"] == round_version(9, 1)
    assert all(
        task["data"]["text"][r["value"]["start"] : r["value"]["end"]] == r["value"]["text"]
        for r in reply["result"]
    )
    assert {r["value"]["text"] for r in reply["result"]} == {PEOPLE[13 % 5], PLACES[13 % 4]}


def test_annotators_disagreeing_on_spans_are_agreed_and_flagged(tmp_path):
    ls = FakeLabelStudio()
    span_project(ls)
    task = next(t for t in ls.tasks[9] if t["id"] == 1001)
    text = task["data"]["text"]
    task["annotations"].append(span_annotation(90, text, [("Bob", "place"), ("Lima", "place")]))
    task["annotations"].append(span_annotation(91, text, [("Bob", "person"), ("Lima", "place")]))
    backend = make_backend(make_settings(tmp_path), ls, FakeTokenEncoder())
    backend.register(9, NER_CONFIG)
    backend._run_round(9)
    history = backend.store.load_history(9)[-1]
    flagged = {f["task"]: f for f in history["disagreements"]["flagged"]}
    assert flagged[1001]["annotations"] == 3 and flagged[1001]["disagreeing"] == 1
    start = text.index("Bob")
    lima = text.index("Lima")
    assert flagged[1001]["agreed"] == [f"{start}:{start + 3}:person", f"{lima}:{lima + 4}:place"]


def test_token_states_are_cached_across_rounds(tmp_path):
    ls = FakeLabelStudio()
    span_project(ls)
    encoder = FakeTokenEncoder()
    backend = make_backend(make_settings(tmp_path), ls, encoder)
    backend.register(9, NER_CONFIG)
    backend._run_round(9)
    calls = sum(encoder.calls)
    next(t for t in ls.tasks[9] if t["id"] == 1020)["annotations"].append(
        span_annotation(99, "x", [])
    )
    backend._run_round(9)
    assert sum(encoder.calls) == calls  # nothing new to embed
    history = backend.store.load_history(9)
    assert [entry["round"] for entry in history] == [1, 2] and history[-1]["labeled"] == 13


def test_the_project_page_and_metrics_serve_a_span_project(tmp_path):
    from autoal_backend import overview, pages

    ls = FakeLabelStudio()
    span_project(ls)
    backend = make_backend(make_settings(tmp_path), ls, FakeTokenEncoder())
    backend.register(9, NER_CONFIG)
    backend._run_round(9)
    data = overview.project_overview(backend, 9)
    assert data["labels"] == ["person", "place"]
    points = data["labels_over_rounds"]
    assert points and "person" in str(points)
    html = pages.project_page(data)
    assert "person" in html and "place" in html
    assert 'autoal_rounds_total{project="9"} 1' in backend.metrics_text().splitlines()


def test_a_strategy_is_checked_against_the_projects_kind(tmp_path):
    import pytest

    from autoal_backend.errors import RequestError
    from tests.backend.conftest import text_project
    from tests.backend.fakes import TEXT_CONFIG

    ls = FakeLabelStudio()
    span_project(ls)
    text_project(ls, 7)
    backend = make_backend(make_settings(tmp_path), ls, FakeTokenEncoder())
    backend.setup(
        {"project": 9, "schema": NER_CONFIG, "extra_params": {"strategy": "token_margin"}}
    )
    assert backend.store.load_record(9).settings == {"AUTOAL_STRATEGY": "token_margin"}
    with pytest.raises(
        RequestError, match="strategy for choices projects 'token_margin'"
    ) as refused:
        backend.setup(
            {"project": 7, "schema": TEXT_CONFIG, "extra_params": {"strategy": "token_margin"}}
        )
    assert refused.value.status == 422
    backend.worker.stop()


def test_an_environment_strategy_of_another_kind_falls_back_to_autoal(tmp_path, caplog):
    from tests.backend.conftest import text_project
    from tests.backend.fakes import TEXT_CONFIG

    ls = FakeLabelStudio()
    text_project(ls, 7)
    backend = make_backend(make_settings(tmp_path, AUTOAL_STRATEGY="mnlp"), ls)
    backend.register(7, TEXT_CONFIG)
    with caplog.at_level("WARNING", logger="autoal_backend.rounds.runner"):
        backend._run_round(7)
    assert backend.store.load_history(7)[-1]["strategy"] == "autoal"
    assert any("using autoal" in r.getMessage() for r in caplog.records)


def test_the_minimum_span_score_applies_per_project(tmp_path):
    ls = FakeLabelStudio()
    span_project(ls)
    backend = make_backend(make_settings(tmp_path, AUTOAL_PUSH_WINDOW="50"), ls, FakeTokenEncoder())
    backend.setup({"project": 9, "schema": NER_CONFIG, "extra_params": {"span_min_score": 1.0}})
    backend.worker.wait_idle(60)
    backend.worker.stop()
    pushed = [p for p in ls.predictions if p["model_version"] == round_version(9, 1)]
    assert len(pushed) == 30 and not any(p["result"] for p in pushed)  # ranked, nothing shown
    ranking = backend.ranking(9)
    assert any(ranking.choices.values())  # the guesses are kept (history, accuracy estimate)
    task = next(t for t in ls.tasks[9] if t["id"] == 1013)
    assert backend.predict({"project": 9, "tasks": [task]})["results"][0]["result"] == []


def test_the_page_shows_span_disagreements(tmp_path):
    from autoal_backend import overview, pages

    ls = FakeLabelStudio()
    span_project(ls)
    task = next(t for t in ls.tasks[9] if t["id"] == 1001)
    task["annotations"].append(span_annotation(90, task["data"]["text"], [("Bob", "place")]))
    backend = make_backend(make_settings(tmp_path), ls, FakeTokenEncoder())
    backend.register(9, NER_CONFIG)
    backend._run_round(9)
    html = pages.project_page(overview.project_overview(backend, 9))
    assert "1001" in html


def test_a_project_that_changes_kind_drops_the_old_ranking(tmp_path):
    from tests.backend.fakes import TEXT_CONFIG

    ls = FakeLabelStudio()
    span_project(ls)
    backend = make_backend(make_settings(tmp_path), ls, FakeTokenEncoder())
    backend.register(9, NER_CONFIG)
    backend._run_round(9)
    task = next(t for t in ls.tasks[9] if t["id"] == 1013)
    assert backend.predict({"project": 9, "tasks": [task]})["results"][0][
        "model_version"
    ] == round_version(9, 1)
    backend.register(9, TEXT_CONFIG)  # the same texts, now a choices project
    reply = backend.predict({"project": 9, "tasks": [task]})["results"][0]
    assert reply["result"] == [] and reply["score"] == 1.0  # not ranked for this kind yet


def test_the_reason_names_the_spans_shown_and_only_those(tmp_path):
    ls = FakeLabelStudio()
    span_project(ls)
    backend = make_backend(
        make_settings(tmp_path, AUTOAL_PUSH_WINDOW="50", AUTOAL_SPAN_MIN_SCORE="0.9"),
        ls,
        FakeTokenEncoder(),
    )
    backend.register(9, NER_CONFIG)
    backend._run_round(9)
    checked = 0
    for prediction in ls.predictions:
        if prediction["result"]:
            reason = prediction["result"][0]["meta"]["text"][0]
            assert reason.count("%)") == len(prediction["result"]), reason
            assert all(r["score"] >= 0.9 for r in prediction["result"])
            checked += 1
    assert checked
