"""Label Studio's ML-backend protocol: /setup, /predict, /webhook and /train.

Every answer comes from what the latest round left on disk (never from running a round in the
request: Label Studio gives /webhook 1 s and /setup 3 s). Webhooks are hints: nothing from
their body is stored, a round (which reads Label Studio with our credentials) is queued.
``LabelStudioProtocol`` is the part of ``service.Backend`` that answers them.
"""

from __future__ import annotations

import hmac
import threading

from autoal_backend.errors import RequestError, parse_project_id
from autoal_backend.kinds import ProjectSpec
from autoal_backend.label_config import UnsupportedConfigError
from autoal_backend.metrics import Metrics
from autoal_backend.rounds.rank import why_text
from autoal_backend.rounds.runner import RoundRunner
from autoal_backend.rounds.sync import task_text
from autoal_backend.settings import Settings, SettingsError, parse_project_settings
from autoal_backend.store import ProjectRecord, ProjectStore, Ranking
from autoal_backend.worker import Worker
from model.errors import UnknownNameError
from model.selectors import make_selector

ROUND_ACTIONS = {
    "ANNOTATION_CREATED",
    "ANNOTATIONS_CREATED",
    "ANNOTATION_UPDATED",
    "ANNOTATIONS_DELETED",
    "START_TRAINING",
    "TASKS_CREATED",
}
NOTE_ACTIONS = {"PROJECT_UPDATED"}
FORCE_ACTIONS = {"START_TRAINING", "train"}
WEBHOOK_SECRET_HEADER = "X-AutoAL-Webhook-Secret"
# Unknown projects named by webhooks wait in memory, never on disk, until Label Studio (asked
# with our credentials) confirms them; at most this many at a time.
MAX_UNVERIFIED = 20


class LabelStudioProtocol:
    """The endpoints Label Studio calls; ``service.Backend`` provides the state they use."""

    settings: Settings
    store: ProjectStore
    runner: RoundRunner
    metrics: Metrics
    worker: Worker
    _lock: threading.Lock
    _setup_access: dict[int, tuple[str, str]]
    _unverified: set[int]

    # Provided by service.Backend.
    def register(self, project_id: int, label_config: str) -> ProjectRecord:
        raise NotImplementedError

    def record(self, project_id: int) -> ProjectRecord:
        raise NotImplementedError

    def ranking(self, project_id: int) -> Ranking | None:
        raise NotImplementedError

    def request_round(self, project_id: int, reason: str, force: bool = False) -> bool:
        raise NotImplementedError

    def set_project_settings(self, project_id: int, overrides: dict[str, str]) -> bool:
        raise NotImplementedError

    def setup(self, payload: dict) -> dict:
        project_id = parse_project_id(payload.get("project"))
        schema = payload.get("schema")
        if not isinstance(schema, str) or not schema.strip():
            raise RequestError("'schema' (the label config XML) must be a non-empty string")
        try:
            record = self.register(project_id, schema)
        except UnsupportedConfigError as exc:
            raise RequestError(f"unsupported label config: {exc}", 422) from None
        try:
            overrides = parse_project_settings(payload.get("extra_params"), self.settings)
            if "AUTOAL_STRATEGY" in overrides:  # the project's own choice must serve its kind
                make_selector(overrides["AUTOAL_STRATEGY"], kind=record.spec.kind)
        except SettingsError as exc:
            raise RequestError(str(exc), 422) from None
        except UnknownNameError as exc:
            raise RequestError(f"extra_params: {exc}", 422) from None
        changed = self.set_project_settings(project_id, overrides)
        hostname, token = payload.get("hostname"), payload.get("access_token")
        if isinstance(hostname, str) and hostname and isinstance(token, str) and token:
            with self._lock:
                self._setup_access[project_id] = (hostname.rstrip("/"), token)
        if record.round == 0 and not self.store.load_history(project_id):
            # A freshly connected project gets its cold-start order without waiting for a label.
            self.request_round(project_id, "setup")
        elif changed:
            self.request_round(project_id, "settings changed", force=True)
        return {"model_version": record.model_version}

    def predict(self, payload: dict) -> dict:
        tasks = payload.get("tasks")
        if not isinstance(tasks, list):
            raise RequestError("'tasks' must be a list of task objects")
        for position, task in enumerate(tasks):
            if (
                not isinstance(task, dict)
                or isinstance(task.get("id"), bool)
                or not isinstance(task.get("id"), int)
            ):
                raise RequestError(f"tasks[{position}] must be an object with an integer 'id'")
        project_id = parse_project_id(payload.get("project"))
        label_config = payload.get("label_config")
        if label_config is not None and not isinstance(label_config, str):
            raise RequestError("'label_config' must be a string of XML")
        if label_config and self.store.load_record(project_id) is None:
            try:
                self.register(project_id, label_config)
            except UnsupportedConfigError as exc:
                raise RequestError(f"unsupported label config: {exc}", 422) from None
        record = self.record(project_id)
        spec: ProjectSpec = record.spec
        settings = self.runner.project_settings(record)
        ranking = self.ranking(project_id)
        results = []
        for task in tasks:
            task_id = task["id"]
            if ranking is not None and task_id in ranking.scores:
                choices, confidence = spec.shown(
                    ranking.choices.get(task_id, []), ranking.confidence.get(task_id, []), settings
                )
                text = task_text(task, spec)
                why = why_text(ranking.model_version, ranking.why.get(task_id, "?"), spec.names(choices, text),
                               confidence, trained=task_id in ranking.certainty)  # fmt: skip
                results.append(
                    {
                        "result": spec.result(choices, why, confidence, text),
                        "score": ranking.scores[task_id],
                        "model_version": ranking.model_version,
                    }
                )
            else:
                # Not ranked yet (new, labeled, or unreadable): last in the queue until the
                # next round ranks it.
                results.append({"result": [], "score": 1.0, "model_version": record.model_version})
        return {"results": results}

    def check_webhook_secret(self, given: str | None) -> None:
        """With ``AUTOAL_WEBHOOK_SECRET`` set, a webhook must carry it in the
        ``X-AutoAL-Webhook-Secret`` header (Label Studio webhooks can send custom headers)."""
        secret = self.settings.webhook_secret
        if secret and not hmac.compare_digest((given or "").encode(), secret.encode()):
            raise RequestError(f"webhook: missing or wrong {WEBHOOK_SECRET_HEADER} header", 401)

    def webhook(self, payload: dict) -> dict:
        """A hint that something changed in a project: never the source of truth. Nothing
        from the body is stored; a round (which reads Label Studio with our credentials) is
        queued for a known project; an unknown one is checked against Label Studio first."""
        action = payload.get("action")
        if not isinstance(action, str) or not action:
            raise RequestError("'action' must be a non-empty string")
        self.metrics.webhook(action if action in ROUND_ACTIONS | NOTE_ACTIONS else "other")
        if action not in ROUND_ACTIONS and action not in NOTE_ACTIONS:
            return {"status": "ignored", "action": action}
        project = payload.get("project")
        raw_id = project.get("id") if isinstance(project, dict) else project
        if raw_id is None:
            raise RequestError(f"{action}: payload has no 'project' (object with 'id')")
        project_id = parse_project_id(raw_id, "project.id")
        record = self.store.load_record(project_id)
        if record is None:
            return self._verify_unknown(project_id, action)
        if action in NOTE_ACTIONS:
            # PROJECT_UPDATED also follows our own PATCH of model_version: only a label config
            # that differs from ours hints at new work (the round reads the real one).
            hinted = project.get("label_config") if isinstance(project, dict) else None
            if not isinstance(hinted, str) or hinted == record.label_config:
                return {"status": "noted", "action": action, "project": project_id}
        queued = self.request_round(project_id, action, force=action in FORCE_ACTIONS)
        return {
            "status": "queued" if queued else "coalesced",
            "action": action,
            "project": project_id,
        }

    def _verify_unknown(self, project_id: int, action: str) -> dict:
        """An unknown project named by a webhook: queued for a check against Label Studio with
        our own credentials (the round does it), kept in memory only, a few at a time."""
        if not (self.settings.label_studio_url and self.settings.label_studio_api_key):
            return {"status": "ignored", "action": action, "project": project_id,
                    "reason": "unknown project: Label Studio connects it through /setup"}  # fmt: skip
        with self._lock:
            if project_id not in self._unverified and len(self._unverified) >= MAX_UNVERIFIED:
                raise RequestError(
                    f"{len(self._unverified)} unknown projects already wait for Label Studio to "
                    "confirm them; try again later",
                    429,
                )
            self._unverified.add(project_id)
        queued = self.worker.submit(
            project_id, f"{action} (unknown project: checking Label Studio)"
        )
        return {
            "status": "queued" if queued else "coalesced",
            "action": action,
            "project": project_id,
        }

    def train(self, payload: dict) -> dict:
        """The older ``POST /train`` call (Label Studio without the START_TRAINING webhook
        flag): ``{annotations, project: "<id>.<ts>", label_config}``. Label Studio stays the
        source of truth, so the annotations sent are not used: the round syncs them."""
        project_id = parse_project_id(payload.get("project"))
        label_config = payload.get("label_config")
        if isinstance(label_config, str) and label_config.strip():
            try:
                self.register(project_id, label_config)
            except UnsupportedConfigError as exc:
                raise RequestError(f"unsupported label config: {exc}", 422) from None
        else:
            self.record(project_id)
        queued = self.request_round(project_id, "train", force=True)
        return {"status": "queued" if queued else "coalesced", "project": project_id}
