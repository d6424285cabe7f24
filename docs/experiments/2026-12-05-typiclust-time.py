"""What TypiClust adds to a round on a 100k pool when AutoAL's prior takes it (median of 3,
k-means beside it for scale): 30 labeled items of 10 classes, 384-d embeddings, a batch of 100,
the backend's shortlist of 20,000 candidates.

    OMP_NUM_THREADS=2 PYTHONPATH=. python docs/experiments/2026-12-05-typiclust-time.py
"""

import statistics
import time

import torch

from model.pool import make_pool
from model.strategies import score

torch.manual_seed(0)
x = torch.randn(100_030, 384)
labels = torch.full((100_030,), -1)
labels[:30] = torch.arange(30) % 10
state = make_pool(x, labels, 10, budget=100, seed=0)
state.shortlist = 20_000
candidates = state.unlabeled_indices()
for name in ("typiclust", "kmeans"):
    times = []
    for _ in range(3):
        start = time.perf_counter()
        score(state, name, candidates)
        times.append(time.perf_counter() - start)
    print(name, [round(t, 2) for t in times], "median", round(statistics.median(times), 2))
