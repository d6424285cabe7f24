"""The background worker: one round at a time, events coalesced per project.

Webhooks only mark a project as pending; the worker thread runs its rounds. However many
events arrive for a project while its round runs, they become ONE next round (the next round
reads the whole project state from Label Studio anyway, so nothing is lost).
"""

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable

log = logging.getLogger(__name__)


class Worker:
    """Runs ``run_round(project_id)`` in one daemon thread, started on the first submit
    (never at import time, and in the process that serves requests, which matters under
    gunicorn)."""

    def __init__(
        self,
        run_round: Callable[[int], object],
        on_error: Callable[[int, BaseException], None] | None = None,
        expected_errors: tuple[type[BaseException], ...] = (),
    ) -> None:
        self._run_round = run_round
        self._on_error = on_error
        # Failures with a clear message (Label Studio down, nothing to rank) are logged
        # without a traceback; anything else is a bug and gets one.
        self._expected = expected_errors
        self._cond = threading.Condition()
        self._pending: OrderedDict[int, str] = OrderedDict()
        self._running: int | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False
        self.rounds_run = 0

    def submit(self, project_id: int, reason: str) -> bool:
        """Ask for a round of ``project_id``. Returns False when one was already pending
        (coalesced into it)."""
        with self._cond:
            if self._stopped:
                return False
            fresh = project_id not in self._pending
            if fresh:
                self._pending[project_id] = reason
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

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                project_id, reason = self._pending.popitem(last=False)
                self._running = project_id
            try:
                log.info("round for project %s (%s)", project_id, reason)
                self._run_round(project_id)
            except Exception as exc:  # a failed round must not kill the worker
                if isinstance(exc, self._expected):
                    log.error("round for project %s failed: %s", project_id, exc)
                else:
                    log.exception("round for project %s failed: %s", project_id, exc)
                if self._on_error is not None:
                    self._on_error(project_id, exc)
            finally:
                with self._cond:
                    self._running = None
                    self.rounds_run += 1
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
