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
        self.lag_seconds: dict[int, float] = {}

    def round_done(self, project_id: int, seconds: float, skipped: int) -> None:
        with self._lock:
            self.rounds[project_id] += 1
            self.round_seconds_sum[project_id] += seconds
            self.last_round_seconds[project_id] = seconds
            self.skipped_tasks[project_id] = skipped

    def round_lag(self, project_id: int, seconds: float) -> None:
        with self._lock:
            self.lag_seconds[project_id] = seconds

    def round_skipped(self, project_id: int) -> None:
        with self._lock:
            self.skipped_rounds[project_id] += 1

    def error(self, kind: str) -> None:
        with self._lock:
            self.errors[kind] += 1

    def webhook(self, action: str) -> None:
        with self._lock:
            self.webhooks[action] += 1

    def render(
        self,
        queue_depth: int,
        running: int,
        pending: list[int] | None = None,
        progress: dict[int, dict] | None = None,
    ) -> str:
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
                "# HELP autoal_round_seconds_count Completed rounds (with _sum: the mean round time).",
                "# TYPE autoal_round_seconds_count counter",
            ]
            for pid, n in sorted(self.rounds.items()):
                lines.append(f'autoal_round_seconds_count{{project="{pid}"}} {n}')
            lines += [
                "# HELP autoal_webhook_to_round_seconds From the first event behind a round to its start.",
                "# TYPE autoal_webhook_to_round_seconds gauge",
            ]
            for pid, s in sorted(self.lag_seconds.items()):
                lines.append(f'autoal_webhook_to_round_seconds{{project="{pid}"}} {s:.3f}')
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
            "# HELP autoal_round_pending 1 for each project that waits for a round (queue depth per project).",
            "# TYPE autoal_round_pending gauge",
        ]
        lines += [f'autoal_round_pending{{project="{pid}"}} 1' for pid in sorted(pending or [])]
        lines += [
            "# HELP autoal_embedding_progress Share of the new tasks a running round has embedded.",
            "# TYPE autoal_embedding_progress gauge",
        ]
        for pid, p in sorted((progress or {}).items()):
            if p.get("stage") == "embedding" and p.get("total"):
                lines.append(f'autoal_embedding_progress{{project="{pid}"}} {p["done"] / p["total"]:.4f}')
        lines += [
            "# HELP autoal_queue_depth Projects waiting for a round.",
            "# TYPE autoal_queue_depth gauge",
            f"autoal_queue_depth {queue_depth}",
            "# HELP autoal_round_running 1 while a round is running.",
            "# TYPE autoal_round_running gauge",
            f"autoal_round_running {running}",
        ]
        return "\n".join(lines) + "\n"
