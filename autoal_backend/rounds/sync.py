"""Sync: Label Studio's tasks and annotations as the pool sees them.

Each exported task becomes a ``TaskView``: its agreed answer (the project's kind agrees its
annotators' votes), or why it is left out (skipped, an unusable annotation). The fingerprint of
the views decides whether a round has anything new to learn.
"""

import hashlib
from dataclasses import dataclass, field
from typing import Any

from autoal_backend.kinds import ProjectSpec
from autoal_backend.ls_client import LabelStudioClient
from autoal_backend.settings import Settings
from autoal_backend.store import ProjectRecord, ProjectStore

# Tasks whose annotators disagree, listed in the round history (all are counted).
HISTORY_DISAGREEMENTS = 50
FULL_SYNC_EVERY = 20


def sync_tasks(client: LabelStudioClient, store: ProjectStore, record: ProjectRecord,
               spec: ProjectSpec, project: dict | None = None,
               ) -> tuple[list["TaskView"], bool]:  # fmt: skip
    """The project's tasks as views, and whether the whole task list was read. Every
    ``FULL_SYNC_EVERY`` rounds the list is read in full, with every annotated task's
    annotations, which also catches task data (and annotations) edited in place without
    Label Studio touching the task (new and deleted tasks, new, edited and deleted annotations
    are caught every round). ``project``: Label Studio's project as the round read it at its
    start (``ROUND_PROJECT_FIELDS``): its counts spare a request, and let the sync export only
    the annotated tasks that changed (``LabelStudioClient.sync_tasks``)."""
    project_id = record.project_id
    full_due = (record.round + 1) % FULL_SYNC_EVERY == 0
    known = None if full_due else store.load_task_index(project_id, spec.data_key)
    # Annotations read under another label config are read again: Label Studio's Labels
    # Manager renames a label inside every annotation without touching the tasks.
    tasks, full_sync = client.sync_tasks(
        project_id, known=known, project=project, annotations_key=record.label_config
    )
    if full_sync or known is None or len(tasks) != len(known):
        store.save_task_index(project_id, spec.data_key, {t["id"]: t["data"] for t in tasks})
    return view_tasks(tasks, spec), full_sync


# Label Studio's counts of a project that change when there is something to learn.
STATE_COUNTS = (
    "task_number",
    "total_annotations_number",
    "skipped_annotations_number",
    "num_tasks_with_annotations",
)


def project_state(project: dict) -> dict[str, int]:
    """Label Studio's counts of a project that change when there is something to learn
    (``STATE_COUNTS``; ``ROUND_PROJECT_FIELDS`` asks for them)."""
    return {k: int(project[k]) for k in STATE_COUNTS if isinstance(project.get(k), int)}


def round_fingerprint(record: ProjectRecord, settings: Settings, views: list["TaskView"]) -> str:
    """A digest of what a round learns from: the label config, the effective settings, and
    every task with its agreed label, votes and exclusion. Equal digests, equal rounds."""
    digest = hashlib.sha256()
    digest.update(record.label_config.encode())
    digest.update(repr(sorted(record.settings.items())).encode())
    digest.update(repr((settings.strategy, settings.push_window, settings.min_labels)).encode())
    for view in sorted(views, key=lambda v: v.id):
        digest.update(
            repr(
                (view.id, view.answer, view.annotations, view.disagreement, view.excluded)
            ).encode()
        )
    return digest.hexdigest()


@dataclass
class TaskView:
    """A task as the pool sees it.

    Attributes:
        answer: the agreed answer of its annotations (the kind's ``agree``: the majority's
            choice values, or the spans most annotators marked); None when the task has no
            usable annotation (unlabeled).
        excluded: why the task is left out of the pool (skipped by annotators, an annotation
            without a choice), or "".
        annotations: usable annotations (votes) behind ``answer``.
        disagreement: how many of them differ from the agreed answer (0: all agree).
        votes: {choice or span: annotations that gave it}.
    """

    id: int
    task: dict
    answer: Any
    excluded: str = ""
    annotations: int = 0
    disagreement: int = 0
    votes: dict[str, int] = field(default_factory=dict)


def recency(annotation: dict) -> tuple[str, int]:
    """Sort key: older first (update time, then id)."""
    number = annotation.get("id")
    return (
        str(annotation.get("updated_at") or annotation.get("created_at") or ""),
        number if isinstance(number, int) and not isinstance(number, bool) else 0,
    )


def task_text(task: dict, spec: ProjectSpec) -> str | None:
    """The task's text for the kind's votes and results (span offsets index it); None when
    the field is missing or not a string."""
    data = task.get("data")
    value = data.get(spec.data_key) if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def view_tasks(tasks: list[dict], spec: ProjectSpec) -> list[TaskView]:
    """Each exported task with its agreed answer (or why it is left out)."""
    views = []
    for task in tasks:
        if not isinstance(task, dict) or type(task.get("id")) is not int:
            continue
        raw = task.get("annotations")
        annotations = [a for a in raw if isinstance(a, dict)] if isinstance(raw, list) else []
        kept = sorted((a for a in annotations if not a.get("was_cancelled")), key=recency)
        if not kept:
            skipped = any(a.get("was_cancelled") for a in annotations)
            views.append(
                TaskView(task["id"], task, None, "skipped by annotators" if skipped else "")
            )
            continue
        votes, reasons = [], []
        text = task_text(task, spec)
        for annotation in kept:
            vote, reason = spec.vote(annotation, text)
            if vote is None:
                reasons.append(reason)
            else:
                votes.append(vote)
        if not votes:
            # Every annotation is unusable: say why the newest one is.
            views.append(TaskView(task["id"], task, None, reasons[-1]))
            continue
        answer = spec.agree(votes)
        agreed = sorted(spec.keys(answer))
        tally: dict[str, int] = {}
        for vote in votes:
            for key in spec.keys(vote) or ["(none)"]:
                tally[key] = tally.get(key, 0) + 1
        differing = sum(sorted(spec.keys(vote)) != agreed for vote in votes)
        views.append(TaskView(task["id"], task, answer, "", len(votes), differing, tally))
    return views


def disagreements(views: list[TaskView], spec: ProjectSpec) -> dict:
    """The round history's record of tasks whose annotators disagree: how many, and the
    first ``HISTORY_DISAGREEMENTS`` of them (most disagreement first), flagged for review."""
    flagged = sorted((v for v in views if v.disagreement), key=lambda v: (-v.disagreement, v.id))
    return {
        "tasks": len(flagged),
        "overlapping": sum(v.annotations > 1 for v in views),
        "flagged": [
            {
                "task": v.id,
                "annotations": v.annotations,
                "disagreeing": v.disagreement,
                "agreed": spec.keys(v.answer or []),
                "votes": v.votes,
            }
            for v in flagged[:HISTORY_DISAGREEMENTS]
        ],
    }
