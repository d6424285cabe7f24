"""Benchmark data sets: .npz loading for images and texts, seeded splits, the embedding cache."""

import numpy as np
import pytest
import torch

from benchmarks import datasets
from benchmarks.datasets import load_dataset, load_raw, split_indices
from model.encoders.pixels import PixelEncoder
from model.errors import UnknownNameError


def image_npz(path, n=40):
    """Image i is filled with the value 5 * (i % 4) + 20 * class: its embedding reveals both
    its class and (within a class) which image it is."""
    labels = np.array(["cat", "dog"])[np.arange(n) % 2]
    images = np.zeros((n, 6, 6), dtype=np.uint8)
    for i in range(n):
        images[i] = 5 * (i % 4) + 20 * (i % 2) + 100
    np.savez(path, images=images, labels=labels)
    return images, labels


def test_split_is_seeded_disjoint_and_complete():
    pool, test = split_indices(20, 5, seed=0)
    assert len(pool) == 15 and len(test) == 5
    assert sorted(np.concatenate([pool, test]).tolist()) == list(range(20))
    again_pool, _ = split_indices(20, 5, seed=0)
    other_pool, _ = split_indices(20, 5, seed=1)
    assert np.array_equal(pool, again_pool) and not np.array_equal(pool, other_pool)
    with pytest.raises(ValueError, match="between 1 and 19"):
        split_indices(20, 20, seed=0)


def test_image_npz_loads_embeds_and_keeps_labels_with_items(tmp_path):
    images, labels = image_npz(tmp_path / "pets.npz")
    data = load_dataset(
        str(tmp_path / "pets.npz"), 0, encoder="pixels", cache_dir=tmp_path / "c", progress=False
    )
    assert data.name == "pets"
    assert data.class_names == ["cat", "dog"]
    assert data.encoder == "pixels@side=6"  # raw pixels at the images' native side
    assert data.pool_embeddings.shape == (30, 36) and data.test_embeddings.shape == (10, 36)
    assert data.pool_labels.dtype == torch.int64 and len(data.test_labels) == 10
    for embeddings, classes in (
        (data.pool_embeddings, data.pool_labels),
        (data.test_embeddings, data.test_labels),
    ):
        value = torch.round(embeddings[:, 0] * 255)
        # Each embedding's pixel value encodes its class: (value - 100) // 20 == class.
        assert torch.equal(((value - 100) // 20).long() % 2, classes)


def test_second_load_reads_the_cache_instead_of_encoding(tmp_path, monkeypatch):
    image_npz(tmp_path / "pets.npz")
    first = load_dataset(
        str(tmp_path / "pets.npz"), 0, encoder="pixels", cache_dir=tmp_path / "c", progress=False
    )

    def refuse(*args, **kwargs):
        raise AssertionError("encoded again although every item was cached")

    monkeypatch.setattr(PixelEncoder, "encode_array", refuse)
    monkeypatch.setattr(datasets, "get_encoder", refuse)  # fully cached: not even built
    second = load_dataset(
        str(tmp_path / "pets.npz"), 0, encoder="pixels", cache_dir=tmp_path / "c", progress=False
    )
    assert torch.equal(first.pool_embeddings, second.pool_embeddings)
    assert torch.equal(first.test_labels, second.test_labels)


def test_colour_npz_with_integer_labels_and_class_names(tmp_path):
    images = np.zeros((8, 5, 5, 3), dtype=np.uint8)
    images[4:, :, :, 1] = 200
    np.savez(
        tmp_path / "c.npz",
        images=images,
        labels=np.array([0, 0, 0, 0, 1, 1, 1, 1]),
        class_names=np.array(["black", "green"]),
    )
    data = load_dataset(
        str(tmp_path / "c.npz"),
        0,
        encoder="pixels@side=2",
        cache_dir=tmp_path / "c",
        progress=False,
    )
    assert data.class_names == ["black", "green"]
    assert data.encoder == "pixels@side=2" and data.pool_embeddings.shape == (6, 4)
    green = data.pool_embeddings[:, 0] > 0.1
    assert torch.equal(green.long(), data.pool_labels)


def test_text_npz_is_split_with_labels_from_names(tmp_path):
    texts = np.array([f"text number {i}" for i in range(12)])
    labels = np.array(["spam", "ham", "eggs"])[np.arange(12) % 3]
    np.savez(tmp_path / "t.npz", texts=texts, labels=labels)
    name, raw = load_raw(str(tmp_path / "t.npz"), 0)
    assert name == "t" and raw.modality == "text" and raw.default_encoder == "minilm"
    assert raw.class_names == ["eggs", "ham", "spam"]
    assert len(raw.pool_items) == 9 and len(raw.test_items) == 3
    for items, classes in ((raw.pool_items, raw.pool_labels), (raw.test_items, raw.test_labels)):
        for text, label in zip(items, classes, strict=True):
            number = int(text.rsplit(" ", 1)[1])
            assert raw.class_names[label] == ["spam", "ham", "eggs"][number % 3]
    with pytest.raises(ValueError, match="reads images"):
        load_dataset(str(tmp_path / "t.npz"), 0, encoder="pixels", cache_dir=tmp_path / "c")


@pytest.mark.slow  # loads MiniLM: about 10 s here
def test_text_npz_end_to_end_with_minilm(tmp_path):
    from model.encoders.text import default_model_path

    if not default_model_path().startswith("/"):
        pytest.skip("no local MiniLM")
    texts = np.array(
        ["goal in the last minute", "the bank raised rates", "a late winner", "stocks fell"]
    )
    np.savez(tmp_path / "t.npz", texts=texts, labels=np.array(["sport", "money", "sport", "money"]))
    data = load_dataset(str(tmp_path / "t.npz"), 0, cache_dir=tmp_path / "c", progress=False)
    assert data.encoder == "minilm"
    assert data.pool_embeddings.shape == (3, 384) and data.test_embeddings.shape == (1, 384)


def test_bad_inputs_say_what_is_wrong(tmp_path):
    with pytest.raises(UnknownNameError, match="valid: bbc, digits, mnist, rotten"):
        load_raw("cifar")
    with pytest.raises(FileNotFoundError):
        load_raw(str(tmp_path / "absent.npz"))
    np.savez(
        tmp_path / "bad.npz", pictures=np.zeros((2, 2, 2), dtype=np.uint8), labels=np.array([0, 1])
    )
    with pytest.raises(ValueError, match="'images' or 'texts'"):
        load_raw(str(tmp_path / "bad.npz"))


def test_digits_has_the_protocol_sizes_and_a_fixed_split(tmp_path):
    data = load_dataset("digits", 0, cache_dir=tmp_path, progress=False)
    assert data.pool_embeddings.shape == (1297, 64) and data.test_embeddings.shape == (500, 64)
    assert data.encoder == "pixels@side=8" and data.num_classes == 10
    again = datasets.load_digits_raw(0)
    assert np.array_equal(again.pool_labels, data.pool_labels.numpy())


def test_long_tail_counts_follow_the_profile_and_the_supply():
    from benchmarks.datasets import long_tail_counts

    assert long_tail_counts(np.array([500, 500, 500]), 100.0, 111).tolist() == [100, 10, 1]
    # A scarce class caps the scale: class 1 has only 20 items, so class 0 gets 200.
    assert long_tail_counts(np.array([1000, 20]), 10.0, None).tolist() == [200, 20]
    assert long_tail_counts(np.array([1000, 1000]), 10.0, 1100).tolist() == [1000, 100]


def test_long_tailed_named_sets_keep_their_size_where_the_source_allows():
    from benchmarks.datasets import load_raw

    name, raw = load_raw("rotten", 0, 10.0)
    assert name == "rotten-lt10"
    assert np.bincount(raw.pool_labels).tolist() == [2727, 273]
    assert np.bincount(raw.test_labels).tolist() == [1818, 182]
    name, raw = load_raw("digits", 0, 10.0)
    counts = np.bincount(raw.pool_labels)
    assert name == "digits-lt10" and counts[0] > counts[-1] * 9 and len(counts) == 10
    assert sorted(counts.tolist(), reverse=True) == counts.tolist()
