"""History: what a round did, as one JSON entry the page, /metrics and GET history read; and
the accuracy figure of the round's model on the tasks not yet labeled (``model.estimate``),
judged by the tasks served at random (audit tasks) that annotators have labeled."""

from datetime import UTC, datetime

import torch

from autoal_backend.kinds import ProjectSpec
from autoal_backend.rounds.sync import TaskView
from autoal_backend.settings import Settings
from autoal_backend.store import ProjectRecord, Ranking
from model.active_round import RoundConfig, RoundResult
from model.estimate import Verdict, audit_share, current_accuracy
from model.pool import PoolState

# Why a round has no figure, for kinds the estimate is not measured for and rounds without a
# model (the page says it in one sentence; /metrics carries the code).
NOT_MEASURED = "an accuracy figure is measured for choice projects only"
NO_MODEL = "no model is trained yet"


def audits_labeled(previous: Ranking | None, views: list[TaskView], history: list[dict]) -> dict:
    """The tasks the previous round served at random that have a label now: the history's
    record of them, {"round": the round whose queue drew them, "pool": how many tasks that
    queue held, "tasks": their ids}. Empty tasks without a previous ranking."""
    drawn_in = history[-1]["round"] if history else 0
    if previous is None or not previous.audit:
        return {"round": drawn_in, "pool": 0, "tasks": []}
    labeled = {v.id for v in views if v.answer is not None}
    tasks = sorted(t for t in previous.audit if t in labeled)
    return {"round": drawn_in, "pool": len(previous.scores), "tasks": tasks}


def accuracy_figure(
    state: PoolState,
    result: RoundResult,
    spec: ProjectSpec,
    history: list[dict],
    audits: dict,
    config: RoundConfig,
) -> dict:
    """The round model's accuracy on the unlabeled tasks (``model.estimate.current_accuracy``)
    from every audited task labeled so far (``history``'s records and this round's
    ``audits``), as the history stores it: the verdict (estimate, trusted, reason), the
    audited count and how many tasks were labeled."""
    labeled = int(state.labeled.sum())
    records = [e.get("audits") or {} for e in history] + [audits]
    round_of: dict[int, int] = {}
    pool_of: dict[int, int] = {}
    for record in records:
        for task in record.get("tasks", []):
            round_of[task] = int(record["round"])
            pool_of[task] = int(record["pool"])
    ids = state.item_ids().cpu().tolist()
    audit_round = torch.tensor([round_of.get(t, -1) for t in ids], dtype=torch.int64)
    audit_pool = torch.tensor([pool_of.get(t, 0) for t in ids], dtype=torch.int64)
    audited = int(((audit_pool > 0) & state.labeled.cpu()).sum())
    if spec.kind != "choices":
        verdict = Verdict(None, False, NOT_MEASURED, "not_measured")
    elif result.model is None or result.probs is None:
        verdict = Verdict(None, False, NO_MODEL, "no_model")
    else:
        verdict = current_accuracy(
            state.features, state.targets, state.labeled, state.labeled_round, audit_round,
            audit_pool, result.probs, multilabel=state.multilabel, config=config.task_model,
            seed=state.seed,
        )  # fmt: skip
    return {**verdict.to_json(), "audited": audited, "labeled": labeled}


def last_trusted(history: list[dict]) -> bool:
    """Whether the last round's accuracy figure was trusted (sizes this round's audit share)."""
    return bool(history and (history[-1].get("accuracy") or {}).get("trusted"))


def round_audit_share(history: list[dict], settings: Settings, spec: ProjectSpec) -> float:
    """The share of this round's queue served at random (``model.estimate.audit_share``); none
    for kinds whose figure is not measured (their audits would buy nothing)."""
    if spec.kind != "choices":
        return 0.0
    return audit_share(last_trusted(history), settings.audit_fraction, settings.audit_until_trusted)


def accuracy_headline(history: list[dict]) -> dict:
    """What the page's headline, the JSON API and /metrics say about the latest model's
    accuracy on the tasks not yet labeled: {"value", "low", "high", "audited", "labeled",
    "model_version", "round"} when the latest figure is trusted, else "value" None, "reason" in
    one sentence and its "code"."""
    entry = history[-1] if history else {}
    figure = entry.get("accuracy")
    base = {"model_version": entry.get("model_version"), "round": entry.get("round")}
    if not figure:
        if not entry:
            return {**base, "value": None, "reason": "no round has run yet", "code": "no_round"}
        return {**base, "value": None, "reason": "the latest round computed no figure (it ran "
                "before this version of the backend)", "code": "no_figure"}  # fmt: skip
    base |= {"audited": figure.get("audited", 0), "labeled": figure.get("labeled")}
    estimate = figure.get("estimate")
    if not figure.get("trusted") or not estimate:
        return {**base, "value": None, "reason": figure.get("reason") or NO_MODEL,
                "code": figure.get("code") or "no_model"}  # fmt: skip
    return {**base, "value": estimate["value"], "low": estimate["low"],
            "high": estimate["high"], "reason": None, "code": None}  # fmt: skip


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
