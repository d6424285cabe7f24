"""On-disk cache of embeddings, keyed by content hash, one directory per encoder.

Layout: ``<directory>/<encoder_name>/`` holds append-only shards. A shard is two files with one
random stem: ``<stem>.npy`` (float32 [n, dim]) and ``<stem>.keys`` (n raw 32-byte sha256
digests). Each ``store`` call writes one shard; the ``.keys`` file is renamed into place last, so
it is the commit mark: a crash mid-write leaves a stray ``.npy`` or ``.partial`` that loading
ignores. Shards are memory-mapped, so 100k cached items cost an index in memory, not their
embeddings. When shards pile up (one per small store), they are merged into one.

Several processes may share a directory: a lookup that misses rescans for shards written by
others since. Keys are hashes of the task's content, so an edited task gets a new key and is
re-embedded; the encoder's name (with its options) names the directory, so two embedding spaces
never mix.
"""

import hashlib
import os
import threading
import uuid
from pathlib import Path

import numpy as np
import torch

DIGEST_BYTES = 32
# Above this many shards, a store merges them: keeps directory scans and memory maps few.
MAX_SHARDS = 32


class EmbeddingCache:
    """On-disk cache of embeddings for ONE encoder under a directory; append-only shards,
    safe across restarts, fast for 100k items (not one file per item)."""

    def __init__(self, directory: str | Path, encoder_name: str, dim: int) -> None:
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        if not encoder_name or "/" in encoder_name or encoder_name.startswith("."):
            raise ValueError(f"encoder_name must be a plain directory name, got {encoder_name!r}")
        self.directory = Path(directory) / encoder_name
        self.directory.mkdir(parents=True, exist_ok=True)
        self.encoder_name = encoder_name
        self.dim = int(dim)
        self._index: dict[bytes, tuple[int, int]] = {}  # digest -> (shard number, row)
        self._shards: list[np.ndarray] = []  # memory-mapped [n, dim] arrays
        self._loaded: set[str] = set()  # stems already indexed
        # The backend stores from its training thread while requests look up: one lock keeps
        # the index and the shard list consistent (compaction swaps both).
        self._lock = threading.RLock()
        self._scan()

    @staticmethod
    def key(content: str | bytes) -> str:
        """sha256 hex digest of ``content`` (str is hashed as UTF-8)."""
        data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
        return hashlib.sha256(data).hexdigest()

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: str) -> bool:
        return _digest(key) in self._index

    def lookup(self, keys: list[str]) -> tuple[torch.Tensor, list[int]]:
        """([len(keys), dim] float32 embeddings with zero rows where missing, indices of the
        missing keys in ``keys``)."""
        digests = [_digest(k) for k in keys]
        with self._lock:
            return self._lookup(digests)

    def _lookup(self, digests: list[bytes]) -> tuple[torch.Tensor, list[int]]:
        if any(d not in self._index for d in digests):
            self._scan()  # another process may have stored them since
        out = np.zeros((len(digests), self.dim), dtype=np.float32)
        missing: list[int] = []
        # Group the hits by shard so each memory map is read with one fancy-indexing call.
        by_shard: dict[int, tuple[list[int], list[int]]] = {}
        for position, digest in enumerate(digests):
            found = self._index.get(digest)
            if found is None:
                missing.append(position)
                continue
            positions, rows = by_shard.setdefault(found[0], ([], []))
            positions.append(position)
            rows.append(found[1])
        for shard, (positions, rows) in by_shard.items():
            out[positions] = self._shards[shard][rows]
        return torch.from_numpy(out), missing

    def store(self, keys: list[str], embeddings: torch.Tensor) -> None:
        """Append ``embeddings`` [len(keys), dim] under ``keys``; keys already cached (or
        repeated within ``keys``) are skipped, the first occurrence wins."""
        if embeddings.ndim != 2 or embeddings.shape != (len(keys), self.dim):
            raise ValueError(
                f"expected embeddings of shape ({len(keys)}, {self.dim}), "
                f"got {tuple(embeddings.shape)}"
            )
        values = embeddings.detach().float().cpu().numpy()
        if not np.isfinite(values).all():
            raise ValueError("refusing to cache non-finite embeddings")
        with self._lock:
            self._store([_digest(k) for k in keys], values)

    def _store(self, digests: list[bytes], values: np.ndarray) -> None:
        seen: set[bytes] = set()
        fresh: list[int] = []
        for position, digest in enumerate(digests):
            if digest in self._index or digest in seen:
                continue
            seen.add(digest)
            fresh.append(position)
        if not fresh:
            return
        stem = self._write_shard(b"".join(digests[i] for i in fresh), values[fresh])
        self._add_shard(stem)
        if len(self._shards) > MAX_SHARDS:
            self._compact()

    def compact(self) -> None:
        """Merge every shard into one. The merged shard is committed before the old ones are
        deleted, so a crash in between leaves duplicates (harmless), never a loss."""
        with self._lock:
            self._compact()

    def _compact(self) -> None:
        self._scan()
        if len(self._loaded) <= 1:
            return
        old = sorted(self._loaded)
        digests = sorted(self._index, key=lambda d: self._index[d])
        values = np.concatenate([np.asarray(s) for s in self._shards]) if self._shards else None
        offsets = np.cumsum([0] + [s.shape[0] for s in self._shards])
        rows = [int(offsets[self._index[d][0]] + self._index[d][1]) for d in digests]
        assert values is not None
        stem = self._write_shard(b"".join(digests), values[rows])
        for name in old:
            # .keys first: a shard without its commit mark is ignored by every reader.
            for suffix in (".keys", ".npy"):
                (self.directory / f"{name}{suffix}").unlink(missing_ok=True)
        self._index, self._shards, self._loaded = {}, [], set()
        self._add_shard(stem)
        self._scan()

    def _write_shard(self, digests: bytes, values: np.ndarray) -> str:
        stem = uuid.uuid4().hex
        keys_path = self.directory / f"{stem}.keys"
        values_path = self.directory / f"{stem}.npy"
        partial = self.directory / f"{stem}.npy.partial"
        with open(partial, "wb") as handle:
            np.save(handle, np.ascontiguousarray(values, dtype=np.float32))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, values_path)
        partial = self.directory / f"{stem}.keys.partial"
        with open(partial, "wb") as handle:
            handle.write(digests)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, keys_path)
        return stem

    def _scan(self) -> None:
        """Index every committed shard not indexed yet."""
        for keys_path in sorted(self.directory.glob("*.keys")):
            if keys_path.stem not in self._loaded:
                self._add_shard(keys_path.stem)

    def _add_shard(self, stem: str) -> None:
        if stem in self._loaded:
            return
        try:
            digests = (self.directory / f"{stem}.keys").read_bytes()
            values = np.load(self.directory / f"{stem}.npy", mmap_mode="r")
        except FileNotFoundError:
            return  # deleted by a concurrent compaction; its rows live in the merged shard
        count = len(digests) // DIGEST_BYTES
        if values.ndim != 2 or values.shape != (count, self.dim):
            raise ValueError(
                f"cache shard {self.directory / stem} holds {values.shape}, expected "
                f"({count}, {self.dim}); was this directory written by another encoder?"
            )
        number = len(self._shards)
        self._shards.append(values)
        self._loaded.add(stem)
        for row in range(count):
            digest = digests[row * DIGEST_BYTES : (row + 1) * DIGEST_BYTES]
            self._index.setdefault(digest, (number, row))


def _digest(key: str) -> bytes:
    try:
        digest = bytes.fromhex(key)
    except ValueError:
        digest = b""
    if len(digest) != DIGEST_BYTES:
        raise ValueError(f"cache keys are sha256 hex digests (64 hex characters), got {key!r}")
    return digest


class TokenCache:
    """On-disk cache of each text's token states and their character offsets (span
    projects), beside the ``EmbeddingCache`` of its sentence vectors.

    Built on two ``EmbeddingCache`` directories, so it inherits their shards, crash safety and
    sharing across processes: ``<encoder>-tokens`` holds one row per token (its state [dim] and
    its character start and end, exact as float32 below 2**24), keyed by the text's key and the
    token's position; ``<encoder>-token-counts`` holds each text's number of tokens.
    """

    def __init__(self, directory: str | Path, encoder_name: str, dim: int) -> None:
        self.dim = int(dim)
        self.rows = EmbeddingCache(directory, f"{encoder_name}-tokens", dim + 2)
        self.counts = EmbeddingCache(directory, f"{encoder_name}-token-counts", 1)

    def lookup(
        self, keys: list[str]
    ) -> tuple[list[tuple[torch.Tensor, list[tuple[int, int]]] | None], list[int]]:
        """Per key, (states [t, dim], offsets [(start, end)]) or None, and the positions of
        the keys not (fully) cached."""
        counts, missing = self.counts.lookup(keys)
        gone = set(missing)
        found: list[tuple[torch.Tensor, list[tuple[int, int]]] | None] = [None] * len(keys)
        for position, key in enumerate(keys):
            if position in gone:
                continue
            count = int(counts[position, 0])
            rows, absent = self.rows.lookup([token_key(key, j) for j in range(count)])
            if absent:
                missing.append(position)
                continue
            spans = [
                (int(a), int(b)) for a, b in rows[:, dim_slice(self.dim)].round().long().tolist()
            ]
            found[position] = (rows[:, : self.dim].clone(), spans)
        return found, sorted(missing)

    def store(
        self, keys: list[str], states: list[torch.Tensor], offsets: list[list[tuple[int, int]]]
    ) -> None:
        """Cache each text's token ``states`` [t_i, dim] and character ``offsets``."""
        row_keys: list[str] = []
        rows: list[torch.Tensor] = []
        for key, text_states, text_offsets in zip(keys, states, offsets, strict=True):
            if text_states.shape[0]:
                chars = torch.tensor(text_offsets, dtype=torch.float32).reshape(-1, 2)
                rows.append(torch.cat((text_states.float(), chars), dim=1))
                row_keys.extend(token_key(key, j) for j in range(text_states.shape[0]))
        if rows:
            self.rows.store(row_keys, torch.cat(rows))
        self.counts.store(
            list(keys), torch.tensor([[float(s.shape[0])] for s in states]).reshape(-1, 1)
        )


def token_key(key: str, position: int) -> str:
    """The cache key of token ``position`` of the text keyed ``key`` (a sha256 hex digest)."""
    return hashlib.sha256(f"{key}#{position}".encode()).hexdigest()


def dim_slice(dim: int) -> slice:
    """The two offset columns after ``dim`` token-state columns."""
    return slice(dim, dim + 2)


class MapCache:
    """On-disk cache of each image's feature map and its size in pixels (box projects), beside
    the ``EmbeddingCache`` of its pooled vector.

    One ``EmbeddingCache`` row per image, ``<encoder>-maps``: the map [G, G, d] flattened, then
    the image's width and height (exact as float32 below 2**24). At 16 x 16 x 96 a row is
    98 KB: 2,000 images take 197 MB of disk.
    """

    def __init__(
        self, directory: str | Path, encoder_name: str, shape: tuple[int, int, int]
    ) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.size = int(np.prod(self.shape))
        self.rows = EmbeddingCache(directory, f"{encoder_name}-maps", self.size + 2)

    def lookup(
        self, keys: list[str]
    ) -> tuple[list[tuple[torch.Tensor, tuple[int, int]] | None], list[int]]:
        """Per key, (map [G, G, d], (width, height)) or None, and the positions of the keys
        not cached."""
        rows, missing = self.rows.lookup(keys)
        gone = set(missing)
        found: list[tuple[torch.Tensor, tuple[int, int]] | None] = [None] * len(keys)
        for position in range(len(keys)):
            if position not in gone:
                row = rows[position]
                size = (int(round(float(row[self.size]))), int(round(float(row[self.size + 1]))))
                found[position] = (row[: self.size].reshape(self.shape).clone(), size)
        return found, missing

    def store(self, keys: list[str], maps: torch.Tensor, sizes: torch.Tensor) -> None:
        """Cache each image's ``maps`` [n, G, G, d] and ``sizes`` [n, 2] (width, height)."""
        if not keys:
            return
        flat = maps.float().reshape(len(keys), self.size)
        self.rows.store(list(keys), torch.cat((flat, sizes.float().reshape(-1, 2)), dim=1))
