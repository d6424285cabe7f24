import random
import subprocess
import sys
from pathlib import Path

import pytest

from autoal_backend.ls_client import (
    ROUND_PROJECT_FIELDS,
    LabelStudioClient,
    LabelStudioError,
    is_jwt,
)
from autoal_backend.rounds.sync import STATE_COUNTS
from autoal_backend.settings import Settings, SettingsError
from tests.backend.fakes import LS_URL, TEXT_CONFIG, FakeLabelStudio

REPO = Path(__file__).resolve().parents[2]
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2lnbmF0dXJl"


def test_settings_from_env_and_flags():
    settings = Settings.from_env(
        {
            "LABEL_STUDIO_URL": "http://ls:8080/",
            "LABEL_STUDIO_API_KEY": "k",
            "AUTOAL_PUSH_WINDOW": "50",
            "AUTOAL_SET_SAMPLING": "false",
            "AUTOAL_STRATEGY": "margin",
            "MODEL_DIR": "/a",
        },
        model_dir="/b",
    )
    assert settings.label_studio_url == "http://ls:8080" and settings.push_window == 50
    assert settings.set_sampling is False and settings.strategy == "margin"
    assert settings.model_dir == Path("/b")  # the flag wins
    assert Settings.from_env({}).strategy == "autoal"
    assert Settings.from_env({}).shortlist == 20_000
    assert Settings.from_env({"AUTOAL_SHORTLIST": "0"}).shortlist == 0


def test_secrets_never_in_repr():
    settings = Settings.from_env(
        {
            "LABEL_STUDIO_API_KEY": "supersecret",
            "BASIC_AUTH_USER": "u",
            "BASIC_AUTH_PASS": "hunter2",
        }
    )
    assert "supersecret" not in repr(settings) and "hunter2" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"AUTOAL_STRATEGY": "best"}, "valid: autoal, uniform, albl"),
        ({"AUTOAL_PUSH_WINDOW": "0"}, "AUTOAL_PUSH_WINDOW"),
        ({"AUTOAL_SET_SAMPLING": "maybe"}, "AUTOAL_SET_SAMPLING"),
        ({"DEVICE": "tpu"}, "DEVICE"),
        pytest.param(
            {"DEVICE": "cuda"},
            "CUDA is not available",
            marks=pytest.mark.skipif(
                __import__("torch").cuda.is_available(), reason="CUDA is here"
            ),
        ),
        ({"BASIC_AUTH_USER": "u"}, "BASIC_AUTH_PASS"),
        ({"LABEL_STUDIO_URL": "ls:8080"}, "LABEL_STUDIO_URL"),
        ({"AUTOAL_SHORTLIST": "-1"}, "AUTOAL_SHORTLIST: expected an integer >= 0, got -1"),
        ({"AUTOAL_SHORTLIST": "lots"}, "AUTOAL_SHORTLIST: expected an integer, got 'lots'"),
    ],
)
def test_bad_settings_fail_naming_the_variable(env, words):
    with pytest.raises(SettingsError, match=words):
        Settings.from_env(env)


def test_legacy_token_is_sent_as_token():
    ls = FakeLabelStudio()
    ls.add_project(1, TEXT_CONFIG)
    client = LabelStudioClient(LS_URL, ls.token, session=ls.session())
    assert client.get_project(1)["id"] == 1
    assert ("POST", "/api/token/refresh") not in ls.calls


def test_personal_access_token_is_refreshed_and_renewed_on_401():
    ls = FakeLabelStudio(token="unused", jwt_refresh=JWT)
    ls.add_project(1, TEXT_CONFIG)
    assert is_jwt(JWT)
    client = LabelStudioClient(LS_URL, JWT, session=ls.session())
    assert client.get_project(1)["id"] == 1
    ls.access_tokens.clear()  # the access token expired
    assert client.get_project(1)["id"] == 1
    assert ls.calls.count(("POST", "/api/token/refresh")) == 2


def test_errors_name_the_call_but_not_the_key():
    ls = FakeLabelStudio()
    client = LabelStudioClient(LS_URL, "wrong-key-xyz", session=ls.session())
    with pytest.raises(LabelStudioError) as error:
        client.get_project(1)
    assert "GET /api/projects/1/" in str(error.value) and "401" in str(error.value)
    assert "wrong-key-xyz" not in str(error.value)


def test_wsgi_import_starts_nothing_and_bad_strategy_fails_at_startup(tmp_path):
    probe = (
        "import threading, sys; import _wsgi; "
        "assert threading.active_count() == 1, threading.enumerate(); "
        "assert 'autoal_backend.app' not in sys.modules; print('ok')"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.stdout.strip() == "ok", out.stderr
    env = {"AUTOAL_STRATEGY": "nope", "PATH": "/usr/bin:/bin", "MODEL_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "_wsgi.py", "--port", "0"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "unknown strategy 'nope'" in out.stderr and "entropy" in out.stderr


def test_sync_merges_paged_task_list_with_annotated_export():
    ls = FakeLabelStudio()
    ls.add_project(1, TEXT_CONFIG)
    for i in range(7):
        ls.add_task(1, 10 + i, {"text": f"t{i}"}, ["pos"] if i in (2, 6) else None)
    client = LabelStudioClient(LS_URL, ls.token, session=ls.session())
    listed, full = client.sync_tasks(1, page_size=3)
    tasks = {t["id"]: t for t in listed}
    assert full is True
    assert sorted(tasks) == list(range(10, 17))
    assert [i for i, t in tasks.items() if t["annotations"]] == [12, 16]
    assert tasks[13] == {"id": 13, "data": {"text": "t3"}, "annotations": []}
    assert ls.calls.count(("GET", "/api/tasks/")) == 3  # pages of 3, 3, 1


def test_incremental_sync_lists_only_new_tasks_and_falls_back_when_one_is_deleted():
    ls = FakeLabelStudio()
    ls.add_project(1, TEXT_CONFIG)
    for i in range(6):
        ls.add_task(1, 10 + i, {"text": f"t{i}"}, ["pos"] if i == 1 else None)
    client = LabelStudioClient(LS_URL, ls.token, session=ls.session())
    first, full = client.sync_tasks(1)
    known = {t["id"]: t["data"] for t in first}
    ls.add_task(1, 20, {"text": "new"})
    ls.annotate(1, 12, ["neg"])
    ls.calls.clear()
    second, full = client.sync_tasks(1, known=known)
    assert full is False
    assert sorted(t["id"] for t in second) == [10, 11, 12, 13, 14, 15, 20]
    assert {t["id"] for t in second if t["annotations"]} == {11, 12}
    assert ls.calls.count(("GET", "/api/tasks/")) == 2  # the new tasks, then the count
    ls.delete_task(1, 13)
    third, full = client.sync_tasks(1, known={t["id"]: t["data"] for t in second})
    assert full is True and 13 not in {t["id"] for t in third}


def test_idempotent_calls_retry_a_locked_database_but_imports_do_not(monkeypatch):
    from autoal_backend import ls_client

    monkeypatch.setattr(ls_client, "RETRY_DELAY_S", 0.0)
    ls = FakeLabelStudio()
    ls.add_project(1, TEXT_CONFIG)
    ls.add_task(1, 10, {"text": "x"})
    client = LabelStudioClient(LS_URL, ls.token, session=ls.session())
    ls.locked_replies = 2
    assert client.get_project(1)["id"] == 1  # third attempt succeeds
    ls.locked_replies = 3
    with pytest.raises(LabelStudioError, match="HTTP 500"):
        client.get_project(1)
    ls.locked_replies = 1
    with pytest.raises(LabelStudioError, match="import/predictions: HTTP 500"):
        client.import_predictions(
            1, [{"task": 10, "result": [], "score": 0.0, "model_version": "v"}]
        )
    assert ls.predictions == []


def round_sync(client, ls, known, key=TEXT_CONFIG):
    """A sync as a round makes it: the project read first (only the round's fields)."""
    project = client.get_project(1, ROUND_PROJECT_FIELDS)
    ls.calls.clear()
    ls.call_args.clear()
    return client.sync_tasks(1, known=known, project=project, annotations_key=key)


def exported_ids(ls) -> list[list[int] | None]:
    """The ids each export asked for (None: every annotated task)."""
    return [
        sorted(int(i) for i in args["ids[]"]) if "ids[]" in args else None
        for (method, path), args in zip(ls.calls, ls.call_args, strict=True)
        if path.endswith("/export")
    ]


def by_id(tasks: list[dict]) -> dict[int, dict]:
    return {t["id"]: t for t in tasks}


def test_the_round_reads_only_the_project_fields_it_uses():
    assert set(STATE_COUNTS) <= set(ROUND_PROJECT_FIELDS)
    ls = FakeLabelStudio()
    ls.add_project(1, TEXT_CONFIG)
    ls.add_task(1, 10, {"text": "a"}, ["pos"])
    client = LabelStudioClient(LS_URL, ls.token, session=ls.session())
    project = client.get_project(1, ROUND_PROJECT_FIELDS)
    assert set(project) == set(ROUND_PROJECT_FIELDS)
    assert project["label_config"] == TEXT_CONFIG and project["task_number"] == 1
    assert ls.call_args[-1]["include"] == [",".join(ROUND_PROJECT_FIELDS)]
    assert client.update_project(1, model_version="") == {"id": 1}
    assert ls.call_args[-1]["include"] == ["id"]


def test_a_round_sync_exports_only_the_annotated_tasks_that_changed():
    ls = FakeLabelStudio()
    ls.add_project(1, TEXT_CONFIG)
    for i in range(8):
        ls.add_task(1, 10 + i, {"text": f"t{i}"}, ["pos"] if i < 4 else None)
    client = LabelStudioClient(LS_URL, ls.token, session=ls.session())
    first, full = client.sync_tasks(1)
    known = {t["id"]: t["data"] for t in first}
    # Nothing read yet by this client under the key: every annotated task is exported.
    tasks, full = round_sync(client, ls, known)
    assert full is False and exported_ids(ls) == [None]
    assert ("GET", "/api/tasks/") in ls.calls and len(ls.calls) == 2  # no count request
    ls.annotate(1, 15, ["neg"])  # a new label
    ls.annotate(1, 11, ["neg"])  # a second annotator on a labeled task
    ls.annotate(1, 16, ["pos"], cancelled=True)  # a skip
    ls.add_task(1, 30, {"text": "new"})
    tasks, full = round_sync(client, ls, known)
    assert full is False and exported_ids(ls) == [[11, 15, 16]]
    tasks = by_id(tasks)
    assert sorted(tasks) == [*range(10, 18), 30] and tasks[30]["data"] == {"text": "new"}
    assert len(tasks[11]["annotations"]) == 2 and tasks[16]["annotations"][0]["was_cancelled"]
    assert tasks[12]["annotations"][0]["result"][0]["value"] == {"choices": ["pos"]}
    # Nothing changed: no export at all.
    tasks_again, _ = round_sync(client, ls, known | {30: {"text": "new"}})
    assert exported_ids(ls) == [] and by_id(tasks_again) == tasks


def test_edited_and_deleted_annotations_are_read_again():
    ls = FakeLabelStudio()
    ls.add_project(1, TEXT_CONFIG)
    for i in range(5):
        ls.add_task(1, 10 + i, {"text": f"t{i}"}, ["pos"])
    client = LabelStudioClient(LS_URL, ls.token, session=ls.session())
    known = {t["id"]: t["data"] for t in client.sync_tasks(1)[0]}
    round_sync(client, ls, known)
    ls.tasks[1][2]["annotations"][0]["result"][0]["value"]["choices"] = ["neg"]  # edited
    ls.tasks[1][3]["annotations"].clear()  # its only annotation deleted
    tasks, _ = round_sync(client, ls, known)
    assert exported_ids(ls) == [[12]]  # 13 is no longer annotated: nothing to export
    tasks = by_id(tasks)
    assert tasks[12]["annotations"][0]["result"][0]["value"] == {"choices": ["neg"]}
    assert tasks[13]["annotations"] == [] and tasks[10]["annotations"]


def test_counters_that_do_not_add_up_or_another_key_mean_a_full_export():
    ls = FakeLabelStudio()
    ls.add_project(1, TEXT_CONFIG)
    for i in range(5):
        ls.add_task(1, 10 + i, {"text": f"t{i}"}, ["pos"] if i < 3 else None)
    client = LabelStudioClient(LS_URL, ls.token, session=ls.session())
    known = {t["id"]: t["data"] for t in client.sync_tasks(1)[0]}
    round_sync(client, ls, known)
    # Label Studio did not count task 13's new annotation: the listing would miss it.
    ls.annotate(1, 13, ["neg"])
    ls.stale_counters[13] = (0, 0)
    tasks, _ = round_sync(client, ls, known)
    assert exported_ids(ls) == [None] and by_id(tasks)[13]["annotations"]
    # A bulk rename that Label Studio does not stamp is read again under a new label config.
    ls.stale_counters.clear()
    round_sync(client, ls, known)
    ls.tasks[1][0]["updated_at"] = "frozen"
    round_sync(client, ls, known)
    ls.tasks[1][0]["annotations"][0]["result"][0]["value"]["choices"] = ["neg"]
    tasks, _ = round_sync(client, ls, known)
    assert exported_ids(ls) == [] and by_id(tasks)[10]["annotations"][0]["result"][0]["value"] == {
        "choices": ["pos"]
    }  # unseen: Label Studio gave no sign of it
    tasks, _ = round_sync(client, ls, known, key=TEXT_CONFIG + " ")
    assert exported_ids(ls) == [None]
    assert by_id(tasks)[10]["annotations"][0]["result"][0]["value"] == {"choices": ["neg"]}


def test_many_changed_tasks_are_read_by_one_full_export(monkeypatch):
    from autoal_backend import ls_client

    monkeypatch.setattr(ls_client, "EXPORT_IDS_MAX", 2)
    ls = FakeLabelStudio()
    ls.add_project(1, TEXT_CONFIG)
    for i in range(6):
        ls.add_task(1, 10 + i, {"text": f"t{i}"})
    client = LabelStudioClient(LS_URL, ls.token, session=ls.session())
    known = {t["id"]: t["data"] for t in client.sync_tasks(1)[0]}
    round_sync(client, ls, known)
    for task_id in (10, 11):
        ls.annotate(1, task_id, ["pos"])
    round_sync(client, ls, known)
    assert exported_ids(ls) == [[10, 11]]
    for task_id in (12, 13, 14):
        ls.annotate(1, task_id, ["neg"])
    tasks, _ = round_sync(client, ls, known)
    assert exported_ids(ls) == [None]
    assert {t["id"] for t in tasks if t["annotations"]} == {10, 11, 12, 13, 14}


@pytest.mark.parametrize("seed", range(5))
def test_a_round_sync_sees_what_a_full_sync_sees_after_any_edits(seed):
    """Random projects edited at random between rounds: what the incremental sync returns
    equals what a fresh client's full sync returns, every round."""
    rng = random.Random(seed)
    ls = FakeLabelStudio()
    ls.add_project(1, TEXT_CONFIG)
    next_id = 10
    for _ in range(12):
        ls.add_task(1, next_id, {"text": f"t{next_id}"}, rng.choice([None, ["pos"], ["neg"]]))
        next_id += 1
    client = LabelStudioClient(LS_URL, ls.token, session=ls.session())
    known = {t["id"]: t["data"] for t in client.sync_tasks(1)[0]}
    for _ in range(15):
        for _ in range(rng.randint(0, 4)):
            task = rng.choice(ls.tasks[1])
            action = rng.choice(["label", "skip", "edit", "delete", "new", "drop"])
            if action == "label":
                ls.annotate(1, task["id"], [rng.choice(["pos", "neg"])])
            elif action == "skip":
                ls.annotate(1, task["id"], [], cancelled=True)
            elif action == "edit" and task["annotations"]:
                task["annotations"][-1]["result"][0]["value"]["choices"] = ["neg"]
            elif action == "delete" and task["annotations"]:
                task["annotations"].pop(rng.randrange(len(task["annotations"])))
            elif action == "new":
                ls.add_task(1, next_id, {"text": f"t{next_id}"}, rng.choice([None, ["pos"]]))
                next_id += 1
            elif action == "drop" and len(ls.tasks[1]) > 3:
                ls.delete_task(1, task["id"])
        tasks, _ = round_sync(client, ls, known)
        truth, _ = LabelStudioClient(LS_URL, ls.token, session=ls.session()).sync_tasks(1)
        assert by_id(tasks) == by_id(truth)
        known = {t["id"]: t["data"] for t in tasks}
