"""The backend's state and behaviour behind the HTTP routes, free of Flask.

Holds the settings, the project store, the round runner and the worker; answers /setup,
/predict and webhooks from what the latest round left on disk (never by running a round in
the request: Label Studio gives /webhook 1 s and /setup 3 s).
"""

import hmac
import io
import logging
import threading
import time
from pathlib import Path

import requests
import torch

from autoal_backend.errors import RequestError, parse_project_id
from autoal_backend.kinds import ProjectSpec
from autoal_backend.label_config import UnsupportedConfigError
from autoal_backend.ls_client import (
    LabelStudioClient,
    LabelStudioError,
    LabelStudioUnavailable,
    ProjectNotFound,
)
from autoal_backend.metrics import Metrics
from autoal_backend.projects import Projects
from autoal_backend.rounds.embed import EncoderFactory
from autoal_backend.rounds.rank import why_text
from autoal_backend.rounds.runner import RoundError, RoundRunner, RoundSkipped
from autoal_backend.rounds.sync import project_state, task_text
from autoal_backend.settings import Settings, SettingsError, parse_project_settings
from autoal_backend.store import ProjectRecord, ProjectStore, Ranking, atomic_write_bytes
from autoal_backend.task_data import TaskDataError, load_item
from autoal_backend.worker import RoundRequest, Worker
from model.device import resolve_device
from model.errors import ModelError, UnknownNameError
from model.selectors import make_selector

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
FORCE_ACTIONS = {"START_TRAINING", "train"}
WEBHOOK_SECRET_HEADER = "X-AutoAL-Webhook-Secret"
# Unknown projects named by webhooks wait in memory, never on disk, until Label Studio (asked
# with our credentials) confirms them; at most this many at a time.
MAX_UNVERIFIED = 20


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
        self.projects = Projects(self.store, settings.max_projects)
        self.metrics = Metrics()
        self.device = resolve_device(settings.device)
        self.session = session
        self._lock = threading.Lock()
        self._setup_access: dict[int, tuple[str, str]] = {}
        self._clients: dict[tuple[str, str], LabelStudioClient] = {}
        self._rankings: dict[int, Ranking | None] = {}
        self._unverified: set[int] = set()
        # (since, reason) while Label Studio is unavailable: one warning per outage.
        self.outage: tuple[float, str] | None = None
        self._reconciler: threading.Thread | None = None
        self._stopping = threading.Event()
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
            self._run_round,
            self._round_failed,
            expected_errors=(LabelStudioError, RoundError, ModelError),
            retry_errors=(LabelStudioUnavailable,),
            on_success=self._round_succeeded,
            seed=settings.seed,
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
        """``Projects.register``: the project with this label config, added or updated."""
        return self.projects.register(project_id, label_config)

    def request_round(self, project_id: int, reason: str, force: bool = False) -> bool:
        """Owe a round to a known project: written to disk first (a crash keeps it owed),
        then queued. False when it joined one already pending."""
        self.store.mark_pending(project_id, reason, force)
        return self.worker.submit(project_id, reason, force)

    def record(self, project_id: int) -> ProjectRecord:
        return self.projects.record(project_id)

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

    def set_project_settings(self, project_id: int, overrides: dict[str, str]) -> bool:
        """``Projects.set_settings``: True when the project's own settings changed."""
        return self.projects.set_settings(project_id, overrides)

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
        spec: ProjectSpec = record.spec
        ranking = self.ranking(project_id)
        results = []
        for task in tasks:
            task_id = task["id"]
            if ranking is not None and task_id in ranking.scores:
                choices = ranking.choices.get(task_id, [])
                confidence = ranking.confidence.get(task_id, [])
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
        return {"status": "queued" if queued else "coalesced", "action": action, "project": project_id}

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
        queued = self.worker.submit(project_id, f"{action} (unknown project: checking Label Studio)")
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
        queued = self.request_round(project_id, "train", force=True)
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

    def thumbnail(self, project_id: int, task_id: int, size: int = 96) -> bytes:
        """A small PNG of an image task (for the project page), made once and kept."""
        record = self.record(project_id)
        spec = record.spec
        if spec.modality != "image":
            raise RequestError(f"project {project_id} labels texts: no thumbnails", 404)
        path = self.store.directory(project_id) / "thumbnails" / f"{task_id}.png"
        if path.is_file():
            return path.read_bytes()
        data = (self.store.load_task_index(project_id, spec.data_key) or {}).get(task_id)
        if data is None:
            raise RequestError(f"project {project_id} has no task {task_id}", 404)
        client = self.client_for(project_id)
        try:
            image = load_item({"id": task_id, "data": data}, spec, label_studio_url=client.url,
                              headers_for=client.headers_for, session=client.session,
                              allowed_hosts=self.settings.allowed_hosts)  # fmt: skip
        except TaskDataError as exc:
            raise RequestError(f"task {task_id}: {exc}", 404) from None
        if isinstance(image, str):
            raise RequestError(f"task {task_id} is a text: there is no thumbnail", 404)
        image.thumbnail((size, size))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        atomic_write_bytes(path, buffer.getvalue())
        return buffer.getvalue()

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
    def _run_round(self, project_id: int, request: RoundRequest | None = None) -> None:
        """One round, Label Studio first: the project as it is there decides (an unknown or
        deleted project is dropped, its label config is the one used)."""
        request = request or RoundRequest(["direct"], force=True)
        if request.first_at:
            self.metrics.round_lag(project_id, max(0.0, time.monotonic() - request.first_at))
        pending = self.store.pending(project_id)
        ticket = int(pending["ticket"]) if pending else None
        client = self.client_for(project_id)
        record = self.store.load_record(project_id)
        try:
            project = client.get_project(project_id)
        except ProjectNotFound as exc:
            self._drop_unknown(project_id, record, exc)
            return
        finally:
            with self._lock:
                self._unverified.discard(project_id)
        config = str(project.get("label_config") or "")
        if record is None or record.label_config != config:
            try:
                self.register(project_id, config)
            except UnsupportedConfigError as exc:
                raise RoundError(f"project {project_id}: unsupported label config: {exc}") from None
            except RequestError as exc:
                raise RoundError(str(exc)) from None
        try:
            report = self.runner.run(project_id, force=request.force, project=project)
        except RoundSkipped as skipped:
            log.info("%s (skipped)", skipped)
            self.metrics.round_skipped(project_id)
        else:
            with self._lock:
                self._rankings[project_id] = report.ranking
            self.metrics.round_done(project_id, report.entry["seconds"]["total"], len(report.skipped))
        if ticket is not None:
            self.store.clear_pending(project_id, ticket)
        self.store.save_last_error(project_id, None)

    def _drop_unknown(self, project_id: int, record: ProjectRecord | None, exc: Exception) -> None:
        """Label Studio does not know the project (for our token). Nothing is kept of one that
        never ran a round; a project that did keeps its state, and its rounds stop."""
        if record is None:
            log.debug("webhook for project %s ignored: %s", project_id, exc)
            return
        if record.round == 0:
            log.warning("project %s: %s; its state is removed", project_id, exc)
            self.store.forget(project_id)
            return
        raise RoundError(f"{exc}: its rounds stop until it is back") from None

    def _round_failed(self, project_id: int, exc: BaseException, request: RoundRequest) -> None:
        if self.store.load_record(project_id) is not None:
            self.store.save_last_error(project_id, {
                "time": time.time(),
                "kind": type(exc).__name__,
                "message": str(exc) or type(exc).__name__,
                "retrying": isinstance(exc, LabelStudioUnavailable),
            })  # fmt: skip
        if isinstance(exc, LabelStudioUnavailable):
            with self._lock:
                first = self.outage is None
                if first:
                    self.outage = (time.monotonic(), str(exc))
            if first:
                log.warning(
                    "Label Studio is unavailable (%s); rounds are retried with backoff (up to "
                    "%g s apart) and the last queue stays served",
                    exc, self.worker.backoff.cap_s,
                )  # fmt: skip
            self.metrics.error("label_studio")
            return
        kind = "label_studio" if isinstance(exc, LabelStudioError) else "round"
        self.metrics.error(kind)

    def _round_succeeded(self, project_id: int) -> None:
        self._back_online()

    def _back_online(self) -> None:
        with self._lock:
            outage, self.outage = self.outage, None
        if outage is not None:
            log.warning("Label Studio is reachable again after %.0f s", time.monotonic() - outage[0])

    def health(self) -> dict:
        """``/health``: UP, or DEGRADED with the reason while Label Studio is unavailable
        (the backend still answers, and Label Studio serves the last pushed queue)."""
        body: dict = {"status": "UP", "model_class": "AutoALBackend", "strategy": self.settings.strategy}
        with self._lock:
            outage = self.outage
        if outage is not None:
            retrying = self.worker.retrying()
            body["status"] = "DEGRADED"
            body["reason"] = (
                f"Label Studio unavailable for {time.monotonic() - outage[0]:.0f} s ({outage[1]}); "
                f"{len(retrying)} round(s) waiting to retry"
            )
        return body

    # --- recovery ------------------------------------------------------------------------
    def start(self) -> None:
        """Background recovery for a serving process: owed rounds are resumed at once, then
        every ``AUTOAL_RECONCILE_SECONDS`` each project is compared with Label Studio and a
        round runs where Label Studio changed without telling us (webhooks lost while the
        backend was down)."""
        self.resume()
        if self.settings.reconcile_seconds > 0 and self._reconciler is None:
            self._reconciler = threading.Thread(target=self._reconcile_loop, name="autoal-reconcile", daemon=True)
            self._reconciler.start()

    def stop(self) -> None:
        self._stopping.set()
        self.worker.stop()

    def resume(self) -> list[int]:
        """Queue the rounds owed on disk (and a clean-up round for a push a crash cut short)."""
        resumed = []
        for project_id in self.store.project_ids():
            pending = self.store.pending(project_id)
            record = self.store.load_record(project_id)
            if pending is not None:
                self.worker.submit(project_id, "resume after restart", bool(pending.get("force")))
                resumed.append(project_id)
            elif record is not None and (record.pushing or record.stale_versions):
                self.request_round(project_id, "clean up after restart")
                resumed.append(project_id)
        if resumed:
            log.info("resuming the rounds owed to projects %s", resumed)
        return resumed

    def reconcile(self) -> list[int]:
        """Compare every project's counts in Label Studio with the last round's; queue a
        round where they differ. Returns those projects."""
        owed: list[int] = []
        for project_id in self.store.project_ids():
            record = self.store.load_record(project_id)
            if record is None:
                continue
            try:
                project = self.client_for(project_id).get_project(project_id)
            except LabelStudioUnavailable:
                return owed  # the outage is handled by the rounds' retries
            except LabelStudioError as exc:
                log.debug("reconcile: project %s: %s", project_id, exc)
                continue
            self._back_online()
            changed = project_state(project) != record.ls_state or (
                str(project.get("label_config") or "") != record.label_config
            )
            if changed and self.request_round(project_id, "reconcile: Label Studio changed"):
                owed.append(project_id)
        return owed

    def _reconcile_loop(self) -> None:
        delay = 1.0  # the first pass right after start: catch up on what happened while down
        while not self._stopping.wait(delay):
            try:
                self.reconcile()
            except Exception:  # never let the reconciler die
                log.exception("reconcile failed")
            delay = float(self.settings.reconcile_seconds)

    def metrics_text(self) -> str:
        return self.metrics.render(
            self.worker.queue_depth,
            int(self.worker.running is not None),
            self.worker.pending_projects(),
            self.runner.progress(),
        )
