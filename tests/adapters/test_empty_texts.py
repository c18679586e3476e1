"""Empty texts through both adapters: refused by default, or one zero / NaN vector per text."""

from __future__ import annotations

import math

import pytest
from langchain_core.documents import Document
from langchain_core.vectorstores import InMemoryVectorStore

from embedguard import ConfigurationError, InputValidationError
from embedguard.adapters.langchain import GuardedEmbeddings
from embedguard.adapters.llamaindex import GuardedEmbedding
from embedguard.testing import EmbeddingServer

from .conftest import KEY, fast_profile

DOCS = [
    Document(page_content="Paris is the capital of France."),
    Document(page_content=""),
    Document(page_content="Rust has no garbage collector."),
    Document(page_content="  \n"),
]


def _sent(server: EmbeddingServer) -> list[str]:
    return [text for request in server.requests for text in request.inputs]


def test_one_empty_document_fails_from_documents_by_default(server: EmbeddingServer) -> None:
    """The default stays a refusal naming the empty document, with nothing sent."""
    embeddings = GuardedEmbeddings(fast_profile(server), api_key=KEY)
    with pytest.raises(InputValidationError, match="empty='zero'") as caught:
        InMemoryVectorStore.from_documents(DOCS, embeddings)
    embeddings.close()
    assert caught.value.index == 1 and server.requests == []


def test_zero_stores_every_document_and_search_still_finds_by_meaning(
    lexical_server: EmbeddingServer,
) -> None:
    """empty='zero': from_documents works, empty texts are not sent, search ranks by meaning."""
    embeddings = GuardedEmbeddings(fast_profile(lexical_server), api_key=KEY, empty="zero")
    try:
        store = InMemoryVectorStore.from_documents(DOCS, embeddings)
        [hit] = store.similarity_search("the capital of France", k=1)
        snap = embeddings.metrics()
    finally:
        embeddings.close()
    assert hit.page_content == DOCS[0].page_content
    assert "" not in _sent(lexical_server) and "  \n" not in _sent(lexical_server)
    vectors = [record["vector"] for record in store.store.values()]
    assert len(vectors) == 4 and sum(not any(v) for v in vectors) == 2
    assert dict(snap.inputs_adjusted) == {"empty_zero": 2}


async def test_skip_keeps_one_vector_per_text_marked_nan(server: EmbeddingServer) -> None:
    """empty='skip' (async too): same list length, NaN vectors where the texts were empty."""
    embeddings = GuardedEmbeddings(fast_profile(server), api_key=KEY, empty="skip")
    texts = ["alpha", "", "beta", " "]
    try:
        vectors = await embeddings.aembed_documents(texts)
        query = embeddings.embed_query("")
    finally:
        await embeddings.aclose()
    assert len(vectors) == 4 and all(len(v) == server.dimensions for v in vectors)
    assert [math.isnan(v[0]) for v in vectors] == [False, True, False, True]
    assert all(math.isnan(x) for x in query)
    assert sorted(_sent(server)) == ["alpha", "beta"]


@pytest.mark.parametrize(("empty", "expected"), [("zero", 0.0), ("skip", math.nan)])
def test_llamaindex_batches_keep_their_length(
    server: EmbeddingServer, empty: str, expected: float
) -> None:
    """GuardedEmbedding(empty=...) gives one vector per text; empty ones are zero or NaN."""
    model = GuardedEmbedding(fast_profile(server), api_key=KEY, empty=empty)
    try:
        vectors = model.get_text_embedding_batch(["one", "", "two"])
        query = model.get_query_embedding("   ")
    finally:
        model.close()
    assert len(vectors) == 3
    for row in (vectors[1], query):
        assert all(x == expected or (math.isnan(x) and math.isnan(expected)) for x in row)
    assert all(math.isfinite(x) for x in vectors[0] + vectors[2])
    assert sorted(_sent(server)) == ["one", "two"]


def test_the_peers_skip_empty_names_the_option() -> None:
    """skip_empty is refused with a message naming empty='zero' and empty='skip'."""
    for adapter in (GuardedEmbeddings, GuardedEmbedding):
        with pytest.raises(ConfigurationError, match=r"empty='zero'.*empty='skip'"):
            adapter(api_key=KEY, skip_empty=True)
        with pytest.raises(ConfigurationError) as caught:
            adapter(api_key=KEY, empty="drop")
        assert caught.value.field == "empty"
