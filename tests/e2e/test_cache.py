"""The per-text cache through the client: partial hits, billing, persistence."""

from pathlib import Path

import numpy as np
import pytest

from embedguard import ConfigurationError, EmbeddingClient, profiles
from embedguard.core.cache import MemoryCache
from embedguard.testing import EmbeddingServer, deterministic_vectors

from .conftest import KEY, fast


def _client(server: EmbeddingServer, cache: object, **changes: object) -> EmbeddingClient:
    profile = fast(profiles.openai(base_url=server.base_url("openai"), dimensions=64), **changes)
    return EmbeddingClient(profile, api_key=KEY, cache=cache)  # type: ignore[arg-type]


def test_partial_hits_send_only_misses(server: EmbeddingServer) -> None:
    """Cached texts come back at the right positions; only the misses are sent and billed."""
    cache = MemoryCache()
    first = [f"doc {i}" for i in range(100)]
    second = [f"doc {i}" for i in range(50, 150)] + ["doc 3"]
    with _client(server, cache) as client:
        client.embed(first)
        billed_before = client.metrics().tokens_used
        server.reset()
        vectors = client.embed(second)
        snap = client.metrics()
    np.testing.assert_array_equal(vectors, deterministic_vectors(second, 64))
    sent = sorted(t for r in server.requests for t in r.inputs)
    assert sent == sorted(f"doc {i}" for i in range(100, 150))
    assert (snap.cache_hits, snap.cache_misses) == (51, 150)
    billed = snap.tokens_used - billed_before
    assert billed == sum(server.count_tokens(t) for t in sent)
    assert snap.cache_tokens_saved > 0
    assert "cache" in snap.format()


def test_all_hits_send_nothing(server: EmbeddingServer) -> None:
    """A fully cached call makes no request at all."""
    with _client(server, "memory") as client:
        texts = ["a", "b", "c"]
        client.embed(texts)
        client.embed_query("a")  # a query is cached apart from documents
        seen = len(server.requests)
        np.testing.assert_array_equal(client.embed(texts), deterministic_vectors(texts, 64))
        np.testing.assert_array_equal(client.embed_query("a"), deterministic_vectors(["a"], 64)[0])
        assert len(server.requests) == seen
        assert client.metrics().cache_hit_rate > 0


async def test_sqlite_cache_survives_the_client(server: EmbeddingServer, tmp_path: Path) -> None:
    """A second client on the same SQLite file hits every text of the first run."""
    path = tmp_path / "vectors.db"
    texts = [f"persisted {i}" for i in range(300)]
    async with _client(server, f"sqlite:///{path}") as client:
        await client.aembed(texts)
    server.reset()
    async with _client(server, str(path)) as client:
        vectors = await client.aembed(texts)
        snap = client.metrics()
    assert server.requests == []
    assert snap.cache_hit_rate == 1.0
    np.testing.assert_array_equal(vectors, deterministic_vectors(texts, 64))


def test_cache_keys_follow_model_and_dimensions(server: EmbeddingServer) -> None:
    """A different dimension setting never reads another space's vectors."""
    cache = MemoryCache()
    with _client(server, cache) as client:
        client.embed(["same text"])
    profile = fast(profiles.openai(base_url=server.base_url("openai"), dimensions=32))
    with EmbeddingClient(profile, api_key=KEY, cache=cache) as other:
        assert other.embed(["same text"]).shape == (1, 32)
    assert len(server.requests) == 2


def test_bad_cache_spec_is_a_configuration_error(server: EmbeddingServer) -> None:
    """An unknown cache spec fails at construction, naming the field."""
    with pytest.raises(ConfigurationError) as info:
        _client(server, "redis://nowhere")
    assert info.value.field == "cache"
