"""The backend's state and behaviour behind the HTTP routes, free of Flask.

Holds the settings, the project store, the round runner and the worker; answers /setup,
/predict and webhooks from what the latest round left on disk (never by running a round in
the request: Label Studio gives /webhook 1 s and /setup 3 s).
"""

import logging
import threading
from pathlib import Path

import requests
import torch

from autoal_backend.label_config import LabelSpec, UnsupportedConfigError, parse_label_config
from autoal_backend.loop import EncoderFactory, RoundError, RoundRunner, why_text
from autoal_backend.ls_client import LabelStudioClient, LabelStudioError
from autoal_backend.metrics import Metrics
from autoal_backend.settings import Settings, SettingsError, parse_project_settings
from autoal_backend.store import ProjectRecord, ProjectStore, Ranking
from autoal_backend.worker import Worker
from model.device import resolve_device
from model.errors import ModelError

log = logging.getLogger(__name__)

ROUND_ACTIONS = {
    "ANNOTATION_CREATED",
    "ANNOTATIONS_CREATED",
    "ANNOTATION_UPDATED",
    "ANNOTATIONS_DELETED",
    "START_TRAINING",
    "TASKS_CREATED",
}
NOTE_ACTIONS = {"PROJECT_UPDATED"}


class RequestError(ValueError):
    """Bad input from a caller; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def parse_project_id(value: object, field: str = "project") -> int:
    """Label Studio sends ``"<id>.<created_ts>"`` (setup/predict) or an int (webhooks)."""
    if isinstance(value, bool):
        raise RequestError(f"'{field}' must be a project id, got a boolean")
    if isinstance(value, int):
        project_id = value
    elif isinstance(value, str) and value.split(".", 1)[0].strip().isdigit():
        project_id = int(value.split(".", 1)[0])
    else:
        raise RequestError(
            f"'{field}' must be a project id like 12 or \"12.1700000000\", got {value!r:.60}"
        )
    if project_id <= 0:
        raise RequestError(f"'{field}' must be a positive project id, got {project_id}")
    return project_id


def default_encoder_factory(spec: str, device: torch.device):
    """Build the encoder of a setting ``name[@key=value,...]`` (the encoder registry parses it)."""
    from model.encoders import get_encoder, parse_encoder

    name, options = parse_encoder(spec)
    return get_encoder(name, device, **options)


def default_encoder_identity(spec: str) -> tuple[str, int]:
    from model.encoders import encoder_identity, parse_encoder

    name, options = parse_encoder(spec)
    return encoder_identity(name, **options)


class Backend:
    """One backend process: every project's state, the round worker and the counters."""

    def __init__(
        self,
        settings: Settings,
        *,
        encoder_factory: EncoderFactory | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.settings = settings
        self.store = ProjectStore(settings.model_dir)
        self.metrics = Metrics()
        self.device = resolve_device(settings.device)
        self.session = session
        self._lock = threading.Lock()
        self._setup_access: dict[int, tuple[str, str]] = {}
        self._clients: dict[tuple[str, str], LabelStudioClient] = {}
        self._rankings: dict[int, Ranking | None] = {}
        self.changed: set[int] = set()  # projects whose label config changed since last round
        self.runner = RoundRunner(
            settings,
            self.store,
            self.device,
            self.client_for,
            encoder_factory or default_encoder_factory,
            # The registry knows a built-in encoder's cache name and dim without its weights.
            None if encoder_factory else default_encoder_identity,
        )
        self.worker = Worker(
            self._run_round, self._round_failed, (LabelStudioError, RoundError, ModelError)
        )

    # --- Label Studio access --------------------------------------------------------------
    def client_for(self, project_id: int) -> LabelStudioClient:
        """The client for ``project_id``: LABEL_STUDIO_URL/API_KEY when set, else the
        hostname and token Label Studio sent with /setup (kept in memory only)."""
        url, key = self.settings.label_studio_url, self.settings.label_studio_api_key
        if not (url and key):
            with self._lock:
                fallback = self._setup_access.get(project_id)
            if fallback is None:
                raise LabelStudioError(
                    "LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY are not set, and Label Studio has "
                    f"not called /setup for project {project_id} with its hostname and token"
                )
            url, key = url or fallback[0], key or fallback[1]
        with self._lock:
            client = self._clients.get((url, key))
            if client is None:
                client = LabelStudioClient(url, key, session=self.session)
                self._clients[(url, key)] = client
            return client

    # --- projects -----------------------------------------------------------------------
    def register(self, project_id: int, label_config: str) -> ProjectRecord:
        """Remember ``project_id`` with its label config (UnsupportedConfigError if the
        config is not one we can learn from). A config whose labels or fields changed drops
        the selector state (its classes no longer mean the same) and sets
        ``self.changed[project_id]``."""
        spec = parse_label_config(label_config)
        with self._lock:
            record = self.store.load_record(project_id)
            if record is None:
                record = ProjectRecord(project_id, label_config)
                self.store.save_record(record)
            elif record.label_config != label_config:
                if record.spec != spec:
                    selector = self.store.directory(project_id) / "selector.pt"
                    selector.unlink(missing_ok=True)
                    self.changed.add(project_id)
                record.label_config = label_config
                self.store.save_record(record)
            return record

    def record(self, project_id: int) -> ProjectRecord:
        record = self.store.load_record(project_id)
        if record is None:
            raise RequestError(
                f"unknown project {project_id}: call /setup (or send its label_config) first", 404
            )
        return record

    def ranking(self, project_id: int) -> Ranking | None:
        with self._lock:
            if project_id not in self._rankings:
                self._rankings[project_id] = self.store.load_ranking(project_id)
            return self._rankings[project_id]

    # --- endpoints ----------------------------------------------------------------------
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
        except SettingsError as exc:
            raise RequestError(str(exc), 422) from None
        changed = self.set_project_settings(project_id, overrides)
        hostname, token = payload.get("hostname"), payload.get("access_token")
        if isinstance(hostname, str) and hostname and isinstance(token, str) and token:
            with self._lock:
                self._setup_access[project_id] = (hostname.rstrip("/"), token)
        if record.round == 0:
            # A freshly connected project gets its cold-start order without waiting for a label.
            self.worker.submit(project_id, "setup")
        elif changed:
            self.worker.submit(project_id, "settings changed")
        return {"model_version": record.model_version}

    def set_project_settings(self, project_id: int, overrides: dict[str, str]) -> bool:
        """Record a project's own settings (already validated); True when they changed."""
        with self._lock:
            record = self.store.load_record(project_id)
            if record is None or record.settings == overrides:
                return False
            log.info("project %s: settings %s (were %s)", project_id, overrides or "from the environment",
                     record.settings or "from the environment")  # fmt: skip
            record.settings = dict(overrides)
            self.store.save_record(record)
            return True

    def predict(self, payload: dict) -> dict:
        tasks = payload.get("tasks")
        if not isinstance(tasks, list):
            raise RequestError("'tasks' must be a list of task objects")
        for position, task in enumerate(tasks):
            if not isinstance(task, dict) or isinstance(task.get("id"), bool) or not isinstance(task.get("id"), int):
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
        spec: LabelSpec = record.spec
        ranking = self.ranking(project_id)
        results = []
        for task in tasks:
            task_id = task["id"]
            if ranking is not None and task_id in ranking.scores:
                choices = ranking.choices.get(task_id, [])
                confidence = ranking.confidence.get(task_id, [])
                why = why_text(ranking.model_version, ranking.why.get(task_id, "?"), choices, confidence)
                results.append(
                    {
                        "result": spec.result(choices, why, confidence),
                        "score": ranking.scores[task_id],
                        "model_version": ranking.model_version,
                    }
                )
            else:
                # Not ranked yet (new, labeled, or unreadable): last in the queue until the
                # next round ranks it.
                results.append({"result": [], "score": 1.0, "model_version": record.model_version})
        return {"results": results}

    def webhook(self, payload: dict) -> dict:
        action = payload.get("action")
        if not isinstance(action, str) or not action:
            raise RequestError("'action' must be a non-empty string")
        self.metrics.webhook(action)
        if action not in ROUND_ACTIONS and action not in NOTE_ACTIONS:
            return {"status": "ignored", "action": action}
        project = payload.get("project")
        raw_id = project.get("id") if isinstance(project, dict) else project
        if raw_id is None:
            raise RequestError(f"{action}: payload has no 'project' (object with 'id')")
        project_id = parse_project_id(raw_id, "project.id")
        label_config = project.get("label_config") if isinstance(project, dict) else None
        if isinstance(label_config, str) and label_config.strip():
            try:
                self.register(project_id, label_config)
            except UnsupportedConfigError as exc:
                raise RequestError(f"unsupported label config: {exc}", 422) from None
        if action in NOTE_ACTIONS:
            # PROJECT_UPDATED also follows our own PATCH of model_version: a round for every
            # one would loop forever. Only a changed label config (new classes) needs a round.
            with self._lock:
                changed = project_id in self.changed
                self.changed.discard(project_id)
            if not changed:
                return {"status": "noted", "action": action, "project": project_id}
        queued = self.worker.submit(project_id, action)
        return {"status": "queued" if queued else "coalesced", "action": action, "project": project_id}

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
        queued = self.worker.submit(project_id, "train")
        return {"status": "queued" if queued else "coalesced", "project": project_id}

    def history(self, project_id: int) -> dict:
        record = self.record(project_id)
        return {
            "project": project_id,
            "model_version": record.model_version,
            "strategy": self.runner.project_settings(record).strategy,
            "settings": dict(record.settings),
            "labels": list(record.spec.labels),
            "rounds": self.store.load_history(project_id),
        }

    def model_file(self, project_id: int) -> tuple[Path, str]:
        """The latest round's exported classifier (``model.export``) and its download name."""
        record = self.record(project_id)
        path = self.store.model_path(project_id)
        if not path.is_file():
            raise RequestError(
                f"project {project_id} has no trained model yet: rounds train one from "
                f"{self.runner.project_settings(record).min_labels} labels (two classes) on",
                404,
            )
        return path, f"autoal-project-{project_id}-{record.model_version}.pt"

    def versions(self, project_id: int | None = None) -> dict:
        ids = [project_id] if project_id is not None else self.store.project_ids()
        versions = []
        for pid in ids:
            versions += [e["model_version"] for e in self.store.load_history(pid)]
        return {"versions": versions}

    # --- the worker's side --------------------------------------------------------------
    def _run_round(self, project_id: int) -> None:
        if self.store.load_record(project_id) is None:
            project = self.client_for(project_id).get_project(project_id)
            self.register(project_id, str(project.get("label_config", "")))
        report = self.runner.run(project_id)
        with self._lock:
            self._rankings[project_id] = report.ranking
        self.metrics.round_done(project_id, report.entry["seconds"]["total"], len(report.skipped))

    def _round_failed(self, project_id: int, exc: BaseException) -> None:
        kind = "label_studio" if isinstance(exc, LabelStudioError) else "round"
        self.metrics.error(kind)

    def metrics_text(self) -> str:
        return self.metrics.render(self.worker.queue_depth, int(self.worker.running is not None))
