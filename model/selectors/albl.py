"""ALBL: Active Learning by Learning (Hsu & Lin, AAAI 2015), a bandit over the portfolio.

The closest published peer of AutoAL. Each round EXP4.P, with the portfolio's strategies as
arms, draws one strategy from its probabilities p (a floor ``pmin`` keeps exploring) and that
strategy alone orders the queue. When the next round starts, the items labeled since then are
the queries; each is remembered with importance weight W = 1/q, q the probability that the
round's randomised choice would have put it in the batch (the sum of p_a over the arms whose
top-B held it; the ``random`` arm counts as the uniform sampler, B/M per item). The reward of
the arm that was played is the importance-weighted accuracy (IW-ACC) of the newly trained
model on every item queried so far, as in the paper; it is self-normalised (divided by the sum
of W rather than by n*T), which keeps it in [0, 1] when the horizon T is unknown, as it is in a
live project.

State is kept by item ids (``state.item_ids()``) and is JSON-able, so the backend can persist
it and a restart resumes the same bandit.
"""

from __future__ import annotations

import math

import torch

from model.errors import EmptyPoolError
from model.pool import PoolState
from model.ranking import rank_order
from model.seeding import generator
from model.selectors import Selection, register_selector
from model.strategies import resolve_portfolio, score_matrix


def importance_weighted_accuracy(
    probs: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, multilabel: bool
) -> float:
    """Self-normalised IW-ACC: sum W * correct / sum W, for probs [n, C], targets [n, C] and
    importance weights W [n] (exact match of the 0.5-thresholded labels when multi-label)."""
    if weights.numel() == 0:
        raise EmptyPoolError("IW-ACC needs at least one queried item")
    if multilabel:
        correct = ((probs > 0.5).float() == targets).all(dim=1)
    else:
        correct = probs.argmax(dim=1) == targets.argmax(dim=1)
    return float((weights * correct.float()).sum() / weights.sum().clamp_min(1e-12))


def inclusion_probabilities(
    scores: torch.Tensor, arm_probs: torch.Tensor, batch: int, uniform_arm: int | None, seed: int
) -> torch.Tensor:
    """[M] probability that each candidate lands in the batch of B, for scores A [M, K] and arm
    probabilities p [K]: q_i = sum_a p_a 1[i in top-B of arm a], the uniform arm adding B/M."""
    m, k = scores.shape
    q = torch.zeros(m, dtype=torch.float32, device=scores.device)
    for arm in range(k):
        if arm == uniform_arm:
            q += arm_probs[arm] * batch / m
        else:
            q[rank_order(scores[:, arm], seed)[:batch]] += arm_probs[arm]
    return q


@register_selector("albl", description="ALBL: an EXP4.P bandit over the portfolio, one arm a round")
class ALBLSelector:
    """EXP4.P over the portfolio, one strategy per round.

    Args:
        portfolio: arm names; default ``PORTFOLIO`` restricted to registered strategies.
        horizon: T, the number of rounds the bandit plans for (sets the exploration floor).
        delta: EXP4.P's confidence parameter.
        pmin: the exploration floor per arm; default min(sqrt(ln K / (K T)), 1 / (2K)) so that
            K * pmin never exceeds one half.
        seed: offsets the arm draws (the pool's seed is added each round).
    """

    name = "albl"

    def __init__(
        self,
        portfolio: list[str] | tuple[str, ...] | None = None,
        horizon: int = 20,
        delta: float = 0.1,
        pmin: float | None = None,
        seed: int = 0,
        device: torch.device | None = None,
    ) -> None:
        self.portfolio = resolve_portfolio(portfolio, "ALBL")
        k = len(self.portfolio)
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1 round, got {horizon}")
        self.horizon = horizon
        self.delta = delta
        self.pmin = (
            pmin
            if pmin is not None
            else min(math.sqrt(math.log(max(k, 2)) / (k * horizon)), 0.5 / k)
        )
        if not 0.0 <= self.pmin * k <= 1.0:
            raise ValueError(f"pmin * K must lie in [0, 1], got {self.pmin} * {k}")
        self.seed = seed
        self.log_weights = [0.0] * k
        self.queried: dict[int, float] = {}  # item id -> importance weight 1/q
        self.known_labeled: set[int] = set()
        self.pending: dict | None = None  # the last round's arm, p and inclusion q by id
        self.rounds = 0
        self.last_reward: float | None = None

    def arm_probabilities(self) -> torch.Tensor:
        """[K] p = (1 - K pmin) * softmax(log w) + pmin."""
        w = torch.softmax(torch.tensor(self.log_weights, dtype=torch.float64), dim=0)
        k = len(self.portfolio)
        return ((1.0 - k * self.pmin) * w + self.pmin).float()

    def _credit_last_round(self, state: PoolState) -> None:
        """Record the items labeled since the last round as queries and reward the arm played."""
        ids = state.item_ids().tolist()
        labeled_now = {ids[i] for i in state.labeled_indices().tolist()}
        if self.pending is not None:
            new = labeled_now - self.known_labeled
            q_by_id = self.pending["q"]
            for item in new:
                q = q_by_id.get(item, self.pending["base_q"])
                self.queried[item] = 1.0 / max(q, 1e-12)
            if self.queried and state.probs is not None:
                position = {item: i for i, item in enumerate(ids)}
                rows = [position[i] for i in self.queried if i in position]
                if rows:
                    index = torch.tensor(rows, device=state.device)
                    weights = torch.tensor(
                        [self.queried[ids[r]] for r in rows], device=state.device
                    )
                    reward = importance_weighted_accuracy(
                        state.probs[index], state.targets[index], weights, state.multilabel
                    )
                    self._update(self.pending["arm"], reward, self.pending["probabilities"])
                    self.last_reward = reward
            self.pending = None
        self.known_labeled = labeled_now

    def _update(self, arm: int, reward: float, probs: list[float]) -> None:
        """EXP4.P: w_a *= exp(pmin/2 (rhat_a + vhat_a sqrt(ln(K/delta) / (K T)))), with rhat the
        importance-weighted reward (only the played arm) and vhat = 1/p its variance bound."""
        k = len(self.portfolio)
        bonus = math.sqrt(math.log(k / self.delta) / (k * self.horizon))
        for a in range(k):
            rhat = reward / probs[a] if a == arm else 0.0
            self.log_weights[a] += self.pmin / 2.0 * (rhat + bonus / probs[a])

    def select(self, state: PoolState, candidates: torch.Tensor) -> Selection:
        """Credit the last arm, draw this round's arm; priority = that arm's scores [M]."""
        if candidates.numel() == 0:
            raise EmptyPoolError("ALBL: no candidates to score")
        self._credit_last_round(state)
        probs = self.arm_probabilities()  # [K]
        draw = torch.multinomial(
            probs, 1, generator=generator(self.seed + state.seed + self.rounds)
        )
        arm = int(draw)
        scores = score_matrix(state, self.portfolio, candidates)  # [M, K]
        batch = min(max(state.budget, 1), candidates.numel())
        uniform_arm = self.portfolio.index("random") if "random" in self.portfolio else None
        q = inclusion_probabilities(scores, probs.to(scores.device), batch, uniform_arm, state.seed)
        # Items outside every arm's top-B can still be labeled (annotators skip, the uniform
        # arm); they get the uniform share, or 1/M when the portfolio has no uniform arm.
        base_q = (
            float(probs[uniform_arm]) * batch / candidates.numel()
            if uniform_arm is not None
            else 1.0 / candidates.numel()
        )
        ids = state.item_ids()[candidates].tolist()
        above = (q > base_q + 1e-12).nonzero(as_tuple=False).flatten().tolist()
        self.pending = {
            "arm": arm,
            "probabilities": probs.tolist(),
            "base_q": base_q,
            "q": {ids[i]: float(q[i]) for i in above},
        }
        self.rounds += 1
        contributions = torch.zeros_like(scores)
        contributions[:, arm] = scores[:, arm]
        info = {
            "chosen_arm": self.portfolio[arm],
            "arm_probabilities": {
                n: float(p) for n, p in zip(self.portfolio, probs.tolist(), strict=True)
            },
            "queried_items": len(self.queried),
            "reward": self.last_reward,
            "pmin": self.pmin,
        }
        return Selection(
            candidates, scores[:, arm].clone(), list(self.portfolio), contributions, info
        )

    def state_dict(self) -> dict:
        """JSON-able: item ids become string keys; restored by ``load_state_dict``."""
        pending = None
        if self.pending is not None:
            pending = dict(self.pending, q={str(k): v for k, v in self.pending["q"].items()})
        return {
            "portfolio": list(self.portfolio),
            "horizon": self.horizon,
            "delta": self.delta,
            "pmin": self.pmin,
            "seed": self.seed,
            "log_weights": list(self.log_weights),
            "queried": {str(k): v for k, v in self.queried.items()},
            "known_labeled": sorted(self.known_labeled),
            "pending": pending,
            "rounds": self.rounds,
            "last_reward": self.last_reward,
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("portfolio") != self.portfolio:
            raise ValueError(
                f"saved ALBL state is for portfolio {state.get('portfolio')}, "
                f"this selector has {self.portfolio}"
            )
        self.horizon = int(state["horizon"])
        self.delta = float(state["delta"])
        self.pmin = float(state["pmin"])
        self.seed = int(state["seed"])
        self.log_weights = [float(w) for w in state["log_weights"]]
        self.queried = {int(k): float(v) for k, v in state["queried"].items()}
        self.known_labeled = {int(i) for i in state["known_labeled"]}
        pending = state.get("pending")
        self.pending = (
            None
            if pending is None
            else dict(pending, q={int(k): float(v) for k, v in pending["q"].items()})
        )
        self.rounds = int(state["rounds"])
        self.last_reward = state.get("last_reward")
