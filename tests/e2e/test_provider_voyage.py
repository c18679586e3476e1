"""Voyage AI through the client and both adapters, over real HTTP against the loopback server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from embedguard import (
    AuthenticationError,
    BadRequestError,
    BreakerPolicy,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    ConfigurationError,
    ContextLengthError,
    EmbeddingClient,
    EndpointNotFoundError,
    InputValidationError,
    ModelNotFoundError,
    ProviderProfile,
    RateLimitError,
    ResponseValidationError,
    ServerError,
    profiles,
)
from embedguard.testing import EmbeddingServer, Fault
from embedguard.testing._wire_voyage import voyage_vectors

from .conftest import fast

KEY = "pa-PLANTEDvoyageE2Ekey-0123456789abcdefABCDEF"
D = 256  # the smallest size Voyage's flexible models produce
TEXTS = ["alpha", "beta gamma", "delta", "alpha"]


@pytest.fixture
def server() -> Iterator[EmbeddingServer]:
    """A loopback server (its Voyage route makes model-sized or output_dimension vectors)."""
    with EmbeddingServer() as srv:
        yield srv


def _profile(server: EmbeddingServer, model: str = "voyage-3.5", **changes: Any) -> ProviderProfile:
    return fast(profiles.voyage(model, base_url=server.base_url("voyage"), dimensions=D), **changes)


def _client(
    server: EmbeddingServer, window: float | None = None, **changes: Any
) -> EmbeddingClient:
    options = {} if window is None else {"coalesce_window": window}
    return EmbeddingClient(_profile(server, **changes), api_key=KEY, environ={}, **options)


def _expected(texts: list[str], dtype: str = "float32", d: int = D) -> np.ndarray:
    wire = "float" if dtype == "float32" else dtype
    return voyage_vectors(texts, d, wire)


# -- the matrix: sync, async, wire -----------------------------------------------------------
def test_sync_embed_returns_each_texts_vector_with_usage(server: EmbeddingServer) -> None:
    """embed() sends the distinct texts once and returns each text's vector, tokens counted."""
    with _client(server) as client:
        vectors = client.embed(TEXTS)
        snap = client.metrics()
    np.testing.assert_array_equal(vectors, _expected(TEXTS))
    assert len(server.requests) == 1
    assert list(server.requests[0].inputs) == ["alpha", "beta gamma", "delta"]
    assert snap.successful_requests == 1 and snap.tokens_used == 4  # usage.total_tokens
    assert client.dimensions == D


async def test_async_embed_and_query(server: EmbeddingServer) -> None:
    """aembed() and aembed_query() speak the same wire format."""
    async with _client(server) as client:
        vectors = await client.aembed(TEXTS)
        query = await client.aembed_query("what is alpha?")
    np.testing.assert_array_equal(vectors, _expected(TEXTS))
    np.testing.assert_array_equal(query, _expected(["what is alpha?"])[0])


def test_wire_details(server: EmbeddingServer) -> None:
    """URL, bearer key and the body voyageai-python sends, explicit nulls included."""
    with _client(server) as client:
        client.embed(["x"])
    with EmbeddingClient(
        fast(profiles.voyage("voyage-3-lite", base_url=server.base_url("voyage"))),
        api_key=KEY,
        environ={},
    ) as native:
        assert native.embed(["y"]).shape == (1, 512)
    first, second = server.requests
    assert (first.method, first.path) == ("POST", "/voyage/v1/embeddings")
    assert first.headers["authorization"] == f"Bearer {KEY}"
    assert first.headers["content-type"] == "application/json"
    assert first.body == {
        "input": ["x"],
        "model": "voyage-3.5",
        "input_type": "document",
        "truncation": False,
        "output_dtype": None,
        "output_dimension": D,
        "encoding_format": "base64",
    }
    assert second.body["model"] == "voyage-3-lite" and second.body["output_dimension"] is None


def test_key_and_base_url_from_the_environment(server: EmbeddingServer, tmp_path: Any) -> None:
    """VOYAGE_API_KEY and VOYAGE_BASE_URL are read; a VOYAGE_API_KEY_PATH file wins."""
    profile = fast(profiles.voyage(dimensions=D))
    env = {"VOYAGE_API_KEY": KEY, "VOYAGE_BASE_URL": server.base_url("voyage")}
    with EmbeddingClient(profile, environ=env) as client:
        client.embed(["a"])
    key_file = tmp_path / "voyage.key"
    key_file.write_text("pa-from-the-key-file\n")
    with EmbeddingClient(profile, environ={**env, "VOYAGE_API_KEY_PATH": str(key_file)}) as c:
        c.embed(["b"])
    assert [r.headers["authorization"] for r in server.requests] == [
        f"Bearer {KEY}",
        "Bearer pa-from-the-key-file",
    ]
    with pytest.raises(ConfigurationError, match="VOYAGE_API_KEY") as info:
        EmbeddingClient(profile, environ={})
    assert info.value.field == "api_key"


# -- input types on the wire -----------------------------------------------------------------
def _input_types(server: EmbeddingServer) -> list[Any]:
    return [r.body["input_type"] for r in server.requests]


def test_query_and_document_input_types(server: EmbeddingServer) -> None:
    """embed sends "document", embed_query "query"; per call "none" sends null, "query" query."""
    with _client(server) as client:
        client.embed(["doc one"])
        client.embed_query("a question")
        client.embed(["plain"], input_type="none")
        client.embed(["asked"], input_type="query")
        vector = client.embed_query("again", input_type="document")
    assert _input_types(server) == ["document", "query", None, "query", "document"]
    np.testing.assert_array_equal(vector, _expected(["again"])[0])


async def test_async_input_types(server: EmbeddingServer) -> None:
    """aembed sends "document" and aembed_query "query"."""
    async with _client(server) as client:
        await client.aembed(["doc"])
        await client.aembed_query("question")
    assert _input_types(server) == ["document", "query"]


def test_profile_input_types_and_prefixes(server: EmbeddingServer) -> None:
    """A profile can swap the types (or send null) and add prefixes per kind."""
    profile = _profile(server, query_input_type="null", document_prefix="passage: ")
    with EmbeddingClient(profile, api_key=KEY, environ={}) as client:
        client.embed_query("q")
        client.embed(["d"])
    assert _input_types(server) == [None, "document"]
    assert server.requests[1].body["input"] == ["passage: d"]


def test_an_input_type_voyage_does_not_take_is_refused_before_sending(
    server: EmbeddingServer,
) -> None:
    """A per-call "classification" is an InputValidationError; nothing reaches the server."""
    with _client(server) as client, pytest.raises(InputValidationError, match="classification"):
        client.embed(["x"], input_type="classification")
    assert server.requests == []
    with pytest.raises(ConfigurationError) as info:
        EmbeddingClient(_profile(server, document_input_type="search_document"), api_key=KEY)
    assert info.value.field == "document_input_type"


def test_langchain_adapter_sends_query_and_document_types(server: EmbeddingServer) -> None:
    """GuardedEmbeddings: embed_documents -> "document", embed_query -> "query" (sync, async)."""
    from embedguard.adapters.langchain import GuardedEmbeddings

    embeddings = GuardedEmbeddings(_profile(server), api_key=KEY)
    docs = embeddings.embed_documents(["first doc", "second doc"])
    query = embeddings.embed_query("a question")
    asyncio.run(embeddings.aembed_documents(["third doc"]))
    asyncio.run(embeddings.aembed_query("another question"))
    assert _input_types(server) == ["document", "query", "document", "query"]
    np.testing.assert_array_equal(
        np.array(docs, dtype=np.float32), _expected(["first doc", "second doc"])
    )
    np.testing.assert_array_equal(np.array(query, dtype=np.float32), _expected(["a question"])[0])


def test_llamaindex_adapter_sends_query_and_document_types(server: EmbeddingServer) -> None:
    """GuardedEmbedding: text and batch embeddings -> "document", query embeddings -> "query"."""
    from embedguard.adapters.llamaindex import GuardedEmbedding

    embed = GuardedEmbedding(_profile(server), api_key=KEY)
    embed.get_text_embedding_batch(["node one", "node two"])
    text = embed.get_text_embedding("node three")
    embed.get_query_embedding("a question")
    asyncio.run(embed.aget_text_embedding("node four"))
    asyncio.run(embed.aget_query_embedding("another question"))
    assert _input_types(server) == ["document", "document", "query", "document", "query"]
    np.testing.assert_array_equal(np.array(text, dtype=np.float32), _expected(["node three"])[0])


# -- compact dtypes ----------------------------------------------------------------------------
@pytest.mark.parametrize("encoding", ["base64", "float"])
@pytest.mark.parametrize("dtype", ["float32", "int8", "uint8", "binary", "ubinary"])
def test_each_dtype_returns_the_exact_values(
    server: EmbeddingServer, dtype: str, encoding: str
) -> None:
    """Every dtype, as base64 bytes or JSON numbers, comes back exact, in numpy's matching type."""
    with _client(server, dtype=dtype, encoding_format=encoding) as client:
        vectors = client.embed(TEXTS)
        query = client.embed_query("q")
    expected = _expected(TEXTS, dtype)
    numpy_type = {"float32": np.float32, "int8": np.int8, "binary": np.int8}.get(dtype, np.uint8)
    assert vectors.dtype == numpy_type and query.dtype == numpy_type
    assert vectors.shape == (4, D // 8 if dtype in ("binary", "ubinary") else D)
    np.testing.assert_array_equal(vectors, expected.astype(numpy_type))
    body = server.requests[0].body
    assert body["output_dtype"] == (None if dtype == "float32" else dtype)
    assert body["encoding_format"] == ("base64" if encoding == "base64" else None)


@pytest.mark.parametrize("encoding", ["base64", "float"])
def test_a_damaged_compact_vector_is_never_returned(server: EmbeddingServer, encoding: str) -> None:
    """A non-integer (JSON) or invalid base64 row in an int8 reply is a ResponseValidationError."""
    server.script(Fault("nan"))
    client = _client(server, dtype="int8", encoding_format=encoding, retry={"max_retries": 0})
    with client, pytest.raises(ResponseValidationError):
        client.embed(["one", "two"])


def test_dtype_and_dimensions_the_model_cannot_give_are_refused() -> None:
    """int8 on voyage-3 (float only), 300 dimensions, or 512 on voyage-3: ConfigurationError."""
    cases = [
        (profiles.voyage("voyage-3", dtype="int8"), "dtype"),
        (profiles.voyage(dimensions=300), "dimensions"),
        (profiles.voyage("voyage-3", dimensions=512), "dimensions"),
    ]
    for profile, field in cases:
        with pytest.raises(ConfigurationError) as info:
            EmbeddingClient(profile, api_key=KEY, environ={})
        assert info.value.field == field


# -- errors ------------------------------------------------------------------------------------
def test_unauthorized_is_an_authentication_error_not_retried() -> None:
    """A wrong key gets Voyage's 401 {"detail"}: AuthenticationError, one request, no key shown."""
    with EmbeddingServer(require_key="pa-the-right-one") as srv, _client(srv) as client:
        with pytest.raises(AuthenticationError) as info:
            client.embed(["x"])
        assert len(srv.requests) == 1 and srv.requests[0].status == 401
    assert info.value.message == "Provided API key is invalid."
    assert KEY not in str(info.value) and KEY not in repr(info.value)


def test_an_unsupported_model_is_model_not_found(server: EmbeddingServer) -> None:
    """Voyage's 400 "Model X is not supported" is a ModelNotFoundError, not retried."""
    profile = fast(profiles.voyage("voyage-9-preview", base_url=server.base_url("voyage")))
    client = EmbeddingClient(profile, api_key=KEY, environ={})
    with client, pytest.raises(ModelNotFoundError, match="voyage-9-preview is not") as info:
        client.embed(["x"])
    assert info.value.status_code == 400 and len(server.requests) == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, BadRequestError), (404, EndpointNotFoundError), (422, BadRequestError)],
)
def test_client_errors_are_typed_and_not_retried(
    server: EmbeddingServer, status: int, error: type[Exception]
) -> None:
    """400 and 422 are BadRequestError, a 404 (a wrong URL at Voyage) EndpointNotFoundError."""
    server.script(Fault.status(status))
    with _client(server) as client, pytest.raises(error) as info:
        client.embed(["x"])
    assert type(info.value) is error
    assert info.value.request_id is not None  # Voyage's x-request-id
    assert len(server.requests) == 1


def test_rate_limit_then_success_and_without_retries(server: EmbeddingServer) -> None:
    """A 429 with retry-after is retried; without retries it is a RateLimitError with the hint."""
    server.script(Fault.rate_limited(retry_after=0.01))
    with _client(server) as client:
        np.testing.assert_array_equal(client.embed(["x"]), _expected(["x"]))
    assert [r.status for r in server.requests] == [429, 200]
    server.reset()
    server.script(Fault.rate_limited(retry_after=0.02))
    with _client(server, retry={"max_retries": 0}) as client, pytest.raises(RateLimitError) as info:
        client.embed(["x"])
    assert info.value.retry_after == pytest.approx(0.02)


def test_server_errors_are_retried_then_typed(server: EmbeddingServer) -> None:
    """500/503 are retried to success; a lasting 502 ends in ServerError after max_retries."""
    server.script(Fault.status(500), Fault.status(503))
    with _client(server) as client:
        np.testing.assert_array_equal(client.embed(["x"]), _expected(["x"]))
    server.reset()
    server.set_down(True, status=502)
    client = _client(server, window=0, retry={"max_retries": 2})
    with client, pytest.raises(ServerError) as info:
        client.embed(["x"])
    assert len(server.requests) == 3 and info.value.status_code == 502


def test_an_over_long_input_is_a_context_length_error_naming_it() -> None:
    """truncation=false: Voyage's 400 naming the over-long input is a ContextLengthError(index);
    with extra_body truncation=true the server cuts it instead."""
    with EmbeddingServer(max_input_tokens=5) as srv:
        profile = _profile(srv, batching={"max_tokens_per_input": 100})
        client = EmbeddingClient(profile, api_key=KEY, environ={})
        with client, pytest.raises(ContextLengthError) as info:
            client.embed([" ".join(["word"] * 9)])
        assert srv.requests[0].body["truncation"] is False
        truncating = profile.evolve(extra_body={"truncation": True})
        with EmbeddingClient(truncating, api_key=KEY, environ={}) as client:
            assert client.embed([" ".join(["word"] * 9)]).shape == (1, D)
    assert info.value.index == 0 and info.value.status_code == 400


def test_a_batch_over_voyages_token_cap_is_split(server: EmbeddingServer) -> None:
    """Voyage's "max allowed tokens per submitted batch" 400 splits the batch; all vectors come."""
    refusal = (
        b'{"detail":"Request to model \'voyage-3.5\' failed. The max allowed tokens per submitted'
        b" batch is 320000. Your batch has 330112 tokens after truncation. Please lower the"
        b' number of tokens in the batch."}'
    )
    server.script(Fault.status(400, body=refusal))
    texts = [f"text {i}" for i in range(8)]
    with _client(server) as client:
        vectors = client.embed(texts)
    np.testing.assert_array_equal(vectors, _expected(texts))
    assert [len(r.inputs) for r in server.requests] == [8, 4, 4]


# -- rate limits, chaos, breaker ---------------------------------------------------------------
def test_the_free_tier_warning_is_learned_as_limits() -> None:
    """With no x-ratelimit-* headers, the x-api-warning's RPM/TPM become the limits in force."""
    with EmbeddingServer(rate_limit_rpm=600, rate_limit_tpm=100_000) as srv:
        with _client(srv) as client:
            assert client.rate_limit_status is None
            client.embed(["a b c"])
            status = client.rate_limit_status
            in_force = client._primary.limiter.limits_in_force
        assert not any(n.startswith("x-ratelimit") for r in srv.requests for n in r.headers)
    assert status is not None
    assert (status.limit_requests, status.limit_tokens) == (600, 100_000)
    assert in_force == {"requests": (600.0, "server"), "tokens": (100_000.0, "server")}


def test_the_assumed_limits_are_voyages_tier_one() -> None:
    """Until told otherwise the client paces at Voyage's tier 1: 2000 RPM, 3M TPM."""
    limit = profiles.assumed_rate_limit("voyage")
    assert limit is not None
    assert (limit.requests_per_minute, limit.tokens_per_minute) == (2000, 3_000_000)


@pytest.mark.parametrize("seed", [1, 2])
def test_chaos_loses_no_vector(seed: int) -> None:
    """20% faults (500, 503, 429, drops, cut bodies): every text gets its own vector, breaker
    closed."""
    unique = [f"passage {i}" for i in range(600)]
    texts = unique + unique[:200]
    faults = [Fault.status(500), Fault.status(503), Fault.rate_limited(0.01), Fault.drop(),
              Fault("truncate")]  # fmt: skip
    with EmbeddingServer() as srv:
        srv.chaos(0.2, faults, seed=seed)
        with _client(srv, batching={"max_inputs": 25}) as client:
            vectors = client.embed(texts)
            assert client.circuit_state is CircuitState.CLOSED
        faulted = sum(r.fault is not None for r in srv.requests)
    assert faulted >= 3
    np.testing.assert_array_equal(vectors, _expected(texts))


class _Clock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_opens_the_breaker_and_recovery_closes_it(server: EmbeddingServer) -> None:
    """Voyage down (503): the breaker opens, calls fail fast unsent; after the open timeout a
    probe succeeds and it closes."""
    clock = _Clock()
    policy = BreakerPolicy(failure_threshold=3, success_threshold=1, open_timeout=30.0)
    profile = _profile(server, retry={"max_retries": 0})
    breaker = CircuitBreaker(policy, name=profile.name, clock=clock)
    server.set_down(True, status=503)
    with EmbeddingClient(profile, api_key=KEY, environ={}, breaker=breaker) as client:
        for i in range(3):
            with pytest.raises(ServerError):
                client.embed([f"t{i}"])
        assert client.circuit_state is CircuitState.OPEN
        sent = len(server.requests)
        with pytest.raises(CircuitOpenError):
            client.embed(["fast fail"])
        assert len(server.requests) == sent
        server.set_down(False)
        clock.now += 31.0
        np.testing.assert_array_equal(client.embed(["back"]), _expected(["back"]))
        assert client.circuit_state is CircuitState.CLOSED
