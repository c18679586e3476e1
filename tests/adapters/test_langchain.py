"""GuardedEmbeddings: construction, conversion, real async, typed errors, health and retrieval."""

from __future__ import annotations

import copy
import importlib
import pickle
import sys
from collections.abc import Iterator

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.vectorstores import InMemoryVectorStore
from pydantic import SecretStr, ValidationError

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
from embedguard.adapters.langchain import GuardedEmbeddings
from embedguard.testing import EmbeddingServer, Fault, deterministic_vectors

from .conftest import KEY, fast_profile


@pytest.fixture
def embeddings(server: EmbeddingServer) -> Iterator[GuardedEmbeddings]:
    """An adapter over a fast-retrying profile aimed at the server."""
    adapter = GuardedEmbeddings(fast_profile(server), api_key=KEY)
    yield adapter
    adapter.close()


# -- construction ------------------------------------------------------------------------------
def test_kwargs_build_the_named_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    """LangChain-style keywords pick the provider's profile and override its fields."""
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    emb = GuardedEmbeddings(provider="mistral", api_key=KEY, base_url="http://127.0.0.1:9/v1")
    assert (emb.provider, emb.model, emb.dimensions) == ("mistral", "mistral-embed", 1024)
    assert emb.profile == profiles.mistral(base_url="http://127.0.0.1:9/v1")
    assert emb.client.profile is emb.profile
    assert isinstance(emb.api_key, SecretStr)
    assert emb.api_key.get_secret_value() == KEY


def test_positional_profile_and_keyword_overrides() -> None:
    """A profile can be passed positionally, and keywords override its fields."""
    base = profiles.openai(base_url="http://127.0.0.1:9/v1")
    emb = GuardedEmbeddings(base, model="text-embedding-3-large", dimensions=256, api_key=KEY)
    assert emb.profile == base.evolve(model="text-embedding-3-large", dimensions=256)
    assert emb.model == "text-embedding-3-large"


def test_a_client_is_used_as_is(server: EmbeddingServer) -> None:
    """An EmbeddingClient passed in is the one doing the work, positional or keyword."""
    with EmbeddingClient(fast_profile(server), api_key=KEY) as client:
        assert GuardedEmbeddings(client).client is client
        emb = GuardedEmbeddings(client=client)
        assert emb.client is client and emb.profile is client.profile
        assert emb.api_key is None  # the client keeps its key; the adapter holds no copy


@pytest.mark.parametrize(
    "kwargs",
    [
        {"provider": "mistral", "profile": profiles.openai()},
        {"provider": "nope"},
        {"temperature": 0.2},
    ],
)
def test_contradictory_or_unknown_settings_are_refused(kwargs: dict[str, object]) -> None:
    """Settings that contradict each other, or unknown keywords, raise ConfigurationError."""
    with pytest.raises(ConfigurationError):
        GuardedEmbeddings(api_key=KEY, **kwargs)


def test_client_with_settings_or_a_wrong_source_is_refused(server: EmbeddingServer) -> None:
    """A client comes with its own settings; a source must be a profile or a client."""
    with EmbeddingClient(fast_profile(server), api_key=KEY) as client:
        with pytest.raises(ConfigurationError, match="either a client or settings"):
            GuardedEmbeddings(client, model="other")
        with pytest.raises(ConfigurationError, match="ProviderProfile or an EmbeddingClient"):
            GuardedEmbeddings("openai")  # type: ignore[arg-type]


def test_missing_key_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a key anywhere, construction fails naming the variable."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        GuardedEmbeddings()


def test_settings_are_frozen() -> None:
    """Changing a setting after construction is refused (the client would not see it)."""
    emb = GuardedEmbeddings(api_key=KEY)
    with pytest.raises(ValidationError):
        emb.model = "text-embedding-3-large"  # type: ignore[misc]


def test_key_never_shows() -> None:
    """The key is absent from repr, str and every model_dump form."""
    emb = GuardedEmbeddings(api_key=KEY, base_url="http://127.0.0.1:9/v1")
    outputs = [repr(emb), str(emb), str(emb.model_dump()), emb.model_dump_json(),
               str(emb.model_dump(mode="json")), repr(emb.client)]  # fmt: skip
    assert all(KEY not in text for text in outputs)
    assert "api_key" not in emb.model_dump()


def test_pickles_leave_the_key_out_and_copies_share_the_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pickle holds no key and rebuilds from the environment; copies share the client."""
    emb = GuardedEmbeddings(api_key=KEY, base_url="http://127.0.0.1:9/v1")
    pickled = pickle.dumps(emb)
    assert KEY.encode() not in pickled
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    clone = pickle.loads(pickled)
    assert clone.profile == emb.profile and clone.client is not emb.client
    assert clone.api_key == SecretStr("sk-from-the-environment")
    assert copy.deepcopy(emb).client is emb.client
    assert copy.copy(emb).client is emb.client


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing the adapter without langchain-core raises an error naming the extra."""
    monkeypatch.delitem(sys.modules, "embedguard.adapters.langchain")
    monkeypatch.setitem(sys.modules, "langchain_core", None)
    with pytest.raises(MissingExtraError, match=r"embedguard\[langchain\]"):
        importlib.import_module("embedguard.adapters.langchain")


# -- embedding ---------------------------------------------------------------------------------
def test_sync_results_are_plain_float_lists_in_order(
    embeddings: GuardedEmbeddings, server: EmbeddingServer
) -> None:
    """embed_documents / embed_query return list[float] rows equal to the server's vectors."""
    texts = ["alpha", "beta", "alpha", "gamma"]
    docs = embeddings.embed_documents(texts)
    query = embeddings.embed_query("beta")
    assert type(docs) is list and all(type(x) is float for x in docs[0])
    assert np.allclose(docs, deterministic_vectors(texts, server.dimensions), atol=1e-6)
    assert query == docs[1]
    assert embeddings.embed_documents([]) == []


async def test_async_is_real_and_concurrent(server: EmbeddingServer) -> None:
    """aembed_documents uses the client's async path, sending batches concurrently."""
    slow = EmbeddingServer(dimensions=8, latency=0.05)
    with slow:
        profile = fast_profile(slow, batching={"max_inputs": 1}, pool_size=4)
        emb = GuardedEmbeddings(profile, api_key=KEY)

        def no_sync(*_: object) -> None:
            raise AssertionError("the sync path must not be used")

        emb.client.embed = no_sync  # type: ignore[method-assign]
        emb.client.embed_query = no_sync  # type: ignore[method-assign]
        texts = [f"text {i}" for i in range(8)]
        docs = await emb.aembed_documents(texts)
        query = await emb.aembed_query("text 3")
        await emb.aclose()
        assert np.allclose(docs, deterministic_vectors(texts, 8), atol=1e-6)
        assert query == docs[3]
        assert slow.max_in_flight >= 2


@pytest.mark.parametrize("call", ["embed_documents", "embed_query"])
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_scripted_401_raises_authentication_error(
    embeddings: GuardedEmbeddings, server: EmbeddingServer, call: str, mode: str
) -> None:
    """A 401 surfaces as embedguard.AuthenticationError, sync and async, sent once."""
    server.script(Fault.status(401))
    arg = ["hello"] if call == "embed_documents" else "hello"
    if mode == "sync":
        with pytest.raises(AuthenticationError):
            getattr(embeddings, call)(arg)
    else:
        with pytest.raises(AuthenticationError):
            await getattr(embeddings, "a" + call)(arg)
    assert len(server.requests) == 1


def test_the_profile_retry_is_the_only_retry_layer(server: EmbeddingServer) -> None:
    """One 503 is retried once by the client; with retries off, one request and a typed error."""
    emb = GuardedEmbeddings(fast_profile(server, retry={"max_retries": 1}), api_key=KEY)
    server.script(Fault.status(503))
    assert len(emb.embed_query("x")) == server.dimensions
    assert len(server.requests) == 2
    assert emb.metrics().retried_requests == 1
    emb.close()
    server.reset()
    server.script(Fault.status(503), Fault.status(503))
    strict = GuardedEmbeddings(fast_profile(server, retry={"max_retries": 0}), api_key=KEY)
    with pytest.raises(ServerError):
        strict.embed_query("x")
    strict.close()
    assert len(server.requests) == 1


# -- health ------------------------------------------------------------------------------------
def test_metrics_breaker_and_reset(server: EmbeddingServer) -> None:
    """metrics(), circuit_state and reset_circuit_breaker() reflect and drive the client."""
    breaker = {"failure_threshold": 1, "success_threshold": 1, "half_open_max_attempts": 1}
    emb = GuardedEmbeddings(fast_profile(server, retry={"max_retries": 0}, breaker=breaker),
                            api_key=KEY)  # fmt: skip
    emb.embed_documents(["a", "b", "c"])
    assert emb.metrics().items_embedded == 3
    server.set_down(True)
    with pytest.raises(ServerError):
        emb.embed_query("a")
    assert emb.circuit_state is CircuitState.OPEN
    with pytest.raises(CircuitOpenError):
        emb.embed_query("a")
    server.set_down(False)
    emb.reset_circuit_breaker()
    assert emb.circuit_state is CircuitState.CLOSED
    assert len(emb.embed_query("a")) == server.dimensions
    snap = emb.metrics()
    emb.close()
    assert (snap.breaker_opens, snap.rejected_requests, snap.failed_requests) == (1, 1, 1)


# -- LangChain's vector store ------------------------------------------------------------------
def test_in_memory_vector_store_finds_the_right_document(lexical_server: EmbeddingServer) -> None:
    """InMemoryVectorStore over GuardedEmbeddings returns the document sharing the query's words."""
    emb = GuardedEmbeddings(fast_profile(lexical_server), api_key=KEY)
    store = InMemoryVectorStore(emb)
    texts = {
        "volcano": "Volcanoes erupt molten lava and ash",
        "bees": "Honey bees pollinate flowers in spring",
        "stocks": "The stock market closed higher on Friday",
    }
    store.add_documents([Document(page_content=t, metadata={"id": k}) for k, t in texts.items()])
    (hit,) = store.similarity_search("which insects pollinate flowers", k=1)
    emb.close()
    assert hit.metadata["id"] == "bees"
