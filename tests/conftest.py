"""Shared fixtures: tiny seeded pools with a known structure (well-separated blobs)."""

import pytest
import torch
from pool_helpers import NUM_BLOBS, PER_BLOB, make_blobs, train

from model.pool import PoolState, make_pool


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
