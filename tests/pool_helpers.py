"""Tiny seeded pools with a known structure (well-separated blobs), shared by the model tests.

A plain module (not conftest.py) so that test files can import it by name: ``tests`` is on
pytest's ``pythonpath``.
"""

from dataclasses import replace

import torch

from model.pool import PoolState
from model.task_model import TaskModel, TaskModelConfig

NUM_BLOBS = 4
PER_BLOB = 30
DIM = 6
# Few steps: the fixtures need a model that has learned something, not a converged one.
FAST_MODEL = TaskModelConfig(steps=100)


def make_blobs(
    sizes: list[int], dim: int = DIM, spread: float = 0.5, distance: float = 8.0, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian blobs: features [sum(sizes), dim] and blob index [sum(sizes)].

    Blob b is centred at ``distance`` * e_b (so blobs are ``distance * sqrt(2)`` apart).
    """
    rng = torch.Generator().manual_seed(seed)
    parts, labels = [], []
    for blob, size in enumerate(sizes):
        centre = torch.zeros(dim)
        centre[blob % dim] = distance * (1 + blob // dim)
        parts.append(centre + spread * torch.randn(size, dim, generator=rng))
        labels.append(torch.full((size,), blob))
    return torch.cat(parts), torch.cat(labels)


def train(state: PoolState, seed: int = 0) -> PoolState:
    """The pool with a task model trained on its labeled items, and its probabilities."""
    labeled = state.labeled_indices()
    model = TaskModel.fit(
        state.features[labeled],
        state.targets[labeled],
        multilabel=state.multilabel,
        config=FAST_MODEL,
        seed=seed,
    )
    return replace(state, model=model, probs=model.predict_proba(state.features))
