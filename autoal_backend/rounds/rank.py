"""Rank: the selector's priorities as Label Studio's queue, and what annotators see.

Every candidate gets a queue score (its rank: lower = sooner, which Label Studio's uncertainty
sampling serves first) and the model's guess; the top of the queue (the push window) gets a
prediction whose regions carry the guess, its confidence, and the one-line reason.
"""

import torch

from autoal_backend.kinds import ProjectSpec
from autoal_backend.rounds.sync import TaskView, task_text
from autoal_backend.settings import Settings
from autoal_backend.store import Ranking
from model.active_round import RoundResult
from model.estimate import interleave_audit
from model.pool import PoolState
from model.ranking import rank_normalise

HISTORY_TOP = 20


def rank(state: PoolState, result: RoundResult, spec: ProjectSpec, version: str, settings: Settings,
         views: list[TaskView], audit: float = 0.0) -> tuple[Ranking, list[dict], list[dict]]:  # fmt: skip
    """Scores for every candidate (lower = sooner), predictions for the top window only,
    and the top tasks with their main strategy for the history. ``audit``: the share of the
    queue served at random (``history.round_audit_share``), cold-start queues included.

    Each prediction's regions carry the model's probability for the choice they select
    (``score`` per region; one region per chosen label when multi-label); the
    prediction's own ``score`` is the queue key that Label Studio's uncertainty sampling
    serves lowest first."""
    selection = result.selection
    ids = state.item_ids()[selection.candidates].cpu().tolist()  # [M]
    priority = selection.priority.detach().float()
    # 1 - rank-normalised priority: the first task scores 0, the last 1; ranks, not raw
    # priorities, so the scores are spread evenly whatever the selector's scale.
    queue_keys = (1.0 - rank_normalise(priority, seed=state.seed)).cpu()  # [M]
    scores = queue_keys.tolist()
    why = selection.top_strategy()
    texts = [task_text(views[i].task, spec) for i in selection.candidates.tolist()]
    picked, confidence, certainty = spec.predict(result, selection.candidates, texts)
    ranking = Ranking(
        version,
        scores=dict(zip(ids, scores, strict=True)),
        choices=dict(zip(ids, picked, strict=True)),
        why=dict(zip(ids, why, strict=True)),
        confidence=dict(zip(ids, confidence, strict=True)),
        certainty=dict(zip(ids, certainty, strict=True)) if certainty else {},
    )
    # Lowest score first, ties by position (a stable sort), as sorted() by (score, i) would.
    order = torch.argsort(queue_keys, stable=True).tolist()
    audited: set[int] = set()
    if audit > 0:
        # A share of the queue served at random: its labels judge the model without bias.
        mixed, is_audit = interleave_audit(torch.tensor(order), audit, state.seed)
        order = mixed.tolist()
        audited = {ids[i] for i, flag in zip(order, is_audit.tolist(), strict=True) if flag}
        spread = sorted(scores)
        for position, i in enumerate(order):
            scores[i] = spread[position]
        ranking.scores = dict(zip(ids, scores, strict=True))
        ranking.audit = audited
    window = order[: settings.push_window]
    predictions = []
    for position, i in enumerate(window):
        # What annotators see (span and box projects hide the regions their model doubts), and the
        # reason naming exactly that.
        shown, shown_confidence = spec.shown(picked[i], confidence[i], settings)
        reason = "served at random to measure accuracy (audit)" if ids[i] in audited else why[i]
        why_line = why_text(version, reason, spec.names(shown, texts[i]), shown_confidence, position,
                            len(ids), trained=result.model is not None)  # fmt: skip
        predictions.append(
            {
                "task": ids[i],
                "result": spec.result(shown, why_line, shown_confidence, texts[i]),
                "score": scores[i],
                "model_version": version,
            }
        )
    top = [
        {
            "task": ids[i],
            "score": round(scores[i], 6),
            "priority": round(float(priority[i]), 6),
            "strategy": why[i],
            "predicted": picked[i],
            "confidence": [round(c, 4) for c in confidence[i]],
            "contributions": {
                name: round(float(v), 5)
                for name, v in zip(
                    selection.strategy_names, selection.contributions[i].tolist(), strict=True
                )
            },
            "audit": ids[i] in audited,
        }
        for i in window[:HISTORY_TOP]
    ]
    return ranking, predictions, top


# AUTOAL_PUSH_WINDOW=auto: the window is sized to the labels that arrive between two rounds.
AUTO_WINDOW = 0
AUTO_WINDOW_MIN, AUTO_WINDOW_MAX, AUTO_WINDOW_ROUNDS = 10, 100, 5


def auto_window(history: list[dict], labeled_now: int) -> int:
    """The push window for ``AUTOAL_PUSH_WINDOW=auto``: the most labels that arrived between two
    of the last ``AUTO_WINDOW_ROUNDS`` rounds, this one (``labeled_now``) included (at least
    ``AUTO_WINDOW_MIN``, at most ``AUTO_WINDOW_MAX``; the maximum before any labels arrived).

    Where Label Studio serves a random task among those holding a current prediction
    (Enterprise projects with members), the window is what the annotators label in random
    order: sized to one round's labels, they label the selector's batch, in another order;
    larger, a random part of it (docs/benchmarks.md measures the cost). The selector's batch is
    the window, so k-means picks that many centres."""
    labeled = [int(e.get("labeled", 0)) for e in history[-AUTO_WINDOW_ROUNDS:]] + [labeled_now]
    steps = [b - a for a, b in zip(labeled, labeled[1:], strict=False) if b > a]
    if not steps:
        return AUTO_WINDOW_MAX
    return max(AUTO_WINDOW_MIN, min(AUTO_WINDOW_MAX, max(steps)))


def why_text(
    version: str,
    strategy: str,
    choices: list[str],
    confidence: list[float],
    position: int | None = None,
    total: int | None = None,
    trained: bool = False,
) -> str:
    """The one-line reason stored with a prediction: the queue position (when pushed), the
    model's guess with its confidence, and the strategy that put the task there. The full
    picture (weights, top tasks) is in GET /projects/<id>/history."""
    parts = [f"AutoAL {version}:"]
    if position is not None and total is not None:
        parts.append(f"#{position + 1} of {total} to label;")
    if choices:
        guesses = ", ".join(f"{c} ({p:.0%})" for c, p in zip(choices, confidence, strict=True))
        parts.append(f"model's guess {guesses};")
    else:
        # A trained model that marks nothing (a text without entities) still made a guess.
        parts.append("model's guess: nothing;" if trained else "no guess yet;")
    parts.append(f"main reason: {strategy}")
    return " ".join(parts)
