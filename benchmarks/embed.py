"""Embedding throughput, in process or on Ray, and whether both give the same embeddings.

    python -m benchmarks.embed --engine local --items 2000 --encoder minilm
    python -m benchmarks.embed --engine ray --items 2000 --encoder minilm --nodes 2

Items are Rotten Tomatoes snippets (``minilm``) or generated PNG photos-like images as data
URIs (``mobilenet_v2``, ``pixels``), read through the backend's own loader
(``autoal_backend.task_data.RemoteLoader``) and written to a fresh embedding cache. ``local``
is the backend's in-process path: the encoder in 64-item calls (1,024 for texts, as the round
does) into the cache. ``ray`` starts a local Ray cluster of ``--nodes`` worker nodes on this
machine (``ray.cluster_utils.Cluster``; ``--address`` for an existing one) and runs
``model.encoders.ray_engine.RayEmbedder``. Both engines' embeddings are compared (the local
ones are always computed). The last line printed is ``{"engine", "items", "items_per_second",
"identical_to_local", ...}``.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import tempfile
import time

import numpy as np
import torch

from autoal_backend.kinds.choices import LabelSpec
from autoal_backend.task_data import RemoteLoader
from model.encoders import encoder_identity, encoder_modality, get_encoder, parse_encoder
from model.encoders.cache import EmbeddingCache


def references(encoder: str, items: int, seed: int) -> list[str]:
    """Texts, or PNG images (96 px, smooth random colour fields) as data URIs."""
    if encoder_modality(parse_encoder(encoder)[0]) == "text":
        from benchmarks.queue_latency import load_texts

        return [text for text, _ in load_texts(items, seed)]
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(items):
        base = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
        image = Image.fromarray(base).resize((96, 96), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        out.append("data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode())
    return out


def spec_for(encoder: str) -> LabelSpec:
    modality = encoder_modality(parse_encoder(encoder)[0])
    return LabelSpec("c", "x", "x", modality, ("a", "b"), False)


def embed_local(encoder: str, refs: list[str], keys: list[str], cache_dir: str) -> float:
    """The in-process path: load, encode in the round's chunks, store. Seconds."""
    name, options = parse_encoder(encoder)
    model = get_encoder(name, "cpu", **options)
    cache = EmbeddingCache(cache_dir, model.name, model.dim)
    loader = RemoteLoader(spec_for(encoder), "", "")
    chunk = 1024 if model.modality == "text" else 64
    start = time.perf_counter()
    for first in range(0, len(refs), chunk):
        items = [loader(r) for r in refs[first : first + chunk]]
        cache.store(keys[first : first + chunk], model.encode(items).float())
    return time.perf_counter() - start


def embed_ray(encoder: str, refs: list[str], keys: list[str], cache_dir: str, address: str | None,
              nodes: int) -> tuple[float, dict]:  # fmt: skip
    from model.encoders.ray_engine import RayEmbedder

    cluster = None
    if address is None:
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
        for _ in range(nodes):
            cluster.add_node(num_cpus=max(1, (os.cpu_count() or 2) // nodes))
        address = cluster.address
    try:
        embedder = RayEmbedder(address, encoder, cache_dir, RemoteLoader(spec_for(encoder), "", ""))
        embedder.embed(keys[:8], refs[:8])  # start the actors (model load) outside the timing
        start = time.perf_counter()
        failed = embedder.embed(keys, refs)
        seconds = time.perf_counter() - start
    finally:
        import ray

        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
    return seconds, {"failed": len(failed), "nodes": nodes if cluster is not None else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.embed", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--engine", choices=("local", "ray"), default="local")
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument(
        "--encoder", default="minilm", help="minilm, mobilenet_v2, pixels (with @options)"
    )
    parser.add_argument("--nodes", type=int, default=2, help="ray: local worker nodes")
    parser.add_argument("--address", default=None, help="ray: an existing cluster instead")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    refs = references(args.encoder, args.items, args.seed)
    keys = [EmbeddingCache.key(r) for r in refs]
    name, options = parse_encoder(args.encoder)
    identity, dim = encoder_identity(name, **options)
    with tempfile.TemporaryDirectory(prefix="autoal-embed-") as root:
        local_dir, ray_dir = os.path.join(root, "local"), os.path.join(root, "ray")
        local_s = embed_local(args.encoder, refs, keys, local_dir)
        local, _ = EmbeddingCache(local_dir, identity, dim).lookup(keys)
        report = {"engine": args.engine, "items": args.items, "encoder": args.encoder}
        if args.engine == "local":
            seconds, identical, difference = local_s, True, 0.0
        else:
            seconds, extra = embed_ray(args.encoder, refs, keys, ray_dir, args.address, args.nodes)
            remote, missing = EmbeddingCache(ray_dir, identity, dim).lookup(keys)
            difference = float((remote - local).abs().max()) if not missing else float("inf")
            identical = not missing and torch.allclose(remote, local, atol=1e-5)
            report |= extra | {"local_items_per_second": round(args.items / local_s, 1),
                               "ray_to_local": round(local_s / seconds, 3)}  # fmt: skip
    print(json.dumps(report | {
        "max_abs_difference": difference,
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "items_per_second": round(args.items / seconds, 1),
        "identical_to_local": bool(identical),
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
