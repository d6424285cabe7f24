"""A box (object detection) project with a real Label Studio 1.23.2 and the real backend.

The project has ``<RectangleLabels>`` over ``<Image>`` with names of its own; the images are
generated scenes (``benchmarks.box_data``) given as ``data:`` URIs, some stretched to a non-
square size. The admin labels in queue order with boxes (one drawn rotated by 90 degrees, which
trains as the upright box around it), a second annotator (signed up through the invite link)
draws on some of the same images, once with a wrong label. Checked: the round trains on the
agreed boxes and flags the disagreement; every prediction of the round is a list of
``rectanglelabels`` regions in percent with the image's own size and a score; the queue serves
the task the backend ranks first; the exported model predicts boxes; the boxes show in the
labeling editor.
"""

from __future__ import annotations

import pytest

from benchmarks.box_data import generated_scenes
from model.export import ExportedBoxModel, load
from scripts.demo import png_data_uri
from tests.integration.conftest import BackendProcess, LabelStudioAPI, wait_for
from tests.integration.test_label_studio_loop import create_project, expected_next, wait_for_round

CONFIG = """<View>
  <Image name="scene" value="$photo"/>
  <RectangleLabels name="things" toName="scene">
    <Label value="square"/><Label value="rectangle"/><Label value="triangle"/><Label value="circle"/>
  </RectangleLabels>
</View>"""
LABELED = 16
IMAGES = 60


@pytest.fixture(scope="module")
def box_project(ls_api: LabelStudioAPI, backend: BackendProcess) -> dict:
    corpus = generated_scenes("boxes-shapes", count=IMAGES, seed=5)
    images, truth_by_uri = [], {}
    for i, (image, boxes) in enumerate(zip(corpus.images, corpus.boxes, strict=True)):
        if i % 3 == 0:  # a non-square image: the boxes' fractions stay the same
            image = image.resize((480, 320))
        uri = png_data_uri(image)
        images.append({"photo": uri})
        truth_by_uri[uri] = ([tuple(float(v) for v in b[:4]) + (corpus.classes[int(b[4])],) for b in boxes],
                             image.size)  # fmt: skip
    project_id = create_project(ls_api, backend, "AutoAL integration: boxes", CONFIG, images)
    truth = {t["id"]: truth_by_uri[t["data"]["photo"]] for t in ls_api.tasks(project_id)}
    member = ls_api.sign_up("boxes@team.test", "Boxes-pass-7-x9")
    return {"id": project_id, "truth": truth, "member": member}


def region(x0, y0, x1, y1, label, size, rotated=False) -> dict:
    """A Label Studio rectangle for a box in fractions; ``rotated``: the same box drawn turned
    90 degrees about its top-left corner, from the corner that puts it back in place."""
    width, height = size
    value = {"x": x0 * 100, "y": y0 * 100, "width": (x1 - x0) * 100, "height": (y1 - y0) * 100,
             "rotation": 0, "rectanglelabels": [label]}  # fmt: skip
    if rotated:
        # Turned 90 degrees clockwise about (x, y), a w x h box covers x - h .. x, y .. y + w
        # (in pixels): start at the top-right corner with the sides swapped.
        w_px, h_px = (x1 - x0) * width, (y1 - y0) * height
        value.update(x=x1 * 100, width=h_px / width * 100, height=w_px / height * 100, rotation=90)
    return {"from_name": "things", "to_name": "scene", "type": "rectanglelabels",
            "original_width": width, "original_height": height, "image_rotation": 0, "value": value}  # fmt: skip


def annotate_boxes(api: LabelStudioAPI, task_id: int, boxes: list, size, rotate_first=False) -> None:  # fmt: skip
    result = [region(*b, size=size, rotated=rotate_first and k == 0) for k, b in enumerate(boxes)]
    api.call("POST", f"/api/tasks/{task_id}/annotations/", json={"result": result})


def test_a_box_project_learns_in_queue_order_and_predicts_boxes(ls_api, backend, box_project, tmp_path):  # fmt: skip
    project_id, truth = box_project["id"], box_project["truth"]
    served = []
    for n in range(LABELED):
        task = ls_api.next_task(project_id)
        boxes, size = truth[task["id"]]
        annotate_boxes(ls_api, task["id"], boxes, size, rotate_first=n == 0)
        served.append(task["id"])
    member = box_project["member"]
    for task_id in served[:2]:
        annotate_boxes(member, task_id, *truth[task_id])
    boxes, size = truth[served[2]]
    wrong = [(*b[:4], "circle" if b[4] != "circle" else "square") for b in boxes]
    annotate_boxes(member, served[2], wrong, size)

    entry = wait_for_round(ls_api, backend, project_id, LABELED)
    assert not entry["cold_start"] and entry["labeled"] == LABELED
    assert sum(entry["label_distribution"].values()) == sum(len(truth[t][0]) for t in served)
    flagged = {f["task"]: f for f in entry["disagreements"]["flagged"]}
    assert served[2] in flagged and flagged[served[2]]["disagreeing"] == 1
    assert served[0] not in flagged  # the rotated box agrees with the member's upright one

    version = ls_api.project(project_id)["model_version"]
    predictions = [p for p in ls_api.predictions(project_id) if p["model_version"] == version]
    assert predictions
    regions = 0
    for prediction in predictions:
        width, height = truth[prediction["task"]][1]
        for r in prediction["result"]:
            value = r["value"]
            assert r["type"] == "rectanglelabels" and (r["from_name"], r["to_name"]) == (
                "things",
                "scene",
            )
            assert (r["original_width"], r["original_height"]) == (width, height)
            assert 0 <= value["x"] <= 100 and 0 <= value["y"] <= 100 and value["rotation"] == 0
            assert value["rectanglelabels"][0] in {"square", "rectangle", "triangle", "circle"}
            assert 0.3 <= r["score"] <= 1.0
            regions += 1
    assert regions >= len(predictions)  # every scene holds an object, and the head finds most
    first, _ = expected_next(ls_api, project_id)
    assert ls_api.next_task(project_id)["id"] == first == entry["top"][0]["task"]

    reply = backend.get(f"/projects/{project_id}/model")
    assert reply.status_code == 200
    path = tmp_path / "boxes.pt"
    path.write_bytes(reply.content)
    exported = load(path)
    assert isinstance(exported, ExportedBoxModel)
    image = generated_scenes("boxes-shapes", count=1, seed=99).images[0]
    found = exported.predict([image])[0]["boxes"]
    assert all(b["original_width"] == image.size[0] and 0 <= b["x"] <= 100 for b in found)


def test_a_polygon_project_is_refused_at_setup(backend):
    config = (
        '<View><Image name="img" value="$image"/><PolygonLabels name="p" toName="img">'
        '<Label value="a"/></PolygonLabels></View>'
    )
    reply = backend.post("/setup", json={"project": 4242, "schema": config})
    assert reply.status_code == 422 and "polygons" in reply.json()["error"]


def test_predicted_boxes_show_in_the_labeling_editor(ls_api, backend, box_project, label_studio):
    """Chromium logs into Label Studio, opens the highest-ranked task with predicted boxes and
    finds them in the editor's region list (screenshot: results/browser/boxes-editor.png)."""
    from selenium.webdriver.common.by import By

    from tests.browser.test_pages import RESULTS, browser

    project_id = box_project["id"]
    _, order = expected_next(ls_api, project_id)
    version = ls_api.project(project_id)["model_version"]
    by_task = {
        p["task"]: p for p in ls_api.predictions(project_id) if p["model_version"] == version
    }
    first = next(t for t in order if by_task[t]["result"])
    predicted = {r["value"]["rectanglelabels"][0] for r in by_task[first]["result"]}
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

        def listed():
            text = driver.find_element(By.TAG_NAME, "body").text
            canvas = driver.find_elements(By.CSS_SELECTOR, ".konvajs-content canvas, canvas")
            return text if canvas and any(label in text for label in predicted) else None

        shown = wait_for(listed, timeout_s=90, what="predicted boxes in the labeling editor")
        RESULTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(RESULTS / "boxes-editor.png"))
        assert any(label in shown for label in predicted)
    finally:
        driver.quit()
