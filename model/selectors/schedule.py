"""A budget schedule: diversity while labels are few per class, uncertainty after.

The simple thing a learned policy must beat to be worth its weight. TypiClust (Hacohen et al.,
ICML 2022) found that at low budgets, a few labels per class, representative points pay and
uncertain ones do not, and that the order flips as labels accumulate. One fixed rule, chosen
before any benchmark ran and never tuned per data set: k-means (the portfolio's diversity
strategy: the item nearest each of B centres) while there are fewer than 10 labels per class,
margin from then on.
"""

import torch

from model.pool import PoolState
from model.selectors import Selection, register_selector
from model.strategies import score


@register_selector(
    "schedule", description="budget schedule: k-means below 10 labels per class, then margin"
)
class BudgetSchedule:
    """``diversity`` below ``labels_per_class`` labels per class, ``uncertainty`` from there."""

    name = "schedule"

    def __init__(
        self,
        diversity: str = "kmeans",
        uncertainty: str = "margin",
        labels_per_class: float = 10.0,
        device: torch.device | None = None,
    ) -> None:
        if labels_per_class < 0:
            raise ValueError(f"labels_per_class must be >= 0, got {labels_per_class}")
        self.portfolio = [diversity, uncertainty]
        self.labels_per_class = labels_per_class

    def phase(self, state: PoolState) -> int:
        """0 (diversity) or 1 (uncertainty) for this pool's labels per class."""
        per_class = int(state.labeled.sum()) / max(state.num_classes, 1)
        return 0 if per_class < self.labels_per_class else 1

    def select(self, state: PoolState, candidates: torch.Tensor) -> Selection:
        phase = self.phase(state)
        scores = score(state, self.portfolio[phase], candidates)  # [M]
        contributions = torch.zeros(candidates.numel(), 2, device=scores.device)
        contributions[:, phase] = scores
        info = {"phase": self.portfolio[phase], "labels_per_class_switch": self.labels_per_class}
        return Selection(candidates, scores, list(self.portfolio), contributions, info)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
