"""Selectors: what turns the portfolio's scores into one priority per candidate.

A single strategy, the uniform mixture, ALBL and AutoAL all answer the same call,
``select(state, candidates) -> Selection``; the round code never asks which one it holds.
Selectors may keep state across rounds (ALBL's bandit, AutoAL's warm-started SearchNet):
``state_dict``/``load_state_dict`` make that state survive a restart of the backend.
"""

from dataclasses import dataclass, field
from typing import Protocol

import torch

from model.errors import UnknownNameError
from model.pool import PoolState
from model.ranking import rank_order
from model.strategies import resolve_portfolio, score, score_matrix, strategy_names

MIXTURE_SELECTORS: tuple[str, ...] = ("autoal", "uniform", "albl")


@dataclass
class Selection:
    """One round's priorities.

    Attributes:
        candidates: [M] int64 pool indices that were scored.
        priority: [M] float in [0, 1]; higher = should be labeled sooner.
        strategy_names: the K portfolio members behind ``contributions``.
        contributions: [M, K] each strategy's share of each candidate's priority
            (weight x rank-normalised score); ``priority`` is its row sum up to scaling.
        info: JSON-serialisable facts for the round history (mean weights, bandit arm, losses).
    """

    candidates: torch.Tensor
    priority: torch.Tensor
    strategy_names: list[str]
    contributions: torch.Tensor
    info: dict = field(default_factory=dict)

    def order(self, seed: int = 0) -> torch.Tensor:
        """[M] pool indices, the one to label first at the front."""
        return self.candidates[rank_order(self.priority, seed)]

    def top_strategy(self) -> list[str]:
        """Per candidate, the portfolio member that contributed most to its priority."""
        best = self.contributions.argmax(dim=1).tolist()
        return [self.strategy_names[i] for i in best]

    def mean_weights(self) -> dict[str, float]:
        """Each strategy's mean share of the priority over the candidates (sums to 1)."""
        share = self.contributions.sum(dim=0)
        share = share / share.sum().clamp_min(1e-12)
        return {n: float(w) for n, w in zip(self.strategy_names, share.tolist(), strict=True)}


class Selector(Protocol):
    name: str

    def select(self, state: PoolState, candidates: torch.Tensor) -> Selection: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class SingleStrategy:
    """One portfolio member on its own."""

    def __init__(self, strategy: str) -> None:
        self.name = strategy

    def select(self, state: PoolState, candidates: torch.Tensor) -> Selection:
        scores = score(state, self.name, candidates)
        return Selection(candidates, scores, [self.name], scores.unsqueeze(1))

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class UniformMixture:
    """The portfolio's rank-normalised scores averaged with equal weights: no search."""

    name = "uniform"

    def __init__(self, portfolio: list[str] | tuple[str, ...] | None = None) -> None:
        self.portfolio = resolve_portfolio(portfolio, "uniform")

    def select(self, state: PoolState, candidates: torch.Tensor) -> Selection:
        scores = score_matrix(state, self.portfolio, candidates)  # [M, K]
        contributions = scores / len(self.portfolio)
        return Selection(candidates, contributions.sum(dim=1), self.portfolio, contributions)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def selector_names() -> list[str]:
    """Every name ``make_selector`` accepts: the mixtures, then each portfolio member."""
    return list(MIXTURE_SELECTORS) + strategy_names()


def make_selector(name: str, *, device: torch.device | None = None, **options) -> Selector:
    """The selector called ``name``: ``autoal``, ``uniform``, ``albl`` or any strategy."""
    if name == "uniform":
        return UniformMixture()
    if name == "autoal":
        from model.autoal import AutoALSelector

        return AutoALSelector(device=device, **options)
    if name == "albl":
        from model.albl import ALBLSelector

        return ALBLSelector(**options)
    if name in strategy_names():
        return SingleStrategy(name)
    raise UnknownNameError("strategy", name, selector_names())
