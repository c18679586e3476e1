"""Usage per call through both adapters, and the LlamaIndex checks on the in-process model."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler

from embedguard import EmbeddingClient, profiles
from embedguard.adapters.langchain import GuardedEmbeddings
from embedguard.adapters.llamaindex import EmbeddingUsageEvent, GuardedEmbedding
from embedguard.core.providers.local import LocalModel
from embedguard.core.usage import track_usage
from embedguard.testing import EmbeddingServer

from .conftest import KEY, fast_profile


class _Collect(BaseEventHandler):
    events: list[Any]

    @classmethod
    def class_name(cls) -> str:
        return "Collect"

    def handle(self, event: Any, **kwargs: Any) -> None:
        self.events.append(event)


def test_langchain_usage_per_call(server: EmbeddingServer) -> None:
    """embeddings.usage() counts exactly the tokens and requests of the calls inside it."""
    embeddings = GuardedEmbeddings(EmbeddingClient(fast_profile(server), api_key=KEY))
    try:
        embeddings.embed_documents(["outside the block"])
        with embeddings.usage() as usage:
            embeddings.embed_documents(["one two three", "four five"])
            embeddings.embed_query("six")
        expected = sum(server.count_tokens(t) for t in ["one two three", "four five", "six"])
        assert (usage.tokens, usage.items) == (expected, 3)
        assert usage.requests == 2 and usage.cost == pytest.approx(expected * 0.02 / 1e6)
        assert embeddings.metrics().tokens_used > usage.tokens  # metrics count everything
    finally:
        embeddings.close()


async def test_usage_follows_async_calls(server: EmbeddingServer) -> None:
    """Usage blocks work around async calls too, and nest."""
    embeddings = GuardedEmbeddings(EmbeddingClient(fast_profile(server), api_key=KEY))
    with track_usage() as outer:
        with embeddings.usage() as inner:
            await embeddings.aembed_documents(["alpha beta", "gamma"])
        await embeddings.aembed_query("delta")
    assert inner.tokens == 3 and outer.tokens == 4
    await embeddings.aclose()


def test_llamaindex_events_carry_token_counts(server: EmbeddingServer) -> None:
    """Each GuardedEmbedding call dispatches an EmbeddingUsageEvent with its tokens."""
    handler = _Collect(events=[])
    dispatcher = get_dispatcher()
    dispatcher.add_event_handler(handler)
    model = GuardedEmbedding(EmbeddingClient(fast_profile(server), api_key=KEY))
    try:
        model.get_text_embedding_batch(["one two", "three"])
    finally:
        dispatcher.event_handlers.remove(handler)
        model.close()
    usage = [e for e in handler.events if isinstance(e, EmbeddingUsageEvent)]
    assert len(usage) == 1
    assert (usage[0].tokens, usage[0].requests, usage[0].cached) == (3, 1, 0)
    assert usage[0].model_name == model.model_name


@pytest.fixture(scope="module")
def minilm() -> Any:
    """all-MiniLM-L6-v2 loaded once for this module."""
    return LocalModel(profiles.local()).load()


def test_llamaindex_retrieval_on_the_local_model(minilm: Any) -> None:
    """VectorStoreIndex over the in-process model retrieves the semantically right node."""
    Settings.llm = None
    model = GuardedEmbedding(EmbeddingClient(profiles.local(), local_model=minilm))
    docs = [
        Document(text="The Nile is the longest river in Africa."),
        Document(text="Photosynthesis turns sunlight into chemical energy in plants."),
        Document(text="A goalkeeper defends the net in football."),
    ]
    try:
        index = VectorStoreIndex.from_documents(docs, embed_model=model)
        [hit] = index.as_retriever(similarity_top_k=1).retrieve("How do plants make energy?")
        assert "Photosynthesis" in hit.node.get_content()
        assert model.metrics().items_embedded == 4
        assert model.embed_batch_size == profiles.local().batching.max_inputs
    finally:
        model.close()


@pytest.mark.parametrize("adapter", [GuardedEmbeddings, GuardedEmbedding])
def test_usage_is_scoped_to_its_adapter_across_threads(
    server: EmbeddingServer, adapter: Any
) -> None:
    """a.usage() counts a's calls from a plain thread and none of b's."""
    a = adapter(EmbeddingClient(fast_profile(server), api_key=KEY))
    b = adapter(EmbeddingClient(fast_profile(server), api_key=KEY))
    embed = "embed_query" if adapter is GuardedEmbeddings else "get_query_embedding"
    try:
        with a.usage() as usage:
            thread = threading.Thread(target=getattr(a, embed), args=("one two",))
            thread.start()
            thread.join()
            getattr(b, embed)("three four five six")
    finally:
        a.close()
        b.close()
    assert (usage.tokens, usage.items, usage.requests) == (server.count_tokens("one two"), 1, 1)


async def test_async_usage_is_scoped_to_its_adapter(server: EmbeddingServer) -> None:
    """In async code too, another adapter's concurrent calls stay out of a.usage()."""
    import asyncio

    a = GuardedEmbeddings(EmbeddingClient(fast_profile(server), api_key=KEY))
    b = GuardedEmbeddings(EmbeddingClient(fast_profile(server), api_key=KEY))
    with a.usage() as usage:
        await asyncio.gather(a.aembed_documents(["alpha beta"]), b.aembed_documents(["x y z"]))
    await a.aclose()
    await b.aclose()
    assert (usage.tokens, usage.items) == (server.count_tokens("alpha beta"), 1)
