"""GuardedEmbedding: LlamaIndex's interface over the client, events, serialization, retrieval."""

from __future__ import annotations

import copy
import importlib
import pickle
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.embedding import (
    EmbeddingEndEvent,
    EmbeddingStartEvent,
)
from llama_index.core.node_parser import SentenceSplitter
from pydantic import ValidationError

from embedguard import (
    AuthenticationError,
    CircuitOpenError,
    CircuitState,
    ConfigurationError,
    EmbeddingClient,
    ServerError,
    profiles,
)
from embedguard._extras import MissingExtraError
from embedguard.adapters.llamaindex import GuardedEmbedding
from embedguard.testing import EmbeddingServer, Fault, deterministic_vectors

from .conftest import KEY, fast_profile


@pytest.fixture
def embed(server: EmbeddingServer) -> Iterator[GuardedEmbedding]:
    """An adapter over a fast-retrying profile aimed at the server."""
    adapter = GuardedEmbedding(fast_profile(server), api_key=KEY)
    yield adapter
    adapter.close()


class _Recorder(BaseEventHandler):
    """Collects every instrumentation event."""

    events: list[BaseEvent]

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self.events.append(event)


@pytest.fixture
def recorder() -> Iterator[_Recorder]:
    """An event handler on LlamaIndex's root dispatcher, removed afterwards."""
    root = get_dispatcher()
    handler = _Recorder(events=[])
    root.add_event_handler(handler)
    yield handler
    root.event_handlers = [h for h in root.event_handlers if h is not handler]


# -- construction ------------------------------------------------------------------------------
def test_is_a_base_embedding_named_guarded_embedding() -> None:
    """The adapter is a BaseEmbedding whose class_name() is GuardedEmbedding."""
    emb = GuardedEmbedding(api_key=KEY)
    assert isinstance(emb, BaseEmbedding)
    assert GuardedEmbedding.class_name() == "GuardedEmbedding"
    assert emb.to_dict()["class_name"] == "GuardedEmbedding"


def test_batch_size_follows_the_profile() -> None:
    """embed_batch_size defaults to the profile's max_inputs, not LlamaIndex's 10."""
    assert GuardedEmbedding(profiles.mistral(), api_key=KEY).embed_batch_size == 128
    assert GuardedEmbedding(profiles.ollama()).embed_batch_size == 32
    assert GuardedEmbedding(api_key=KEY).embed_batch_size == 2048
    assert GuardedEmbedding(api_key=KEY, embed_batch_size=7).embed_batch_size == 7


def test_construction_forms(server: EmbeddingServer) -> None:
    """A profile, a client, or keywords (model or model_name) build the adapter."""
    base = fast_profile(server)
    assert GuardedEmbedding(base, api_key=KEY).profile == base
    with EmbeddingClient(base, api_key=KEY) as client:
        assert GuardedEmbedding(client).client is client
        assert GuardedEmbedding(client=client).model_name == base.model
    by_name = GuardedEmbedding(model_name="text-embedding-3-large", api_key=KEY)
    assert (by_name.model_name, by_name.dimensions) == ("text-embedding-3-large", 3072)
    assert GuardedEmbedding(model="text-embedding-3-large", api_key=KEY).profile == by_name.profile


@pytest.mark.parametrize(
    "kwargs",
    [
        {"model": "a", "model_name": "b"},
        {"provider": "azure", "profile": profiles.openai()},
        {"temperature": 0.1},
    ],
)
def test_contradictory_or_unknown_settings_are_refused(kwargs: dict[str, Any]) -> None:
    """Contradicting or unknown settings raise ConfigurationError."""
    with pytest.raises(ConfigurationError):
        GuardedEmbedding(api_key=KEY, **kwargs)


def test_settings_are_frozen() -> None:
    """Changing a setting the client was built from is refused."""
    emb = GuardedEmbedding(api_key=KEY)
    with pytest.raises(ValidationError):
        emb.model_name = "other"


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing the adapter without llama-index-core raises an error naming the extra."""
    monkeypatch.delitem(sys.modules, "embedguard.adapters.llamaindex")
    monkeypatch.setitem(sys.modules, "llama_index.core", None)
    with pytest.raises(MissingExtraError, match=r"embedguard\[llamaindex\]"):
        importlib.import_module("embedguard.adapters.llamaindex")


# -- the six methods ---------------------------------------------------------------------------
def test_sync_methods_return_the_server_vectors(
    embed: GuardedEmbedding, server: EmbeddingServer
) -> None:
    """Query, text and batch embeddings are lists equal to the server's vectors, in order."""
    texts = ["one", "two", "three", "two"]
    expected = deterministic_vectors(texts, server.dimensions)
    assert np.allclose(embed.get_text_embedding_batch(texts), expected, atol=1e-6)
    assert np.allclose(embed.get_query_embedding("two"), expected[1], atol=1e-6)
    text = embed.get_text_embedding("three")
    assert type(text) is list and type(text[0]) is float
    assert np.allclose(text, expected[2], atol=1e-6)


async def test_async_methods_use_the_async_client(server: EmbeddingServer) -> None:
    """The async methods go through the client's aembed, never the sync path."""
    emb = GuardedEmbedding(fast_profile(server), api_key=KEY)

    def no_sync(*_: object) -> None:
        raise AssertionError("the sync path must not be used")

    emb.client.embed = no_sync  # type: ignore[method-assign]
    emb.client.embed_query = no_sync  # type: ignore[method-assign]
    texts = ["one", "two", "three"]
    expected = deterministic_vectors(texts, server.dimensions)
    batch = await emb.aget_text_embedding_batch(texts)
    query = await emb.aget_query_embedding("two")
    text = await emb.aget_text_embedding("three")
    await emb.aclose()
    assert np.allclose(batch, expected, atol=1e-6)
    assert np.allclose([query, text], expected[1:], atol=1e-6)


def test_llamaindex_batches_by_the_profile(server: EmbeddingServer) -> None:
    """With max_inputs=4, ten texts reach the server as three requests of at most 4."""
    emb = GuardedEmbedding(fast_profile(server, batching={"max_inputs": 4}), api_key=KEY)
    emb.get_text_embedding_batch([f"t{i}" for i in range(10)])
    emb.close()
    sizes = [len(r.inputs) for r in server.requests]  # sent concurrently: any order
    assert len(sizes) == 3 and max(sizes) <= 4 and sum(sizes) == 10


def test_instrumentation_events_fire(embed: GuardedEmbedding, recorder: _Recorder) -> None:
    """EmbeddingStartEvent and EmbeddingEndEvent fire for queries and batches."""
    embed.get_query_embedding("q")
    embed.get_text_embedding_batch(["a", "b"])
    starts = [e for e in recorder.events if isinstance(e, EmbeddingStartEvent)]
    ends = [e for e in recorder.events if isinstance(e, EmbeddingEndEvent)]
    assert len(starts) == len(ends) == 2
    assert ends[1].chunks == ["a", "b"] and len(ends[1].embeddings) == 2
    assert starts[0].model_dict["class_name"] == "GuardedEmbedding"
    assert all(KEY not in str(e.model_dump()) for e in recorder.events)


def test_show_progress_draws_a_bar(
    embed: GuardedEmbedding, capsys: pytest.CaptureFixture[str]
) -> None:
    """show_progress=True draws LlamaIndex's progress bar."""
    embed.get_text_embedding_batch(["a", "b", "c"], show_progress=True)
    assert "Generating embeddings" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_scripted_401_raises_authentication_error(
    embed: GuardedEmbedding, server: EmbeddingServer, mode: str
) -> None:
    """A 401 surfaces as embedguard.AuthenticationError, sync and async, sent once."""
    server.script(Fault.status(401), Fault.status(401))
    if mode == "sync":
        with pytest.raises(AuthenticationError):
            embed.get_text_embedding_batch(["a", "b"])
        with pytest.raises(AuthenticationError):
            embed.get_query_embedding("a")
    else:
        with pytest.raises(AuthenticationError):
            await embed.aget_text_embedding_batch(["a", "b"])
        with pytest.raises(AuthenticationError):
            await embed.aget_query_embedding("a")
    assert len(server.requests) == 2


# -- serialization -----------------------------------------------------------------------------
def test_serialized_forms_never_hold_the_key(
    embed: GuardedEmbedding, monkeypatch: pytest.MonkeyPatch
) -> None:
    """to_dict, to_json, model_dump, repr and pickle leave the key out; all rebuild."""
    pickled = pickle.dumps(embed)
    outputs = [str(embed.to_dict()), embed.to_json(), embed.model_dump_json(), repr(embed),
               str(embed.to_payload())]  # fmt: skip
    assert all(KEY not in text for text in outputs)
    assert KEY.encode() not in pickled
    other = "sk-rebuilt-ELSEWHERE-777"
    rebuilt = [GuardedEmbedding.from_dict(embed.to_dict(), api_key=other),
               GuardedEmbedding.from_json(embed.to_json(), api_key=other)]  # fmt: skip
    monkeypatch.setenv("OPENAI_API_KEY", other)
    rebuilt.append(pickle.loads(pickled))
    for clone in rebuilt:
        assert clone.profile == embed.profile and clone.client is not embed.client
        assert clone.api_key is not None and clone.api_key.get_secret_value() == other
        clone.close()


def test_copies_share_the_client(embed: GuardedEmbedding) -> None:
    """copy.copy and copy.deepcopy work and share the client (sockets are not data)."""
    assert copy.deepcopy(embed).client is embed.client
    assert copy.copy(embed).client is embed.client


def test_rebuilt_adapter_works(embed: GuardedEmbedding, server: EmbeddingServer) -> None:
    """An adapter rebuilt from JSON embeds against the same endpoint with the key given again."""
    copy = GuardedEmbedding.from_json(embed.to_json(), api_key=KEY)
    assert np.allclose(copy.get_query_embedding("x"), embed.get_query_embedding("x"))
    copy.close()
    assert [r.headers["authorization"] for r in server.requests] == [f"Bearer {KEY}"] * 2


# -- health ------------------------------------------------------------------------------------
def test_metrics_breaker_and_reset(server: EmbeddingServer) -> None:
    """metrics(), circuit_state and reset_circuit_breaker() reflect and drive the client."""
    breaker = {"failure_threshold": 1, "success_threshold": 1, "half_open_max_attempts": 1}
    profile = fast_profile(server, retry={"max_retries": 0}, breaker=breaker)
    emb = GuardedEmbedding(profile, api_key=KEY)
    emb.get_text_embedding_batch(["a", "b"])
    assert emb.metrics().items_embedded == 2
    server.set_down(True)
    with pytest.raises(ServerError):
        emb.get_query_embedding("a")
    assert emb.circuit_state is CircuitState.OPEN
    with pytest.raises(CircuitOpenError):
        emb.get_query_embedding("a")
    server.set_down(False)
    emb.reset_circuit_breaker()
    assert emb.circuit_state is CircuitState.CLOSED
    emb.get_query_embedding("a")
    snap = emb.metrics()
    emb.close()
    assert (snap.breaker_opens, snap.rejected_requests, snap.successful_requests) == (1, 1, 2)


# -- LlamaIndex pipelines ----------------------------------------------------------------------
DOCS = {
    "volcano": "Volcanoes erupt molten lava and ash when magma rises through the crust.",
    "bees": "Honey bees pollinate flowers and make honey from nectar in the hive.",
    "stocks": "The stock market closed higher on Friday as bank shares rallied.",
}


def _documents() -> list[Document]:
    return [Document(text=text, doc_id=key) for key, text in DOCS.items()]


def test_vector_store_index_retrieves_the_right_node(lexical_server: EmbeddingServer) -> None:
    """VectorStoreIndex.from_documents with the adapter retrieves the node sharing the words."""
    emb = GuardedEmbedding(fast_profile(lexical_server), api_key=KEY)
    index = VectorStoreIndex.from_documents(_documents(), embed_model=emb)
    (hit,) = index.as_retriever(similarity_top_k=1).retrieve("what makes magma erupt as lava")
    emb.close()
    assert hit.node.ref_doc_id == "volcano"


async def test_ingestion_pipeline_embeds_and_retrieves(lexical_server: EmbeddingServer) -> None:
    """IngestionPipeline(SentenceSplitter, adapter) embeds every node; retrieval finds bees."""
    emb = GuardedEmbedding(fast_profile(lexical_server), api_key=KEY)
    pipeline = IngestionPipeline(
        transformations=[SentenceSplitter(chunk_size=64, chunk_overlap=0), emb]
    )
    nodes = pipeline.run(documents=_documents())
    anodes = await IngestionPipeline(transformations=[SentenceSplitter(), emb]).arun(
        documents=_documents()
    )
    assert len(nodes) == len(anodes) == 3
    assert all(n.embedding is not None and len(n.embedding) == 256 for n in [*nodes, *anodes])
    index = VectorStoreIndex(nodes, embed_model=emb)
    (hit,) = await index.as_retriever(similarity_top_k=1).aretrieve("bees making honey")
    await emb.aclose()
    assert hit.node.ref_doc_id == "bees"


def test_transformation_sets_embeddings_as_llamaindex_does(server: EmbeddingServer) -> None:
    """Called on nodes, the adapter sets each node's embedding (marked set, dumped, in order) and
    still runs a node class's own validator on the field."""
    from llama_index.core.schema import TextNode
    from pydantic import field_validator

    class Rounded(TextNode):
        @field_validator("embedding")
        @classmethod
        def _round(cls, value: list[float] | None) -> list[float] | None:
            return None if value is None else [round(x, 1) for x in value]

    emb = GuardedEmbedding(fast_profile(server), api_key=KEY)
    nodes = [TextNode(text="alpha"), Document(text="beta"), Rounded(text="gamma")]
    emb(nodes)
    expected = deterministic_vectors(["alpha", "beta", "gamma"], server.dimensions)
    np.testing.assert_allclose(nodes[0].embedding, expected[0], rtol=1e-6)
    np.testing.assert_allclose(nodes[1].embedding, expected[1], rtol=1e-6)
    assert nodes[2].embedding == [round(float(x), 1) for x in expected[2]]
    assert "embedding" in nodes[0].model_dump(exclude_unset=True)
    assert TextNode.model_validate(nodes[0].model_dump()).embedding == nodes[0].embedding
    emb.close()
