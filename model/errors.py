"""Typed errors of the ML core. Messages say what was expected and what came."""


class ModelError(Exception):
    """Base class of every error the ML core raises on purpose."""


class EmptyPoolError(ModelError):
    """There is nothing to score or select."""


class BudgetError(ModelError):
    """A batch size that the pool cannot serve."""

    def __init__(self, requested: int, available: int) -> None:
        super().__init__(f"budget of {requested} requested, but only {available} available")
        self.requested = requested
        self.available = available


class NonFiniteScoresError(ModelError):
    """A strategy produced NaN or infinite scores."""


class UnknownNameError(ModelError, KeyError):
    """A registry lookup for a name that does not exist."""

    def __init__(self, kind: str, name: str, valid: list[str]) -> None:
        message = f"unknown {kind} {name!r}; valid: {', '.join(sorted(valid))}"
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message
