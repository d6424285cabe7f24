"""The round runner: one project's round, step by step, and what each project's round is doing.

A round reads as: **sync** (Label Studio's tasks and annotations as views), **embed** (encoder
outputs from the caches or computed), **train, score, select** (``model.active_round.run_round``
on the pool: the kind's model, the portfolio's scores, the selector), **rank** (queue scores,
guesses, predictions for the push window), **push** (import, point the project at the new
version, delete the old one), then the validation score, the saved model, selector state and
ranking, and the history entry. Each step lives in a module of this package named after it.
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from autoal_backend.kinds import ProjectSpec
from autoal_backend.ls_client import LabelStudioClient
from autoal_backend.rounds.embed import Embedder, EmbeddingUnavailable, EncoderFactory
from autoal_backend.rounds.history import (
    accuracy_figure,
    audits_labeled,
    history_entry,
    round_audit_share,
)
from autoal_backend.rounds.pool import build_pool
from autoal_backend.rounds.push import clean_up, delete_stale, push, save_record
from autoal_backend.rounds.rank import AUTO_WINDOW, auto_window, rank
from autoal_backend.rounds.sync import disagreements, project_state, round_fingerprint, sync_tasks
from autoal_backend.settings import Settings, SettingsError
from autoal_backend.store import ProjectRecord, ProjectStore, Ranking, round_version
from model.active_round import RoundConfig, cross_validated_accuracy, run_round
from model.errors import UnknownNameError
from model.export import export_state
from model.selectors import Selector, make_selector, restore_state, saved_state

log = logging.getLogger(__name__)


class RoundError(RuntimeError):
    """A round that cannot run (no project, nothing to rank); the message says why."""


class RoundSkipped(Exception):
    """Nothing changed since the last round: the round is skipped (not an error)."""


@dataclass
class RoundReport:
    """What the runner returns and writes into the history."""

    entry: dict
    ranking: Ranking
    skipped: dict[int, str] = field(default_factory=dict)


class RoundRunner:
    """Runs rounds; its ``embedder`` owns the encoders and their caches."""

    def __init__(
        self,
        settings: Settings,
        store: ProjectStore,
        device: torch.device,
        client_for: Callable[[int], LabelStudioClient],
        encoder_factory: EncoderFactory,
        identity: Callable[[str], tuple[str, int]] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.device = device
        self.client_for = client_for
        # Stages go through the runner's own set_stage, whatever it is at the time.
        self.embedder = Embedder(
            store, device, encoder_factory, identity, lambda *a, **k: self.set_stage(*a, **k)
        )
        # What each project's round is doing now (the page and /metrics read it).
        self._progress: dict[int, dict] = {}
        self._progress_lock = threading.Lock()

    # --- progress -----------------------------------------------------------------------
    def set_stage(self, project_id: int, stage: str | None, **details) -> None:
        """Publish the running round's stage (None: the round is over)."""
        with self._progress_lock:
            if stage is None:
                self._progress.pop(project_id, None)
                return
            current = self._progress.get(project_id, {"round_started": time.time()})
            self._progress[project_id] = {
                "stage": stage,
                "since": time.time(),
                "round_started": current["round_started"],
                **details,
            }

    def progress(self, project_id: int | None = None) -> dict:
        """{project: {stage, since, ...}} of running rounds (or one project's, {} if idle)."""
        with self._progress_lock:
            if project_id is not None:
                return dict(self._progress.get(project_id, {}))
            return {pid: dict(p) for pid, p in self._progress.items()}

    def project_settings(self, record: ProjectRecord) -> Settings:
        """The environment's settings with the project's own (from /setup) applied. Overrides
        that no longer validate (a strategy this version dropped) never break a round: the
        round runs on the defaults and says so in the log."""
        try:
            return self.settings.for_project(record.settings)
        except SettingsError as exc:
            log.warning("project %s: its settings %s no longer apply (%s); using the defaults",
                        record.project_id, record.settings, exc)  # fmt: skip
            return self.settings

    # --- the round ----------------------------------------------------------------------
    def run(self, project_id: int, force: bool = False, project: dict | None = None) -> RoundReport:
        """One round. ``project``: Label Studio's project object, read by the caller at the
        start of the round (its label config is the truth; its model_version says which of our
        versions is live). ``force``: run even when nothing changed since the last round."""
        started = time.perf_counter()
        record = self.store.load_record(project_id)
        if record is None:
            raise RoundError(f"project {project_id} is unknown: no /setup or label config seen")
        spec = record.spec
        settings = self.project_settings(record)
        client = self.client_for(project_id)
        if project is not None:
            record.ls_state = project_state(project)
        if record.pushing or record.stale_versions:
            clean_up(client, self.store, record, project)

        self.set_stage(project_id, "syncing")
        try:
            return self._run(record, spec, settings, client, force, started, project)
        finally:
            self.set_stage(project_id, None)

    def _run(self, record: ProjectRecord, spec: ProjectSpec, settings: Settings, client: LabelStudioClient,
             force: bool, started: float, project: dict | None) -> RoundReport:  # fmt: skip
        project_id = record.project_id
        seconds: dict[str, float] = {}
        t = time.perf_counter()
        views, full_sync = sync_tasks(client, self.store, record, spec, project)
        seconds["sync"] = time.perf_counter() - t
        fingerprint = round_fingerprint(record, settings, views)
        if fingerprint == record.fingerprint and not force:
            save_record(self.store, record)
            raise RoundSkipped(
                f"project {project_id}: labels, tasks and settings unchanged since round "
                f"{record.round}; nothing to learn"
            )
        excluded = {v.id: v.excluded for v in views if v.excluded}
        views = [v for v in views if not v.excluded]

        # The round runs: its number is burned now, so a failed push leaves predictions under a
        # version that a later round (or the restart) deletes.
        round_number = record.round + 1
        version = round_version(project_id, round_number)
        if settings.push_window == AUTO_WINDOW:
            labeled_now = sum(v.answer is not None for v in views)
            settings = replace(
                settings, push_window=auto_window(self.store.load_history(project_id), labeled_now)
            )
        record.round = round_number
        save_record(self.store, record)

        t = time.perf_counter()
        try:
            views, embeddings, parts, skipped = self.embedder.embed(
                project_id, views, spec, client, settings
            )
        except EmbeddingUnavailable as exc:
            raise RoundError(str(exc)) from None
        seconds["embed"] = time.perf_counter() - t
        if not views:
            raise RoundError(
                f"project {project_id}: no readable task to rank ({len(skipped)} skipped)"
            )

        state, stats = build_pool(
            record, views, embeddings, round_number, spec, settings, self.device, parts
        )
        if int((~state.labeled).sum()) == 0:
            raise RoundError(
                f"project {project_id}: every readable task is labeled; nothing to rank"
            )
        history = self.store.load_history(project_id)
        selector, strategy = self.selector(project_id, settings, spec)
        settings = replace(settings, strategy=strategy)
        config = RoundConfig(min_labels=settings.min_labels, validation_folds=3)
        self.set_stage(project_id, "training", labeled=int(state.labeled.sum()))
        # The validation score only goes into the history: it is computed after the push, so
        # the annotators' queue does not wait for its 3 extra fits (docs/performance.md).
        result = run_round(state, selector, replace(config, validation_folds=0))
        seconds.update(result.seconds)

        share = round_audit_share(history, settings, spec)
        ranking, predictions, top = rank(state, result, spec, version, settings, views, share)
        self.set_stage(project_id, "pushing", predictions=len(predictions))
        t = time.perf_counter()
        push(client, self.store, record, version, predictions, settings)
        seconds["push"] = time.perf_counter() - t

        if not result.cold_start:
            self.set_stage(project_id, "validating")
            t = time.perf_counter()
            result.validation_accuracy = cross_validated_accuracy(state, config)
            if result.validation_accuracy is not None:
                seconds["validate"] = time.perf_counter() - t
        # The model's accuracy on the unlabeled tasks, judged by the audited ones (after the
        # push too: two cross-fits the queue need not wait for).
        t = time.perf_counter()
        previous = self.store.load_ranking(project_id)  # the last round's: saved below
        audits = audits_labeled(previous, views, history)
        figure = accuracy_figure(state, result, spec, history, audits, config)
        seconds["estimate"] = time.perf_counter() - t

        exported = None
        if result.model is not None:
            exported = export_state(
                result.model,
                *stats,
                encoder=self.embedder.encoder_name(spec, settings),
                labels=spec.labels,
                model_version=version,
                part_stats=getattr(result.parts, "stats", None),
            )
        self.store.save_model(project_id, exported)
        self.store.save_selector(project_id, saved_state(selector))
        self.store.save_ranking(project_id, ranking)
        # Last: an annotator's /next waits while Label Studio deletes (rounds/push.py).
        t = time.perf_counter()
        record.stale_versions = delete_stale(client, project_id, record.stale_versions)
        seconds["delete"] = time.perf_counter() - t
        # Unreadable tasks are retried by the next round even when nothing else changed.
        record.fingerprint = fingerprint if not skipped else ""
        save_record(self.store, record)
        seconds["total"] = time.perf_counter() - started
        entry = history_entry(
            record,
            spec,
            state,
            result,
            top,
            seconds,
            skipped,
            excluded,
            len(predictions),
            settings,
            views,
        )
        entry["full_sync"] = full_sync
        entry["disagreements"] = disagreements(views, spec)
        entry["push_window"] = settings.push_window
        entry["audit_share"] = share
        entry["audits"] = audits
        entry["accuracy"] = figure
        self.store.append_history(project_id, entry)
        log.info(
            "project %s round %s: %s labeled, %s pushed as %s in %.2f s",
            project_id, round_number, entry["labeled"], len(predictions), version, seconds["total"],
        )  # fmt: skip
        return RoundReport(entry, ranking, skipped)

    def selector(
        self, project_id: int, settings: Settings, spec: ProjectSpec
    ) -> tuple[Selector, str]:
        """The project's selector for its kind and the strategy it runs, with its state from
        the last round when that state is its own (another strategy or portfolio starts
        fresh, with one log line)."""
        strategy = settings.strategy
        try:
            selector = make_selector(strategy, device=self.device, kind=spec.kind)
        except UnknownNameError as exc:
            # An environment-wide strategy of another kind (AUTOAL_STRATEGY=token_margin with a
            # choices project) must not break the project's rounds: the default serves it.
            log.warning("project %s: %s; using autoal", project_id, exc)
            strategy = "autoal"
            selector = make_selector(strategy, device=self.device, kind=spec.kind)
        saved = self.store.load_selector(project_id)
        if saved:
            reason = restore_state(selector, saved)
            if reason is not None:
                # A changed strategy (or portfolio) must never break a round: start it fresh.
                log.info("project %s: %s starts fresh: %s", project_id, selector.name, reason)
        return selector, strategy
