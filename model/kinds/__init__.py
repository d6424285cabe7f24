"""Task kinds: what differs between a choices project and a span project, behind one seam.

A kind owns its model (train, predict, per-item confidence), how a pool of its items becomes
per-item ``targets`` and ``probs`` for the selectors, its portfolio of strategies, and its
cold-start rule. Everything after that (selectors, ranking, AutoAL's state) reads only per-item
scores and the ``PoolState``, so every kind gets every selector.

- ``choices``: one label set per item (``<Choices>``); ``model.kinds.choices``.
- ``spans``: entities in a text (``<Labels>`` over ``<Text>``); ``model.kinds.spans``. The pool
  sees a span task as the multi-label question "which entity types does this text hold", so
  label counts, balance and confidence mean the same as for multi-choice items.
- ``boxes``: objects in an image (``<RectangleLabels>`` over ``<Image>``); ``model.kinds.boxes``.
  The pool sees an image as "which classes does it hold", as for spans.

Kinds register by name (``register_kind``); an unknown name is an error listing the valid
ones. The Label Studio side of a kind (its label config, annotations, result regions) lives in
``autoal_backend/kinds/``: this package never imports Label Studio.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol

from model.errors import UnknownNameError
from model.pool import PoolState
from model.task_model import TaskModelConfig


class TaskKind(Protocol):
    """What a task kind gives the round.

    Attributes:
        name: the registry name (``choices``, ``spans``).
        portfolio: its default strategies, in the order of the choices portfolio whose roles
            they take (so AutoAL's prior, trained on choices episodes, applies: ``roles``).
        roles: {own strategy: the choices strategy whose place it takes in the prior};
            strategies the kinds share (random, k-means, core-set) map to themselves.
    """

    name: str
    portfolio: tuple[str, ...]
    roles: dict[str, str]

    def cold_start(self, state: PoolState, min_labels: int) -> bool:
        """True when there is no model worth trusting yet (the round uses diversity only)."""
        ...

    def fit(self, state: PoolState, config: TaskModelConfig, seed: int) -> Any:
        """The kind's model trained on ``state``'s labeled items."""
        ...

    def trained(self, state: PoolState, model: Any) -> PoolState:
        """``state`` with ``model`` and its per-item ``probs`` [N, C] set."""
        ...

    def validate(self, state: PoolState, config: TaskModelConfig, folds: int) -> float | None:
        """k-fold cross-validated quality on the labeled items (the kind's metric), or None
        when there are too few labels."""
        ...


_REGISTRY: dict[str, Callable[[], TaskKind]] = {}
_MODULES = ("model.kinds.choices", "model.kinds.spans", "model.kinds.boxes")


def register_kind(name: str) -> Callable[[Callable[[], TaskKind]], Callable[[], TaskKind]]:
    """Decorator adding a kind class (built without arguments) under ``name``."""

    def wrap(factory: Callable[[], TaskKind]) -> Callable[[], TaskKind]:
        if name in _REGISTRY:
            raise ValueError(f"task kind {name!r} is registered twice")
        _REGISTRY[name] = factory
        return factory

    return wrap


def _load_all() -> None:
    for module in _MODULES:
        importlib.import_module(module)


def kind_names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def get_kind(name: str) -> TaskKind:
    """The task kind called ``name``; UnknownNameError lists the valid ones."""
    _load_all()
    if name not in _REGISTRY:
        raise UnknownNameError("task kind", name, list(_REGISTRY))
    return _REGISTRY[name]()


def counterpart(name: str, kind: str) -> str:
    """The strategy of ``kind`` that takes the place of strategy ``name`` (a choices name such
    as ``margin`` -> ``token_margin`` for spans); ``name`` itself when the kind has it."""
    roles = get_kind(kind).roles
    if name in roles:
        return name
    for own, role in roles.items():
        if role == name:
            return own
    return name


def prior_role(name: str) -> str:
    """The choices strategy whose place strategy ``name`` takes in AutoAL's prior (``name``
    itself for a choices strategy)."""
    _load_all()
    for factory in _REGISTRY.values():
        role = factory().roles.get(name)
        if role is not None:
            return role
    return name
