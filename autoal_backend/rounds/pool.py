"""The pool: every kept task as the ML core sees it (``model.pool.PoolState``).

Standardised embeddings, the kind's targets from the agreed answers (and its parts: a span
project's tokens), the round each label first appeared in (remembered in the project record),
the batch the selector plans for, and the seed of the round.
"""

import torch

from autoal_backend.kinds import ProjectSpec
from autoal_backend.rounds.sync import TaskView, task_text
from autoal_backend.settings import Settings
from autoal_backend.store import ProjectRecord
from model.pool import PoolState
from model.task_model import standardisation, standardise


def build_pool(
    record: ProjectRecord,
    views: list[TaskView],
    embeddings: torch.Tensor,
    round_number: int,
    spec: ProjectSpec,
    settings: Settings,
    device: torch.device,
    parts: list | None = None,
) -> tuple[PoolState, tuple[torch.Tensor, torch.Tensor]]:
    """The pool of every kept task (standardised features, the kind's targets from the
    agreed answers, the round each label first appeared in, remembered across rounds in the
    record) and the standardisation (mean [d], std [d]) its features were made with.
    ``parts``: the kind's per-task encoder outputs (a text's tokens for spans), in view
    order. ``embeddings`` is standardised in place (on CPU): the caller must not use it
    afterwards."""
    n = len(views)
    labeled = torch.zeros(n, dtype=torch.bool)
    labeled_round = torch.full((n,), -1, dtype=torch.long)
    seen_labeled: dict[int, int] = {}
    for row, view in enumerate(views):
        if view.answer is None:
            continue
        labeled[row] = True
        first = record.labeled_round.get(view.id, round_number)
        labeled_round[row] = first
        seen_labeled[view.id] = first
    # Forget tasks whose annotations were deleted: a new label later is a new round's.
    record.labeled_round = seen_labeled
    texts = [task_text(v.task, spec) for v in views]
    targets, kind_parts = spec.targets([v.answer for v in views], parts, device, texts)
    budget = max(1, min(settings.push_window, int((~labeled).sum())))
    raw = embeddings.to(device)  # on CPU: the same tensor, standardised in place
    stats = standardisation(raw)
    return PoolState(
        features=standardise(raw, stats=stats, in_place=True),
        targets=targets,
        labeled=labeled.to(device),
        labeled_round=labeled_round.to(device),
        multilabel=spec.multilabel,
        budget=budget,
        seed=settings.seed + round_number,
        ids=torch.tensor([v.id for v in views], dtype=torch.long, device=device),
        shortlist=settings.shortlist,
        kind=spec.kind,
        parts=kind_parts,
    ), stats
