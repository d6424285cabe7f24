"""The uniform mixture: the portfolio's rank-normalised scores averaged with equal weights."""

import torch

from model.pool import PoolState
from model.selectors import Selection, register_selector
from model.strategies import resolve_portfolio, score_matrix


@register_selector("uniform", description="the portfolio's rank-normalised scores, equal weights")
class UniformMixture:
    """The portfolio's rank-normalised scores averaged with equal weights: no search."""

    name = "uniform"

    def __init__(
        self,
        portfolio: list[str] | tuple[str, ...] | None = None,
        device: torch.device | None = None,
    ) -> None:
        self.portfolio = resolve_portfolio(portfolio, "uniform")

    def select(self, state: PoolState, candidates: torch.Tensor) -> Selection:
        scores = score_matrix(state, self.portfolio, candidates)  # [M, K]
        contributions = scores / len(self.portfolio)
        return Selection(candidates, contributions.sum(dim=1), self.portfolio, contributions)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
