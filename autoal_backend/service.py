"""The backend's state and behaviour behind the HTTP routes, free of Flask.

Holds the settings, the project store, the round runner and the worker; schedules rounds,
recovers after a crash or an outage, and reports health and metrics. The endpoints Label
Studio calls (/setup, /predict, /webhook, /train) are in ``autoal_backend.protocol``.
"""

import io
import logging
import threading
import time
from pathlib import Path

import requests
import torch

from autoal_backend.errors import RequestError
from autoal_backend.label_config import UnsupportedConfigError
from autoal_backend.ls_client import (
    ROUND_PROJECT_FIELDS,
    LabelStudioClient,
    LabelStudioError,
    LabelStudioUnavailable,
    ProjectNotFound,
)
from autoal_backend.metrics import Metrics
from autoal_backend.projects import Projects
from autoal_backend.protocol import LabelStudioProtocol
from autoal_backend.rounds.embed import EncoderFactory
from autoal_backend.rounds.history import accuracy_headline
from autoal_backend.rounds.runner import RoundError, RoundRunner, RoundSkipped
from autoal_backend.rounds.sync import project_state
from autoal_backend.settings import Settings
from autoal_backend.store import ProjectRecord, ProjectStore, Ranking, atomic_write_bytes
from autoal_backend.task_data import TaskDataError, load_item
from autoal_backend.worker import RoundRequest, Worker
from model.device import resolve_device
from model.errors import ModelError

log = logging.getLogger(__name__)


def default_encoder_factory(spec: str, device: torch.device):
    """Build the encoder of a setting ``name[@key=value,...]`` (the encoder registry parses it)."""
    from model.encoders import get_encoder, parse_encoder

    name, options = parse_encoder(spec)
    return get_encoder(name, device, **options)


def default_encoder_identity(spec: str) -> tuple[str, int]:
    from model.encoders import encoder_identity, parse_encoder

    name, options = parse_encoder(spec)
    return encoder_identity(name, **options)


class Backend(LabelStudioProtocol):
    """One backend process: every project's state, the round worker and the counters; the
    Label Studio ML-backend endpoints it answers are in ``autoal_backend.protocol``."""

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
        """``Projects.register``: the project with this label config, added or updated (the
        cached ranking is re-read: a change of kind drops it)."""
        record = self.projects.register(project_id, label_config)
        with self._lock:
            self._rankings.pop(project_id, None)
        return record

    def request_round(self, project_id: int, reason: str, force: bool = False) -> bool:
        """Owe a round to a known project: written to disk first (a crash keeps it owed),
        then queued. False when it joined one already pending."""
        self.store.mark_pending(project_id, reason, force)
        return self.worker.submit(project_id, reason, force)

    def record(self, project_id: int) -> ProjectRecord:
        return self.projects.record(project_id)

    def set_project_settings(self, project_id: int, overrides: dict[str, str]) -> bool:
        """``Projects.set_settings``: True when the project's own settings changed."""
        return self.projects.set_settings(project_id, overrides)

    def ranking(self, project_id: int) -> Ranking | None:
        with self._lock:
            if project_id not in self._rankings:
                self._rankings[project_id] = self.store.load_ranking(project_id)
            return self._rankings[project_id]

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
            # Only what a round reads: Label Studio then counts only these.
            project = client.get_project(project_id, ROUND_PROJECT_FIELDS)
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
            self.metrics.round_done(
                project_id, report.entry["seconds"]["total"], len(report.skipped)
            )
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
            log.warning(
                "Label Studio is reachable again after %.0f s", time.monotonic() - outage[0]
            )

    def health(self) -> dict:
        """``/health``: UP, or DEGRADED with the reason while Label Studio is unavailable
        (the backend still answers, and Label Studio serves the last pushed queue)."""
        body: dict = {
            "status": "UP",
            "model_class": "AutoALBackend",
            "strategy": self.settings.strategy,
        }
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
            self._reconciler = threading.Thread(
                target=self._reconcile_loop, name="autoal-reconcile", daemon=True
            )
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
                project = self.client_for(project_id).get_project(project_id, ROUND_PROJECT_FIELDS)
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
            {
                pid: accuracy_headline(self.store.load_history(pid))
                for pid in self.store.project_ids()
            },
        )
