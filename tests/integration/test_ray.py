"""Embedding on Ray: a local cluster of two worker nodes (``ray.cluster_utils.Cluster``)
embeds a project's pool through the backend's own round; the embeddings equal the in-process
ones, a cluster that cannot be reached ends the round with a clear error and nothing written,
and the next round retries."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import torch

from autoal_backend.rounds.runner import RoundError
from autoal_backend.service import Backend
from autoal_backend.settings import Settings
from model.encoders.cache import EmbeddingCache
from tests.backend.fakes import IMAGE_CONFIG, LS_URL, TOKEN, FakeLabelStudio, png_bytes

ray = pytest.importorskip("ray", reason="install requirements-ray.txt (make test does)")


def image_project(ls: FakeLabelStudio, tasks: int = 60) -> None:
    ls.add_project(8, IMAGE_CONFIG)
    rng = np.random.default_rng(0)
    for i in range(tasks):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        uri = "data:image/png;base64," + base64.b64encode(png_bytes(colour, size=12)).decode()
        choices = [["red"], ["green"], ["blue"]][i % 3] if i < 12 else None
        ls.add_task(8, 800 + i, {"image": uri}, choices, from_name="colour", to_name="img")


def backend_for(tmp_path, ls, **env) -> Backend:
    settings = Settings.from_env({
        "LABEL_STUDIO_URL": LS_URL, "LABEL_STUDIO_API_KEY": TOKEN, "MODEL_DIR": str(tmp_path),
        "AUTOAL_IMAGE_ENCODER": "pixels@side=12", "AUTOAL_STRATEGY": "uniform", "DEVICE": "cpu",
        "AUTOAL_MIN_LABELS": "4", **env,
    })  # fmt: skip
    return Backend(settings, session=ls.session())


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def cached(root, keys_of) -> torch.Tensor:
    cache = EmbeddingCache(root / "8" / "embeddings", "pixels@side=12", 144)
    embeddings, missing = cache.lookup(keys_of)
    assert not missing
    return embeddings


def test_a_round_embeds_on_a_two_node_cluster_as_it_would_in_process(tmp_path, cluster):
    ls = FakeLabelStudio()
    image_project(ls)
    local = backend_for(tmp_path / "local", ls)
    local._run_round(8)
    remote = backend_for(tmp_path / "ray", ls, AUTOAL_RAY_ADDRESS=cluster.address)
    remote._run_round(8)
    assert len([n for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU")]) == 2
    from autoal_backend.task_data import content_key

    spec = remote.store.load_record(8).spec
    keys = [content_key(t["data"]["image"], spec) for t in ls.tasks[8]]
    assert torch.equal(cached(tmp_path / "local", keys), cached(tmp_path / "ray", keys))
    assert remote.store.load_history(8)[-1]["skipped"] == 0
    assert remote.ranking(8).scores == local.ranking(8).scores


def test_an_unreachable_cluster_ends_the_round_clearly_and_the_next_round_retries(
    tmp_path, cluster
):
    ls = FakeLabelStudio()
    image_project(ls, tasks=30)
    broken = backend_for(tmp_path, ls, AUTOAL_RAY_ADDRESS="127.0.0.1:9")
    ray.shutdown()  # a fresh connection is made to the configured address
    with pytest.raises(RoundError, match="Ray .*127.0.0.1:9.*the next round retries"):
        broken._run_round(8)
    assert not (tmp_path / "8" / "embeddings" / "pixels@side=12").exists() or not list(
        (tmp_path / "8" / "embeddings" / "pixels@side=12").glob("*.keys")
    )
    fixed = backend_for(tmp_path, ls, AUTOAL_RAY_ADDRESS=cluster.address)
    fixed._run_round(8)
    assert fixed.store.load_history(8)[-1]["labeled"] == 12
