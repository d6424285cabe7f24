"""SearchNet and the differentiable selection it is trained through.

``soft_top_fraction`` relaxes "is in the top fraction r of priority u" so that SearchNet gets
real gradients (AUTOAL.md, flaw 1 of the reference code). The same relaxation trains the
shipped prior offline (``prior.py``, rewarded by true gains measured in simulation) and the
per-project online search (rewarded by a label-only signal, ``signals.py``).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from model.seeding import generator, seeded
from model.selectors.autoal.config import AutoALConfig


class SearchNet(nn.Module):
    """x [n, p] -> softmax weights [n, K] over the K strategies.

    The output layer starts at zero, so an untrained SearchNet is exactly the uniform mixture
    (or, with ``base`` logits, exactly the base weights). With no inputs at all (p = 0) it is
    a single learned weight vector.
    """

    def __init__(self, embed_dims: int, num_strategies: int, hidden: int = 32) -> None:
        super().__init__()
        self.body: nn.Module | None = (
            nn.Sequential(nn.Linear(embed_dims, hidden), nn.ReLU()) if embed_dims > 0 else None
        )
        self.head = nn.Linear(hidden, num_strategies)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
        """Weights [n, K]; ``base`` [K] (weights summing to 1) is what the net starts from."""
        if self.body is None:
            logits = self.head.bias.expand(x.shape[0], -1)
        else:
            logits = self.head(self.body(x))
        if base is not None:
            logits = logits + torch.log(base.clamp_min(1e-12))
        return torch.softmax(logits, dim=1)


def soft_top_fraction(u: torch.Tensor, fraction: float, temperature: float) -> torch.Tensor:
    """A differentiable "is in the top ``fraction`` of u" indicator, [n] -> [n] in (0, 1).

    u is standardised (with gradient) and tau is the (1 - fraction) quantile of the
    standardised values, also with gradient; T = ``temperature`` standard deviations. So the
    sigmoid's slope follows u's spread (flaw 1 of the reference: T = 1e-11, no gradient), and
    shifting or scaling every u at once changes nothing, as it changes no selection. (With a
    detached tau the gradient rewarded lowering u near the threshold, which the recomputed
    quantile undoes: the search drifted toward uninformative strategies.)
    """
    if u.numel() < 2:
        return torch.ones_like(u)
    z = (u - u.mean()) / u.std().clamp_min(1e-6)
    tau = torch.quantile(z, 1.0 - fraction)
    return torch.sigmoid((z - tau) / temperature)


def kl_from(base: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean over rows of KL(base || w_n), for base [K] and weights [n, K]: 0 at w_n = base."""
    base = base.clamp_min(1e-12)
    log_w = torch.log(weights.clamp_min(1e-12))
    return (base * (torch.log(base) - log_w)).sum(dim=1).mean()


def search_objective(
    weights: torch.Tensor,
    scores: torch.Tensor,
    signal: torch.Tensor,
    config: AutoALConfig,
    base: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """SearchNet's loss for weights [n, K], scores A [n, K] and informativeness signal [n].

    -(signal-weighted mean over the soft selection) + budget penalty + a pull toward the
    starting weights ``base`` [K] (default the uniform mixture).
    """
    n, k = scores.shape
    if base is None:
        base = torch.full((k,), 1.0 / k, device=scores.device)
    u = (weights * scores).sum(dim=1)  # [n]
    s = soft_top_fraction(u, config.budget_fraction, config.temperature)  # [n]
    reward = (signal * s).sum() / s.sum().clamp_min(1e-6)
    budget = (s.mean() - config.budget_fraction) ** 2
    prior = kl_from(base, weights)
    prior_weight = config.prior_labels / max(n, 1)
    loss = -reward + config.budget_weight * budget + prior_weight * prior
    parts = {
        "reward": float(reward.detach()),
        "budget": float(budget.detach()),
        "prior": float(prior.detach()),
        "loss": float(loss.detach()),
    }
    return loss, parts


def fit_search_net(
    net: SearchNet,
    x: torch.Tensor,
    scores: torch.Tensor,
    signal: torch.Tensor,
    config: AutoALConfig,
    seed: int,
    base: torch.Tensor | None = None,
) -> dict[str, float]:
    """Train ``net`` in place on search samples: x [n, p], A [n, K], signal [n]. Full batch,
    ``config.steps`` Adam steps, starting from and pulled toward ``base`` [K]. Returns the
    objective's parts before and after."""
    optimiser = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    net.train()
    with seeded(seed, x.device):
        _, first = search_objective(net(x, base), scores, signal, config, base)
        for _ in range(config.steps):
            optimiser.zero_grad(set_to_none=True)
            loss, _ = search_objective(net(x, base), scores, signal, config, base)
            loss.backward()
            optimiser.step()
    net.eval()
    with torch.no_grad():
        _, last = search_objective(net(x, base), scores, signal, config, base)
    return {
        "loss_before": first["loss"],
        "loss_after": last["loss"],
        "reward_before": first["reward"],
        "reward_after": last["reward"],
    }


SHRINKAGE_GRID: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)


def hard_top_reward(priority: torch.Tensor, signal: torch.Tensor, fraction: float) -> float:
    """Mean signal [n] over the exact top ``fraction`` of priority [n] (no relaxation)."""
    k = max(1, round(fraction * priority.numel()))
    return float(signal[priority.topk(k).indices].mean())


def validated_shrinkage(
    net: SearchNet,
    x: torch.Tensor,
    scores: torch.Tensor,
    signal: torch.Tensor,
    config: AutoALConfig,
    seed: int,
    base: torch.Tensor | None = None,
) -> tuple[float, dict[str, float]]:
    """Pick lambda in SHRINKAGE_GRID by 2-fold validation of the search (x [n, p], A [n, K],
    signal [n]): copies of ``net`` are searched on one half and the exact top-r reward of
    (1 - lambda) * base + lambda * w is measured on the other. Ties go to the smaller lambda,
    so the search moves away from ``base`` (default uniform) only where it beats it on
    samples it did not see."""
    n, k = scores.shape
    if base is None:
        base = torch.full((k,), 1.0 / k, device=scores.device)
    order = torch.randperm(n, generator=generator(seed)).to(scores.device)
    halves = (order[: n // 2], order[n // 2 :])
    totals = dict.fromkeys(SHRINKAGE_GRID, 0.0)
    for train, test in (halves, halves[::-1]):
        trial = copy.deepcopy(net)
        fit_search_net(trial, x[train], scores[train], signal[train], config, seed, base)
        with torch.no_grad():
            learned = trial(x[test], base)  # [t, K]
        for lam in SHRINKAGE_GRID:
            weights = (1.0 - lam) * base + lam * learned
            totals[lam] += hard_top_reward(
                (weights * scores[test]).sum(dim=1), signal[test], config.budget_fraction
            )
    best = max(SHRINKAGE_GRID, key=lambda lam: (round(totals[lam], 6), -lam))
    return best, {f"{lam:g}": v / 2 for lam, v in totals.items()}


def strategy_rewards(scores: torch.Tensor, signal: torch.Tensor, fraction: float) -> torch.Tensor:
    """[K] each strategy's exact top-``fraction`` mean signal (scores A [n, K], signal [n])."""
    return torch.tensor(
        [hard_top_reward(scores[:, j], signal, fraction) for j in range(scores.shape[1])],
        device=scores.device,
    )


class Projection:
    """A fixed linear map of standardised embeddings [N, d] to [N, p] (top principal
    components, unit variance), computed once so that a warm-started SearchNet sees the same
    input space every round."""

    def __init__(self, mean: torch.Tensor, basis: torch.Tensor, scale: torch.Tensor) -> None:
        self.mean, self.basis, self.scale = mean, basis, scale  # [d], [d, p], [p]

    @classmethod
    def fit(cls, features: torch.Tensor, dims: int, seed: int, sample: int = 4096) -> Projection:
        gen = generator(seed)
        rows = torch.randperm(features.shape[0], generator=gen)[:sample].to(features.device)
        x = features[rows].float()
        mean = x.mean(dim=0)
        if dims <= 0:  # SearchNet ignores the embedding
            empty = torch.zeros(x.shape[1], 0, device=x.device)
            return cls(mean, empty, torch.ones(0, device=x.device))
        dims = max(1, min(dims, x.shape[0] - 1, x.shape[1]))
        with seeded(seed, features.device):
            _, _, v = torch.pca_lowrank(x - mean, q=dims, center=False, niter=3)  # [d, p]
        scale = ((x - mean) @ v).std(dim=0).clamp_min(1e-6)
        return cls(mean, v, scale)

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) @ self.basis / self.scale

    def to(self, device: torch.device) -> Projection:
        return Projection(self.mean.to(device), self.basis.to(device), self.scale.to(device))

    @property
    def dims(self) -> int:
        return int(self.basis.shape[1])


def uniform_weights(k: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """[K] the uniform mixture's weights."""
    return torch.full((k,), 1.0 / k, device=device)
