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
        accuracy: dict[int, dict] | None = None,
    ) -> str:
        """The text exposition; ``accuracy``: {project: ``rounds.history.accuracy_headline``}."""
        lines: list[str] = []
        with self._lock:
            for name, kind, text, values, label, fmt in (
                ("autoal_rounds_total", "counter", "Active-learning rounds completed.", self.rounds, "project", "{}"),
                ("autoal_round_seconds_sum", "counter", "Total wall time of completed rounds.",
                 self.round_seconds_sum, "project", "{:.6f}"),
                ("autoal_round_seconds_last", "gauge", "Wall time of the latest round.",
                 self.last_round_seconds, "project", "{:.6f}"),
                ("autoal_round_seconds_count", "counter", "Completed rounds (with _sum: the mean round time).",
                 self.rounds, "project", "{}"),
                ("autoal_webhook_to_round_seconds", "gauge", "From the first event behind a round to its start.",
                 self.lag_seconds, "project", "{:.3f}"),
                ("autoal_rounds_skipped_total", "counter", "Rounds skipped: nothing changed since the last one.",
                 self.skipped_rounds, "project", "{}"),
                ("autoal_skipped_tasks", "gauge", "Tasks left out of the latest round (unreadable data).",
                 self.skipped_tasks, "project", "{}"),
                ("autoal_errors_total", "counter", "Failures by kind (rounds, requests, Label Studio calls).",
                 self.errors, "kind", "{}"),
                ("autoal_webhooks_total", "counter", "Webhook events received, by action.",
                 self.webhooks, "action", "{}"),
            ):  # fmt: skip
                lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
                lines += [
                    f'{name}{{{label}="{key}"}} {fmt.format(v)}'
                    for key, v in sorted(values.items())
                ]
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
                lines.append(
                    f'autoal_embedding_progress{{project="{pid}"}} {p["done"] / p["total"]:.4f}'
                )
        lines += accuracy_lines(accuracy or {})
        lines += [
            "# HELP autoal_queue_depth Projects waiting for a round.",
            "# TYPE autoal_queue_depth gauge",
            f"autoal_queue_depth {queue_depth}",
            "# HELP autoal_round_running 1 while a round is running.",
            "# TYPE autoal_round_running gauge",
            f"autoal_round_running {running}",
        ]
        return "\n".join(lines) + "\n"


def accuracy_lines(accuracy: dict[int, dict]) -> list[str]:
    """The latest model's accuracy on the unlabeled tasks per project: the figure and its 95%
    band where it is trusted; where it is not, no figure and a 1 under the reason's code (the
    sentence is in the project's JSON, /api/projects/<id>)."""
    lines = []
    for name, key, text in (
        ("autoal_accuracy_unlabeled", "value", "Accuracy of the latest model on the unlabeled tasks (trusted figures only)."),
        ("autoal_accuracy_unlabeled_low", "low", "Low end of its 95% band."),
        ("autoal_accuracy_unlabeled_high", "high", "High end of its 95% band."),
    ):  # fmt: skip
        lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge"]
        lines += [
            f'{name}{{project="{pid}"}} {figure[key]:.4f}'
            for pid, figure in sorted(accuracy.items())
            if figure.get("value") is not None
        ]
    lines += [
        "# HELP autoal_accuracy_unlabeled_withheld 1 where no figure is trusted yet, by reason "
        "(too_few_audits, band_too_wide, no_model, not_measured, no_figure, no_round).",
        "# TYPE autoal_accuracy_unlabeled_withheld gauge",
    ]
    lines += [
        f'autoal_accuracy_unlabeled_withheld{{project="{pid}",reason="{figure.get("code") or "unknown"}"}} 1'
        for pid, figure in sorted(accuracy.items())
        if figure.get("value") is None
    ]
    return lines
