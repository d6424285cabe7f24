"""TAILOR (Zhang et al., NeurIPS 2022): Thompson sampling over the portfolio, rewarded by the
class diversity of the labels each strategy brings.

Each strategy (arm) keeps a posterior over the class distribution of the items it picks:
Dirichlet counts per class (single-label) or Beta counts per class (multi-label). The batch is
filled one slot at a time: draw each arm's class distribution theta from its posterior, take the
arm whose theta scores best against the class weights v (v_c = 1 / labels of class c so far,
negated for a class holding more than half the labels: rare classes pay, a dominant one costs),
and add that arm's best item not yet in the batch. When the next round starts, the labels of
the items each arm picked are added to its counts; older counts decay by ``decay`` per round.
This is the authors' "class diversity" reward, meant for imbalanced data sets.

Items are kept by id (``state.item_ids()``) and the state is JSON-able, so the backend can
persist it across restarts.
"""

import torch

from model.errors import EmptyPoolError
from model.pool import PoolState
from model.seeding import generator
from model.selectors import Selection, register_selector
from model.strategies import resolve_portfolio, score_matrix


def class_weights(counts: torch.Tensor, labeled: int) -> torch.Tensor:
    """[C] TAILOR's diversity weights from labels per class [C]: 1 / max(count, 1), negated
    where a class holds more than half of the ``labeled`` items."""
    clipped = counts.clamp_min(1.0)
    v = 1.0 / clipped
    if labeled > 0:
        v = torch.where(counts / labeled > 0.5, -v, v)
    return v


@register_selector(
    "tailor", description="TAILOR: Thompson sampling over the portfolio, class-diversity reward"
)
class TailorSelector:
    """Thompson sampling over the portfolio with TAILOR's class-diversity reward.

    Args:
        portfolio: arm names; default ``PORTFOLIO`` restricted to registered strategies.
        decay: each round, earlier counts are multiplied by this (the authors' 0.9).
        seed: offsets the posterior draws (the pool's seed is added each round).
    """

    name = "tailor"

    def __init__(
        self,
        portfolio: list[str] | tuple[str, ...] | None = None,
        decay: float = 0.9,
        seed: int = 0,
        device: torch.device | None = None,
    ) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must lie in [0, 1], got {decay}")
        self.portfolio = resolve_portfolio(portfolio, "TAILOR")
        self.decay = decay
        self.seed = seed
        self.stats: list[list[list[float]]] | None = None  # [2, K, C]
        self.pending: dict[int, int] = {}  # item id -> the arm that picked it
        self.rounds = 0

    def _credit(self, state: PoolState) -> None:
        """Add the labels of the items picked last round (those now labeled) to their arms."""
        k, c = len(self.portfolio), state.num_classes
        stats = torch.tensor(self.stats) if self.stats is not None else None
        if stats is None or tuple(stats.shape) != (2, k, c):
            stats = torch.ones(2, k, c)
        new = torch.zeros(2, k, c)
        if self.pending:
            ids = state.item_ids().tolist()
            row = {item: i for i, item in enumerate(ids)}
            labeled = state.labeled.tolist()
            for item, arm in self.pending.items():
                i = row.get(item)
                if i is None or not labeled[i]:
                    continue  # not labeled (yet): no evidence about this arm
                target = state.targets[i].float().cpu()
                new[0, arm] += target
                new[1, arm] += 1.0 - target
        self.stats = (stats * self.decay + new).tolist()

    def select(self, state: PoolState, candidates: torch.Tensor) -> Selection:
        """B picks by Thompson sampling, then every other candidate by the uniform mixture."""
        if candidates.numel() == 0:
            raise EmptyPoolError("TAILOR: no candidates to score")
        self._credit(state)
        stats = torch.tensor(self.stats, dtype=torch.float64)  # [2, K, C]
        labeled = state.labeled_indices()
        counts = state.targets[labeled].sum(dim=0).double().cpu()
        v = class_weights(counts, labeled.numel())  # [C]
        scores = score_matrix(state, self.portfolio, candidates)  # [M, K]
        m, k = scores.shape
        batch = min(max(state.budget, 1), m)
        # Each arm's candidates from best to worst, walked as the arm is chosen.
        orders = scores.argsort(dim=0, descending=True, stable=True).t().cpu().tolist()  # [K, M]
        cursor = [0] * k
        chosen: list[tuple[int, int]] = []  # (candidate position, arm)
        taken = torch.zeros(m, dtype=torch.bool)
        rng = generator(self.seed + state.seed + self.rounds)
        for _ in range(batch):
            if state.multilabel:
                draws = torch._standard_gamma(stats[0], generator=rng)
                other = torch._standard_gamma(stats[1], generator=rng)
                theta = draws / (draws + other)  # Beta per arm and class
            else:
                gamma = torch._standard_gamma(stats[0] + 1.0, generator=rng)
                theta = gamma / gamma.sum(dim=1, keepdim=True)  # Dirichlet per arm
            arm = int((theta @ v).argmax())
            while taken[orders[arm][cursor[arm]]]:
                cursor[arm] += 1
            position = orders[arm][cursor[arm]]
            taken[position] = True
            chosen.append((position, arm))
        base = scores.mean(dim=1)  # [M] the uniform mixture for the rest of the queue
        priority = 0.5 * base
        contributions = scores / (2 * k)
        for slot, (position, arm) in enumerate(chosen):
            priority[position] = 0.5 + 0.5 * (batch - slot) / batch
            contributions[position] = 0.0
            contributions[position, arm] = priority[position]
        ids = state.item_ids()[candidates].tolist()
        self.pending = {ids[p]: a for p, a in chosen}
        self.rounds += 1
        picked = torch.bincount(torch.tensor([a for _, a in chosen]), minlength=k).tolist()
        info = {
            "arm_picks": dict(zip(self.portfolio, picked, strict=True)),
            "class_weights": [round(float(x), 4) for x in v],
        }
        return Selection(candidates, priority, list(self.portfolio), contributions, info)

    def state_dict(self) -> dict:
        return {
            "decay": self.decay,
            "seed": self.seed,
            "stats": self.stats,
            "pending": {str(k): v for k, v in self.pending.items()},
            "rounds": self.rounds,
        }

    def load_state_dict(self, state: dict) -> None:
        self.decay = float(state["decay"])
        self.seed = int(state["seed"])
        self.stats = state.get("stats")
        self.pending = {int(k): int(v) for k, v in state.get("pending", {}).items()}
        self.rounds = int(state["rounds"])
