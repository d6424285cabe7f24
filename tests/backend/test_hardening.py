"""Hardening: owed work survives a crash, pushes cut short are cleaned up, Label Studio outages
are ridden out quietly with backoff, webhooks are hints only, unchanged rounds are skipped."""

import logging
import threading

import pytest
import requests

from autoal_backend.app import create_app
from autoal_backend.ls_client import LabelStudioClient, LabelStudioUnavailable
from autoal_backend.rounds import runner
from autoal_backend.store import round_version
from autoal_backend.worker import Backoff, Worker
from tests.backend.conftest import make_backend, make_settings, text_project
from tests.backend.fakes import LS_URL, TEXT_CONFIG, TOKEN


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_backoff_doubles_up_to_its_cap_with_jitter():
    import random

    backoff = Backoff(base_s=1.0, cap_s=8.0, jitter=0.25)
    rng = random.Random(0)
    delays = [backoff.delay(n, rng) for n in range(1, 7)]
    for n, delay in enumerate(delays, start=1):
        nominal = min(8.0, 2 ** (n - 1))
        assert 0.75 * nominal <= delay <= 1.25 * nominal
    assert len({round(d, 6) for d in delays}) == len(delays)  # jittered


def test_a_round_that_meets_an_outage_is_retried_later_and_events_join_the_retry():
    clock = FakeClock()
    attempts: list[tuple[int, list[str], bool]] = []
    down = threading.Event()
    down.set()

    def run_round(project_id, request):
        attempts.append((project_id, list(request.reasons), request.force))
        if down.is_set():
            raise LabelStudioUnavailable("connection refused")

    worker = Worker(run_round, retry_errors=(LabelStudioUnavailable,), clock=clock,
                    backoff=Backoff(base_s=10.0, cap_s=40.0, jitter=0.0))  # fmt: skip
    worker.submit(1, "ANNOTATION_CREATED")
    assert _wait(lambda: len(attempts) == 1 and worker.retrying())
    assert worker.retrying()[1][0] == 1  # one failed attempt, waiting
    # Events during the outage join the scheduled retry: no new round starts.
    assert worker.submit(1, "ANNOTATION_CREATED") is False
    assert worker.submit(1, "START_TRAINING", force=True) is False
    assert len(attempts) == 1
    clock.now = 10.5  # the first backoff (10 s) is over
    with worker._cond:
        worker._cond.notify_all()
    assert _wait(lambda: len(attempts) == 2 and worker.retrying().get(1, (0,))[0] == 2)
    down.clear()
    clock.now = 40.0  # the second backoff (20 s) is over; Label Studio is back
    with worker._cond:
        worker._cond.notify_all()
    assert worker.wait_idle(10)
    assert len(attempts) == 3
    assert attempts[-1] == (1, ["ANNOTATION_CREATED", "START_TRAINING"], True)
    worker.stop()


def _wait(condition, timeout: float = 10.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_connection_errors_and_timeouts_are_label_studio_errors(ls):
    client = LabelStudioClient(LS_URL, TOKEN, session=ls.session())
    ls.down = True
    with pytest.raises(LabelStudioUnavailable, match="did not answer \\(ConnectionError\\)"):
        client.get_project(7)

    class Slow(requests.adapters.BaseAdapter):
        def send(self, *args, **kwargs):
            raise requests.ReadTimeout("read timed out")

    session = requests.Session()
    session.mount(LS_URL, Slow())
    with pytest.raises(LabelStudioUnavailable, match="ReadTimeout"):
        LabelStudioClient(LS_URL, TOKEN, session=session).count_tasks(7)


def test_an_outage_is_one_warning_no_traceback_and_the_round_runs_when_it_ends(
    tmp_path, ls, caplog
):
    text_project(ls, 7, labeled=12, unlabeled=20)
    backend = make_backend(make_settings(tmp_path), ls)
    backend.worker.backoff = Backoff(base_s=0.05, cap_s=0.2, jitter=0.1)
    client = create_app(backend.settings, backend).test_client()
    assert client.post("/setup", json={"project": "7.1", "schema": TEXT_CONFIG}).status_code == 200
    assert backend.worker.wait_idle(60)
    served = client.post("/predict", json={"project": "7.1", "tasks": [{"id": 715}]}).get_json()
    ls.down = True
    with caplog.at_level(logging.INFO):
        for _ in range(5):  # annotations (webhooks) keep coming during the outage
            client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 7}})
            assert _wait(lambda: backend.worker.retrying(), 5)
        assert _wait(lambda: backend.worker.retrying().get(7, (0,))[0] >= 3)
        health = client.get("/health")
        assert health.status_code == 200
        assert health.get_json()["status"] == "DEGRADED"
        assert "Label Studio unavailable" in health.get_json()["reason"]
        # The last queue is still served.
        assert (
            client.post("/predict", json={"project": "7.1", "tasks": [{"id": 715}]}).get_json()
            == served
        )
        ls.annotate(7, 713, ["neg"])  # labeled while the backend could not see it
        ls.down = False
        assert backend.worker.wait_idle(30)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2, [r.getMessage() for r in warnings]
    assert warnings[0].getMessage().startswith("Label Studio is unavailable (")
    assert warnings[1].getMessage().startswith("Label Studio is reachable again after")
    assert all(r.exc_info is None for r in caplog.records)  # no traceback
    history = backend.store.load_history(7)
    assert [h["round"] for h in history] == [1, 2]  # round numbers only for rounds that ran
    assert history[-1]["labeled"] == 13
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'autoal_errors_total{kind="label_studio"}' in metrics
    assert client.get("/health").get_json()["status"] == "UP"
    backend.worker.stop()


def test_owed_work_survives_a_crash_and_resumes_without_a_new_webhook(tmp_path, ls):
    text_project(ls, 7, labeled=12, unlabeled=20)
    settings = make_settings(tmp_path)
    first = make_backend(settings, ls)
    first._run_round(7)
    # A webhook arrives, the round is owed, and the process dies before running it.
    first.worker.submit = lambda *args, **kwargs: True  # the worker never gets to it
    ls.annotate(7, 713, ["neg"])
    client = create_app(settings, first).test_client()
    client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 7}})
    assert first.store.pending(7) is not None
    restarted = make_backend(settings, ls)
    assert restarted.resume() == [7]
    assert restarted.worker.wait_idle(60)
    assert restarted.store.pending(7) is None
    assert restarted.store.load_history(7)[-1]["labeled"] == 13
    restarted.worker.stop()


def test_reconcile_catches_up_on_annotations_made_while_the_backend_was_down(tmp_path, ls):
    text_project(ls, 7, labeled=12, unlabeled=20)
    settings = make_settings(tmp_path)
    make_backend(settings, ls)._run_round(7)
    ls.annotate(7, 713, ["neg"])  # no webhook reaches a stopped backend
    restarted = make_backend(settings, ls)
    assert restarted.resume() == []
    assert restarted.reconcile() == [7]
    assert restarted.worker.wait_idle(60)
    assert restarted.store.load_history(7)[-1]["labeled"] == 13
    assert restarted.reconcile() == []  # in step with Label Studio again
    restarted.worker.stop()


@pytest.mark.parametrize("crash_at", ["import", "update", "validate"])
def test_a_push_cut_short_leaves_at_most_the_current_version(tmp_path, ls, crash_at, monkeypatch):
    text_project(ls, 7, labeled=12, unlabeled=20)
    settings = make_settings(tmp_path)
    backend = make_backend(settings, ls)
    backend._run_round(7)
    ls.annotate(7, 713, ["neg"])

    class Killed(BaseException):  # like kill -9: nothing after it runs
        pass

    from autoal_backend import ls_client

    real_import, real_update = (
        ls_client.LabelStudioClient.import_predictions,
        ls_client.LabelStudioClient.update_project,
    )

    def import_then_die(self, project_id, predictions):
        real_import(self, project_id, predictions)
        if crash_at == "import":
            raise Killed()

    def update_then_die(self, project_id, **fields):
        real_update(self, project_id, **fields)
        if "model_version" in fields:
            raise Killed()

    def die(*args, **kwargs):
        raise Killed()

    monkeypatch.setattr(ls_client.LabelStudioClient, "import_predictions", import_then_die)
    if crash_at == "update":
        monkeypatch.setattr(ls_client.LabelStudioClient, "update_project", update_then_die)
    if crash_at == "validate":  # pushed; the version it replaces is deleted at the round's end
        monkeypatch.setattr(runner, "cross_validated_accuracy", die)
    with pytest.raises(Killed):
        backend._run_round(7)
    assert set(ls.versions(7)) == {round_version(7, 1), round_version(7, 2)}
    monkeypatch.undo()
    restarted = make_backend(settings, ls)
    assert restarted.resume() == [7]
    assert restarted.worker.wait_idle(60)
    live = ls.projects[7]["model_version"]
    assert set(ls.versions(7)) == {live}
    restarted.worker.stop()


def test_the_replaced_version_is_deleted_after_the_rounds_other_work(tmp_path, ls, monkeypatch):
    """Label Studio's delete holds its database (an annotator's /next waits): the round
    deletes the version its push replaced only once the validation and the saves are done."""
    text_project(ls, 7, labeled=12, unlabeled=20)
    backend = make_backend(make_settings(tmp_path), ls)
    backend._run_round(7)
    ls.annotate(7, 713, ["neg"])
    seen = []
    validate = runner.cross_validated_accuracy

    def validate_and_look(*args, **kwargs):
        seen.append(set(ls.versions(7)))
        return validate(*args, **kwargs)

    monkeypatch.setattr(runner, "cross_validated_accuracy", validate_and_look)
    backend._run_round(7)
    assert seen == [{round_version(7, 1), round_version(7, 2)}]
    assert set(ls.versions(7)) == {round_version(7, 2)} == {ls.projects[7]["model_version"]}
    assert ls.calls[-1][0] == "DELETE"  # the round's last call to Label Studio
    assert backend.store.load_record(7).stale_versions == []
    assert "delete" in backend.store.load_history(7)[-1]["seconds"]


def test_webhooks_for_unknown_projects_store_nothing_and_cannot_change_a_config(tmp_path, ls):
    text_project(ls, 7, labeled=12, unlabeled=20)
    backend = make_backend(make_settings(tmp_path), ls)
    client = create_app(backend.settings, backend).test_client()
    assert client.post("/setup", json={"project": "7.1", "schema": TEXT_CONFIG}).status_code == 200
    assert backend.worker.wait_idle(60)
    models = tmp_path / "models"
    for project_id in range(100, 120):  # projects Label Studio does not have
        reply = client.post(
            "/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": project_id}}
        )
        assert reply.status_code == 201
    assert backend.worker.wait_idle(60)
    assert sorted(p.name for p in models.iterdir()) == ["7"]
    # More unknown projects at once than the backend checks: refused, not queued.
    backend.worker.submit = lambda *args, **kwargs: True  # (they stay unverified)
    replies = [client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 500 + i}})
               for i in range(25)]  # fmt: skip
    assert [r.status_code for r in replies].count(429) == 5
    assert "wait for Label Studio to confirm" in replies[-1].get_json()["error"]
    hostile = TEXT_CONFIG.replace('value="neg"', 'value="hacked"')
    client.post(
        "/webhook",
        json={"action": "PROJECT_UPDATED", "project": {"id": 7, "label_config": hostile}},
    )
    assert backend.store.load_record(7).spec.labels == ("pos", "neg")


def test_a_verified_unknown_project_is_added_from_label_studios_config(tmp_path, ls):
    text_project(ls, 9, labeled=12, unlabeled=20)
    backend = make_backend(make_settings(tmp_path), ls)
    client = create_app(backend.settings, backend).test_client()
    reply = client.post(
        "/webhook",
        json={
            "action": "ANNOTATION_CREATED",
            "project": {"id": 9, "label_config": "<View>fake</View>"},
        },
    )
    assert reply.status_code == 201 and reply.get_json()["status"] == "queued"
    assert backend.worker.wait_idle(60)
    record = backend.store.load_record(9)
    assert record.label_config == TEXT_CONFIG and record.round == 1
    backend.worker.stop()


def test_the_webhook_secret_is_checked_when_set(tmp_path, ls):
    text_project(ls, 7)
    backend = make_backend(make_settings(tmp_path, AUTOAL_WEBHOOK_SECRET="hush-123"), ls)
    client = create_app(backend.settings, backend).test_client()
    payload = {"action": "ANNOTATION_CREATED", "project": {"id": 7}}
    assert client.post("/webhook", json=payload).status_code == 401
    wrong = client.post("/webhook", json=payload, headers={"X-AutoAL-Webhook-Secret": "nope"})
    assert wrong.status_code == 401 and "X-AutoAL-Webhook-Secret" in wrong.get_json()["error"]
    good = client.post("/webhook", json=payload, headers={"X-AutoAL-Webhook-Secret": "hush-123"})
    assert good.status_code == 201
    assert "hush-123" not in repr(backend.settings)
    backend.worker.stop()


def test_the_number_of_tracked_projects_is_capped(tmp_path, ls):
    backend = make_backend(make_settings(tmp_path, AUTOAL_MAX_PROJECTS=2), ls)
    client = create_app(backend.settings, backend).test_client()
    backend.worker.submit = lambda *args, **kwargs: True
    for project_id in (1, 2):
        assert (
            client.post("/setup", json={"project": project_id, "schema": TEXT_CONFIG}).status_code
            == 200
        )
    third = client.post("/setup", json={"project": 3, "schema": TEXT_CONFIG})
    assert third.status_code == 409
    assert "AUTOAL_MAX_PROJECTS=2" in third.get_json()["error"]
    assert client.post("/setup", json={"project": 2, "schema": TEXT_CONFIG}).status_code == 200


def test_an_unchanged_round_is_skipped_unless_training_is_asked_for(tmp_path, ls):
    text_project(ls, 7, labeled=12, unlabeled=20)
    backend = make_backend(make_settings(tmp_path), ls)
    client = create_app(backend.settings, backend).test_client()
    assert client.post("/setup", json={"project": "7.1", "schema": TEXT_CONFIG}).status_code == 200
    assert backend.worker.wait_idle(60)
    for _ in range(3):  # duplicated events: nothing new to learn
        client.post("/webhook", json={"action": "ANNOTATION_UPDATED", "project": {"id": 7}})
        assert backend.worker.wait_idle(60)
    assert [h["round"] for h in backend.store.load_history(7)] == [1]
    assert 'autoal_rounds_skipped_total{project="7"} 3' in client.get("/metrics").get_data(
        as_text=True
    )
    client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 7}})
    assert backend.worker.wait_idle(60)
    assert [h["round"] for h in backend.store.load_history(7)] == [1, 2]
    backend.worker.stop()


def test_a_slow_label_studio_never_blocks_the_routes(tmp_path, ls):
    import time

    text_project(ls, 7, labeled=12, unlabeled=20)
    backend = make_backend(make_settings(tmp_path), ls)
    client = create_app(backend.settings, backend).test_client()
    assert client.post("/setup", json={"project": "7.1", "schema": TEXT_CONFIG}).status_code == 200
    assert backend.worker.wait_idle(60)
    ls.delay_s = 2.0  # every Label Studio call now takes 2 s
    ls.annotate(7, 713, ["neg"])
    client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 7}})
    assert _wait(lambda: backend.worker.running == 7, 5)
    for path, call in (
        (
            "/webhook",
            lambda: client.post(
                "/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 7}}
            ),
        ),
        (
            "/predict",
            lambda: client.post("/predict", json={"project": "7.1", "tasks": [{"id": 714}]}),
        ),
        ("/health", lambda: client.get("/health")),
    ):
        start = time.perf_counter()
        assert call().status_code < 300
        assert time.perf_counter() - start < 0.5, path
    ls.delay_s = 0.0
    assert backend.worker.wait_idle(120)
    backend.worker.stop()
