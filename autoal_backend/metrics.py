"""Counters for ``GET /metrics`` in Prometheus' text format (no client library needed)."""

import threading
from collections import defaultdict


class Metrics:
    """Rounds done, round seconds, errors by kind; the queue depth is read at scrape time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rounds: dict[int, int] = defaultdict(int)
        self.round_seconds_sum: dict[int, float] = defaultdict(float)
        self.last_round_seconds: dict[int, float] = {}
        self.errors: dict[str, int] = defaultdict(int)
        self.skipped_tasks: dict[int, int] = {}
        self.webhooks: dict[str, int] = defaultdict(int)
        self.skipped_rounds: dict[int, int] = defaultdict(int)

    def round_done(self, project_id: int, seconds: float, skipped: int) -> None:
        with self._lock:
            self.rounds[project_id] += 1
            self.round_seconds_sum[project_id] += seconds
            self.last_round_seconds[project_id] = seconds
            self.skipped_tasks[project_id] = skipped

    def round_skipped(self, project_id: int) -> None:
        with self._lock:
            self.skipped_rounds[project_id] += 1

    def error(self, kind: str) -> None:
        with self._lock:
            self.errors[kind] += 1

    def webhook(self, action: str) -> None:
        with self._lock:
            self.webhooks[action] += 1

    def render(self, queue_depth: int, running: int) -> str:
        lines = [
            "# HELP autoal_rounds_total Active-learning rounds completed.",
            "# TYPE autoal_rounds_total counter",
        ]
        with self._lock:
            for pid, n in sorted(self.rounds.items()):
                lines.append(f'autoal_rounds_total{{project="{pid}"}} {n}')
            lines += [
                "# HELP autoal_round_seconds_sum Total wall time of completed rounds.",
                "# TYPE autoal_round_seconds_sum counter",
            ]
            for pid, s in sorted(self.round_seconds_sum.items()):
                lines.append(f'autoal_round_seconds_sum{{project="{pid}"}} {s:.6f}')
            lines += [
                "# HELP autoal_round_seconds_last Wall time of the latest round.",
                "# TYPE autoal_round_seconds_last gauge",
            ]
            for pid, s in sorted(self.last_round_seconds.items()):
                lines.append(f'autoal_round_seconds_last{{project="{pid}"}} {s:.6f}')
            lines += [
                "# HELP autoal_rounds_skipped_total Rounds skipped: nothing changed since the last one.",
                "# TYPE autoal_rounds_skipped_total counter",
            ]
            for pid, n in sorted(self.skipped_rounds.items()):
                lines.append(f'autoal_rounds_skipped_total{{project="{pid}"}} {n}')
            lines += [
                "# HELP autoal_skipped_tasks Tasks left out of the latest round (unreadable data).",
                "# TYPE autoal_skipped_tasks gauge",
            ]
            for pid, n in sorted(self.skipped_tasks.items()):
                lines.append(f'autoal_skipped_tasks{{project="{pid}"}} {n}')
            lines += [
                "# HELP autoal_errors_total Failures by kind (rounds, requests, Label Studio calls).",
                "# TYPE autoal_errors_total counter",
            ]
            for kind, n in sorted(self.errors.items()):
                lines.append(f'autoal_errors_total{{kind="{kind}"}} {n}')
            lines += [
                "# HELP autoal_webhooks_total Webhook events received, by action.",
                "# TYPE autoal_webhooks_total counter",
            ]
            for action, n in sorted(self.webhooks.items()):
                lines.append(f'autoal_webhooks_total{{action="{action}"}} {n}')
        lines += [
            "# HELP autoal_queue_depth Projects waiting for a round.",
            "# TYPE autoal_queue_depth gauge",
            f"autoal_queue_depth {queue_depth}",
            "# HELP autoal_round_running 1 while a round is running.",
            "# TYPE autoal_round_running gauge",
            f"autoal_round_running {running}",
        ]
        return "\n".join(lines) + "\n"
