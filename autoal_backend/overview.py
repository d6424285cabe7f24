"""What the project pages (and their JSON under /api/projects) show, built from the round
history, the store and the running round: one function per view, JSON-able results.

The headline is the latest model's accuracy on the tasks not yet labeled, judged by the tasks
served at random (``model.estimate``, ``rounds.history.accuracy_headline``): a figure with its
95% band once it is trusted, one sentence saying why not before. The learning curve draws the
trusted figures only; cross-validated accuracy on the labeled items is shown next to them,
dashed: the queue picks hard items, so it reads low.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from autoal_backend.rounds.history import accuracy_headline

if TYPE_CHECKING:
    from autoal_backend.service import Backend

# A class with fewer labels than this (or than a fifth of the mean per class) gets a warning.
FEW_LABELS = 5
STATUS_WORDS = {
    "syncing": "reading the project from Label Studio",
    "embedding": "embedding new tasks",
    "training": "training the model and ranking the queue",
    "pushing": "writing the new queue to Label Studio",
    "validating": "scoring the model (cross-validation)",
}


def status(backend: Backend, project_id: int) -> dict:
    """idle / queued / retrying / a running stage (with embedding progress), and the last
    failed round's error in plain words."""
    progress = backend.runner.progress(project_id)
    retrying = backend.worker.retrying().get(project_id)
    out: dict = {"state": "idle", "text": "idle: the queue is up to date"}
    if progress:
        stage = progress["stage"]
        out = {"state": stage, "text": STATUS_WORDS.get(stage, stage),
               "for_seconds": round(time.time() - progress["since"], 1),
               "round_seconds": round(time.time() - progress["round_started"], 1)}  # fmt: skip
        if stage == "embedding" and progress.get("total"):
            out["embedded"] = progress["done"]
            out["to_embed"] = progress["total"]
            out["items_per_second"] = progress.get("items_per_second")
            out["seconds_left"] = progress.get("seconds_left")
            out["text"] = f"embedding new tasks: {progress['done']:,} of {progress['total']:,}"
            if progress.get("seconds_left") is not None:
                out["text"] += f", about {progress['seconds_left']:.0f} s left"
    elif retrying is not None:
        attempts, wait = retrying
        out = {"state": "retrying", "attempts": attempts, "retry_in_seconds": round(wait, 1),
               "text": f"waiting to retry (attempt {attempts + 1} in {wait:.0f} s)"}  # fmt: skip
    elif project_id in backend.worker.pending_projects():
        out = {"state": "queued", "text": "a round is queued"}
    error = backend.store.load_last_error(project_id)
    if error:
        out["last_error"] = {
            "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(error["time"])),
            "message": error["message"],
            "kind": error["kind"],
            "retrying": error.get("retrying", False),
        }
    return out


def project_row(backend: Backend, project_id: int) -> dict:
    """One line of the projects list."""
    record = backend.store.load_record(project_id)
    history = backend.store.load_history(project_id)
    last = history[-1] if history else {}
    return {
        "project": project_id,
        "labels": list(record.spec.labels) if record else [],
        "labeled": last.get("labeled", 0),
        "unlabeled": last.get("unlabeled"),
        "rounds": len(history),
        "last_round": last.get("time"),
        "model_version": record.model_version if record else None,
        "strategy": backend.runner.project_settings(record).strategy if record else None,
        "accuracy": with_text(accuracy_headline(history)),
        "status": status(backend, project_id),
    }


def with_text(accuracy: dict) -> dict:
    return {**accuracy, "text": headline_text(accuracy)}


def headline_text(accuracy: dict) -> str:
    """The headline in one sentence: the figure with its band, or why there is none yet."""
    if accuracy.get("value") is None:
        return f"No accuracy figure yet: {accuracy['reason']}."
    return (
        f"The model's guesses are right on about {accuracy['value']:.0%} of the tasks not yet "
        f"labeled (95% band {accuracy['low']:.0%}-{accuracy['high']:.0%}), judged by "
        f"{accuracy['audited']} tasks served at random."
    )


def learning_curve(history: list[dict]) -> dict:
    """Points against labels: the trusted accuracy figures on the unlabeled tasks (with their
    band) and cross-validated accuracy on the labeled ones."""
    figures, cross = [], []
    for entry in history:
        figure = entry.get("accuracy") or {}
        estimate = figure.get("estimate")
        if figure.get("trusted") and estimate:
            figures.append({"labeled": entry["labeled"], "value": estimate["value"],
                            "low": estimate["low"], "high": estimate["high"],
                            "audited": figure.get("audited", 0)})  # fmt: skip
        if entry.get("validation_accuracy") is not None:
            cross.append(
                {"labeled": entry["labeled"], "value": round(entry["validation_accuracy"], 4)}
            )
    return {
        "unlabeled": figures,
        "cross_validated": cross,
        "explanation": (
            "A share of the queue is served at random (audit tasks); once labeled, they judge "
            "the current model on tasks it did not train on, so the figure is its accuracy on "
            "the tasks not yet labeled, with a 95% band. A figure is drawn only once the band "
            "is expected to be at most 10 points either side; until then the queue serves more "
            "tasks at random (AUTOAL_AUDIT_UNTIL_TRUSTED). In simulation on the packaged data "
            "sets (docs/benchmarks.md) the figures drawn were off by 1-3 points on average and "
            "their band held the truth in 98-100% of rounds; where the model is hard to judge "
            "(MNIST, Rotten Tomatoes) no figure was drawn within 220 labels. The dashed line is "
            "cross-validation on the labeled tasks: the queue picks hard ones, so it reads low."
        ),
    }


def labels_over_rounds(history: list[dict], labels: list[str]) -> dict:
    """Labels per class after each round, and warnings for classes with too few."""
    points = [{"labeled": e["labeled"], "counts": e.get("label_distribution", {})} for e in history]
    warnings = []
    if points:
        counts = points[-1]["counts"]
        mean = sum(counts.values()) / max(len(labels), 1)
        for label in labels:
            n = counts.get(label, 0)
            if n < FEW_LABELS or n < 0.2 * mean:
                warnings.append(f"'{label}' has only {n} label{'s' if n != 1 else ''} "
                                f"(mean per class {mean:.0f}): the model knows little about it")  # fmt: skip
    return {"rounds": points, "warnings": warnings}


def weights_over_rounds(history: list[dict]) -> dict:
    """The strategies' mean shares of the priority in each round (what the search chose)."""
    rounds = [
        {"round": e["round"], "labeled": e["labeled"], "weights": e.get("mean_weights", {}),
         "action": (e.get("info") or {}).get("prior_action"),
         "state": (e.get("info") or {}).get("state"), "cold_start": e.get("cold_start", False)}
        for e in history
    ]  # fmt: skip
    return {"rounds": rounds}


def top_tasks(backend: Backend, project_id: int, limit: int = 20) -> list[dict]:
    """The head of the latest queue with why each task is there and what it shows."""
    history = backend.store.load_history(project_id)
    record = backend.store.load_record(project_id)
    if not history or record is None:
        return []
    spec = record.spec
    index = backend.store.load_task_index(project_id, spec.data_key) or {}
    rows = []
    for position, task in enumerate(history[-1].get("top", [])[:limit]):
        value = (index.get(task["task"]) or {}).get(spec.data_key)
        row = {**task, "position": position + 1}
        if spec.modality == "text" and spec.value_type != "url" and isinstance(value, str):
            row["text"] = value[:400]
        elif spec.modality == "image":
            row["thumbnail"] = f"/projects/{project_id}/tasks/{task['task']}/thumbnail"
        rows.append(row)
    return rows


def timings(history: list[dict], last: int = 10) -> list[dict]:
    return [
        {"round": e["round"], "time": e.get("time"), "seconds": e.get("seconds", {})}
        for e in history[-last:]
    ]


def project_overview(backend: Backend, project_id: int) -> dict:
    """Everything the project page shows, as JSON."""
    record = backend.record(project_id)
    history = backend.store.load_history(project_id)
    labels = list(record.spec.labels)
    last = history[-1] if history else {}
    return {
        "project": project_row(backend, project_id),
        "labels": labels,
        "settings": dict(record.settings),
        "learning_curve": learning_curve(history),
        "labels_over_rounds": labels_over_rounds(history, labels),
        "weights_over_rounds": weights_over_rounds(history),
        "top": top_tasks(backend, project_id),
        "timings": timings(history),
        "disagreements": last.get("disagreements", {"tasks": 0, "flagged": []}),
    }


def project_rows(backend: Backend) -> list[dict]:
    """One row per project the backend tracks, for the projects page and ``GET /projects``."""
    return [project_row(backend, pid) for pid in backend.store.project_ids()]
