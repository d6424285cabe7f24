"""The whole loop against a real Label Studio 1.23.2 and the real backend server.

A text project (200 BBC News leads, 5 topics) is created, connected to the backend and
labeled through the REST API exactly as an annotator's UI would: ask ``/next``, annotate the
task served. The tests then read Label Studio's own queue and the backend's history and
check that they agree. The tests of a module share one project and run in file order: each
says which state it starts from.
"""

from __future__ import annotations

import base64
import io
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from scripts.demo import BBC_TOPICS, load_bbc_news, text_label_config
from tests.integration.conftest import BackendProcess, LabelStudioAPI, wait_for

ROUND_TIMEOUT_S = 300
FIRST_BATCH = 20
SECOND_BATCH = 10


@dataclass
class Project:
    id: int
    from_name: str
    to_name: str
    truth: dict[int, str]  # task id -> the right choice (the annotator's knowledge)


def create_project(
    api: LabelStudioAPI, backend: BackendProcess, title: str, label_config: str, tasks: list[dict]
) -> int:
    project = api.call(
        "POST", "/api/projects", json={"title": title, "label_config": label_config}
    ).json()
    api.call("POST", f"/api/projects/{project['id']}/import", json=tasks)
    ml = api.connect_backend(project["id"], backend.url)
    # Label Studio checks /health when the backend is added: CO = connected.
    assert ml["state"] == "CO", ml
    return int(project["id"])


def last_round(backend: BackendProcess, project_id: int) -> dict | None:
    rounds = backend.history(project_id)
    return rounds[-1] if rounds else None


def wait_for_round(
    api: LabelStudioAPI, backend: BackendProcess, project_id: int, labeled: int
) -> dict:
    """The backend's round that saw ``labeled`` labels, once Label Studio serves it: the
    project points at its model_version and the backend has nothing left to do."""

    def settled():
        entry = last_round(backend, project_id)
        if entry is None or entry["labeled"] < labeled:
            return None
        if api.project(project_id)["model_version"] != entry["model_version"]:
            return None
        if backend.busy():
            return None
        # Another round may have landed while we looked: take the newest.
        newest = last_round(backend, project_id)
        return newest if newest["round"] == entry["round"] else None

    return wait_for(
        settled,
        timeout_s=ROUND_TIMEOUT_S,
        what=f"a backend round with {labeled} labels in project {project_id}:\n{backend.log_tail()}",
        interval_s=1.0,
    )


def expected_next(api: LabelStudioAPI, project_id: int) -> tuple[int, list[int]]:
    """What Label Studio's uncertainty sampling must serve, recomputed from the stored
    predictions: among unlabeled tasks with a prediction of the project's model_version,
    the lowest score (ties by task id are not expected: scores are distinct ranks).
    Returns that task and the whole current order."""
    version = api.project(project_id)["model_version"]
    labeled = {t["id"] for t in api.tasks(project_id) if t["total_annotations"] > 0}
    current = [
        p
        for p in api.predictions(project_id)
        if p["model_version"] == version and p["task"] not in labeled
    ]
    assert current, f"no prediction of the current version {version!r} on an unlabeled task"
    assert all(p.get("cluster") is None for p in current), "clusters would change LS's order"
    order = [p["task"] for p in sorted(current, key=lambda p: (p["score"], p["task"]))]
    return order[0], order


def label_served(api: LabelStudioAPI, project: Project, count: int) -> list[int]:
    """Annotate ``count`` tasks, each the one Label Studio serves next."""
    served = []
    for _ in range(count):
        task = api.next_task(project.id)
        api.annotate(task["id"], project.from_name, project.to_name, project.truth[task["id"]])
        served.append(task["id"])
    return served


@pytest.fixture(scope="module")
def text_project(ls_api: LabelStudioAPI, backend: BackendProcess) -> Project:
    items = load_bbc_news(per_topic=40, seed=1, lead_only=True)
    project_id = create_project(
        ls_api,
        backend,
        "AutoAL integration: BBC topics",
        text_label_config(),
        [{"text": item.text} for item in items],
    )
    by_text = {item.text: item.label for item in items}
    truth = {t["id"]: by_text[t["data"]["text"]] for t in ls_api.tasks(project_id)}
    assert len(truth) == len(items) == 200
    return Project(project_id, "topic", "text", truth)


def test_label_studio_serves_the_task_the_backend_ranks_first(ls_api, backend, text_project):
    served = label_served(ls_api, text_project, FIRST_BATCH)
    assert len(set(served)) == FIRST_BATCH, "the queue served a labeled task again"
    entry = wait_for_round(ls_api, backend, text_project.id, FIRST_BATCH)

    assert entry["labeled"] == FIRST_BATCH and not entry["cold_start"]
    project = ls_api.project(text_project.id)
    assert project["sampling"] == "Uncertainty sampling"
    first, order = expected_next(ls_api, text_project.id)
    # The backend's own record of its ranking agrees with what it stored in Label Studio ...
    assert [t["task"] for t in entry["top"]] == order[: len(entry["top"])]
    # ... and the annotators' queue serves exactly its first task.
    assert ls_api.next_task(text_project.id)["id"] == first == entry["top"][0]["task"]


def test_new_annotations_reorder_the_queue(ls_api, backend, text_project):
    before = last_round(backend, text_project.id)
    first_before, order_before = expected_next(ls_api, text_project.id)

    served = label_served(ls_api, text_project, SECOND_BATCH)
    assert served[0] == first_before
    entry = wait_for_round(ls_api, backend, text_project.id, FIRST_BATCH + SECOND_BATCH)

    assert entry["round"] > before["round"]
    assert entry["model_version"] != before["model_version"]
    first_after, order_after = expected_next(ls_api, text_project.id)
    assert ls_api.next_task(text_project.id)["id"] == first_after == entry["top"][0]["task"]
    # A new order, not the old one minus the labeled tasks: the model learned from them.
    remaining_before = [t for t in order_before if t not in set(served)]
    window = min(len(remaining_before), len(order_after), 50)
    assert order_after[:window] != remaining_before[:window]


def test_old_prediction_versions_do_not_pile_up(ls_api, backend, text_project):
    entry = last_round(backend, text_project.id)
    assert entry["round"] >= 2
    versions = ls_api.model_versions(text_project.id)
    # Only the current round's predictions are left (LS may add some of the same version
    # when it calls /predict for a task it serves).
    assert set(versions) == {entry["model_version"]}
    assert versions[entry["model_version"]] >= entry["pushed"]
    per_task = Counter(p["task"] for p in ls_api.predictions(text_project.id))
    assert max(per_task.values()) == 1


def test_backend_answers_label_studios_own_predict_call(ls_api, backend, text_project):
    """Data Manager > "Retrieve predictions": LS calls /setup then /predict itself, for tasks
    with no prediction of the backend's version (those outside the pushed window)."""
    entry = last_round(backend, text_project.id)
    with_prediction = {p["task"] for p in ls_api.predictions(text_project.id)}
    labeled = {t for t, n in _annotation_counts(ls_api, text_project.id).items() if n > 0}
    outside = _unannotated(ls_api, sorted(set(text_project.truth) - with_prediction - labeled), 5)
    assert outside, "every unlabeled task already has a prediction: raise the task count"

    reply = ls_api.call(
        "POST",
        "/api/dm/actions",
        params={"id": "retrieve_tasks_predictions", "project": text_project.id},
        json={"selectedItems": {"all": False, "included": outside}},
    )
    assert reply.json()["processed_items"] == len(outside)

    created = [p for p in ls_api.predictions(text_project.id) if p["task"] in outside]
    assert sorted(p["task"] for p in created) == outside
    pushed_scores = [t["score"] for t in entry["top"]]
    for prediction in created:
        if prediction["model_version"] != entry["model_version"] or not prediction["result"]:
            task = prediction["task"]
            annotations = ls_api.call("GET", f"/api/tasks/{task}/annotations/").json()
            pytest.fail(
                f"not the last round's guess: {prediction}\nthe task's annotations: "
                f"{annotations}\nthe round: {entry}\nbackend log:\n{backend.log_tail()}"
            )
        # Outside the window = ranked after every pushed task (lower score = sooner).
        assert prediction["score"] > max(pushed_scores)
        choice = prediction["result"][0]["value"]["choices"][0]
        assert choice in BBC_TOPICS


def test_restart_keeps_the_backend_state(ls_api, backend, text_project):
    before = backend.history(text_project.id)
    version = ls_api.project(text_project.id)["model_version"]
    backend.restart()

    assert backend.history(text_project.id) == before
    setup = backend.post(
        "/setup",
        json={
            "project": f"{text_project.id}.0",
            "schema": ls_api.project(text_project.id)["label_config"],
        },
    )
    assert setup.status_code == 200, setup.text
    assert setup.json()["model_version"] == version

    # The next round continues the numbering and remembers when each task was labeled.
    label_served(ls_api, text_project, 2)
    entry = wait_for_round(ls_api, backend, text_project.id, FIRST_BATCH + SECOND_BATCH + 2)
    assert entry["round"] > before[-1]["round"]
    assert backend.history(text_project.id)[: len(before)] == before


def _annotation_counts(api: LabelStudioAPI, project_id: int) -> dict[int, int]:
    return {t["id"]: t["total_annotations"] for t in api.tasks(project_id)}


def _unannotated(api: LabelStudioAPI, task_ids: list[int], count: int) -> list[int]:
    """The first ``count`` of ``task_ids`` that hold no annotation, read from each task's
    annotations, not the ``total_annotations`` counter Label Studio keeps beside them. Once, on
    a loaded machine, the backend answered one of the tasks picked by the counter with the
    empty guess it gives a labeled task; the annotations themselves leave no doubt."""
    found = []
    for task_id in task_ids:
        if not api.call("GET", f"/api/tasks/{task_id}/annotations/").json():
            found.append(task_id)
            if len(found) == count:
                break
    return found


# --- an image project: tasks are files uploaded to Label Studio ---------------------------


def digit_png(image: np.ndarray) -> bytes:
    """An 8x8 sklearn digit (0..16) as a 32x32 grayscale PNG."""
    pixels = (image / 16.0 * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").resize((32, 32), Image.NEAREST).save(buffer, format="PNG")
    return buffer.getvalue()


def test_image_project_uploads_are_ranked_and_served(ls_api, backend):
    from sklearn.datasets import load_digits

    digits = load_digits()
    classes = ("0", "1", "7")
    rng = np.random.default_rng(0)
    rows = np.concatenate(
        [rng.choice(np.flatnonzero(digits.target == int(c)), 20, replace=False) for c in classes]
    )
    label_config = (
        '<View><Image name="image" value="$image"/>'
        '<Choices name="digit" toName="image">'
        + "".join(f'<Choice value="{c}"/>' for c in classes)
        + "</Choices></View>"
    )
    project = ls_api.call(
        "POST",
        "/api/projects",
        json={"title": "AutoAL integration: digits", "label_config": label_config},
    ).json()
    # Upload half as files (LS stores them and serves /data/upload/..., behind auth) and
    # half as data: URIs inside JSON tasks: the two ways images reach a project.
    # One multipart field per file: LS reads request.FILES by field name.
    files = {
        f"file{row}": (f"digit-{row}.png", digit_png(digits.images[row]), "image/png")
        for row in rows[::2]
    }
    ls_api.call("POST", f"/api/projects/{project['id']}/import", files=files)
    inline_rows = {
        "data:image/png;base64," + base64.b64encode(digit_png(digits.images[row])).decode(): int(
            row
        )
        for row in rows[1::2]
    }
    ls_api.call(
        "POST",
        f"/api/projects/{project['id']}/import",
        json=[{"image": uri} for uri in inline_rows],
    )
    ml = ls_api.connect_backend(project["id"], backend.url)
    assert ml["state"] == "CO", ml

    truth = {}
    for task in ls_api.tasks(project["id"]):
        value = task["data"]["image"]
        if value.startswith("data:"):
            row = inline_rows[value]
        else:
            # An upload is served as /data/upload/<project>/<random>-digit-<row>.png
            row = int(value.rsplit("digit-", 1)[1].removesuffix(".png"))
        truth[task["id"]] = str(digits.target[row])
    assert len(truth) == len(rows)
    image_project = Project(int(project["id"]), "digit", "image", truth)

    label_served(ls_api, image_project, 12)
    entry = wait_for_round(ls_api, backend, image_project.id, 12)
    assert entry["skipped"] == 0, "an uploaded or inline image could not be read"
    assert entry["unlabeled"] == len(rows) - 12
    first, _ = expected_next(ls_api, image_project.id)
    assert ls_api.next_task(image_project.id)["id"] == first == entry["top"][0]["task"]
