"""Queries and documents end to end on the providers without an input type: instruction prefixes,
per-call input types, and compact dtypes refused where a provider has none."""

import numpy as np
import pytest

from embedguard import ConfigurationError, EmbeddingClient, InputValidationError, profiles
from embedguard.adapters.langchain import GuardedEmbeddings
from embedguard.adapters.llamaindex import GuardedEmbedding
from embedguard.testing import EmbeddingServer, deterministic_vectors

from .conftest import KEY, fast


def _nomic(server: EmbeddingServer) -> EmbeddingClient:
    profile = profiles.ollama(
        "nomic-embed-text",
        base_url=server.url,
        dimensions=64,
        query_prefix="search_query: ",
        document_prefix="search_document: ",
    )
    return EmbeddingClient(fast(profile), environ={})


def test_prefixes_go_on_the_wire_for_queries_and_documents(server: EmbeddingServer) -> None:
    """embed_query sends the query prefix, embed the document prefix; vectors match the wire."""
    with _nomic(server) as client:
        query = client.embed_query("what is rust")
        docs = client.embed(["rust is a language", "so is python"])
    sent = [r.body["input"] for r in server.requests]
    assert sent == [
        ["search_query: what is rust"],
        ["search_document: rust is a language", "search_document: so is python"],
    ]
    expected = deterministic_vectors(["search_query: what is rust"], 64)[0]
    np.testing.assert_allclose(query, expected, rtol=1e-6, atol=1e-7)
    assert docs.shape == (2, 64)


async def test_prefixes_async_and_through_both_adapters(server: EmbeddingServer) -> None:
    """The async path and the LangChain and LlamaIndex adapters keep the query/document split."""
    profile = fast(
        profiles.openai_compatible(
            "e5-small",
            base_url=server.base_url("openai_compatible"),
            query_prefix="query: ",
            document_prefix="passage: ",
        )
    )
    lc = GuardedEmbeddings(profile)
    li = GuardedEmbedding(profile)
    await lc.aembed_query("q1")
    lc.embed_documents(["d1"])
    li.get_query_embedding("q2")
    await li.aget_text_embedding_batch(["d2"])
    sent = [r.body["input"] for r in server.requests]
    assert sent == [["query: q1"], ["passage: d1"], ["query: q2"], ["passage: d2"]]


def test_query_and_document_of_one_text_are_cached_and_shared_apart(
    server: EmbeddingServer,
) -> None:
    """The same text as a query and as a document is two vectors, each cached under its kind."""
    profile = profiles.ollama(
        "nomic-embed-text",
        base_url=server.url,
        dimensions=64,
        query_prefix="search_query: ",
        document_prefix="search_document: ",
    )
    with EmbeddingClient(fast(profile), environ={}, cache="memory") as client:
        q = client.embed_query("rust")
        d = client.embed(["rust"])[0]
        client.embed_query("rust")
        client.embed(["rust"])
        snap = client.metrics()
    assert not np.allclose(q, d)
    assert len(server.requests) == 2 and snap.cache_hits == 2


def test_per_call_input_type_is_sent_and_cached_apart(server: EmbeddingServer) -> None:
    """A per-call input type reaches the codec (no prefix) and never shares a cache entry."""
    profile = fast(
        profiles.openai(
            base_url=server.base_url("openai"), dimensions=64, document_prefix="passage: "
        )
    )
    with EmbeddingClient(profile, api_key=KEY, environ={}, cache="memory") as client:
        plain = client.embed(["x"])
        other = client.embed(["x"], input_type="clustering")
        again = client.embed(["x"], input_type="clustering")
    # OpenAI has no input type: the per-call type sends the text as given, without the prefix.
    assert [r.body["input"] for r in server.requests] == [["passage: x"], ["x"]]
    np.testing.assert_array_equal(other, again)
    assert not np.array_equal(plain, other)


def test_blank_input_type_is_a_typed_error_before_sending(server: EmbeddingServer) -> None:
    """An empty per-call input type is refused before any request."""
    with _nomic(server) as client, pytest.raises(InputValidationError):
        client.embed(["x"], input_type=" ")
    assert server.requests == []


@pytest.mark.parametrize("dtype", ["int8", "uint8", "binary", "ubinary"])
def test_compact_dtype_is_refused_by_providers_without_one(dtype: str) -> None:
    """OpenAI returns floats only: asking it for a compact type is a configuration error."""
    with pytest.raises(ConfigurationError) as info:
        EmbeddingClient(profiles.openai(dtype=dtype), api_key=KEY, environ={})
    assert info.value.field == "dtype" and dtype in str(info.value)


def test_compact_dtype_rules_for_chains_and_chunking() -> None:
    """A compact dtype cannot be averaged, mixed with float fallbacks, or cut mid-byte."""
    with pytest.raises(ConfigurationError, match="averages"):
        EmbeddingClient(
            profiles.openai(dtype="int8"), api_key=KEY, context_policy="chunk", environ={}
        )
    profile = profiles.openai().evolve(dtype="float32")
    int8 = profile.evolve(dtype="int8", name="other")
    with pytest.raises(ConfigurationError, match="returns int8"):
        EmbeddingClient(profile, api_key=KEY, fallbacks=[int8], environ={})


def test_vector_bytes_count_what_callers_get(server: EmbeddingServer) -> None:
    """Metrics count the bytes of the vectors returned, cached ones included."""
    profile = fast(profiles.openai(base_url=server.base_url("openai"), dimensions=64))
    with EmbeddingClient(profile, api_key=KEY, environ={}, cache="memory") as client:
        client.embed(["a", "b", "a"])
        client.embed_query("q")
        client.embed(["a"])
        snap = client.metrics()
    assert snap.vector_bytes == (3 + 1 + 1) * 64 * 4
    assert f"{snap.vector_bytes} vector bytes returned" in snap.format()
