"""A labeling team on one project, with a real Label Studio 1.23.2 and the real backend.

Three annotators sign up through Label Studio's invite link and get their own tokens; the
project asks for a second annotation on a share of its tasks (overlap), and one annotator is
careless. The backend is connected with its own per-project settings in the ML backend's
extra params. Checked: the settings reach the rounds (and a wrong one is refused through
Label Studio, with the backend's message); the round trains on agreed labels and flags the
tasks annotators disagree on; every prediction, pushed or fetched by Label Studio for a task
outside the window, carries the model's confidence; the exported model predicts what the
backend predicts.
"""

from __future__ import annotations

import itertools

import pytest

from model.export import load
from scripts.demo import BBC_TOPICS, load_bbc_news, text_label_config
from tests.integration.conftest import BackendProcess, LabelStudioAPI, wait_for
from tests.integration.test_label_studio_loop import wait_for_round

LABELS = 24


@pytest.fixture(scope="module")
def team_project(ls_api: LabelStudioAPI, backend: BackendProcess):
    items = load_bbc_news(per_topic=24, seed=3, lead_only=True)
    project = ls_api.call("POST", "/api/projects", json={
        "title": "AutoAL integration: a team with overlap",
        "label_config": text_label_config(),
        "maximum_annotations": 2,
        "overlap_cohort_percentage": 50,
    }).json()  # fmt: skip
    ls_api.call(
        "POST", f"/api/projects/{project['id']}/import", json=[{"text": i.text} for i in items]
    )
    ml = ls_api.connect_backend(
        project["id"], backend.url, extra_params={"strategy": "uniform", "push_window": 30}
    )
    assert ml["state"] == "CO", ml
    by_text = {item.text: item.label for item in items}
    truth = {t["id"]: by_text[t["data"]["text"]] for t in ls_api.tasks(project["id"])}
    members = [
        ls_api.sign_up(f"annotator{i}@team.test", f"Annotator-pass-{i}-x9") for i in range(3)
    ]
    return {"id": int(project["id"]), "truth": truth, "members": members, "ml": ml}


def careless(choice: str) -> str:
    """The third annotator's answer: always the next topic over."""
    return BBC_TOPICS[(BBC_TOPICS.index(choice) + 1) % len(BBC_TOPICS)]


def test_a_team_with_overlap_trains_on_agreed_labels_and_flags_conflicts(
    ls_api, backend, team_project
):
    project_id, truth = team_project["id"], team_project["truth"]
    # Round robin: annotators 0 and 1 answer right, annotator 2 is careless.
    for member_index in itertools.islice(itertools.cycle(range(3)), LABELS + 8):
        member = team_project["members"][member_index]
        task = member.next_task(project_id)
        if not task or "id" not in task:
            break
        answer = truth[task["id"]] if member_index < 2 else careless(truth[task["id"]])
        member.annotate(task["id"], "topic", "text", answer)
    tasks = ls_api.tasks(project_id)
    doubled = [t for t in tasks if t["total_annotations"] >= 2]
    labeled = sum(t["total_annotations"] > 0 for t in tasks)
    assert doubled, "the project's overlap gave no task two annotations"
    entry = wait_for_round(ls_api, backend, project_id, labeled)
    # Label Studio's per-task counters (total_annotations) are written after the annotation and
    # lagged behind it once on a loaded machine (SQLite): count the annotations themselves.
    doubled = [t for t in ls_api.tasks(project_id)
               if sum(not a.get("was_cancelled") for a in t.get("annotations") or []) >= 2]  # fmt: skip
    assert entry["strategy"] == "uniform"
    assert entry["settings"] == {"AUTOAL_STRATEGY": "uniform", "AUTOAL_PUSH_WINDOW": "30"}
    assert entry["pushed"] == 30
    report = entry["disagreements"]
    assert report["overlapping"] == len(doubled)
    conflicts = {f["task"]: f for f in report["flagged"]}
    assert conflicts, "the careless annotator's second opinions were not flagged"
    for flagged in conflicts.values():
        assert flagged["annotations"] >= 2 and flagged["disagreeing"] >= 1
        assert len(flagged["votes"]) >= 2


def test_every_prediction_carries_the_models_confidence(ls_api, backend, team_project):
    project_id = team_project["id"]
    version = ls_api.project(project_id)["model_version"]
    pushed = [p for p in ls_api.predictions(project_id) if p["model_version"] == version]
    assert len(pushed) == 30
    for prediction in pushed:
        [region] = prediction["result"]
        assert 0.0 < region["score"] <= 1.0
        assert f"({region['score']:.0%})" in region["meta"]["text"][0]
        assert 0.0 <= prediction["score"] <= 1.0  # the queue key
    # A task outside the window, opened by an annotator as the labeling UI does: Label Studio
    # asks /predict for it and stores the answer, confidence included.
    with_prediction = {p["task"] for p in ls_api.predictions(project_id)}
    unlabeled = [t["id"] for t in ls_api.tasks(project_id) if t["total_annotations"] == 0]
    outside = next(t for t in unlabeled if t not in with_prediction)
    member = team_project["members"][0]
    opened = member.call("GET", f"/api/tasks/{outside}/").json()
    stored = wait_for(lambda: [p for p in ls_api.predictions(project_id) if p["task"] == outside],
                      timeout_s=60, what="Label Studio's /predict call for the task")  # fmt: skip
    [region] = stored[0]["result"]
    assert region["value"]["choices"][0] in BBC_TOPICS
    assert 0.0 < region["score"] <= 1.0
    assert opened["id"] == outside


def test_the_exported_model_predicts_what_the_backend_predicts(
    ls_api, backend, team_project, tmp_path
):
    project_id = team_project["id"]
    reply = backend.get(f"/projects/{project_id}/model")
    assert reply.status_code == 200
    path = tmp_path / "model.pt"
    path.write_bytes(reply.content)
    exported = load(path)
    assert exported.labels == list(BBC_TOPICS) and exported.encoder_spec == "minilm"
    tasks = [t for t in ls_api.tasks(project_id) if t["total_annotations"] == 0][:12]
    answers = backend.post(
        "/predict", json={"project": project_id, "tasks": [{"id": t["id"]} for t in tasks]}
    )
    guesses = exported.predict([t["data"]["text"] for t in tasks])
    for result, guess in zip(answers.json()["results"], guesses, strict=True):
        [region] = result["result"]
        assert guess["labels"] == region["value"]["choices"]
        assert guess["confidence"][0] == pytest.approx(region["score"], abs=1e-4)


def test_a_wrong_per_project_setting_is_refused_through_label_studio(ls_api, backend, team_project):
    ml = team_project["ml"]
    # (Label Studio 1.23.2 answers 500 to a PATCH without the url: it is sent along.)
    reply = ls_api.session.patch(
        f"{ls_api.server.url}/api/ml/{ml['id']}", headers=ls_api.headers, timeout=60,
        json={"url": ml["url"], "project": ml["project"], "extra_params": {"push_window": 0}},
    )  # fmt: skip
    assert reply.status_code == 400, reply.text[:300]
    # Label Studio shows the status of our /setup answer, not its body; the backend's log says
    # which setting and why.
    assert "422" in reply.text and "/setup" in reply.text
    wait_for(lambda: "AUTOAL_PUSH_WINDOW: expected an integer >= 1 or 'auto', got '0'" in backend.log_tail(200),
             timeout_s=10, what="the refusal in the backend's log")  # fmt: skip
