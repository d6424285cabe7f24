"""Selectors: what turns the portfolio's scores into one priority per candidate.

A single strategy, the uniform mixture, ALBL, TAILOR, the budget schedule and AutoAL all answer
the same call, ``select(state, candidates) -> Selection``; the round code never asks which one
it holds. Each lives in a module of this package (``uniform``, ``albl``, ``tailor``,
``schedule``, the ``autoal`` package), found by importing them all; selectors register by name
(``register_selector``), the way strategies do, and
``make_selector(name, **options)`` builds one; every portfolio strategy is also a selector on
its own. Selectors may keep state across rounds (ALBL's bandit, AutoAL's warm-started
SearchNet): ``saved_state`` wraps ``state_dict`` with who wrote it, and ``restore_state`` loads
it only into the same selector over the same portfolio (anything else starts fresh).
"""

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from model.errors import UnknownNameError
from model.kinds import counterpart
from model.pool import PoolState
from model.ranking import rank_order
from model.strategies import (
    PORTFOLIOS,
    score,
    strategy_names,
    strategy_names_all,
)

# Bumped when the envelope of a saved selector state changes meaning.
STATE_FORMAT = 1


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


@dataclass(frozen=True)
class SelectorEntry:
    """A registered selector: ``factory(device=..., **options)`` builds it.

    Attributes:
        options: {option name: default} that ``make_selector`` accepts for it.
    """

    name: str
    factory: Callable[..., Selector]
    description: str
    options: dict[str, Any]


_REGISTRY: dict[str, SelectorEntry] = {}


def _factory_options(factory: Callable[..., Selector]) -> dict[str, Any]:
    """The keyword options a factory takes, with their defaults (``device`` excluded). A
    factory may list them itself with an ``options()`` classmethod (AutoAL: its config)."""
    listed = getattr(factory, "options", None)
    if callable(listed):
        return dict(listed())
    parameters = inspect.signature(factory).parameters.values()
    return {
        p.name: p.default
        for p in parameters
        if p.name != "device" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def register_selector(
    name: str, *, description: str
) -> Callable[[Callable[..., Selector]], Callable[..., Selector]]:
    """Decorator adding a selector class (or factory) to the registry under ``name``."""

    def wrap(factory: Callable[..., Selector]) -> Callable[..., Selector]:
        if name in _REGISTRY:
            raise ValueError(f"selector {name!r} is registered twice")
        _REGISTRY[name] = SelectorEntry(name, factory, description, _factory_options(factory))
        return factory

    return wrap


def _load_all() -> None:
    # Importing every module of this package runs their @register_selector decorators: a new
    # selector is a new module here, found without a list to forget it in. Done lazily, so
    # this module imports none of them (they import Selection from here: no import cycle).
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


class SingleStrategy:
    """One portfolio member on its own."""

    def __init__(self, strategy: str) -> None:
        self.name = strategy
        self.portfolio = [strategy]

    def select(self, state: PoolState, candidates: torch.Tensor) -> Selection:
        scores = score(state, self.name, candidates)
        return Selection(candidates, scores, [self.name], scores.unsqueeze(1))

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def mixture_names() -> list[str]:
    """The registered selectors other than single strategies, in listing order."""
    _load_all()
    first = ["autoal", "uniform", "albl"]
    return [n for n in first if n in _REGISTRY] + [n for n in _REGISTRY if n not in first]


def selector_names(kind: str | None = "choices") -> list[str]:
    """The names ``make_selector`` accepts for pools of task kind ``kind``: the mixtures, then
    each strategy of the kind (None: of every kind)."""
    return mixture_names() + (strategy_names_all() if kind is None else strategy_names(kind))


def selector_options(name: str) -> dict[str, Any]:
    """{option: default} of the selector called ``name`` (none for a single strategy)."""
    _load_all()
    if name in _REGISTRY:
        return dict(_REGISTRY[name].options)
    if name in strategy_names_all():
        return {}
    raise UnknownNameError("strategy", name, selector_names())


def make_selector(
    name: str, *, device: torch.device | None = None, kind: str = "choices", **options
) -> Selector:
    """The selector called ``name`` (``autoal``, ``uniform``, ``albl``, ... or any strategy),
    built with ``options``, for pools of task kind ``kind`` (``model.kinds``); an option it does
    not take is an error that lists those it does.

    For another kind than choices, strategy names are read as roles: ``margin`` means that
    kind's counterpart (``token_margin`` for spans), both as a selector name and inside options
    (a portfolio, the schedule's ``uncertainty``); a mixture without a portfolio gets the kind's.
    A strategy that cannot score the kind's pools is an UnknownNameError listing those that can.
    """
    valid = selector_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise UnknownNameError(f"option of selector {name!r}", ", ".join(unknown), list(valid))
    if kind != "choices":
        options = {key: _for_kind(value, kind) for key, value in options.items()}
        for key, default in valid.items():  # defaults that name a strategy (the schedule's)
            if key not in options and isinstance(default, str) and default in strategy_names_all():
                options[key] = counterpart(default, kind)
        if "portfolio" in valid and options.get("portfolio") is None:
            options["portfolio"] = list(PORTFOLIOS[kind])
    own = set(strategy_names(kind))
    named = [
        v for key in ("portfolio", "diversity", "uncertainty") for v in _as_list(options.get(key))
    ]
    for strategy in named + ([] if name in _REGISTRY else [counterpart(name, kind)]):
        if strategy in strategy_names_all() and strategy not in own:
            raise UnknownNameError(f"strategy for {kind} projects", strategy, sorted(own))
    if name in _REGISTRY:
        selector = _REGISTRY[name].factory(device=device, **options)
        if kind != "choices" and getattr(getattr(selector, "config", None), "online", False):
            # The online search cross-fits a choices head: refused here, so that /setup answers
            # 422 and an environment-wide setting falls back, instead of every round failing.
            usable = [n for n in selector_names(kind) if not _searches_online(n)]
            raise UnknownNameError(
                f"selector for {kind} projects (its online search trains a choices head)",
                name,
                usable,
            )
        return selector
    return SingleStrategy(counterpart(name, kind))


def _searches_online(name: str) -> bool:
    """True for a registered selector whose defaults run the online search (AutoAL's)."""
    entry = _REGISTRY.get(name)
    return entry is not None and bool(getattr(entry.factory, "defaults", {}).get("online", False))


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value] if isinstance(value, list | tuple) else []


def _for_kind(value: Any, kind: str) -> Any:
    """Strategy names in an option value read as roles of ``kind`` (``counterpart``)."""
    if isinstance(value, str):
        return counterpart(value, kind)
    if isinstance(value, list | tuple):
        return [counterpart(v, kind) if isinstance(v, str) else v for v in value]
    return value


def parse_option_value(text: str, default: Any) -> Any:
    """A command-line or settings value for an option whose default is ``default``: booleans,
    numbers and comma-separated lists (a portfolio) by the default's type, else the text.
    ValueError says what was expected."""
    text = text.strip()
    if isinstance(default, bool):
        lowered = text.lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"expected true or false, got {text!r}")
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
    if default is None and text.lower() in {"none", ""}:
        return None
    if isinstance(default, list | tuple) or (default is None and "," in text):
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


def parse_selector_options(name: str, pairs: list[str]) -> dict[str, Any]:
    """``["k=v", ...]`` -> {k: typed v} for selector ``name``. A pair may name its selector
    (``autoal.prior=none``): it then applies only to that one. ValueError names the pair."""
    valid = selector_options(name)
    options: dict[str, Any] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key.strip():
            raise ValueError(f"selector option {pair!r} must look like key=value")
        key = key.strip()
        owner, dot, bare = key.rpartition(".")
        if dot:
            if owner != name:
                continue
            key = bare
        if key not in valid:
            if dot:
                raise ValueError(
                    f"selector {name!r} has no option {key!r}; valid: {', '.join(sorted(valid))}"
                )
            continue  # a bare option applies to every selector that has it
        try:
            options[key] = parse_option_value(value, valid[key])
        except ValueError as exc:
            raise ValueError(f"selector option {pair!r}: {exc}") from None
    return options


def saved_state(selector: Selector) -> dict:
    """``selector.state_dict()`` wrapped with who wrote it: the selector's name and portfolio,
    so that another selector never loads it (``restore_state``)."""
    return {
        "format": STATE_FORMAT,
        "selector": selector.name,
        "portfolio": list(getattr(selector, "portfolio", [])),
        "state": selector.state_dict(),
    }


def restore_state(selector: Selector, saved: dict | None) -> str | None:
    """Load ``saved`` (from ``saved_state``) into ``selector``; None when it was loaded, else
    the reason the selector starts fresh instead (another selector or portfolio wrote it, an
    older format, or it no longer loads). Never raises for a state of someone else."""
    if not saved:
        return "no saved state"
    if not isinstance(saved, dict) or saved.get("format") != STATE_FORMAT:
        return "the saved state predates this version's format"
    if saved.get("selector") != selector.name:
        return f"the saved state was written by selector {saved.get('selector')!r}"
    portfolio = list(getattr(selector, "portfolio", []))
    if list(saved.get("portfolio") or []) != portfolio:
        return f"the saved state is for portfolio {saved.get('portfolio')}, not {portfolio}"
    try:
        selector.load_state_dict(saved.get("state") or {})
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        return f"the saved state does not load ({type(exc).__name__}: {exc})"
    return None
