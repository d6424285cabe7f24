"""The HTTP endpoints with Flask's test client: payloads asserted, bad input -> 4xx JSON."""

import base64

import pytest

from autoal_backend.app import create_app
from autoal_backend.store import initial_version, round_version
from tests.backend.conftest import make_backend, make_settings, text_project
from tests.backend.fakes import TEXT_CONFIG


@pytest.fixture
def setup(tmp_path, ls):
    text_project(ls, 7)
    settings = make_settings(tmp_path)
    backend = make_backend(settings, ls)
    app = create_app(settings, backend)
    yield app.test_client(), backend, ls
    backend.worker.stop()


def test_health_and_root(setup):
    client, _, _ = setup
    for path in ("/", "/health"):
        reply = client.get(path)
        assert reply.status_code == 200
        assert reply.get_json() == {
            "status": "UP",
            "model_class": "AutoALBackend",
            "strategy": "entropy",
        }


def test_setup_returns_initial_version_then_round_version(setup):
    client, backend, ls = setup
    reply = client.post(
        "/setup",
        json={
            "project": "7.1700000000",
            "schema": TEXT_CONFIG,
            "hostname": "http://x",
            "access_token": "t",
        },
    )
    assert reply.status_code == 200
    assert reply.get_json() == {"model_version": initial_version(7)}
    # /setup of a new project queues its cold-start round.
    assert backend.worker.wait_idle(60)
    assert client.post(
        "/setup", json={"project": "7.1700000000", "schema": TEXT_CONFIG}
    ).get_json() == {"model_version": round_version(7, 1)}
    assert ls.projects[7]["model_version"] == round_version(7, 1)


def test_predict_serves_latest_ranking_in_task_order(setup):
    client, backend, ls = setup
    backend._run_round(7)
    ranking = backend.ranking(7)
    first = min(ranking.scores, key=ranking.scores.get)
    unknown = 123456
    reply = client.post(
        "/predict",
        json={
            "tasks": [{"id": unknown, "data": {"text": "x"}}, {"id": first, "data": {}}],
            "project": "7.1700000000",
            "label_config": TEXT_CONFIG,
            "params": {"login": None, "password": None, "context": None},
        },
    )
    assert reply.status_code == 200
    results = reply.get_json()["results"]
    assert results[0] == {"result": [], "score": 1.0, "model_version": round_version(7, 1)}
    assert results[1]["score"] == 0.0 and results[1]["model_version"] == round_version(7, 1)
    assert results[1]["result"][0]["from_name"] == "sentiment"
    assert results[1]["result"][0]["value"]["choices"] in (["pos"], ["neg"])


@pytest.mark.parametrize(
    ("path", "payload", "status", "words"),
    [
        ("/setup", None, 400, "JSON object"),
        ("/setup", {"schema": TEXT_CONFIG}, 400, "'project'"),
        ("/setup", {"project": "abc", "schema": TEXT_CONFIG}, 400, "'project'"),
        ("/setup", {"project": "7.1"}, 400, "'schema'"),
        (
            "/setup",
            {
                "project": "7.1",
                "schema": "<View><Image name='i' value='$i'/>"
                "<PolygonLabels name='r' toName='i'><Label value='a'/></PolygonLabels></View>",
            },
            422,
            "PolygonLabels (polygons)",
        ),
        ("/setup", {"project": "7.1", "schema": "<View"}, 422, "not valid XML"),
        ("/predict", {"project": "7.1"}, 400, "'tasks'"),
        ("/predict", {"tasks": [{"data": {}}], "project": "7.1"}, 400, "tasks[0]"),
        ("/predict", {"tasks": "nope", "project": "7.1"}, 400, "'tasks'"),
        ("/predict", {"tasks": [{"id": 1}], "project": "99.1"}, 404, "unknown project 99"),
        (
            "/predict",
            {"tasks": [{"id": 1}], "project": "9.1", "label_config": 5},
            400,
            "label_config",
        ),
        ("/webhook", {"project": {"id": 7}}, 400, "'action'"),
        ("/webhook", {"action": "ANNOTATION_CREATED"}, 400, "'project'"),
        ("/webhook", {"action": "ANNOTATION_CREATED", "project": {"id": "x"}}, 400, "project.id"),
    ],
)
def test_bad_input_is_a_4xx_json_error_naming_the_problem(setup, path, payload, status, words):
    client, _, _ = setup
    if payload is None:
        reply = client.post(path, data="not json", content_type="application/json")
    else:
        reply = client.post(path, json=payload)
    assert reply.status_code == status
    assert words in reply.get_json()["error"]
    assert "Traceback" not in reply.get_data(as_text=True)


def test_unknown_route_and_method_are_json(setup):
    client, _, _ = setup
    assert client.get("/nope").status_code == 404
    assert "error" in client.get("/nope").get_json()
    assert client.get("/predict").status_code == 405
    assert client.get("/projects/99/history").status_code == 404


def test_webhook_queues_coalesces_and_ignores(setup):
    client, backend, ls = setup
    backend.worker.submit = _recording(backend.worker.submit, calls := [])
    reply = client.post(
        "/webhook",
        json={"action": "ANNOTATION_CREATED", "project": {"id": 7}, "annotation": {"id": 1}},
    )
    assert reply.status_code == 201
    assert reply.get_json()["status"] in {"queued", "coalesced"}
    assert client.post(
        "/webhook", json={"action": "SOMETHING_NEW", "project": {"id": 7}}
    ).get_json() == {"status": "ignored", "action": "SOMETHING_NEW"}
    assert backend.worker.wait_idle(60)  # the round checked project 7 with Label Studio
    noted = client.post("/webhook", json={"action": "PROJECT_UPDATED", "project": {"id": 7}})
    assert noted.get_json() == {"status": "noted", "action": "PROJECT_UPDATED", "project": 7}
    # Project 7 was unknown: the round first checked it with Label Studio; PROJECT_UPDATED
    # without another label config starts nothing.
    assert calls == [(7, "ANNOTATION_CREATED (unknown project: checking Label Studio)")]
    assert backend.worker.wait_idle(60)
    assert ls.projects[7]["model_version"] == round_version(7, 1)


def _recording(fn, calls):
    def wrapped(project_id, reason, force=False):
        calls.append((project_id, reason))
        return fn(project_id, reason, force)

    return wrapped


def test_history_metrics_and_versions(setup):
    client, backend, _ = setup
    backend._run_round(7)
    backend._run_round(7)
    history = client.get("/projects/7/history").get_json()
    assert history["project"] == 7 and history["labels"] == ["pos", "neg"]
    assert [r["model_version"] for r in history["rounds"]] == [
        round_version(7, 1),
        round_version(7, 2),
    ]
    assert history["rounds"][-1]["top"][0]["strategy"] == "entropy"
    assert client.get("/versions").get_json() == {
        "versions": [round_version(7, 1), round_version(7, 2)]
    }
    text = client.get("/metrics").get_data(as_text=True)
    assert 'autoal_rounds_total{project="7"} 2' in text
    assert "autoal_queue_depth 0" in text
    assert "autoal_round_seconds_sum" in text
    # No task was served at random (the tests' settings): no figure, and why, in /metrics and
    # in the JSON API.
    assert 'autoal_accuracy_unlabeled_withheld{project="7",reason="too_few_audits"} 1' in text
    assert 'autoal_accuracy_unlabeled{project="7"}' not in text
    [row] = client.get("/api/projects").get_json()["projects"]
    accuracy = client.get("/api/projects/7").get_json()["project"]["accuracy"]
    assert row["accuracy"] == accuracy
    assert accuracy["value"] is None and accuracy["code"] == "too_few_audits"
    assert accuracy["model_version"] == round_version(7, 2) and accuracy["audited"] == 0
    assert accuracy["text"] == f"No accuracy figure yet: {accuracy['reason']}."


def test_basic_auth_guards_all_but_webhook_and_health(tmp_path, ls):
    settings = make_settings(tmp_path, BASIC_AUTH_USER="ann", BASIC_AUTH_PASS="s3cret")
    backend = make_backend(settings, ls)
    client = create_app(settings, backend).test_client()
    good = {"Authorization": "Basic " + base64.b64encode(b"ann:s3cret").decode()}
    bad = {"Authorization": "Basic " + base64.b64encode(b"ann:wrong").decode()}
    assert client.get("/health").status_code == 200
    assert client.post("/webhook", json={"action": "X"}).status_code == 201
    for path in ("/", "/metrics", "/versions"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers=bad).status_code == 401
        assert client.get(path, headers=good).status_code == 200
    assert client.post("/setup", json={}).status_code == 401
    assert "s3cret" not in client.get("/", headers=bad).get_data(as_text=True)


def test_project_updated_starts_a_round_only_when_the_labels_change(setup):
    client, backend, _ = setup
    calls = []
    backend.worker.submit = _recording(lambda pid, reason, force=False: True, calls)
    client.post("/setup", json={"project": "7.1", "schema": TEXT_CONFIG})
    same = client.post(
        "/webhook",
        json={"action": "PROJECT_UPDATED", "project": {"id": 7, "label_config": TEXT_CONFIG}},
    )
    assert same.get_json()["status"] == "noted"
    relabeled = TEXT_CONFIG.replace(
        '<Choice value="neg"/>', '<Choice value="neg"/><Choice value="mixed"/>'
    )
    changed = client.post(
        "/webhook",
        json={"action": "PROJECT_UPDATED", "project": {"id": 7, "label_config": relabeled}},
    )
    assert changed.get_json()["status"] == "queued"
    assert calls == [(7, "setup"), (7, "PROJECT_UPDATED")]
    # A hint only: the labels change when the round reads them from Label Studio, not here.
    assert backend.store.load_record(7).spec.labels == ("pos", "neg")


def test_legacy_train_call_queues_a_round(setup):
    client, backend, _ = setup
    calls = []
    backend.worker.submit = _recording(lambda pid, reason, force=False: True, calls)
    reply = client.post(
        "/train", json={"annotations": [], "project": "7.17", "label_config": TEXT_CONFIG}
    )
    assert reply.status_code == 201 and reply.get_json() == {"status": "queued", "project": 7}
    assert calls == [(7, "train")]
    assert client.post("/train", json={"project": "99.1"}).status_code == 404


def test_webhook_answers_at_once_while_a_round_runs(setup):
    import threading
    import time

    from autoal_backend.worker import Worker

    client, backend, _ = setup
    release = threading.Event()
    backend.worker = Worker(lambda pid, request: release.wait(10))
    payload = {"action": "ANNOTATION_CREATED", "project": {"id": 7}}
    client.post("/webhook", json=payload)  # starts a round that blocks
    deadline = time.monotonic() + 10
    while backend.worker.running != 7 and time.monotonic() < deadline:
        time.sleep(0.01)
    start = time.perf_counter()
    replies = [client.post("/webhook", json=payload).get_json()["status"] for _ in range(5)]
    elapsed = time.perf_counter() - start
    release.set()
    assert elapsed < 1.0  # Label Studio gives webhooks 1 s
    assert replies == ["queued"] + ["coalesced"] * 4
    assert backend.worker.wait_idle(10)
    backend.worker.stop()
