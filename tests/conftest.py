"""Shared fixtures: tiny seeded pools with a known structure (well-separated blobs)."""

from dataclasses import replace

import pytest
import torch

from model.pool import PoolState, make_pool
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


@pytest.fixture(scope="session")
def blobs() -> tuple[torch.Tensor, torch.Tensor]:
    """[120, 6] features in 4 well-separated blobs of 30, and the blob index [120]."""
    return make_blobs([PER_BLOB] * NUM_BLOBS)


@pytest.fixture(scope="session")
def trained_pool(blobs) -> PoolState:
    """Single-label pool over ``blobs``: 3 labeled per blob, a trained model, budget 5."""
    features, blob = blobs
    labels = torch.full_like(blob, -1)
    for b in range(NUM_BLOBS):
        labels[(blob == b).nonzero().flatten()[:3]] = b
    return train(make_pool(features, labels, NUM_BLOBS, budget=5, seed=3))


@pytest.fixture(scope="session")
def multilabel_pool(blobs) -> PoolState:
    """Multi-label pool over ``blobs``: blob b carries labels {b, b+1 mod 4}; 3 labeled per
    blob, a trained sigmoid model, budget 5."""
    features, blob = blobs
    targets = torch.zeros(features.shape[0], NUM_BLOBS)
    labeled = torch.zeros(features.shape[0], dtype=torch.bool)
    for b in range(NUM_BLOBS):
        rows = (blob == b).nonzero().flatten()[:3]
        labeled[rows] = True
        targets[rows, b] = 1.0
        targets[rows, (b + 1) % NUM_BLOBS] = 1.0
    state = PoolState(
        features=features,
        targets=targets,
        labeled=labeled,
        labeled_round=torch.where(labeled, 0, -1),
        multilabel=True,
        budget=5,
        seed=3,
    )
    return train(state)
