"""History: what a round did, as one JSON entry the page, /metrics and GET history read; and
the previous round's model judged by the labels given since."""

from datetime import UTC, datetime

import torch

from autoal_backend.kinds import ProjectSpec
from autoal_backend.rounds.sync import TaskView
from autoal_backend.settings import Settings
from autoal_backend.store import ProjectRecord, ProjectStore
from model.active_round import RoundResult
from model.estimate import audit_accuracy, calibrated_accuracy
from model.pool import PoolState


def accuracy_estimate(
    store: ProjectStore,
    project_id: int,
    state: PoolState,
    views: list[TaskView],
    round_number: int,
    spec: ProjectSpec,
) -> dict | None:
    """The previous round's model judged by the labels given since (``model.estimate``):
    its guesses on the newly labeled tasks, through a calibration curve, averaged over the
    pool it ranked; and, for tasks it served at random, the unbiased audit estimate. None
    without a previous model or new labels."""
    previous = store.load_ranking(project_id)
    if previous is None or not previous.certainty:
        return None
    history = store.load_history(project_id)
    labeled_then = history[-1]["labeled"] if history else None
    rows = torch.nonzero(state.labeled & (state.labeled_round == round_number)).flatten().tolist()
    correct, certainty, audited = [], [], []
    for row in rows:
        view = views[row]
        if view.id not in previous.certainty:
            continue  # not ranked by the previous round (a new task)
        guess = previous.choices.get(view.id) or []
        correct.append(float(sorted(guess) == sorted(spec.keys(view.answer or []))))
        certainty.append(previous.certainty[view.id])
        audited.append(view.id in previous.audit)
    if not correct:
        return None
    hits = torch.tensor(correct)
    pool = torch.tensor(list(previous.certainty.values()))
    calibrated = calibrated_accuracy(hits, torch.tensor(certainty), pool, seed=state.seed)
    in_audit = torch.tensor(audited)
    audit = audit_accuracy(hits[in_audit]) if bool(in_audit.any()) else None
    return {
        "of_version": previous.model_version,
        "labeled": labeled_then,
        "judged": len(correct),
        "raw": round(float(hits.mean()), 4),
        "calibrated": calibrated.to_json() if calibrated else None,
        "audit": audit.to_json() if audit else None,
    }


def history_entry(
    record: ProjectRecord,
    spec: ProjectSpec,
    state: PoolState,
    result: RoundResult,
    top: list[dict],
    seconds: dict[str, float],
    skipped: dict[int, str],
    excluded: dict[int, str],
    pushed: int,
    settings: Settings,
    views: list[TaskView],
) -> dict:
    selection = result.selection
    labeled = state.labeled.cpu()
    # Labels per class, or entities per type: what the kind counts in each agreed answer.
    distribution = dict.fromkeys(spec.labels, 0)
    for view in views:
        for label, count in spec.counts(view.answer).items() if view.answer is not None else ():
            distribution[label] = distribution.get(label, 0) + count
    return {
        "round": record.round,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "model_version": record.model_version,
        "strategy": settings.strategy,
        "selection": "kmeans (cold start)" if result.cold_start else settings.strategy,
        "cold_start": bool(result.cold_start),
        "settings": dict(record.settings),
        "labeled": int(labeled.sum()),
        "unlabeled": int((~labeled).sum()),
        "skipped": len(skipped),
        "excluded": len(excluded),
        "pushed": pushed,
        "label_distribution": distribution,
        "validation_accuracy": result.validation_accuracy,
        "mean_weights": selection.mean_weights(),
        "top": top,
        "seconds": {k: round(v, 4) for k, v in seconds.items()},
        "info": _jsonable(selection.info),
    }


def _jsonable(value):
    """Selection.info made JSON-safe (tensors to lists, unknown objects to strings)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)
