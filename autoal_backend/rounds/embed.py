"""Embed: every readable task's encoder outputs, read from the on-disk caches or computed.

Only tasks missing from the cache are read (fetched, decoded) and encoded, in chunks, while
the next chunk is fetched; progress is published for the page. A kind that needs each text's
token states (spans) gets them from ``TokenCache`` beside the sentence vectors. With
``AUTOAL_RAY_ADDRESS`` the sentence vectors are computed by a Ray Data job instead.
"""

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from autoal_backend.kinds import ProjectSpec
from autoal_backend.ls_client import LabelStudioClient
from autoal_backend.rounds.sync import TaskView
from autoal_backend.settings import Settings
from autoal_backend.store import ProjectStore
from autoal_backend.task_data import RemoteLoader, TaskDataError, content_key, load_item, raw_value
from model.encoders import DEFAULT_ENCODERS, encoder_map_shape, parse_encoder
from model.encoders.cache import EmbeddingCache, MapCache, TokenCache

log = logging.getLogger(__name__)

ENCODE_BATCH = 64
# Box projects need feature maps: their encoder, unless the project names one that gives maps
# (``mobilenet_v2_maps@image_size=320``).
MAP_ENCODER = "mobilenet_v2_maps"
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

EncoderFactory = Callable[[str, torch.device], Any]


class EmbeddingUnavailable(RuntimeError):
    """The embedding engine (a Ray cluster) cannot be reached; the next round retries."""


# Publishes a round's stage: (project id, stage or None, details).
StagePublisher = Callable[..., None]


class EmbedProgress:
    """Embedding progress of one round: published for the page and /metrics after every
    chunk, and a log line every ``LOG_EVERY_S`` with items/s and the time left."""

    LOG_EVERY_S = 5.0

    def __init__(self, publish: StagePublisher, project_id: int, total: int, pool: int) -> None:
        self.publish, self.project_id, self.total, self.pool = publish, project_id, total, pool
        self.done = 0
        self.started = self.logged = time.perf_counter()
        publish(project_id, "embedding", done=0, total=total, pool=pool)

    def add(self, count: int) -> None:
        self.done += count
        now = time.perf_counter()
        rate = self.done / max(now - self.started, 1e-9)
        left = (self.total - self.done) / rate if rate > 0 else None
        self.publish(
            self.project_id, "embedding", done=self.done, total=self.total, pool=self.pool,
            items_per_second=round(rate, 1), seconds_left=None if left is None else round(left, 1),
        )  # fmt: skip
        if now - self.logged >= self.LOG_EVERY_S and self.done < self.total:
            self.logged = now
            log.info("project %s: embedded %d of %d new tasks (%.0f items/s, about %.0f s left)",
                     self.project_id, self.done, self.total, rate, left or 0.0)  # fmt: skip


class Embedder:
    """Owns the encoders (built once per name) and reads or fills each project's caches."""

    def __init__(self, store: ProjectStore, device: torch.device, encoder_factory: EncoderFactory,
                 identity: Callable[[str], tuple[str, int]] | None, publish: StagePublisher) -> None:  # fmt: skip
        self.store = store
        self.device = device
        self.encoder_factory = encoder_factory
        self.identity = identity
        self.publish = publish
        self._encoders: dict[str, Any] = {}

    def encoder_name(self, spec: ProjectSpec, settings: Settings) -> str:
        """The project's encoder setting (``name[@key=value,...]``) for its modality; for a box
        project, the image encoder setting only when it gives feature maps, else
        ``MAP_ENCODER``."""
        configured = settings.image_encoder if spec.modality == "image" else settings.text_encoder
        if spec.parts == "maps":
            gives_maps = bool(configured) and map_shape(configured) is not None
            return configured if gives_maps else MAP_ENCODER
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

    def map_shape(self, spec: ProjectSpec, settings: Settings) -> tuple[int, int, int]:
        """[G, G, d] of a box project's feature maps, from the registry when it can tell
        (without loading weights), else from the built encoder's ``map_shape``."""
        name = self.encoder_name(spec, settings)
        if name not in self._encoders and self.identity is not None:
            shape = map_shape(name)
            if shape is not None:
                return shape
        return tuple(self.encoder_for(spec, settings).map_shape)

    def embed(
        self,
        project_id: int,
        views: list[TaskView],
        spec: ProjectSpec,
        client: LabelStudioClient,
        settings: Settings,
    ) -> tuple[list[TaskView], torch.Tensor, list | None, dict[int, str]]:
        """The tasks kept (readable, in order), their embeddings [N, dim], each one's kind
        parts when the kind needs them (spans: token states and character offsets; boxes: the
        feature map and the image's size; else None), and {task id: reason} of those skipped.
        Only tasks missing from the caches are read."""
        cache_name, dim = self.cache_identity(spec, settings)
        directory = self.store.embeddings_dir(project_id)
        cache = EmbeddingCache(directory, cache_name, dim)
        tokens: TokenCache | MapCache | None = None
        if spec.parts == "tokens":
            tokens = TokenCache(directory, cache_name, dim)
        elif spec.parts == "maps":
            tokens = MapCache(directory, cache_name, self.map_shape(spec, settings))
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
        meter = EmbedProgress(self.publish, project_id, len(missing), len(readable))
        with ThreadPoolExecutor(max_workers=FETCH_THREADS) as pool:
            pending = [pool.submit(load, p) for p in chunks[0]] if chunks else []
            for number, batch in enumerate(chunks):
                items = [future.result() for future in pending]
                # Fetch and decode the next chunk while this one is encoded.
                following = chunks[number + 1] if number + 1 < len(chunks) else []
                pending = [pool.submit(load, p) for p in following]
                good = [
                    (p, it)
                    for p, it in zip(batch, items, strict=True)
                    if not isinstance(it, TaskDataError)
                ]
                for p, it in zip(batch, items, strict=True):
                    if isinstance(it, TaskDataError):
                        skipped[readable[p].id] = str(it)
                        failed.add(p)
                if not good:
                    continue
                encoder = self.encoder_for(spec, settings)
                if isinstance(tokens, MapCache) and parts is not None:
                    vectors, maps, sizes = encoder.encode_maps([it for _, it in good])
                    tokens.store([keys[p] for p, _ in good], maps, sizes)
                    for row, (p, _) in enumerate(good):
                        parts[p] = (maps[row], (int(sizes[row, 0]), int(sizes[row, 1])))
                elif isinstance(tokens, TokenCache) and parts is not None:
                    vectors, states, offsets = encoder.encode_tokens([it for _, it in good])
                    tokens.store([keys[p] for p, _ in good], states, offsets)
                    for (p, _), text_states, text_offsets in zip(
                        good, states, offsets, strict=True
                    ):
                        parts[p] = (text_states, text_offsets)
                else:
                    vectors = encoder.encode([it for _, it in good]).float().cpu()  # [b, dim]
                cache.store([keys[p] for p, _ in good], vectors)
                embeddings[[p for p, _ in good]] = vectors
                meter.add(len(batch))
        return without_failed(project_id, readable, embeddings, failed, skipped, parts)

    def _embed_on_ray(
        self, project_id, readable, keys, missing, skipped, spec, client, settings, cache
    ):
        """The missing embeddings through a Ray Data job (``model.encoders.ray_engine``) that
        writes into this project's cache; then the round reads the cache as always."""
        from model.encoders.ray_engine import RayEmbedder, RayUnavailable

        references = [raw_value(readable[p].task, spec) for p in missing]
        loader = RemoteLoader(spec, client.url, client.api_key, settings.allowed_hosts)
        embedder = RayEmbedder(settings.ray_address, self.encoder_name(spec, settings),
                               self.store.embeddings_dir(project_id), loader)  # fmt: skip
        self.publish(
            project_id, "embedding", done=0, total=len(missing), pool=len(readable), engine="ray"
        )
        started = time.perf_counter()
        try:
            failed_at = embedder.embed([keys[p] for p in missing], references)
        except RayUnavailable as exc:
            raise EmbeddingUnavailable(
                f"project {project_id}: {exc}; the next round retries"
            ) from None
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


def map_shape(setting: str) -> tuple[int, int, int] | None:
    """[G, G, d] of the maps the encoder ``setting`` (``name[@key=value,...]``) gives, or None."""
    name, options = parse_encoder(setting)
    return encoder_map_shape(name, **options)
