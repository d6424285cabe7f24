"""The background worker: one round at a time, events coalesced per project, outages retried.

Webhooks only mark a project as pending; the worker thread runs its rounds. However many
events arrive for a project while its round runs or waits, they become ONE next round (it
reads the whole project state from Label Studio anyway, so nothing is lost). A round that
fails because Label Studio is unavailable is retried with capped exponential backoff and
jitter; events that arrive meanwhile join the scheduled retry instead of starting rounds.
"""

import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class Backoff:
    """Delay before retry n (1-based): min(cap, base * 2^(n-1)), times a random factor in
    [1 - jitter, 1 + jitter] so that many projects do not retry in step."""

    base_s: float = 1.0
    cap_s: float = 60.0
    jitter: float = 0.25

    def delay(self, attempt: int, rng: random.Random) -> float:
        raw = min(self.cap_s, self.base_s * 2 ** max(attempt - 1, 0))
        return raw * rng.uniform(1.0 - self.jitter, 1.0 + self.jitter)


@dataclass
class RoundRequest:
    """What a pending round was asked for.

    Attributes:
        reasons: the events behind it, oldest first (at most the last ``KEEP``).
        force: run even when nothing changed since the last round (Start Training).
        attempts: failed attempts in a row because Label Studio was unavailable.
        not_before: monotonic time before which it must not start (the backoff).
        first_at: monotonic time of the first event behind it (the lag to its round).
    """

    reasons: list[str] = field(default_factory=list)
    force: bool = False
    attempts: int = 0
    not_before: float = 0.0
    first_at: float = 0.0

    KEEP = 5

    def add(self, reason: str, force: bool) -> None:
        if reason not in self.reasons:
            self.reasons = (self.reasons + [reason])[-self.KEEP :]
        self.force = self.force or force

    def merge(self, other: "RoundRequest") -> None:
        for reason in other.reasons:
            self.add(reason, other.force)
        self.not_before = max(self.not_before, other.not_before)
        self.first_at = min(self.first_at, other.first_at) if self.first_at else other.first_at

    @property
    def reason(self) -> str:
        return ", ".join(self.reasons)


class Worker:
    """Runs ``run_round(project_id, request)`` in one daemon thread, started on the first
    submit (never at import time, and in the process that serves requests, which matters
    under gunicorn).

    ``retry_errors`` (Label Studio unavailable) reschedule the round with ``backoff``;
    ``expected_errors`` are failures with a clear message, logged without a traceback; anything
    else is a bug and gets one. ``on_error`` / ``on_success`` are told of every outcome.
    """

    def __init__(
        self,
        run_round: Callable[[int, RoundRequest], object],
        on_error: Callable[[int, BaseException, RoundRequest], None] | None = None,
        expected_errors: tuple[type[BaseException], ...] = (),
        retry_errors: tuple[type[BaseException], ...] = (),
        on_success: Callable[[int], None] | None = None,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        seed: int = 0,
    ) -> None:
        self._run_round = run_round
        self._on_error = on_error
        self._on_success = on_success
        self._expected = expected_errors
        self._retry = retry_errors
        self.backoff = backoff or Backoff()
        self._clock = clock
        self._rng = random.Random(seed)
        self._cond = threading.Condition()
        self._pending: OrderedDict[int, RoundRequest] = OrderedDict()
        self._running: int | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False
        self.rounds_run = 0

    def submit(self, project_id: int, reason: str, force: bool = False) -> bool:
        """Ask for a round of ``project_id``. Returns False when one was already pending
        (coalesced into it, a scheduled retry included)."""
        with self._cond:
            if self._stopped:
                return False
            request = self._pending.get(project_id)
            fresh = request is None
            if request is None:
                request = self._pending[project_id] = RoundRequest(first_at=self._clock())
            request.add(reason, force)
            self._ensure_thread()
            self._cond.notify_all()
            return fresh

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="autoal-worker", daemon=True)
            self._thread.start()

    @property
    def queue_depth(self) -> int:
        with self._cond:
            return len(self._pending)

    @property
    def running(self) -> int | None:
        with self._cond:
            return self._running

    def pending_projects(self) -> list[int]:
        with self._cond:
            return list(self._pending)

    def retrying(self) -> dict[int, tuple[int, float]]:
        """{project: (failed attempts, seconds until the next one)} of rounds in backoff."""
        now = self._clock()
        with self._cond:
            return {
                pid: (r.attempts, max(0.0, r.not_before - now))
                for pid, r in self._pending.items()
                if r.attempts
            }

    def _next_due(self) -> tuple[int, RoundRequest] | None:
        """The oldest pending request whose backoff is over; None when none is due."""
        now = self._clock()
        for project_id, request in self._pending.items():
            if request.not_before <= now:
                del self._pending[project_id]
                return project_id, request
        return None

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    due = self._next_due()
                    if due is not None:
                        break
                    wake = min((r.not_before for r in self._pending.values()), default=None)
                    self._cond.wait(None if wake is None else max(0.01, wake - self._clock()))
                if self._stopped or due is None:
                    return
                project_id, request = due
                self._running = project_id
            try:
                log.info("round for project %s (%s)", project_id, request.reason)
                self._run_round(project_id, request)
            except Exception as exc:  # a failed round must not kill the worker
                if isinstance(exc, self._retry):
                    self._reschedule(project_id, request)
                    log.debug(
                        "round for project %s: %s; retry %s", project_id, exc, request.attempts
                    )
                elif isinstance(exc, self._expected):
                    log.error("round for project %s failed: %s", project_id, exc)
                else:
                    log.exception("round for project %s failed: %s", project_id, exc)
                if self._on_error is not None:
                    self._on_error(project_id, exc, request)
            else:
                if self._on_success is not None:
                    self._on_success(project_id)
            finally:
                with self._cond:
                    self._running = None
                    self.rounds_run += 1
                    self._cond.notify_all()

    def _reschedule(self, project_id: int, request: RoundRequest) -> None:
        """Put a round that met an outage back, ``backoff`` later; events that came in
        meanwhile join it."""
        request.attempts += 1
        request.not_before = self._clock() + self.backoff.delay(request.attempts, self._rng)
        with self._cond:
            newer = self._pending.pop(project_id, None)
            if newer is not None:
                request.merge(newer)
            self._pending[project_id] = request
            self._cond.notify_all()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until nothing is pending or running (tests, shutdown). True if idle."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not self._pending and self._running is None, timeout=timeout
            )

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
