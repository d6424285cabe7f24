"""The token cache of span projects: a text's token states and offsets come back exactly, a
text cached without tokens counts as missing, and a second cache over the same directory sees
what the first stored."""

import torch

from model.encoders.cache import EmbeddingCache, TokenCache


def key(text: str) -> str:
    return EmbeddingCache.key(text)


def test_token_states_and_offsets_round_trip(tmp_path):
    cache = TokenCache(tmp_path, "enc", 4)
    states = [torch.randn(3, 4), torch.zeros(0, 4), torch.randn(1, 4)]
    offsets = [[(0, 4), (5, 9), (9, 10)], [], [(2, 70000)]]
    keys = [key("a"), key(""), key("b")]
    cache.store(keys, states, offsets)
    found, missing = TokenCache(tmp_path, "enc", 4).lookup(keys + [key("c")])
    assert missing == [3]
    for (got_states, got_offsets), want_states, want_offsets in zip(
        found[:3], states, offsets, strict=True
    ):
        assert torch.equal(got_states, want_states) and got_offsets == want_offsets
    assert found[3] is None


def test_a_text_whose_token_rows_are_gone_is_missing(tmp_path):
    cache = TokenCache(tmp_path, "enc", 2)
    cache.counts.store([key("x")], torch.tensor([[2.0]]))  # a count without its rows
    found, missing = cache.lookup([key("x")])
    assert found == [None] and missing == [0]
