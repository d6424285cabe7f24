"""A team on one project: agreed labels from overlapping annotations, per-project settings
from /setup, the model's confidence on every prediction, and the exported model."""

import pytest

from autoal_backend.app import create_app
from autoal_backend.kinds import parse_label_config
from autoal_backend.kinds.choices import agreed_choices
from autoal_backend.rounds.sync import view_tasks
from autoal_backend.settings import Settings, SettingsError, parse_project_settings
from model.export import load
from tests.backend.conftest import make_backend, make_settings, text_project
from tests.backend.fakes import IMAGE_CONFIG, TEXT_CONFIG, FakeEncoder

TEXT = parse_label_config(TEXT_CONFIG)
MULTI = parse_label_config(IMAGE_CONFIG)


def annotation(number: int, choices, cancelled=False, from_name="sentiment"):
    return {
        "id": number,
        "was_cancelled": cancelled,
        "updated_at": f"2026-01-01T00:00:{number:02d}Z",
        "result": [] if choices is None else [
            {"from_name": from_name, "to_name": "x", "type": "choices", "value": {"choices": choices}}
        ],
    }  # fmt: skip


def test_majority_wins_and_a_tie_goes_to_the_most_recent_annotation():
    assert agreed_choices([["pos"], ["neg"], ["pos"]], TEXT) == ["pos"]
    assert agreed_choices([["pos"], ["neg"]], TEXT) == ["neg"]  # tie: the newer one
    assert agreed_choices([["neg"], ["pos"], ["pos"], ["neg"]], TEXT) == ["neg"]
    # Multi-label, per label: red 3/3, green 2/3 (kept), blue 1/3 (dropped).
    votes = [["red", "green"], ["red", "blue"], ["red", "green"]]
    assert agreed_choices(votes, MULTI) == ["red", "green"]
    # Exactly half: the most recent annotation decides each such label.
    assert agreed_choices([["red"], ["green"]], MULTI) == ["green"]
    assert agreed_choices([[], ["blue"]], MULTI) == ["blue"]


def test_view_tasks_counts_votes_and_disagreements_and_never_drops_a_conflict():
    tasks = [
        {"id": 1, "data": {}, "annotations": [annotation(1, ["pos"]), annotation(2, ["pos"])]},
        {"id": 2, "data": {}, "annotations": [annotation(3, ["pos"]), annotation(4, ["neg"]),
                                              annotation(5, ["neg"])]},
        {"id": 3, "data": {}, "annotations": [annotation(6, ["neg"], cancelled=True),
                                              annotation(7, None), annotation(8, ["pos"])]},
        {"id": 4, "data": {}, "annotations": [annotation(9, ["maybe"])]},
    ]  # fmt: skip
    views = {v.id: v for v in view_tasks(tasks, TEXT)}
    assert (views[1].answer, views[1].annotations, views[1].disagreement) == (["pos"], 2, 0)
    assert (views[2].answer, views[2].annotations, views[2].disagreement) == (["neg"], 3, 1)
    assert views[2].votes == {"pos": 1, "neg": 2}
    # A cancelled annotation and one without a choice are no votes; the third one counts.
    assert (views[3].answer, views[3].annotations) == (["pos"], 1)
    assert views[4].answer is None and "unknown choice" in views[4].excluded


def test_a_round_trains_on_agreed_labels_and_flags_conflicts(tmp_path, ls):
    text_project(ls, 7, labeled=12, unlabeled=20)
    # Task 700 (positive) gets two more annotations: one agrees, one does not.
    ls.annotate(7, 700, ["pos"])
    ls.annotate(7, 700, ["neg"])
    # Task 701 (negative): a 1-1 tie, the newer annotation says pos.
    ls.annotate(7, 701, ["pos"])
    backend = make_backend(make_settings(tmp_path), ls)
    backend._run_round(7)
    entry = backend.store.load_history(7)[-1]
    assert entry["label_distribution"] == {"pos": 7, "neg": 5}  # 701 counts as pos
    report = entry["disagreements"]
    assert report["tasks"] == 2 and report["overlapping"] == 2
    flagged = {f["task"]: f for f in report["flagged"]}
    assert flagged[700] == {"task": 700, "annotations": 3, "disagreeing": 1, "agreed": ["pos"],
                            "votes": {"pos": 2, "neg": 1}}  # fmt: skip
    assert flagged[701]["agreed"] == ["pos"] and flagged[701]["disagreeing"] == 1


def test_project_settings_parse_like_the_environment():
    defaults = Settings.from_env({})
    assert parse_project_settings({"strategy": "margin", "AUTOAL_PUSH_WINDOW": 30, "set_sampling": False},
                                  defaults) == {"AUTOAL_STRATEGY": "margin", "AUTOAL_PUSH_WINDOW": "30",
                                                "AUTOAL_SET_SAMPLING": "false"}  # fmt: skip
    assert parse_project_settings(None, defaults) == {}
    for extra, words in [
        ({"strategy": "best"}, "AUTOAL_STRATEGY: unknown strategy 'best'; valid: autoal"),
        ({"push_window": 0}, "AUTOAL_PUSH_WINDOW: expected an integer >= 1 or 'auto', got '0'"),
        ({"min_labels": "many"}, "AUTOAL_MIN_LABELS: expected an integer, got 'many'"),
        ({"image_encoder": "minilm"}, "AUTOAL_IMAGE_ENCODER: 'minilm' encodes texts, not images"),
        (
            {"image_encoder": "pixels@size=3"},
            "AUTOAL_IMAGE_ENCODER: unknown option of encoder 'pixels'",
        ),
        (
            {"colour": "blue"},
            "extra_params: unknown setting 'colour'; per-project settings: AUTOAL_STRATEGY",
        ),
        (["margin"], "extra_params: expected an object"),
    ]:
        with pytest.raises(SettingsError, match=words):
            parse_project_settings(extra, defaults)
    # The environment says the same for the same value.
    with pytest.raises(
        SettingsError, match="AUTOAL_PUSH_WINDOW: expected an integer >= 1 or 'auto', got '0'"
    ):
        Settings.from_env({"AUTOAL_PUSH_WINDOW": "0"})


def test_setup_extra_params_set_a_projects_own_settings(tmp_path, ls):
    text_project(ls, 7, labeled=12, unlabeled=30)
    text_project(ls, 8, labeled=12, unlabeled=30)
    backend = make_backend(make_settings(tmp_path), ls)
    client = create_app(backend.settings, backend).test_client()
    reply = client.post(
        "/setup",
        json={
            "project": "7.1",
            "schema": TEXT_CONFIG,
            "extra_params": {"strategy": "margin", "push_window": 4},
        },
    )
    assert reply.status_code == 200
    assert client.post("/setup", json={"project": "8.1", "schema": TEXT_CONFIG}).status_code == 200
    assert backend.worker.wait_idle(60)
    assert ls.versions(7) == {"autoal-7-r1": 4} and ls.versions(8) == {"autoal-8-r1": 10}
    history = client.get("/projects/7/history").get_json()
    assert history["strategy"] == "margin"
    assert history["settings"] == {"AUTOAL_STRATEGY": "margin", "AUTOAL_PUSH_WINDOW": "4"}
    assert history["rounds"][-1]["strategy"] == "margin"
    assert client.get("/projects/8/history").get_json()["strategy"] == "entropy"  # the environment
    bad = client.post(
        "/setup",
        json={"project": "7.1", "schema": TEXT_CONFIG, "extra_params": {"push_window": -2}},
    )
    assert bad.status_code == 422
    assert (
        bad.get_json()["error"]
        == "AUTOAL_PUSH_WINDOW: expected an integer >= 1 or 'auto', got '-2'"
    )
    # Back to the environment's settings: a new round applies them.
    assert (
        client.post(
            "/setup", json={"project": "7.1", "schema": TEXT_CONFIG, "extra_params": {}}
        ).status_code
        == 200
    )
    assert backend.worker.wait_idle(60)
    assert client.get("/projects/7/history").get_json()["rounds"][-1]["strategy"] == "entropy"
    backend.worker.stop()


def test_multi_label_predictions_carry_one_region_and_one_confidence_per_label():
    regions = MULTI.result(["red", "blue"], "why", [0.9, 0.7])
    assert [r["value"]["choices"] for r in regions] == [["red"], ["blue"]]
    assert [r["score"] for r in regions] == [0.9, 0.7]
    assert regions[0]["meta"] == {"text": ["why"]} and "meta" not in regions[1]
    [single] = TEXT.result(["neg"], "why", [0.6])
    assert single["score"] == 0.6 and single["value"] == {"choices": ["neg"]}


def test_predict_for_a_task_outside_the_window_carries_the_confidence(tmp_path, ls):
    text_project(ls, 7, labeled=12, unlabeled=30)
    backend = make_backend(make_settings(tmp_path), ls)
    backend._run_round(7)
    pushed = {p["task"] for p in ls.predictions}
    outside = next(t["id"] for t in ls.tasks[7][12:] if t["id"] not in pushed)
    client = create_app(backend.settings, backend).test_client()
    [result] = client.post(
        "/predict", json={"project": "7.1", "tasks": [{"id": outside}]}
    ).get_json()["results"]
    [region] = result["result"]
    ranking = backend.ranking(7)
    assert region["score"] == pytest.approx(ranking.confidence[outside][0])
    assert region["value"]["choices"] == ranking.choices[outside]
    assert f"({region['score']:.0%})" in region["meta"]["text"][0]
    assert result["score"] == ranking.scores[outside]  # the queue key


def test_the_exported_model_predicts_what_the_backend_predicted(tmp_path, ls):
    text_project(ls, 7, labeled=12, unlabeled=30)
    encoder = FakeEncoder()
    backend = make_backend(make_settings(tmp_path), ls, encoder)
    client = create_app(backend.settings, backend).test_client()
    assert client.get("/projects/7/model").status_code == 404  # unknown project
    backend._run_round(7)
    reply = client.get("/projects/7/model")
    assert reply.status_code == 200
    assert "autoal-project-7-autoal-7-r1.pt" in reply.headers["Content-Disposition"]
    path = tmp_path / "export.pt"
    path.write_bytes(reply.get_data())
    exported = load(path)
    assert exported.labels == ["pos", "neg"] and exported.model_version == "autoal-7-r1"
    assert exported.encoder_spec == "minilm" and not exported.multilabel
    exported._encoder = encoder  # the test's stand-in for MiniLM, as the backend used it
    ranking = backend.ranking(7)
    tasks = [t for t in ls.tasks[7] if t["id"] in ranking.choices]
    predicted = exported.predict([t["data"]["text"] for t in tasks])
    for task, guess in zip(tasks, predicted, strict=True):
        assert guess["labels"] == ranking.choices[task["id"]]
        assert guess["confidence"][0] == pytest.approx(ranking.confidence[task["id"]][0], abs=1e-5)


def test_no_model_before_the_first_trained_round(tmp_path, ls):
    text_project(ls, 7, labeled=2, unlabeled=30)
    backend = make_backend(make_settings(tmp_path), ls)
    backend._run_round(7)  # a cold start: diversity only, no model
    reply = create_app(backend.settings, backend).test_client().get("/projects/7/model")
    assert reply.status_code == 404 and "no trained model yet" in reply.get_json()["error"]
