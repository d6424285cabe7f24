"""A span (named-entity) project with a real Label Studio 1.23.2 and the real backend.

The project has ``<Labels>`` over ``<Text>`` with names of its own; a few texts start with an
emoji and accented words, so a predicted span's offsets are checked where Python's and a naive
byte count disagree. The admin labels in queue order with spans, a second annotator (signed up
through the invite link) annotates some of the same texts, once disagreeing. Checked: the round
trains on the agreed spans and flags the disagreement; every prediction of the round is a list
of ``labels`` regions whose text is the exact slice of the task text, with a score; the queue
serves the task the backend ranks first; the exported model predicts spans.
"""

from __future__ import annotations

import pytest

from benchmarks.span_data import load_synthetic_spans
from model.export import ExportedSpanModel, load
from tests.integration.conftest import BackendProcess, LabelStudioAPI, wait_for
from tests.integration.test_label_studio_loop import create_project, expected_next, wait_for_round

CONFIG = """<View>
  <Labels name="entity" toName="tweet">
    <Label value="company"/><Label value="location"/><Label value="person"/><Label value="product"/>
  </Labels>
  <Text name="tweet" value="$content"/>
</View>"""
LABELED = 14
PREFIX = "😀 Zoë\u00a0says:  "


@pytest.fixture(scope="module")
def span_project(ls_api: LabelStudioAPI, backend: BackendProcess) -> dict:
    corpus = load_synthetic_spans(seed=11, count=90)
    texts, gold = [], []
    for i, (text, spans) in enumerate(zip(corpus.texts, corpus.spans, strict=True)):
        shift = len(PREFIX) if i % 4 == 0 else 0
        texts.append((PREFIX if shift else "") + text)
        gold.append([(a + shift, b + shift, corpus.types[c]) for a, b, c in spans])
    project_id = create_project(
        ls_api, backend, "AutoAL integration: entities", CONFIG, [{"content": t} for t in texts]
    )
    by_text = dict(zip(texts, gold, strict=True))
    truth = {t["id"]: by_text[t["data"]["content"]] for t in ls_api.tasks(project_id)}
    member = ls_api.sign_up("entities@team.test", "Entities-pass-7-x9")
    return {"id": project_id, "truth": truth, "texts": {t["id"]: t["data"]["content"] for t in ls_api.tasks(project_id)},
            "member": member}  # fmt: skip


def annotate_spans(
    api: LabelStudioAPI, task_id: int, text: str, spans: list[tuple[int, int, str]]
) -> None:
    result = [{"from_name": "entity", "to_name": "tweet", "type": "labels",
               "value": {"start": a, "end": b, "text": text[a:b], "labels": [label]}} for a, b, label in spans]  # fmt: skip
    api.call("POST", f"/api/tasks/{task_id}/annotations/", json={"result": result})


def test_a_span_project_learns_in_queue_order_and_predicts_exact_spans(
    ls_api, backend, span_project, tmp_path
):
    project_id, truth, texts = span_project["id"], span_project["truth"], span_project["texts"]
    served = []
    for _ in range(LABELED):
        task = ls_api.next_task(project_id)
        annotate_spans(ls_api, task["id"], texts[task["id"]], truth[task["id"]])
        served.append(task["id"])
    # The second annotator agrees on two texts and disagrees on one label of a third.
    member = span_project["member"]
    with_entities = [t for t in served if truth[t]][:3]
    for task_id in with_entities[:2]:
        annotate_spans(member, task_id, texts[task_id], truth[task_id])
    wrong = [
        (a, b, "product" if label != "product" else "company")
        for a, b, label in truth[with_entities[2]]
    ]
    annotate_spans(member, with_entities[2], texts[with_entities[2]], wrong)

    entry = wait_for_round(ls_api, backend, project_id, LABELED)
    assert not entry["cold_start"] and entry["labeled"] == LABELED
    entities = sum(len(truth[t]) for t in served)
    assert sum(entry["label_distribution"].values()) == entities
    flagged = {f["task"]: f for f in entry["disagreements"]["flagged"]}
    assert with_entities[2] in flagged and flagged[with_entities[2]]["disagreeing"] == 1
    assert with_entities[0] not in flagged

    version = ls_api.project(project_id)["model_version"]
    predictions = [p for p in ls_api.predictions(project_id) if p["model_version"] == version]
    assert predictions
    regions = 0
    for prediction in predictions:
        text = texts[prediction["task"]]
        for region in prediction["result"]:
            value = region["value"]
            assert (
                region["type"] == "labels"
                and region["from_name"] == "entity"
                and region["to_name"] == "tweet"
            )
            assert text[value["start"] : value["end"]] == value["text"]
            assert value["labels"][0] in {"company", "location", "person", "product"}
            assert 0.0 <= region["score"] <= 1.0
            regions += 1
    assert regions >= len(predictions)  # most texts hold an entity, and the tagger finds them
    shifted = [p for p in predictions if texts[p["task"]].startswith(PREFIX) and p["result"]]
    assert shifted, "no prediction on a text that starts with an emoji"
    first, _ = expected_next(ls_api, project_id)
    assert ls_api.next_task(project_id)["id"] == first == entry["top"][0]["task"]

    reply = backend.get(f"/projects/{project_id}/model")
    assert reply.status_code == 200
    path = tmp_path / "spans.pt"
    path.write_bytes(reply.content)
    exported = load(path)
    assert isinstance(exported, ExportedSpanModel)
    text = texts[first]
    spans = exported.predict([text])[0]["spans"]
    assert all(text[s["start"] : s["end"]] == s["text"] for s in spans)


def test_predicted_spans_show_in_the_labeling_editor(ls_api, backend, span_project, label_studio):
    """Chromium logs into Label Studio, opens the highest-ranked task with a predicted span and
    finds the spans highlighted in the editor (screenshot: results/browser/spans-editor.png)."""
    from selenium.webdriver.common.by import By

    from tests.browser.test_pages import RESULTS, browser

    project_id = span_project["id"]
    _, order = expected_next(ls_api, project_id)
    version = ls_api.project(project_id)["model_version"]
    by_task = {
        p["task"]: p for p in ls_api.predictions(project_id) if p["model_version"] == version
    }
    first = next(t for t in order if by_task[t]["result"])
    predicted = {r["value"]["text"] for r in by_task[first]["result"]}
    driver = browser()
    try:
        driver.get(f"{label_studio.url}/user/login/")
        driver.find_element(By.NAME, "email").send_keys(label_studio.username)
        driver.find_element(By.NAME, "password").send_keys(label_studio.password)
        driver.find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit]").click()
        wait_for(
            lambda: "/user/login" not in driver.current_url,
            timeout_s=60,
            what="the Label Studio login",
        )
        driver.get(f"{label_studio.url}/projects/{project_id}/data?task={first}")

        def highlighted():
            marks = driver.find_elements(By.CSS_SELECTOR, ".htx-highlight, [class*='highlight']")
            return [m.text for m in marks if m.text.strip()]

        shown = wait_for(
            highlighted, timeout_s=90, what="predicted spans highlighted in the editor"
        )
        RESULTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(RESULTS / "spans-editor.png"))
        assert predicted & {s.strip() for s in shown} or any(
            p in " ".join(shown) for p in predicted
        )
    finally:
        driver.quit()
