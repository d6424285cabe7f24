"""The portfolio of query strategies, found by name in one registry.

A strategy is a pure function ``(state, candidates) -> raw scores``: ``state`` is a
``PoolState`` (with the trained task model's ``probs`` and ``model`` set when the strategy needs
them), ``candidates`` an [M] int64 tensor of pool indices to score (usually the unlabeled items;
during AutoAL's cross-fitting a held-out fold), and the result an [M] float tensor, higher =
more informative. Strategies never select; ``score`` rank-normalises every strategy's raw
scores into [0, 1] (1 = most informative) so that strategies are comparable and mixable.

The *sequential* strategies (k-means, core-set, BADGE) make about B passes, one after another,
over their candidates: 91% of a round on a million-item pool. With ``state.shortlist`` > 0 they
see at most that many candidates, a seeded random subset (the same for the three); the
candidates outside it rank below every shortlisted one for them, in seeded random order, so the
mixture still reaches them through the other strategies.
"""

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

import torch

from model.errors import EmptyPoolError, UnknownNameError
from model.pool import PoolState
from model.ranking import check_finite, rank_normalise, rank_order, ranks_from_order
from model.seeding import generator

StrategyFn = Callable[[PoolState, torch.Tensor], torch.Tensor]

# Keeps the shortlist's draw apart from the other seeded draws of a round.
SHORTLIST_SEED_OFFSET = 7919

# The portfolio, in a fixed order: SearchNet's K outputs follow it.
PORTFOLIO: tuple[str, ...] = (
    "random",
    "least_confidence",
    "margin",
    "entropy",
    "bald",
    "mean_std",
    "kmeans",
    "coreset",
    "badge",
)
# The span kind's portfolio, member i taking the place of PORTFOLIO[i] (so AutoAL's prior,
# learned on choices episodes, reads it): sequence least confidence normalised by length
# (MNLP, Shen et al. 2017) for least confidence, the lowest token margin for margin, total
# token entropy (Settles and Craven 2008) for entropy, token BALD for BALD, the largest token
# entropy for mean-STD, BADGE on pooled token gradients for BADGE.
SPAN_PORTFOLIO: tuple[str, ...] = (
    "random",
    "mnlp",
    "token_margin",
    "token_entropy",
    "token_bald",
    "max_token_entropy",
    "kmeans",
    "coreset",
    "span_badge",
)
# The box kind's portfolio, in the same order of roles: per image, the most uncertain
# detection's entropy for least confidence, the smallest class margin of a detection for
# margin, the detections' total entropy for entropy (Brust et al. 2019's max and sum
# aggregates), MC-dropout BALD and mean-STD at the detections for BALD and mean-STD, BADGE on
# pooled detection gradients for BADGE. Measured and left out (docs/boxes.md): the boxes'
# instability under dropout (box_stability) and the detections' mean entropy, both below random
# order on the generated scenes.
BOX_PORTFOLIO: tuple[str, ...] = (
    "random",
    "box_max_entropy",
    "box_margin",
    "box_sum_entropy",
    "box_bald",
    "box_mean_std",
    "kmeans",
    "coreset",
    "box_badge",
)
PORTFOLIOS: dict[str, tuple[str, ...]] = {
    "choices": PORTFOLIO,
    "spans": SPAN_PORTFOLIO,
    "boxes": BOX_PORTFOLIO,
}


@dataclass(frozen=True)
class Strategy:
    name: str
    fn: StrategyFn
    needs_model: bool
    description: str
    sequential: bool = False
    kinds: tuple[str, ...] = ("choices",)


_REGISTRY: dict[str, Strategy] = {}


def register(
    name: str,
    *,
    needs_model: bool,
    description: str,
    sequential: bool = False,
    kinds: tuple[str, ...] = ("choices",),
) -> Callable[[StrategyFn], StrategyFn]:
    """Decorator adding a strategy function to the registry under ``name``. ``sequential``:
    its cost is passes over the candidates one after another, so ``state.shortlist`` bounds it.
    ``kinds``: the task kinds (``model.kinds``) whose pools it can score; strategies that read
    only the embeddings (random, k-means, core-set) serve every kind."""

    def wrap(fn: StrategyFn) -> StrategyFn:
        if name in _REGISTRY:
            raise ValueError(f"strategy {name!r} is registered twice")
        _REGISTRY[name] = Strategy(name, fn, needs_model, description, sequential, kinds)
        return fn

    return wrap


def _load_all() -> None:
    # Importing every module of this package runs their @register decorators: a new strategy
    # is a new module here, found without a list to forget it in. Done lazily, so that
    # importing this package has no side effects beyond defining the registry.
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


def strategy_names(kind: str = "choices") -> list[str]:
    """Every registered strategy name that serves task kind ``kind``, in its portfolio order."""
    _load_all()
    own = {n for n, s in _REGISTRY.items() if kind in s.kinds}
    first = PORTFOLIOS.get(kind, ())
    return [n for n in first if n in own] + sorted(own - set(first))


def strategy_names_all() -> list[str]:
    """Every registered strategy name, whatever kinds it serves."""
    _load_all()
    return list(_REGISTRY)


def get_strategy(name: str) -> Strategy:
    """The strategy called ``name``; UnknownNameError lists the valid names otherwise."""
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError("strategy", name, list(_REGISTRY)) from None


def resolve_portfolio(
    portfolio: list[str] | tuple[str, ...] | None, owner: str, kind: str = "choices"
) -> list[str]:
    """The strategy names a mixture (``owner``: AutoAL, ALBL, uniform) works with.

    None means task kind ``kind``'s portfolio (``PORTFOLIOS``) restricted to registered names;
    an explicit list must name only registered strategies (UnknownNameError lists the valid
    ones; ``make_selector`` checks that they serve the project's kind) and must not be empty.
    """
    _load_all()
    registered = list(_REGISTRY)
    wanted = list(portfolio) if portfolio is not None else list(PORTFOLIOS.get(kind, ()))
    resolved = [n for n in wanted if n in registered]
    if portfolio is not None and len(resolved) != len(wanted):
        missing = sorted(set(wanted) - set(resolved))
        raise UnknownNameError(
            f"{owner} portfolio strategy", ", ".join(missing), strategy_names(kind)
        )
    if not resolved:
        raise ValueError(f"the {owner} portfolio is empty")
    return resolved


def score(state: PoolState, name: str, candidates: torch.Tensor) -> torch.Tensor:
    """Rank-normalised scores [M] in [0, 1] of strategy ``name`` for ``candidates`` [M]."""
    if candidates.numel() == 0:
        raise EmptyPoolError(f"strategy {name!r}: no candidates to score")
    strategy = get_strategy(name)
    if state.kind not in strategy.kinds:
        raise UnknownNameError(f"strategy for {state.kind} pools", name, strategy_names(state.kind))
    if strategy.needs_model and state.probs is None:
        raise EmptyPoolError(f"strategy {name!r} needs a trained task model; the pool has none")
    if strategy.sequential and 0 < state.shortlist < candidates.numel():
        keep = shortlist(candidates, state.shortlist, state.seed)
        inside = keep[
            rank_order(_raw_scores(state, strategy, candidates[keep]).float(), state.seed)
        ]
        outside = torch.ones(candidates.numel(), dtype=torch.bool, device=candidates.device)
        outside[keep] = False
        rest = torch.nonzero(outside).flatten()
        rest = rest[torch.randperm(rest.numel(), generator=generator(state.seed)).to(rest.device)]
        return ranks_from_order(torch.cat((inside, rest)))
    return rank_normalise(_raw_scores(state, strategy, candidates).float(), seed=state.seed)


def _raw_scores(state: PoolState, strategy: Strategy, candidates: torch.Tensor) -> torch.Tensor:
    raw = strategy.fn(state, candidates)
    if raw.shape != candidates.shape:
        raise ValueError(
            f"strategy {strategy.name!r}: expected scores of shape {tuple(candidates.shape)}, "
            f"got {tuple(raw.shape)}"
        )
    check_finite(raw, f"strategy {strategy.name!r}")
    return raw


def shortlist(candidates: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """Positions [size] (into ``candidates`` [M]) of a seeded random subset of the candidates;
    a function of the candidate *set* and the seed, not of the order they come in."""
    order = torch.argsort(candidates, stable=True)
    draw = generator(int(seed) + SHORTLIST_SEED_OFFSET)
    chosen = torch.randperm(candidates.numel(), generator=draw)[:size].to(candidates.device)
    return torch.sort(order[chosen]).values


def score_matrix(state: PoolState, names: list[str], candidates: torch.Tensor) -> torch.Tensor:
    """[M, K] rank-normalised scores, one column per strategy in ``names``."""
    return torch.stack([score(state, n, candidates) for n in names], dim=1)
