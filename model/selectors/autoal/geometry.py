"""Whether the embedding's geometry follows the labels: the state features that say if
diversity can pay on this pool.

Diversity strategies (k-means, core-set, TypiClust) assume that covering the embedding covers
the labels. That holds where the pool's clusters are the classes (topics in a topic-trained
sentence embedding, templates of generated text) and fails where they are not (sentiment in
the same embedding, entities in tweets): there diversity labels examples that teach nothing
(issue 24). The numbers here read that off the round, for any task kind, from what every kind
fills in the pool state (``features``, ``targets``, ``probs``):

- ``knn_label_lift``: how much better the labeled items' labels are predicted by their nearest
  labeled neighbours than by as many random labeled items (1 = perfectly, 0 = no better than
  chance): label smoothness over the k-NN graph.
- ``knn_head_agreement``: how often a k-NN vote over the labeled items and the trained head
  predict the same on the unlabeled items: near 1 where the head learned what the geometry
  says, low where it learned something the geometry does not show.
- ``cluster_tightness``: the share of the unlabeled pool's spread that 20 k-means clusters
  explain (1 = the pool is 20 tight clumps, 0 = no structure).
- ``uncovered_mass``: the share of the unlabeled pool in those clusters that no labeled item
  is nearest to: what covering the embedding would still reach.

All are computed on seeded samples of at most ``SAMPLE`` labeled and ``SAMPLE`` unlabeled
items, so their cost and memory do not grow with the pool (a few tens of milliseconds on 2
cores).
"""

from __future__ import annotations

import torch

from model.pool import PoolState, as_distributions
from model.seeding import generator
from model.strategies.common import nearest_centre, squared_norms
from model.strategies.diversity import kmeans

# Bumped whenever a feature's computation changes, so cached episodes know they are stale
# (``benchmarks.kind_episodes.refeature_episode``).
GEOMETRY_VERSION = 2
GEOMETRY_FEATURES: tuple[str, ...] = (
    "knn_label_lift",
    "knn_head_agreement",
    "cluster_tightness",
    "uncovered_mass",
)
SAMPLE = 2000  # pool items the pool-wide features look at
NEIGHBOURS = 5  # labeled neighbours in a k-NN vote
CLUSTERS = 20  # k of the clustering that tightness and coverage read
CHANCE_DRAWS = 4  # random neighbour draws that set the chance level of the lift


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _vote(similarity: torch.Tensor, targets: torch.Tensor, k: int) -> torch.Tensor:
    """[m, C] the mean target of each row's ``k`` most similar columns (``similarity`` [m, L])."""
    nearest = similarity.topk(k, dim=1).indices  # [m, k]
    return targets[nearest].mean(dim=1)


def knn_label_lift(x: torch.Tensor, targets: torch.Tensor, rng: torch.Generator) -> float:
    """1 - (error of the leave-one-out k-NN vote) / (error of a vote of random labeled items),
    over the labeled items' unit vectors ``x`` [L, d] and targets [L, C]; 0 when fewer than 3
    items or every item has the same targets."""
    n = x.shape[0]
    if n < 3:
        return 0.0
    k = min(NEIGHBOURS, n - 1)
    similarity = x @ x.t()
    similarity.fill_diagonal_(-float("inf"))
    knn_error = float((_vote(similarity, targets, k) - targets).abs().mean())
    chance = 0.0
    for _ in range(CHANCE_DRAWS):
        random = torch.rand(n, n, generator=rng).to(x.device)
        random.fill_diagonal_(-float("inf"))
        chance += float((_vote(random, targets, k) - targets).abs().mean()) / CHANCE_DRAWS
    if chance <= 1e-9:
        return 0.0
    return max(-1.0, min(1.0, 1.0 - knn_error / chance))


def knn_head_agreement(
    x_labeled: torch.Tensor,
    targets: torch.Tensor,
    x_items: torch.Tensor,
    probs: torch.Tensor,
    multilabel: bool,
) -> float:
    """The share of (item, question) pairs on which a k-NN vote over the labeled items and the
    head's ``probs`` [m, C] pick the same answer (a question is the class for one label per
    item, each label's yes/no for several); 1.0 with no labeled item to vote."""
    if x_labeled.shape[0] == 0 or x_items.shape[0] == 0:
        return 1.0
    k = min(NEIGHBOURS, x_labeled.shape[0])
    vote = _vote(x_items @ x_labeled.t(), targets, k)  # [m, C]
    head = as_distributions(probs, multilabel).argmax(dim=-1)  # [m, G]
    knn = as_distributions(vote, multilabel).argmax(dim=-1)
    return float((head == knn).float().mean())


def cluster_geometry(
    items: torch.Tensor, labeled: torch.Tensor, rng: torch.Generator
) -> tuple[float, float]:
    """(tightness, uncovered mass) of ``CLUSTERS`` k-means clusters of the unlabeled sample
    ``items`` [m, d]: the share of its spread the clusters explain, and the share of it in
    clusters that none of the ``labeled`` items [L, d] is nearest to."""
    m = items.shape[0]
    k = min(CLUSTERS, m)
    if k < 2:
        return 0.0, 0.0
    centroids, assign, d2 = kmeans(items, k, rng)
    total = float(((items - items.mean(dim=0)) ** 2).sum(dim=1).mean())
    tightness = 1.0 - float(d2.mean()) / total if total > 1e-12 else 0.0
    covered = torch.zeros(k, dtype=torch.bool, device=items.device)
    if labeled.shape[0]:
        covered[nearest_centre(labeled, centroids, squared_norms(labeled))[1]] = True
    uncovered = float((~covered[assign]).float().mean())
    return max(0.0, min(1.0, tightness)), uncovered


def geometry_features(state: PoolState, candidates: torch.Tensor) -> dict[str, float]:
    """The ``GEOMETRY_FEATURES`` of a trained pool ``state`` whose unlabeled ``candidates`` [M]
    are being ranked (seeded by ``state.seed``)."""
    rng = generator(state.seed + 7919)
    labeled = state.labeled_indices()
    probs = state.require_probs()
    # Sorted first, so the sample does not depend on the order the candidates come in.
    ordered = candidates.sort().values
    items = ordered[torch.randperm(ordered.numel(), generator=rng)[:SAMPLE].to(ordered.device)]
    pick = torch.randperm(labeled.numel(), generator=rng)[:SAMPLE].to(labeled.device)
    labeled_sample = labeled[pick].sort().values
    x_labeled = _unit(state.features[labeled_sample].float())  # [L', d]
    x_items = _unit(state.features[items].float())  # [m, d]
    tightness, uncovered = cluster_geometry(x_items, x_labeled, rng)
    votes = state.targets[labeled_sample].float()
    return {
        "knn_label_lift": knn_label_lift(x_labeled, votes, rng),
        "knn_head_agreement": knn_head_agreement(
            x_labeled, votes, x_items, probs[items].float(), state.multilabel
        ),
        "cluster_tightness": tightness,
        "uncovered_mass": uncovered,
    }
