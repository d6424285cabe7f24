"""The webhook secret with a real Label Studio: the header added to the webhook Label Studio
created when the model was connected makes its events count; without it they are refused, and
nothing runs.

A backend of its own (``AUTOAL_WEBHOOK_SECRET`` set, reconciliation only at start) so that
webhooks are the only thing that can start a round after the first one.
"""

from __future__ import annotations

import time

import pytest
import requests

from scripts.demo import load_bbc_news, text_label_config
from tests.integration.conftest import BackendProcess, LabelStudioAPI, wait_for
from tests.integration.test_label_studio_loop import last_round, wait_for_round

SECRET = "a-shared-secret-for-the-test-42"
HEADER = "X-AutoAL-Webhook-Secret"


@pytest.fixture(scope="module")
def guarded(label_studio, tmp_path_factory):
    process = BackendProcess(
        tmp_path_factory.mktemp("guarded") / "model_dir",
        label_studio,
        env={
            "AUTOAL_WEBHOOK_SECRET": SECRET,
            "AUTOAL_RECONCILE_SECONDS": "0",
            "AUTOAL_STRATEGY": "uniform",
            "DEVICE": "cpu",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        },  # fmt: skip
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


def label(api: LabelStudioAPI, project_id: int, truth: dict[int, str], count: int) -> None:
    for _ in range(count):
        task = api.next_task(project_id)
        api.annotate(task["id"], "topic", "text", truth[task["id"]])


def test_label_studio_webhooks_count_only_with_the_secret_header(ls_api, guarded: BackendProcess):
    items = load_bbc_news(per_topic=8, seed=5, lead_only=True)
    project = ls_api.call("POST", "/api/projects", json={"title": "AutoAL integration: webhook secret",
                                                         "label_config": text_label_config()}).json()  # fmt: skip
    pid = int(project["id"])
    ls_api.call("POST", f"/api/projects/{pid}/import", json=[{"text": i.text} for i in items])
    by_text = {i.text: i.label for i in items}
    truth = {t["id"]: by_text[t["data"]["text"]] for t in ls_api.tasks(pid)}
    ls_api.connect_backend(pid, guarded.url)
    hooks = [h for h in ls_api.call("GET", "/api/webhooks/", params={"project": pid}).json()
             if h["url"].startswith(guarded.url)]  # fmt: skip
    assert len(hooks) == 1, hooks  # connecting the model made it
    wait_for(
        lambda: last_round(guarded, pid) and not guarded.busy(),
        timeout_s=300,
        what="the cold-start round",
    )
    rounds = len(guarded.history(pid))

    # Without the header (as Label Studio sends it by default): refused, and no round runs.
    stranger = requests.post(f"{guarded.url}/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": pid}},
                             timeout=10)  # fmt: skip
    assert stranger.status_code == 401 and HEADER in stranger.json()["error"]
    label(ls_api, pid, truth, 12)
    time.sleep(5)
    assert not guarded.busy() and len(guarded.history(pid)) == rounds, guarded.log_tail()

    # The header added to Label Studio's own webhook: the next annotation's event runs a round.
    ls_api.call("PATCH", f"/api/webhooks/{hooks[0]['id']}/", json={"headers": {HEADER: SECRET}})
    label(ls_api, pid, truth, 1)
    entry = wait_for_round(ls_api, guarded, pid, labeled=13)
    assert entry["labeled"] == 13
