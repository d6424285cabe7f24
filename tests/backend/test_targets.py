"""Targets from annotations: the latest non-cancelled annotation per task decides."""

from autoal_backend.kinds import parse_label_config
from autoal_backend.rounds.sync import view_tasks
from tests.backend.fakes import IMAGE_CONFIG, TEXT_CONFIG

TEXT = parse_label_config(TEXT_CONFIG)
IMAGE = parse_label_config(IMAGE_CONFIG)


def annotation(choices, when, ident, cancelled=False, from_name="sentiment"):
    return {
        "id": ident,
        "updated_at": when,
        "was_cancelled": cancelled,
        "result": [
            {
                "from_name": from_name,
                "to_name": "x",
                "type": "choices",
                "value": {"choices": choices},
            }
        ],
    }


def test_latest_non_cancelled_annotation_wins():
    tasks = [
        {
            "id": 1,
            "data": {},
            "annotations": [
                annotation(["pos"], "2026-01-01", 1),
                annotation(["neg"], "2026-01-02", 2),
            ],
        },
        {
            "id": 2,
            "data": {},
            "annotations": [
                annotation(["pos"], "2026-01-01", 3),
                annotation(["neg"], "2026-01-03", 4, cancelled=True),
            ],
        },
        {"id": 3, "data": {}, "annotations": []},
        {
            "id": 4,
            "data": {},
            "annotations": [annotation(["neg"], "2026-01-01", 5, cancelled=True)],
        },
        {"id": 5, "data": {}, "annotations": [annotation(["other"], "2026-01-01", 6)]},
        {"id": 6, "data": {}, "annotations": [annotation(["pos", "neg"], "2026-01-01", 7)]},
        {"id": 7, "data": {}, "annotations": [{"id": 8, "result": [], "updated_at": "2026"}]},
    ]
    views = {v.id: v for v in view_tasks(tasks, TEXT)}
    assert views[1].answer == ["neg"] and not views[1].excluded
    assert views[2].answer == ["pos"]
    assert views[3].answer is None and not views[3].excluded  # unlabeled: a candidate
    assert views[4].excluded == "skipped by annotators"
    assert "unknown choice" in views[5].excluded
    assert "2 choices" in views[6].excluded
    assert views[7].excluded == "annotated without a choice"


def test_multi_choice_annotation_with_nothing_ticked_is_a_label():
    tasks = [
        {"id": 1, "data": {}, "annotations": [{"id": 1, "result": [], "updated_at": "2026"}]},
        {
            "id": 2,
            "data": {},
            "annotations": [annotation(["red", "blue"], "2026", 2, from_name="colour")],
        },
    ]
    views = {v.id: v for v in view_tasks(tasks, IMAGE)}
    assert views[1].answer == [] and not views[1].excluded
    assert views[2].answer == ["red", "blue"]
