"""One backend round for one project: Label Studio state in, a new annotation order out.

sync (export tasks + annotations) -> embed new tasks (encoder + on-disk cache) -> PoolState
-> ``model.active_round.run_round`` -> predictions for the top of the ranking -> import them
under a new model_version, point the project at it, delete the previous version -> persist.
"""

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import torch

from autoal_backend.kinds import ProjectSpec
from autoal_backend.ls_client import LabelStudioClient
from autoal_backend.settings import Settings, SettingsError
from autoal_backend.store import (
    ROUND_FIELDS,
    ProjectRecord,
    ProjectStore,
    Ranking,
    round_version,
    version_prefix,
)
from autoal_backend.task_data import TaskDataError, content_key, load_item, raw_value
from model.active_round import RoundConfig, cross_validated_accuracy, run_round
from model.encoders.cache import EmbeddingCache, TokenCache
from model.estimate import audit_accuracy, calibrated_accuracy, interleave_audit
from model.export import export_state
from model.pool import PoolState
from model.ranking import rank_normalise
from model.selectors import make_selector, restore_state, saved_state
from model.task_model import standardisation, standardise

log = logging.getLogger(__name__)

ENCODE_BATCH = 64
# Items per encoder call (and per cache shard). Texts go in large chunks: the text encoder
# sorts each call by length, so a 64-text call padded every text to the longest of 64 random
# ones; a decoded photo is megabytes, so images stay at 64 (two chunks in memory at once).
ENCODE_CHUNK = {"text": 1024, "image": ENCODE_BATCH}
# ...but never fewer than this many chunks when there are enough items: the page's "embedding
# n of N" moves only between chunks (300 texts in one call read "0 of 300" for half a minute).
PROGRESS_STEPS = 10


def chunk_size(modality: str, total: int) -> int:
    """Items per encoder call for ``total`` items to embed: the modality's chunk, smaller for
    small jobs so that progress shows (down to ``ENCODE_BATCH``)."""
    largest = ENCODE_CHUNK.get(modality, ENCODE_BATCH)
    return max(1, min(largest, max(ENCODE_BATCH, -(-total // PROGRESS_STEPS))))
FETCH_THREADS = 8
HISTORY_TOP = 20
# Tasks whose annotators disagree, listed in the round history (all are counted).
HISTORY_DISAGREEMENTS = 50
FULL_SYNC_EVERY = 20
UNCERTAINTY_SAMPLING = "Uncertainty sampling"

EncoderFactory = Callable[[str, torch.device], object]


class RoundError(RuntimeError):
    """A round that cannot run (no project, nothing to rank); the message says why."""


class RoundSkipped(Exception):
    """Nothing changed since the last round: the round is skipped (not an error)."""


def project_state(project: dict) -> dict[str, int]:
    """Label Studio's counts of a project that change when there is something to learn."""
    keys = ("task_number", "total_annotations_number", "skipped_annotations_number", "num_tasks_with_annotations")
    return {k: int(project[k]) for k in keys if isinstance(project.get(k), int)}


def round_fingerprint(record, settings: Settings, views: list["TaskView"]) -> str:
    """A digest of what a round learns from: the label config, the effective settings, and
    every task with its agreed label, votes and exclusion. Equal digests, equal rounds."""
    import hashlib

    digest = hashlib.sha256()
    digest.update(record.label_config.encode())
    digest.update(repr(sorted(record.settings.items())).encode())
    digest.update(repr((settings.strategy, settings.push_window, settings.min_labels)).encode())
    for view in sorted(views, key=lambda v: v.id):
        digest.update(repr((view.id, view.answer, view.annotations, view.disagreement, view.excluded)).encode())
    return digest.hexdigest()


@dataclass
class TaskView:
    """A task as the pool sees it.

    Attributes:
        answer: the agreed answer of its annotations (the kind's ``agree``: the majority's
            choice values, or the spans most annotators marked); None when the task has no
            usable annotation (unlabeled).
        excluded: why the task is left out of the pool (skipped by annotators, an annotation
            without a choice), or "".
        annotations: usable annotations (votes) behind ``answer``.
        disagreement: how many of them differ from the agreed answer (0: all agree).
        votes: {choice or span: annotations that gave it}.
    """

    id: int
    task: dict
    answer: Any
    excluded: str = ""
    annotations: int = 0
    disagreement: int = 0
    votes: dict[str, int] = field(default_factory=dict)


def _recency(annotation: dict) -> tuple[str, int]:
    """Sort key: older first (update time, then id)."""
    number = annotation.get("id")
    return (
        str(annotation.get("updated_at") or annotation.get("created_at") or ""),
        number if isinstance(number, int) and not isinstance(number, bool) else 0,
    )


def task_text(task: dict, spec: ProjectSpec) -> str | None:
    """The task's text for the kind's votes and results (span offsets index it); None when
    the field is missing or not a string."""
    data = task.get("data")
    value = data.get(spec.data_key) if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def view_tasks(tasks: list[dict], spec: ProjectSpec) -> list[TaskView]:
    """Each exported task with its agreed answer (or why it is left out)."""
    views = []
    for task in tasks:
        if not isinstance(task, dict) or type(task.get("id")) is not int:
            continue
        raw = task.get("annotations")
        annotations = [a for a in raw if isinstance(a, dict)] if isinstance(raw, list) else []
        kept = sorted((a for a in annotations if not a.get("was_cancelled")), key=_recency)
        if not kept:
            skipped = any(a.get("was_cancelled") for a in annotations)
            views.append(TaskView(task["id"], task, None, "skipped by annotators" if skipped else ""))
            continue
        votes, reasons = [], []
        text = task_text(task, spec)
        for annotation in kept:
            vote, reason = spec.vote(annotation, text)
            if vote is None:
                reasons.append(reason)
            else:
                votes.append(vote)
        if not votes:
            # Every annotation is unusable: say why the newest one is.
            views.append(TaskView(task["id"], task, None, reasons[-1]))
            continue
        answer = spec.agree(votes)
        agreed = sorted(spec.keys(answer))
        tally: dict[str, int] = {}
        for vote in votes:
            for key in spec.keys(vote) or ["(none)"]:
                tally[key] = tally.get(key, 0) + 1
        differing = sum(sorted(spec.keys(vote)) != agreed for vote in votes)
        views.append(TaskView(task["id"], task, answer, "", len(votes), differing, tally))
    return views


def disagreements(views: list[TaskView]) -> dict:
    """The round history's record of tasks whose annotators disagree: how many, and the
    first ``HISTORY_DISAGREEMENTS`` of them (most disagreement first), flagged for review."""
    flagged = sorted((v for v in views if v.disagreement), key=lambda v: (-v.disagreement, v.id))
    return {
        "tasks": len(flagged),
        "overlapping": sum(v.annotations > 1 for v in views),
        "flagged": [
            {
                "task": v.id,
                "annotations": v.annotations,
                "disagreeing": v.disagreement,
                "agreed": v.answer,
                "votes": v.votes,
            }
            for v in flagged[:HISTORY_DISAGREEMENTS]
        ],
    }


@dataclass
class RoundReport:
    """What the runner returns and writes into the history."""

    entry: dict
    ranking: Ranking
    skipped: dict[int, str] = field(default_factory=dict)


class EmbedProgress:
    """Embedding progress of one round: published for the page and /metrics after every
    chunk, and a log line every ``LOG_EVERY_S`` with items/s and the time left."""

    LOG_EVERY_S = 5.0

    def __init__(self, runner: "RoundRunner", project_id: int, total: int, pool: int) -> None:
        self.runner, self.project_id, self.total, self.pool = runner, project_id, total, pool
        self.done = 0
        self.started = self.logged = time.perf_counter()
        runner.set_stage(project_id, "embedding", done=0, total=total, pool=pool)

    def add(self, count: int) -> None:
        self.done += count
        now = time.perf_counter()
        rate = self.done / max(now - self.started, 1e-9)
        left = (self.total - self.done) / rate if rate > 0 else None
        self.runner.set_stage(
            self.project_id, "embedding", done=self.done, total=self.total, pool=self.pool,
            items_per_second=round(rate, 1), seconds_left=None if left is None else round(left, 1),
        )  # fmt: skip
        if now - self.logged >= self.LOG_EVERY_S and self.done < self.total:
            self.logged = now
            log.info("project %s: embedded %d of %d new tasks (%.0f items/s, about %.0f s left)",
                     self.project_id, self.done, self.total, rate, left or 0.0)  # fmt: skip


class RoundRunner:
    """Runs rounds; owns the encoders (built once per name) and their caches."""

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
        self.encoder_factory = encoder_factory
        self.identity = identity
        self._encoders: dict[str, object] = {}
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

    def encoder_name(self, spec: ProjectSpec, settings: Settings) -> str:
        """The project's encoder setting (``name[@key=value,...]``) for its modality."""
        from model.encoders import DEFAULT_ENCODERS

        configured = settings.image_encoder if spec.modality == "image" else settings.text_encoder
        return configured or DEFAULT_ENCODERS[spec.modality]

    def encoder_for(self, spec: ProjectSpec, settings: Settings):
        name = self.encoder_name(spec, settings)
        if name not in self._encoders:
            self._encoders[name] = self.encoder_factory(name, self.device)
        return self._encoders[name]

    def cache_identity(self, spec: ProjectSpec, settings: Settings) -> tuple[str, int]:
        """(cache name, dim) of the project's encoder, without loading its weights when the
        registry can tell (a restart whose tasks are all cached never builds the encoder)."""
        name = self.encoder_name(spec, settings)
        if name not in self._encoders and self.identity is not None:
            return self.identity(name)
        encoder = self.encoder_for(spec, settings)
        return encoder.name, encoder.dim

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

    # --- stages -------------------------------------------------------------------------
    def embed(
        self,
        project_id: int,
        views: list[TaskView],
        spec: ProjectSpec,
        client: LabelStudioClient,
        settings: Settings,
    ) -> tuple[list[TaskView], torch.Tensor, list | None, dict[int, str]]:
        """The tasks kept (readable, in order), their embeddings [N, dim], each one's token
        states and character offsets when the kind needs them (spans; else None), and
        {task id: reason} of those skipped. Only tasks missing from the caches are read."""
        cache_name, dim = self.cache_identity(spec, settings)
        cache = EmbeddingCache(self.store.embeddings_dir(project_id), cache_name, dim)
        tokens = TokenCache(self.store.embeddings_dir(project_id), cache_name, dim) if spec.needs_tokens else None
        skipped: dict[int, str] = {}
        readable: list[TaskView] = []
        keys: list[str] = []
        for view in views:
            try:
                keys.append(content_key(raw_value(view.task, spec), spec))
                readable.append(view)
            except TaskDataError as exc:
                skipped[view.id] = str(exc)
        embeddings, missing = cache.lookup(keys)
        parts: list | None = None
        if tokens is not None:
            parts, missing_tokens = tokens.lookup(keys)
            missing = sorted(set(missing) | set(missing_tokens))
        failed: set[int] = set()
        if missing and settings.ray_address and tokens is None:  # Ray embeds sentence vectors only
            return self._embed_on_ray(project_id, readable, keys, missing, skipped, spec, client, settings,
                                      cache)  # fmt: skip

        def load(position: int):
            try:
                return load_item(
                    readable[position].task,
                    spec,
                    label_studio_url=client.url,
                    headers_for=client.headers_for,
                    session=client.session,
                    allowed_hosts=settings.allowed_hosts,
                )
            except TaskDataError as exc:
                return exc

        size = chunk_size(spec.modality, len(missing))
        chunks = [missing[start : start + size] for start in range(0, len(missing), size)]
        meter = EmbedProgress(self, project_id, len(missing), len(readable))
        with ThreadPoolExecutor(max_workers=FETCH_THREADS) as pool:
            pending = [pool.submit(load, p) for p in chunks[0]] if chunks else []
            for number, batch in enumerate(chunks):
                items = [future.result() for future in pending]
                # Fetch and decode the next chunk while this one is encoded.
                following = chunks[number + 1] if number + 1 < len(chunks) else []
                pending = [pool.submit(load, p) for p in following]
                good = [(p, it) for p, it in zip(batch, items, strict=True) if not isinstance(it, TaskDataError)]
                for p, it in zip(batch, items, strict=True):
                    if isinstance(it, TaskDataError):
                        skipped[readable[p].id] = str(it)
                        failed.add(p)
                if not good:
                    continue
                encoder = self.encoder_for(spec, settings)
                if tokens is not None and parts is not None:
                    vectors, states, offsets = encoder.encode_tokens([it for _, it in good])
                    tokens.store([keys[p] for p, _ in good], states, offsets)
                    for (p, _), text_states, text_offsets in zip(good, states, offsets, strict=True):
                        parts[p] = (text_states, text_offsets)
                else:
                    vectors = encoder.encode([it for _, it in good]).float().cpu()  # [b, dim]
                cache.store([keys[p] for p, _ in good], vectors)
                embeddings[[p for p, _ in good]] = vectors
                meter.add(len(batch))
        return without_failed(project_id, readable, embeddings, failed, skipped, parts)

    def _embed_on_ray(self, project_id, readable, keys, missing, skipped, spec, client, settings, cache):
        """The missing embeddings through a Ray Data job (``model.encoders.ray_engine``) that
        writes into this project's cache; then the round reads the cache as always."""
        from autoal_backend.task_data import RemoteLoader
        from model.encoders.ray_engine import RayEmbedder, RayUnavailable

        references = [raw_value(readable[p].task, spec) for p in missing]
        loader = RemoteLoader(spec, client.url, client.api_key, settings.allowed_hosts)
        embedder = RayEmbedder(settings.ray_address, self.encoder_name(spec, settings),
                               self.store.embeddings_dir(project_id), loader)  # fmt: skip
        self.set_stage(project_id, "embedding", done=0, total=len(missing), pool=len(readable), engine="ray")
        started = time.perf_counter()
        try:
            failed_at = embedder.embed([keys[p] for p in missing], references)
        except RayUnavailable as exc:
            raise RoundError(f"project {project_id}: {exc}; the next round retries") from None
        seconds = time.perf_counter() - started
        log.info("project %s: embedded %d tasks on Ray (%s) in %.1f s (%.0f items/s)", project_id,
                 len(missing) - len(failed_at), settings.ray_address, seconds, len(missing) / max(seconds, 1e-9))  # fmt: skip
        failed = {missing[i] for i in failed_at}
        for i, reason in failed_at.items():
            skipped[readable[missing[i]].id] = reason
        embeddings, still = cache.lookup(keys)
        failed |= set(still) - failed
        for position in still:
            skipped.setdefault(readable[position].id, "the Ray job left no embedding for it")
        return without_failed(project_id, readable, embeddings, failed, skipped, None)

    def build_pool(
        self,
        record: ProjectRecord,
        views: list[TaskView],
        embeddings: torch.Tensor,
        round_number: int,
        spec: ProjectSpec,
        settings: Settings,
        parts: list | None = None,
    ) -> tuple[PoolState, tuple[torch.Tensor, torch.Tensor]]:
        """The pool of every kept task (standardised features, the kind's targets from the
        agreed answers, the round each label first appeared in, remembered across rounds in the
        record) and the standardisation (mean [d], std [d]) its features were made with.
        ``parts``: the kind's per-task encoder outputs (a text's tokens for spans), in view
        order. ``embeddings`` is standardised in place (on CPU): the caller must not use it
        afterwards."""
        n = len(views)
        labeled = torch.zeros(n, dtype=torch.bool)
        labeled_round = torch.full((n,), -1, dtype=torch.long)
        seen_labeled: dict[int, int] = {}
        for row, view in enumerate(views):
            if view.answer is None:
                continue
            labeled[row] = True
            first = record.labeled_round.get(view.id, round_number)
            labeled_round[row] = first
            seen_labeled[view.id] = first
        # Forget tasks whose annotations were deleted: a new label later is a new round's.
        record.labeled_round = seen_labeled
        texts = [task_text(v.task, spec) for v in views]
        targets, kind_parts = spec.targets([v.answer for v in views], parts, self.device, texts)
        budget = max(1, min(settings.push_window, int((~labeled).sum())))
        raw = embeddings.to(self.device)  # on CPU: the same tensor, standardised in place
        stats = standardisation(raw)
        return PoolState(
            features=standardise(raw, stats=stats, in_place=True),
            targets=targets,
            labeled=labeled.to(self.device),
            labeled_round=labeled_round.to(self.device),
            multilabel=spec.multilabel,
            budget=budget,
            seed=settings.seed + round_number,
            ids=torch.tensor([v.id for v in views], dtype=torch.long, device=self.device),
            shortlist=settings.shortlist,
            kind=spec.kind,
            parts=kind_parts,
        ), stats

    # --- the round ----------------------------------------------------------------------
    def run(self, project_id: int, force: bool = False, project: dict | None = None) -> RoundReport:
        """One round. ``project``: Label Studio's project object, read by the caller at the
        start of the round (its label config is the truth; its model_version says which of our
        versions is live). ``force``: run even when nothing changed since the last round."""
        started = time.perf_counter()
        seconds: dict[str, float] = {}
        record = self.store.load_record(project_id)
        if record is None:
            raise RoundError(f"project {project_id} is unknown: no /setup or label config seen")
        spec = record.spec
        settings = self.project_settings(record)
        client = self.client_for(project_id)
        if project is not None:
            record.ls_state = project_state(project)
        if record.pushing or record.stale_versions:
            self.clean_up(client, record, project)

        self.set_stage(project_id, "syncing")
        try:
            return self._run(project_id, record, spec, settings, client, force, started, seconds)
        finally:
            self.set_stage(project_id, None)

    def _run(self, project_id, record, spec, settings, client, force, started, seconds) -> RoundReport:
        t = time.perf_counter()
        # Every FULL_SYNC_EVERY rounds the task list is read in full, which also catches task
        # data edited in place (new and deleted tasks are caught every round).
        full_due = (record.round + 1) % FULL_SYNC_EVERY == 0
        known = None if full_due else self.store.load_task_index(project_id, spec.data_key)
        tasks, full_sync = client.sync_tasks(project_id, known=known)
        if full_sync or known is None or len(tasks) != len(known):
            self.store.save_task_index(project_id, spec.data_key, {t["id"]: t["data"] for t in tasks})
        views = view_tasks(tasks, spec)
        seconds["sync"] = time.perf_counter() - t
        fingerprint = round_fingerprint(record, settings, views)
        if fingerprint == record.fingerprint and not force:
            self.save_record(record)
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
        previous = record.model_version
        if settings.push_window == AUTO_WINDOW:
            labeled_now = sum(v.answer is not None for v in views)
            settings = replace(settings, push_window=auto_window(self.store.load_history(project_id), labeled_now))
        record.round = round_number
        self.save_record(record)

        t = time.perf_counter()
        views, embeddings, parts, skipped = self.embed(project_id, views, spec, client, settings)
        seconds["embed"] = time.perf_counter() - t
        if not views:
            raise RoundError(f"project {project_id}: no readable task to rank ({len(skipped)} skipped)")

        state, stats = self.build_pool(record, views, embeddings, round_number, spec, settings, parts)
        if int((~state.labeled).sum()) == 0:
            raise RoundError(f"project {project_id}: every readable task is labeled; nothing to rank")
        estimate = self.accuracy_estimate(project_id, state, views, round_number, spec)
        selector = make_selector(settings.strategy, device=self.device, kind=spec.kind)
        saved = self.store.load_selector(project_id)
        if saved:
            reason = restore_state(selector, saved)
            if reason is not None:
                # A changed strategy (or portfolio) must never break a round: start it fresh.
                log.info("project %s: %s starts fresh: %s", project_id, selector.name, reason)
        config = RoundConfig(min_labels=settings.min_labels, validation_folds=3)
        self.set_stage(project_id, "training", labeled=int(state.labeled.sum()))
        # The validation score only goes into the history: it is computed after the push, so
        # the annotators' queue does not wait for its 3 extra fits (docs/performance.md).
        result = run_round(state, selector, replace(config, validation_folds=0))
        seconds.update(result.seconds)

        ranking, predictions, top = self.rank(state, result, spec, version, settings, views)
        self.set_stage(project_id, "pushing", predictions=len(predictions))
        t = time.perf_counter()
        stale = [v for v in [previous, *record.stale_versions] if v != version]
        record.stale_versions = stale
        # Recorded before the import: a crash from here on leaves a version the restart knows.
        record.pushing = version
        self.save_record(record)
        client.import_predictions(project_id, predictions)
        fields: dict[str, object] = {"model_version": version}
        if settings.set_sampling:
            fields["sampling"] = UNCERTAINTY_SAMPLING
        client.update_project(project_id, **fields)
        record.model_version = version
        record.pushing = ""
        self.save_record(record)
        record.stale_versions = self.delete_stale(client, project_id, stale)
        seconds["push"] = time.perf_counter() - t

        if not result.cold_start:
            self.set_stage(project_id, "validating")
            t = time.perf_counter()
            result.validation_accuracy = cross_validated_accuracy(state, config)
            if result.validation_accuracy is not None:
                seconds["validate"] = time.perf_counter() - t

        exported = None
        if result.model is not None:
            exported = export_state(
                result.model,
                *stats,
                encoder=self.encoder_name(spec, settings),
                labels=spec.labels,
                model_version=version,
                token_stats=getattr(result.parts, "stats", None),
            )
        self.store.save_model(project_id, exported)
        self.store.save_selector(project_id, saved_state(selector))
        self.store.save_ranking(project_id, ranking)
        # Unreadable tasks are retried by the next round even when nothing else changed.
        record.fingerprint = fingerprint if not skipped else ""
        self.save_record(record)
        seconds["total"] = time.perf_counter() - started
        entry = self.history_entry(
            record, spec, state, result, top, seconds, skipped, excluded, len(predictions), settings, views
        )
        entry["full_sync"] = full_sync
        entry["disagreements"] = disagreements(views)
        entry["push_window"] = settings.push_window
        if estimate is not None:
            entry["accuracy_estimate"] = estimate
        self.store.append_history(project_id, entry)
        log.info(
            "project %s round %s: %s labeled, %s pushed as %s in %.2f s",
            project_id, round_number, entry["labeled"], len(predictions), version, seconds["total"],
        )
        return RoundReport(entry, ranking, skipped)

    def accuracy_estimate(
        self, project_id: int, state: PoolState, views: list[TaskView], round_number: int, spec: ProjectSpec
    ) -> dict | None:
        """The previous round's model judged by the labels given since (``model.estimate``):
        its guesses on the newly labeled tasks, through a calibration curve, averaged over the
        pool it ranked; and, for tasks it served at random, the unbiased audit estimate. None
        without a previous model or new labels."""
        previous = self.store.load_ranking(project_id)
        if previous is None or not previous.certainty:
            return None
        history = self.store.load_history(project_id)
        labeled_then = history[-1]["labeled"] if history else None
        rows = torch.nonzero(state.labeled & (state.labeled_round == round_number)).flatten().tolist()
        correct, certainty, audited = [], [], []
        for row in rows:
            view = views[row]
            if view.id not in previous.certainty:
                continue  # not ranked by the previous round (a new task)
            guess = previous.choices.get(view.id) or []
            correct.append(float(sorted(guess) == sorted(spec.keys(view.answer or []))))
            certainty.append(previous.certainty[view.id])
            audited.append(view.id in previous.audit)
        if not correct:
            return None
        hits = torch.tensor(correct)
        pool = torch.tensor(list(previous.certainty.values()))
        calibrated = calibrated_accuracy(hits, torch.tensor(certainty), pool, seed=state.seed)
        in_audit = torch.tensor(audited)
        audit = audit_accuracy(hits[in_audit]) if bool(in_audit.any()) else None
        return {
            "of_version": previous.model_version,
            "labeled": labeled_then,
            "judged": len(correct),
            "raw": round(float(hits.mean()), 4),
            "calibrated": calibrated.to_json() if calibrated else None,
            "audit": audit.to_json() if audit else None,
        }

    def rank(self, state: PoolState, result, spec: ProjectSpec, version: str, settings: Settings,
             views: list[TaskView]):  # fmt: skip
        """Scores for every candidate (lower = sooner), predictions for the top window only,
        and the top tasks with their main strategy for the history.

        Each prediction's regions carry the model's probability for the choice they select
        (``score`` per region; one region per chosen label when multi-label); the
        prediction's own ``score`` is the queue key that Label Studio's uncertainty sampling
        serves lowest first."""
        selection = result.selection
        ids = state.item_ids()[selection.candidates].cpu().tolist()  # [M]
        priority = selection.priority.detach().float()
        # 1 - rank-normalised priority: the first task scores 0, the last 1; ranks, not raw
        # priorities, so the scores are spread evenly whatever the selector's scale.
        queue_keys = (1.0 - rank_normalise(priority, seed=state.seed)).cpu()  # [M]
        scores = queue_keys.tolist()
        why = selection.top_strategy()
        texts = [task_text(views[i].task, spec) for i in selection.candidates.tolist()]
        picked, confidence, certainty = spec.predict(result, selection.candidates, texts)
        ranking = Ranking(
            version,
            scores=dict(zip(ids, scores, strict=True)),
            choices=dict(zip(ids, picked, strict=True)),
            why=dict(zip(ids, why, strict=True)),
            confidence=dict(zip(ids, confidence, strict=True)),
            certainty=dict(zip(ids, certainty, strict=True)) if certainty else {},
        )
        # Lowest score first, ties by position (a stable sort), as sorted() by (score, i) would.
        order = torch.argsort(queue_keys, stable=True).tolist()
        audit: set[int] = set()
        if settings.audit_fraction > 0 and result.probs is not None:
            # A share of the queue served at random: its labels judge the model without bias.
            mixed, is_audit = interleave_audit(torch.tensor(order), settings.audit_fraction, state.seed)
            order = mixed.tolist()
            audit = {ids[i] for i, flag in zip(order, is_audit.tolist(), strict=True) if flag}
            spread = sorted(scores)
            for position, i in enumerate(order):
                scores[i] = spread[position]
            ranking.scores = dict(zip(ids, scores, strict=True))
            ranking.audit = audit
        window = order[: settings.push_window]
        predictions = [
            {
                "task": ids[i],
                "result": spec.result(
                    picked[i],
                    why_text(version, "served at random to measure accuracy (audit)" if ids[i] in audit else why[i],
                             spec.names(picked[i], texts[i]), confidence[i], position, len(ids),
                             trained=result.model is not None),
                    confidence[i],
                    texts[i],
                ),
                "score": scores[i],
                "model_version": version,
            }
            for position, i in enumerate(window)
        ]
        top = [
            {
                "task": ids[i],
                "score": round(scores[i], 6),
                "priority": round(float(priority[i]), 6),
                "strategy": why[i],
                "predicted": picked[i],
                "confidence": [round(c, 4) for c in confidence[i]],
                "contributions": {
                    name: round(float(v), 5)
                    for name, v in zip(selection.strategy_names, selection.contributions[i].tolist(), strict=True)
                },
                "audit": ids[i] in audit,
            }
            for i in window[:HISTORY_TOP]
        ]
        return ranking, predictions, top

    def save_record(self, record: ProjectRecord) -> None:
        """Write the fields a round owns (``ROUND_FIELDS``) into the record on disk; the label
        config and settings that /setup or a webhook stored while the round ran are kept (the
        next round uses them)."""
        owned = {name: getattr(record, name) for name in ROUND_FIELDS}
        if self.store.update_record(record.project_id, **owned) is None:
            self.store.save_record(record)

    def clean_up(self, client: LabelStudioClient, record: ProjectRecord, project: dict | None) -> None:
        """After a crash or a failed push: delete every one of our versions that is not the
        project's live one in Label Studio, so that at most the current version holds our
        predictions. A push that got as far as pointing the project at its version (then
        crashed) is adopted as current."""
        live = str((project or client.get_project(record.project_id)).get("model_version") or "")
        own = version_prefix(record.project_id)
        if live.startswith(own):
            record.model_version = live
        leftovers = [v for v in client.model_versions(record.project_id) if v.startswith(own) and v != live]
        left = self.delete_stale(client, record.project_id, leftovers)
        if leftovers:
            log.info("project %s: deleted the predictions of %s (left over; live version %s)",
                     record.project_id, sorted(set(leftovers) - set(left)), live or "none")  # fmt: skip
        record.pushing = ""
        record.stale_versions = left
        self.save_record(record)

    def delete_stale(self, client: LabelStudioClient, project_id: int, versions: list[str]) -> list[str]:
        """Delete our own older versions' predictions; returns those that could not be
        deleted (retried next round)."""
        left = []
        own = version_prefix(project_id)
        for version in versions:
            if not version.startswith(own):
                continue  # never touch predictions another model wrote
            try:
                client.delete_model_version(project_id, version)
            except Exception as exc:
                log.warning("project %s: could not delete predictions of %s: %s", project_id, version, exc)
                left.append(version)
        return left

    def history_entry(
        self, record, spec, state, result, top, seconds, skipped, excluded, pushed, settings, views
    ) -> dict:
        selection = result.selection
        labeled = state.labeled.cpu()
        # Labels per class, or entities per type: what the kind counts in each agreed answer.
        distribution = dict.fromkeys(spec.labels, 0)
        for view in views:
            for label, count in spec.counts(view.answer).items() if view.answer is not None else ():
                distribution[label] = distribution.get(label, 0) + count
        return {
            "round": record.round,
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "model_version": record.model_version,
            "strategy": settings.strategy,
            "selection": "kmeans (cold start)" if result.cold_start else settings.strategy,
            "cold_start": bool(result.cold_start),
            "settings": dict(record.settings),
            "labeled": int(labeled.sum()),
            "unlabeled": int((~labeled).sum()),
            "skipped": len(skipped),
            "excluded": len(excluded),
            "pushed": pushed,
            "label_distribution": distribution,
            "validation_accuracy": result.validation_accuracy,
            "mean_weights": selection.mean_weights(),
            "top": top,
            "seconds": {k: round(v, 4) for k, v in seconds.items()},
            "info": _jsonable(selection.info),
        }


# AUTOAL_PUSH_WINDOW=auto: the window is sized to the labels that arrive between two rounds.
AUTO_WINDOW = 0
AUTO_WINDOW_MIN, AUTO_WINDOW_MAX, AUTO_WINDOW_ROUNDS = 10, 100, 5


def auto_window(history: list[dict], labeled_now: int) -> int:
    """The push window for ``AUTOAL_PUSH_WINDOW=auto``: the most labels that arrived between two
    of the last ``AUTO_WINDOW_ROUNDS`` rounds, this one (``labeled_now``) included (at least
    ``AUTO_WINDOW_MIN``, at most ``AUTO_WINDOW_MAX``; the maximum before any labels arrived).

    Where Label Studio serves a random task among those holding a current prediction
    (Enterprise projects with members), the window is what the annotators label in random
    order: sized to one round's labels, they label the selector's batch, in another order;
    larger, a random part of it (docs/benchmarks.md measures the cost). The selector's batch is
    the window, so k-means picks that many centres."""
    labeled = [int(e.get("labeled", 0)) for e in history[-AUTO_WINDOW_ROUNDS:]] + [labeled_now]
    steps = [b - a for a, b in zip(labeled, labeled[1:], strict=False) if b > a]
    if not steps:
        return AUTO_WINDOW_MAX
    return max(AUTO_WINDOW_MIN, min(AUTO_WINDOW_MAX, max(steps)))


def without_failed(project_id: int, readable: list, embeddings: torch.Tensor, failed: set[int],
                   skipped: dict[int, str], parts: list | None) -> tuple[list, torch.Tensor, list | None, dict[int, str]]:  # fmt: skip
    """The embed step's result: the readable views, embedding rows and kind parts not in
    ``failed`` (each skipped task logged with its reason), and ``skipped``."""
    kept = [i for i in range(len(readable)) if i not in failed]
    for task_id, reason in skipped.items():
        log.warning("project %s: task %s skipped this round: %s", project_id, task_id, reason)
    kept_parts = [parts[i] for i in kept] if parts is not None else None
    return [readable[i] for i in kept], keep_rows(embeddings, kept), kept_parts, skipped


def keep_rows(embeddings: torch.Tensor, kept: list[int]) -> torch.Tensor:
    """``embeddings[kept]``, without copying the pool when every row is kept (the usual case:
    at 1M x 1280 a copy is 5 GB)."""
    return embeddings if len(kept) == embeddings.shape[0] else embeddings[kept]


def why_text(
    version: str,
    strategy: str,
    choices: list[str],
    confidence: list[float],
    position: int | None = None,
    total: int | None = None,
    trained: bool = False,
) -> str:
    """The one-line reason stored with a prediction: the queue position (when pushed), the
    model's guess with its confidence, and the strategy that put the task there. The full
    picture (weights, top tasks) is in GET /projects/<id>/history."""
    parts = [f"AutoAL {version}:"]
    if position is not None and total is not None:
        parts.append(f"#{position + 1} of {total} to label;")
    if choices:
        guesses = ", ".join(f"{c} ({p:.0%})" for c, p in zip(choices, confidence, strict=True))
        parts.append(f"model's guess {guesses};")
    else:
        # A trained model that marks nothing (a text without entities) still made a guess.
        parts.append("model's guess: nothing;" if trained else "no guess yet;")
    parts.append(f"main reason: {strategy}")
    return " ".join(parts)


def _jsonable(value):
    """Selection.info made JSON-safe (tensors to lists, unknown objects to strings)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)
