"""Embedding on a Ray cluster: the tasks a round has not seen, as a Ray Data job.

    embedder = RayEmbedder("auto", "mobilenet_v2", cache_dir, load_item)
    failed = embedder.embed(keys, references)   # {position: reason} of items it could not read

``ray.data.from_items`` holds (cache key, reference) rows; ``map_batches`` runs ``EmbedBatch``
on an actor pool (one actor per CPU slot, or per GPU when the cluster has GPUs). Each actor
builds the very encoder the backend builds in process (``model.encoders.get_encoder`` of the
same setting), reads its items with the ``load`` function it is given (a picklable callable
from the service: URL fetching with Label Studio's auth, decoding), encodes them and writes
them into the round's own embedding cache directory, which every node must reach (a shared
path). A shard is committed atomically (``EmbeddingCache``), so a job that fails half way
leaves whole shards and nothing half-written: the next round embeds only what is missing.

Ray is imported only here, and only when a Ray address is configured.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.encoders import encoder_identity, encoder_modality, get_encoder, parse_encoder
from model.encoders.cache import EmbeddingCache

BATCH = 64
TEXT_BATCH = 1024
CONNECT_SECONDS = 5.0


class RayUnavailable(RuntimeError):
    """The Ray cluster could not be reached, or the job failed; the message says why."""


class EmbedBatch:
    """A Ray Data actor: the encoder of ``spec`` and the cache, built once per actor."""

    def __init__(
        self, spec: str, cache_dir: str, load: Callable[[Any], Any], device: str, threads: int = 1
    ) -> None:
        # One actor per CPU slot: torch's default of one thread per core in every actor
        # oversubscribes the node (two actors x two threads on two cores ran at 35%).
        torch.set_num_threads(max(1, threads))
        name, options = parse_encoder(spec)
        self.encoder = get_encoder(name, device, **options)
        self.cache = EmbeddingCache(cache_dir, self.encoder.name, self.encoder.dim)
        self.load = load

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        keys = [str(k) for k in batch["key"]]
        items, good, errors = [], [], []
        for position, reference in enumerate(batch["reference"]):
            try:
                items.append(
                    self.load(reference.item() if hasattr(reference, "item") else reference)
                )
                good.append(position)
                errors.append("")
            except Exception as exc:  # an unreadable item is skipped with its reason
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
        if items:
            vectors = self.encoder.encode(items).float().cpu()
            self.cache.store([keys[p] for p in good], vectors)
        return {"key": np.asarray(keys), "error": np.asarray(errors)}


def probe(address: str, timeout: float = CONNECT_SECONDS) -> None:
    """A TCP connect to ``host:port`` (or ``ray://host:port``) first: ``ray.init`` retries an
    address that does not answer for minutes, which would hold the round that long."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        raise RayUnavailable(f"cannot reach the Ray cluster at {address!r}: {exc}") from None


class RayEmbedder:
    """Embeds into an ``EmbeddingCache`` directory through a Ray Data job.

    Args:
        address: the cluster (``auto``, ``ray://host:10001`` or a head node's address).
        spec: the encoder setting, ``name[@key=value,...]``.
        cache_dir: the round's embedding cache directory (shared by every node).
        load: reference -> encoder input (PIL image or text), picklable; raises on failure.
        actors: actor-pool size (default: the cluster's CPUs, or GPUs when it has them).
    """

    def __init__(
        self,
        address: str,
        spec: str,
        cache_dir: str | Path,
        load: Callable[[Any], Any],
        actors: int | None = None,
    ) -> None:
        self.address = address
        self.spec = spec
        self.cache_dir = str(cache_dir)
        self.load = load
        self.actors = actors
        name, options = parse_encoder(spec)
        self.identity, self.dim = encoder_identity(name, **options)

    def _connect(self):
        try:
            import ray
        except ImportError as exc:
            raise RayUnavailable(
                "AUTOAL_RAY_ADDRESS is set but ray is not installed: pip install -r requirements-ray.txt"
            ) from exc
        if not ray.is_initialized():
            probe(self.address)
            try:
                ray.init(address=self.address, ignore_reinit_error=True, logging_level=logging.WARNING,
                         log_to_driver=False)  # fmt: skip
            except Exception as exc:
                raise RayUnavailable(
                    f"cannot reach the Ray cluster at {self.address!r}: {exc}"
                ) from exc
        return ray

    def embed(self, keys: list[str], references: list[Any]) -> dict[int, str]:
        """Embed ``references`` (under cache ``keys``) on the cluster; returns {position:
        reason} of the items that could not be read. RayUnavailable when the job fails."""
        if not keys:
            return {}
        ray = self._connect()
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        cpus = max(1, int(resources.get("CPU", 1)))
        actors = self.actors or (gpus if gpus else cpus)
        rows = [{"key": k, "reference": r} for k, r in zip(keys, references, strict=True)]
        # Texts in long calls, as in process (the encoder sorts each call by length, so short
        # calls pad more); images in 64s (a decoded photo is megabytes).
        batch = TEXT_BATCH if encoder_modality(parse_encoder(self.spec)[0]) == "text" else BATCH
        batch = max(1, min(batch, -(-len(rows) // actors)))  # every actor gets work
        blocks = max(1, min(-(-len(rows) // batch), 4 * actors))
        actors = min(actors, blocks)  # an actor with no block to read only costs a start-up
        try:
            dataset = ray.data.from_items(rows, override_num_blocks=blocks)
            out = dataset.map_batches(
                EmbedBatch,
                fn_constructor_kwargs={
                    "spec": self.spec,
                    "cache_dir": self.cache_dir,
                    "load": self.load,
                    "device": "cuda" if gpus else "cpu",
                    "threads": 1,
                },  # fmt: skip
                batch_size=batch,
                concurrency=actors,
                num_gpus=1 if gpus else 0,
                num_cpus=0 if gpus else 1,
                batch_format="numpy",
            ).take_all()
        except Exception as exc:
            raise RayUnavailable(
                f"the embedding job on Ray failed: {type(exc).__name__}: {exc}"
            ) from exc
        position = {k: i for i, k in enumerate(keys)}
        return {position[str(r["key"])]: str(r["error"]) for r in out if str(r["error"])}

    def lookup(self, keys: list[str]) -> tuple[torch.Tensor, list[int]]:
        """The embeddings the job left in the cache (what the round reads)."""
        return EmbeddingCache(self.cache_dir, self.identity, self.dim).lookup(keys)
