"""A box project through the real round loop (fake Label Studio, a fake map encoder): annotations
with rectangles in, predicted ``rectanglelabels`` regions in percent with the image's size and a
score out, the queue ranked, boxes counted per class, annotators' disagreement agreed, the
model exported, per-project box settings applied."""

import random

import pytest

from autoal_backend.errors import RequestError
from autoal_backend.store import round_version
from model.export import ExportedBoxModel, load
from tests.backend.conftest import make_backend, make_settings
from tests.backend.fakes import (
    BOX_CONFIG,
    FakeLabelStudio,
    FakeMapEncoder,
    box_annotation,
    scene_png,
)


def scene(i: int) -> list[tuple[int, int, str]]:
    """Task ``i``'s objects: one or two squares on distinct cells of a 4 x 4 grid."""
    draw = random.Random(i)
    cells = draw.sample(range(16), 1 + i % 2)
    return [(c % 4, c // 4, "red" if (i + k) % 2 else "blue") for k, c in enumerate(cells)]


def box_project(ls: FakeLabelStudio, project_id: int = 5, labeled: int = 16, unlabeled: int = 24) -> None:  # fmt: skip
    ls.add_project(project_id, BOX_CONFIG)
    for i in range(labeled + unlabeled):
        ls.files[f"scene{i}.png"] = scene_png(scene(i))
        task = ls.add_task(project_id, 2000 + i, {"picture": f"/data/upload/scene{i}.png"})
        if i < labeled:
            task["annotations"].append(box_annotation(i + 1, scene(i)))


def centre_cell(value: dict) -> tuple[int, int]:
    x = value["x"] + value["width"] / 2
    y = value["y"] + value["height"] / 2
    return int(x // 25), int(y // 25)


def test_a_box_project_runs_a_round_end_to_end(tmp_path):
    ls = FakeLabelStudio()
    box_project(ls)
    backend = make_backend(make_settings(tmp_path, AUTOAL_PUSH_WINDOW="50"), ls, FakeMapEncoder())
    backend.setup({"project": 5, "schema": BOX_CONFIG})
    backend.worker.wait_idle(120)
    backend.worker.stop()
    history = backend.store.load_history(5)
    assert history and not history[-1]["cold_start"]
    expected = {"red": 0, "blue": 0}
    for i in range(16):
        for *_, colour in scene(i):
            expected[colour] += 1
    assert history[-1]["label_distribution"] == expected  # boxes per class
    assert ls.projects[5]["model_version"] == round_version(5, 1)
    predictions = [p for p in ls.predictions if p["model_version"] == round_version(5, 1)]
    assert len(predictions) == 24  # every unlabeled image is ranked
    right = total = 0
    for prediction in predictions:
        truth = {(c, r): colour for c, r, colour in scene(prediction["task"] - 2000)}
        for region in prediction["result"]:
            assert region["type"] == "rectanglelabels"
            assert (region["from_name"], region["to_name"]) == ("objects", "photo")
            assert (region["original_width"], region["original_height"]) == (64, 64)
            value = region["value"]
            assert value["rotation"] == 0 and 0 <= value["x"] <= 100 and value["width"] > 0
            assert 0.3 <= region["score"] <= 1.0  # AUTOAL_BOX_MIN_SCORE's default
            total += 1
            right += truth.get(centre_cell(value)) == value["rectanglelabels"][0]
    assert total >= 20 and right / total >= 0.8
    first = min(predictions, key=lambda p: p["score"])
    assert not first["result"] or "AutoAL" in first["result"][0]["meta"]["text"][0]
    exported = load(backend.store.directory(5) / "model.pt")
    assert isinstance(exported, ExportedBoxModel) and exported.labels == ["red", "blue"]


def test_predict_answers_box_regions_from_the_ranking(tmp_path):
    ls = FakeLabelStudio()
    box_project(ls)
    backend = make_backend(make_settings(tmp_path), ls, FakeMapEncoder())
    backend.register(5, BOX_CONFIG)
    backend._run_round(5)
    task = next(t for t in ls.tasks[5] if t["id"] == 2030)
    reply = backend.predict({"project": 5, "tasks": [task]})["results"][0]
    assert reply["model_version"] == round_version(5, 1)
    found = {(centre_cell(r["value"]), r["value"]["rectanglelabels"][0]) for r in reply["result"]}
    assert found == {((c, r), colour) for c, r, colour in scene(30)}
    ranking = backend.ranking(5)
    # the guesses kept: each image's detections from .05 up, and always its best one
    assert all(
        scores and all(s >= 0.05 for s in scores[1:]) for scores in ranking.confidence.values()
    )
    assert all(scores == sorted(scores, reverse=True) for scores in ranking.confidence.values())


def test_box_settings_apply_per_project(tmp_path):
    ls = FakeLabelStudio()
    box_project(ls)
    backend = make_backend(make_settings(tmp_path, AUTOAL_PUSH_WINDOW="50"), ls, FakeMapEncoder())
    backend.setup({"project": 5, "schema": BOX_CONFIG, "extra_params": {"max_boxes": 1}})
    backend.worker.wait_idle(120)
    backend.worker.stop()
    pushed = [p for p in ls.predictions if p["model_version"] == round_version(5, 1)]
    assert len(pushed) == 24 and max(len(p["result"]) for p in pushed) == 1
    backend.projects.set_settings(5, {"AUTOAL_BOX_MIN_SCORE": "1.0"})
    task = next(t for t in ls.tasks[5] if t["id"] == 2031)
    assert backend.predict({"project": 5, "tasks": [task]})["results"][0]["result"] == []


def test_annotators_disagreeing_on_boxes_are_agreed_and_flagged(tmp_path):
    ls = FakeLabelStudio()
    box_project(ls)
    task = next(t for t in ls.tasks[5] if t["id"] == 2001)
    objects = scene(1)
    wrong = [(c, r, "blue" if colour == "red" else "red") for c, r, colour in objects]
    task["annotations"].append(box_annotation(90, wrong))
    task["annotations"].append(box_annotation(91, objects))
    backend = make_backend(make_settings(tmp_path), ls, FakeMapEncoder())
    backend.register(5, BOX_CONFIG)
    backend._run_round(5)
    history = backend.store.load_history(5)[-1]
    flagged = {f["task"]: f for f in history["disagreements"]["flagged"]}
    assert flagged[2001]["annotations"] == 3 and flagged[2001]["disagreeing"] == 1
    assert sorted(key.split()[-1] for key in flagged[2001]["agreed"]) == sorted(
        c for *_, c in objects
    )


def test_feature_maps_are_cached_across_rounds(tmp_path):
    ls = FakeLabelStudio()
    box_project(ls)
    encoder = FakeMapEncoder()
    backend = make_backend(make_settings(tmp_path), ls, encoder)
    backend.register(5, BOX_CONFIG)
    backend._run_round(5)
    calls = sum(encoder.calls)
    next(t for t in ls.tasks[5] if t["id"] == 2020)["annotations"].append(box_annotation(99, []))
    backend._run_round(5)
    assert sum(encoder.calls) == calls  # nothing new to embed
    history = backend.store.load_history(5)
    assert [entry["round"] for entry in history] == [1, 2] and history[-1]["labeled"] == 17


def test_the_project_page_and_metrics_serve_a_box_project(tmp_path):
    from autoal_backend import overview, pages

    ls = FakeLabelStudio()
    box_project(ls)
    backend = make_backend(make_settings(tmp_path), ls, FakeMapEncoder())
    backend.register(5, BOX_CONFIG)
    backend._run_round(5)
    data = overview.project_overview(backend, 5)
    assert data["labels"] == ["red", "blue"]
    html = pages.project_page(data)
    assert "red" in html and "blue" in html
    assert 'autoal_rounds_total{project="5"} 1' in backend.metrics_text().splitlines()


def test_a_box_strategy_serves_box_projects_only(tmp_path):
    ls = FakeLabelStudio()
    box_project(ls)
    backend = make_backend(make_settings(tmp_path), ls, FakeMapEncoder())
    backend.setup({"project": 5, "schema": BOX_CONFIG, "extra_params": {"strategy": "box_bald"}})
    backend.worker.wait_idle(120)
    backend.worker.stop()
    assert backend.store.load_history(5)[-1]["selection"] == "box_bald"
    with pytest.raises(RequestError, match="strategy for boxes projects 'token_margin'") as refused:
        backend.setup(
            {"project": 5, "schema": BOX_CONFIG, "extra_params": {"strategy": "token_margin"}}
        )
    assert refused.value.status == 422
