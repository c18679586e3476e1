"""Cohere through the client over real HTTP, against the loopback server's /cohere/v2/embed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from embedguard import (
    AuthenticationError,
    BadRequestError,
    CircuitOpenError,
    CircuitState,
    ContextLengthError,
    EmbeddingClient,
    ModelNotFoundError,
    QuotaExhaustedError,
    RateLimitError,
    ResponseValidationError,
    ServerError,
    profiles,
)
from embedguard.adapters.langchain import GuardedEmbeddings
from embedguard.adapters.llamaindex import GuardedEmbedding
from embedguard.testing import EmbeddingServer, Fault, deterministic_vectors
from embedguard.testing._wire_cohere import compact_rows

from .conftest import KEY, fast

D = 256  # an embed-v4 size: the codec sends output_dimension=256
TEXTS = ["alpha", "beta", "gamma", "alpha"]


@pytest.fixture
def server() -> Iterator[EmbeddingServer]:
    """A loopback server whose default size is not D, so output_dimension must be honoured."""
    with EmbeddingServer(dimensions=64) as srv:
        yield srv


def client(server: EmbeddingServer, **changes: Any) -> EmbeddingClient:
    """An embed-v4.0 client at D dimensions pointed at the server, with fast retries."""
    profile = fast(profiles.cohere(base_url=server.base_url("cohere"), dimensions=D), **changes)
    return EmbeddingClient(profile, api_key=KEY, environ={}, coalesce_window=0)


def expected(texts: list[str], dtype: str = "float32") -> np.ndarray:
    """What the server sends for ``texts`` as ``dtype``."""
    return compact_rows(deterministic_vectors(texts, D), {"float32": "float"}.get(dtype, dtype))


def input_types(server: EmbeddingServer) -> list[str]:
    """The input_type of every request the server received, in order."""
    return [r.body["input_type"] for r in server.requests]


# -- sync, async, wire -------------------------------------------------------------------------
def test_sync_vectors_in_order_with_usage(server: EmbeddingServer) -> None:
    """Each text gets its own vector, in order, from one deduplicated request; tokens counted."""
    with client(server) as c:
        vectors = c.embed(TEXTS)
        snap = c.metrics()
    np.testing.assert_array_equal(vectors, expected(TEXTS))
    assert len(server.requests) == 1 and server.requests[0].inputs == ("alpha", "beta", "gamma")
    assert (snap.successful_requests, snap.tokens_used, c.dimensions) == (1, 3, D)


async def test_async_vectors_in_order(server: EmbeddingServer) -> None:
    """The async path speaks the same wire format."""
    async with client(server) as c:
        vectors = await c.aembed(TEXTS)
        query = await c.aembed_query("delta")
    np.testing.assert_array_equal(vectors, expected(TEXTS))
    np.testing.assert_array_equal(query, expected(["delta"])[0])


def test_wire_details(server: EmbeddingServer) -> None:
    """POST /cohere/v2/embed with a bearer key and Cohere's body; 96 texts per request."""
    texts = [f"text {i}" for i in range(200)]
    with client(server, pool_size=1) as c:  # one at a time: as few requests as the cap allows
        c.embed(texts)
    first = server.requests[0]
    assert (first.method, first.path) == ("POST", "/cohere/v2/embed")
    assert first.headers["authorization"] == f"Bearer {KEY}"
    assert {k: v for k, v in first.body.items() if k != "texts"} == {
        "model": "embed-v4.0", "input_type": "search_document", "embedding_types": ["float"],
        "truncate": "NONE", "output_dimension": D,
    }  # fmt: skip
    assert sorted(len(r.inputs) for r in server.requests) == [66, 67, 67]  # 3 = ceil(200 / 96)


@pytest.mark.parametrize("dtype", ["int8", "uint8", "binary", "ubinary"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_compact_types_over_http(server: EmbeddingServer, dtype: str, mode: str) -> None:
    """int8/uint8 vectors and packed binary/ubinary rows (D/8 bytes) come back exactly."""
    with client(server, dtype=dtype) as c:
        vectors = c.embed(TEXTS) if mode == "sync" else asyncio.run(c.aembed(TEXTS))
        assert c.dimensions == D
    np.testing.assert_array_equal(vectors, expected(TEXTS, dtype))
    assert vectors.dtype == (np.uint8 if dtype.startswith("u") else np.int8)
    assert vectors.shape == (4, D // 8 if "binary" in dtype else D)
    assert server.requests[0].body["embedding_types"] == [dtype]


# -- input types end to end --------------------------------------------------------------------
def test_query_and_document_types_on_the_request_body(server: EmbeddingServer) -> None:
    """embed sends search_document, embed_query search_query, input_type= its own type; the
    profile's types replace the defaults."""
    with client(server) as c:
        c.embed(["doc"])
        c.embed_query("query")
        c.embed(["clustered"], input_type="clustering")
        asyncio.run(c.aembed_query("async query"))
    with client(server, query_input_type="classification") as c:
        c.embed_query("classified")
    assert input_types(server) == [
        "search_document", "search_query", "clustering", "search_query", "classification",
    ]  # fmt: skip


def test_an_input_type_cohere_does_not_take_is_refused_before_sending(
    server: EmbeddingServer,
) -> None:
    """A per-call type outside Cohere's list is a typed InputValidationError, nothing sent."""
    from embedguard import InputValidationError

    with client(server) as c, pytest.raises(InputValidationError, match="search_query"):
        c.embed(["x"], input_type="search")
    assert server.requests == []


def test_types_through_the_langchain_adapter(server: EmbeddingServer) -> None:
    """GuardedEmbeddings: embed_documents -> search_document, embed_query -> search_query,
    sync and async, with the server's vectors."""
    lc = GuardedEmbeddings(client(server))
    docs = lc.embed_documents(["d1", "d2"])
    query = lc.embed_query("q1")
    adocs = asyncio.run(lc.aembed_documents(["d3"]))
    aquery = asyncio.run(lc.aembed_query("q2"))
    assert input_types(server) == ["search_document", "search_query"] * 2
    np.testing.assert_allclose(docs, expected(["d1", "d2"]), atol=1e-7)
    np.testing.assert_allclose([query, *adocs, aquery], expected(["q1", "d3", "q2"]), atol=1e-7)


def test_types_through_the_llamaindex_adapter(server: EmbeddingServer) -> None:
    """GuardedEmbedding: text and batch embeddings are documents, query embeddings queries,
    sync and async."""
    li = GuardedEmbedding(client(server))
    text = li.get_text_embedding("t1")
    batch = li.get_text_embedding_batch(["t2", "t3"])
    query = li.get_query_embedding("q1")
    atext = asyncio.run(li.aget_text_embedding("t4"))
    aquery = asyncio.run(li.aget_query_embedding("q2"))
    assert input_types(server) == ["search_document"] * 2 + ["search_query"] + [
        "search_document", "search_query",
    ]  # fmt: skip
    got = [text, *batch, query, atext, aquery]
    np.testing.assert_allclose(got, expected(["t1", "t2", "t3", "q1", "t4", "q2"]), atol=1e-7)


# -- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fault", "error", "retryable"),
    [
        (Fault.status(400), BadRequestError, False),
        (Fault.context_length(), ContextLengthError, False),
        (Fault.status(401), AuthenticationError, False),
        (Fault.status(404), ModelNotFoundError, False),
        (Fault.rate_limited(retry_after=0.01), RateLimitError, True),
        (Fault.quota(), QuotaExhaustedError, False),
        (Fault.status(500), ServerError, True),
        (Fault.status(503), ServerError, True),
    ],
    ids=["400", "400-too-many-tokens", "401", "404", "429", "429-monthly", "500", "503"],
)
def test_error_statuses_are_typed(
    server: EmbeddingServer, fault: Fault, error: type, retryable: bool
) -> None:
    """Cohere's {"id", "message"} error bodies become the typed errors, with the body's id."""
    server.script(fault)
    with client(server, retry={"max_retries": 0}) as c, pytest.raises(error) as info:
        c.embed(["one text"])
    assert info.value.status_code == fault.status_code
    assert info.value.retryable is retryable
    assert info.value.request_id and len(server.requests) == 1


def test_retryable_errors_are_retried(server: EmbeddingServer) -> None:
    """429, 500 and 503 are retried, and the text still gets its vector."""
    server.script(Fault.rate_limited(retry_after=0.01), Fault.status(500), Fault.status(503))
    with client(server) as c:
        vector = c.embed_query("persistent")
    np.testing.assert_array_equal(vector, expected(["persistent"])[0])
    assert [r.status for r in server.requests] == [429, 500, 503, 200]


def test_wrong_key_is_an_authentication_error() -> None:
    """A server expecting another key answers Cohere's 401: AuthenticationError, not retried."""
    with EmbeddingServer(dimensions=64, require_key="the-right-key") as srv:
        with client(srv) as c, pytest.raises(AuthenticationError) as info:
            c.embed(["a"])
        assert "Incorrect API key" in str(info.value) and KEY not in str(info.value)
        assert len(srv.requests) == 1


def test_over_long_input_is_refused_not_truncated() -> None:
    """truncate NONE: an input over the server's limit is a ContextLengthError, never a vector
    of a silently cut text; the batch is split first to find it."""
    with EmbeddingServer(dimensions=64, max_input_tokens=20) as srv:
        with client(srv, retry={"max_retries": 0}) as c, pytest.raises(ContextLengthError):
            c.embed(["short", " ".join(["word"] * 30)])
        assert [r.status for r in srv.requests] == [400, 200, 400]
        assert srv.requests[0].body["truncate"] == "NONE"


@pytest.mark.parametrize(
    "fault",
    [Fault.wrong_count(), Fault.bad_index(), Fault.nan(), Fault.wrong_dimensions(),
     Fault.malformed()],
    ids=lambda f: f.name,
)  # fmt: skip
@pytest.mark.parametrize("dtype", ["float32", "int8", "binary"])
def test_broken_bodies_are_never_returned(server: EmbeddingServer, fault: Fault, dtype: str):
    """Missing or extra vectors, NaN (out-of-range integers for compact types), short rows and
    HTML are ResponseValidationErrors, not vectors."""
    server.script(fault)
    with (
        client(server, dtype=dtype, retry={"max_retries": 0}) as c,
        pytest.raises(ResponseValidationError),
    ):
        c.embed(["one", "two"])


# -- rate limits -------------------------------------------------------------------------------
def test_trial_headers_are_learned_from_replies() -> None:
    """A trial-key server's x-trial-endpoint-call-limit/-remaining become the client's stated
    request limit, replacing the assumed 2,000 per minute."""
    with EmbeddingServer(dimensions=64, rate_limit_rpm=100) as srv:
        with client(srv) as c:
            assert c.rate_limits["requests"] == (2000.0, "assumed")
            c.embed(["a b c"])
            status, limits = c.rate_limit_status, c.rate_limits
        headers = dict(srv.requests[0].headers)
    assert status is not None and status.limit_requests == 100
    assert status.remaining_requests is not None and status.remaining_requests < 100
    assert limits["requests"] == (100.0, "server")
    assert "authorization" in headers


def test_a_429s_trial_headers_are_learned_too(server: EmbeddingServer) -> None:
    """The headers of a trial 429 set the request limit, and the error is a RateLimitError."""
    limited = {"x-trial-endpoint-call-limit": "40", "x-trial-endpoint-call-remaining": "0"}
    body = {"id": "r1", "message": "You are using a Trial key, which is limited to 40 API calls"
            " / minute."}  # fmt: skip
    server.script(Fault.status(429, body=body, headers=limited))
    with client(server, retry={"max_retries": 0}) as c:
        with pytest.raises(RateLimitError) as info:
            c.embed(["x"])
        assert c.rate_limits["requests"] == (40.0, "server")
    assert info.value.request_id == "r1"


# -- chaos and the breaker ---------------------------------------------------------------------
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_chaos_loses_no_vector(mode: str, seed: int) -> None:
    """20% retryable faults (500, 503, 429, drops, truncated bodies, an error body in a 200):
    every text still gets its own vector and the breaker stays closed."""
    unique = [f"passage {i}" for i in range(1000)]
    texts = unique + unique[:300]
    faults = [Fault.status(500), Fault.status(503), Fault.rate_limited(0.01), Fault.drop(),
              Fault.truncate(), Fault.error_body_200()]  # fmt: skip
    with EmbeddingServer(dimensions=64) as srv:
        srv.chaos(0.2, faults, seed=seed)
        with client(srv, batching={"max_inputs": 40}) as c:
            vectors = c.embed(texts) if mode == "sync" else asyncio.run(c.aembed(texts))
            assert c.circuit_state is CircuitState.CLOSED
        faulted = sum(r.fault is not None for r in srv.requests)
    assert faulted >= 3
    np.testing.assert_array_equal(vectors, expected(texts))


def test_breaker_opens_on_an_outage_and_fails_fast(server: EmbeddingServer) -> None:
    """A Cohere outage (503s) opens the breaker; then calls fail fast without a request."""
    server.set_down(True, status=503)
    breaker = {"window_size": 4, "minimum_calls": 4, "failure_rate_threshold": 0.75}
    with client(server, retry={"max_retries": 0}, breaker=breaker) as c:
        for _ in range(4):
            with pytest.raises(ServerError):
                c.embed(["x"])
        assert c.circuit_state is CircuitState.OPEN
        sent = len(server.requests)
        with pytest.raises(CircuitOpenError):
            c.embed(["x"])
        assert len(server.requests) == sent
        server.set_down(False)
        c.reset_circuit_breaker()
        np.testing.assert_array_equal(c.embed(["x"]), expected(["x"]))
