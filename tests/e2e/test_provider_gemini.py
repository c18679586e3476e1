"""The Gemini provider through the client over real HTTP: the per-provider test matrix.

Sync and async, the wire (URL, ``x-goog-api-key``, ``batchEmbedContents`` body), task types
on the request body (client and both adapters), typed errors from Google RPC envelopes, the
429's RetryInfo hint, chaos with nothing lost, and the breaker opening on an outage.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from embedguard import (
    AuthenticationError,
    BadRequestError,
    CircuitOpenError,
    CircuitState,
    ConfigurationError,
    ContextLengthError,
    EmbeddingClient,
    InputValidationError,
    ModelNotFoundError,
    ProviderTimeoutError,
    RateLimitError,
    ResponseValidationError,
    ServerError,
    profiles,
)
from embedguard.events import RetryScheduled
from embedguard.testing import EmbeddingServer, Fault, RecordedRequest, deterministic_vectors

from .conftest import fast

D = 64
KEY = "AIzaSyPLANTED-gemini-e2e-key-0123456789"
TEXTS = ["alpha", "beta", "gamma", "alpha"]


@pytest.fixture
def server() -> Iterator[EmbeddingServer]:
    """A loopback server that wants the Gemini key."""
    with EmbeddingServer(dimensions=D, require_key=KEY) as srv:
        yield srv


def gemini(server: EmbeddingServer, model: str = "gemini-embedding-001", **changes: Any) -> Any:
    """A fast-retrying Gemini profile aimed at ``server``, asking for ``D`` dimensions."""
    changes.setdefault("dimensions", D)
    return fast(profiles.gemini(model, base_url=server.base_url("gemini")), **changes)


def client(server: EmbeddingServer, **changes: Any) -> EmbeddingClient:
    """A client of :func:`gemini`'s profile with the right key and no environment."""
    return EmbeddingClient(gemini(server, **changes), api_key=KEY, environ={})


def tasks(requests: list[RecordedRequest]) -> list[set[str]]:
    """The task types each request carried, one set per request."""
    return [{entry.get("taskType") for entry in r.body["requests"]} for r in requests]


# -- sync, async, wire -------------------------------------------------------------------------
def test_sync_returns_each_texts_vector_in_order(server: EmbeddingServer) -> None:
    """embed() returns each text's own vector, in order, one request, duplicates sent once."""
    with client(server) as c:
        vectors = c.embed(TEXTS)
        snap = c.metrics()
    np.testing.assert_array_equal(vectors, deterministic_vectors(TEXTS, D))
    assert [r.inputs for r in server.requests] == [("alpha", "beta", "gamma")]
    assert snap.successful_requests == 1 and snap.tokens_used > 0  # estimated: 001 reports none


async def test_async_returns_each_texts_vector_in_order(server: EmbeddingServer) -> None:
    """aembed() and aembed_query() speak the same wire format."""
    async with client(server) as c:
        vectors = await c.aembed(TEXTS)
        query = await c.aembed_query("delta")
    np.testing.assert_array_equal(vectors, deterministic_vectors(TEXTS, D))
    np.testing.assert_array_equal(query, deterministic_vectors(["delta"], D)[0])


def test_wire_details(server: EmbeddingServer) -> None:
    """The batch URL without a query, the key only in x-goog-api-key, the model in every entry."""
    with client(server, model="models/gemini-embedding-001") as c:
        c.embed(["x", "y"])
    (sent,) = server.requests
    assert sent.path == "/gemini/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert sent.query == {}  # never ?key=
    assert sent.headers["x-goog-api-key"] == KEY and "authorization" not in sent.headers
    assert sent.body == {
        "requests": [
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": t}]},
             "taskType": "RETRIEVAL_DOCUMENT", "outputDimensionality": D}
            for t in ("x", "y")
        ]
    }  # fmt: skip


def test_native_size_sends_no_output_dimensionality(server: EmbeddingServer) -> None:
    """At the model's native 3072 no outputDimensionality is sent, and 3072 come back."""
    with EmbeddingServer(dimensions=3072, require_key=KEY) as srv:
        with client(srv, dimensions=None) as c:
            assert c.embed(["x"]).shape == (1, 3072)
        assert "outputDimensionality" not in srv.requests[0].body["requests"][0]


def test_batches_hold_at_most_100_texts(server: EmbeddingServer) -> None:
    """250 texts go out as batches of at most 100 entries (the API's cap), results in order."""
    texts = [f"text {i}" for i in range(250)]
    with client(server) as c:
        assert c.profile.batching.max_inputs == 100
        vectors = c.embed(texts)
    sizes = [len(r.inputs) for r in server.requests]
    assert max(sizes) <= 100 and sum(sizes) == 250 and len(sizes) >= 3
    np.testing.assert_array_equal(vectors, deterministic_vectors(texts, D))


def test_usage_metadata_is_read_when_the_model_reports_it(server: EmbeddingServer) -> None:
    """gemini-embedding-2 reports usageMetadata.promptTokenCount: it becomes tokens_used."""
    texts = ["one two three", "four five"]
    with client(server, model="gemini-embedding-2") as c:
        c.embed(texts)
        tokens = c.metrics().tokens_used
    assert tokens == sum(server.count_tokens(t) for t in texts)


# -- input types on the request body -----------------------------------------------------------
async def test_query_and_document_task_types(server: EmbeddingServer) -> None:
    """embed/aembed send RETRIEVAL_DOCUMENT, embed_query/aembed_query RETRIEVAL_QUERY."""
    async with client(server, retry={"max_retries": 0}) as c:
        c.embed(["d1"])
        c.embed_query("q1")
        await c.aembed(["d2"])
        await c.aembed_query("q2")
    assert tasks(server.requests) == [{"RETRIEVAL_DOCUMENT"}, {"RETRIEVAL_QUERY"}] * 2


def test_per_call_and_profile_task_types(server: EmbeddingServer) -> None:
    """A per-call type (any case) is sent upper-case; profile types replace the defaults."""
    with client(server) as c:
        c.embed(["a"], input_type="classification")
        c.embed_query("b", input_type="CODE_RETRIEVAL_QUERY")
    with client(server, query_input_type="question_answering",
                document_input_type="FACT_VERIFICATION") as c:  # fmt: skip
        c.embed_query("c")
        c.embed(["d"])
    assert tasks(server.requests) == [
        {"CLASSIFICATION"}, {"CODE_RETRIEVAL_QUERY"}, {"QUESTION_ANSWERING"}, {"FACT_VERIFICATION"}
    ]  # fmt: skip


def test_queries_and_documents_are_cached_apart(server: EmbeddingServer) -> None:
    """With a cache, a text embedded as a document is sent again as a query, not reused."""
    profile = gemini(server)
    with EmbeddingClient(profile, api_key=KEY, environ={}, cache="memory") as c:
        c.embed(["x"])
        c.embed_query("x")
        c.embed(["x"])
        c.embed_query("x")
    assert tasks(server.requests) == [{"RETRIEVAL_DOCUMENT"}, {"RETRIEVAL_QUERY"}]


def test_unknown_task_types_are_refused_before_any_request(server: EmbeddingServer) -> None:
    """A per-call type Gemini lacks: InputValidationError; in a profile: ConfigurationError."""
    with client(server) as c, pytest.raises(InputValidationError, match="SEMANTIC_SIMILARITY"):
        c.embed(["a"], input_type="search_query")
    with pytest.raises(ConfigurationError) as info:
        client(server, query_input_type="search_query")
    assert info.value.field == "query_input_type"
    assert server.requests == []


def test_langchain_adapter_sends_query_and_document_types(server: EmbeddingServer) -> None:
    """GuardedEmbeddings: embed_documents -> RETRIEVAL_DOCUMENT, embed_query -> RETRIEVAL_QUERY."""
    from embedguard.adapters.langchain import GuardedEmbeddings

    adapter = GuardedEmbeddings(gemini(server), api_key=KEY)
    try:
        docs = adapter.embed_documents(["doc one", "doc two"])
        query = adapter.embed_query("the question")
    finally:
        adapter.close()
    assert tasks(server.requests) == [{"RETRIEVAL_DOCUMENT"}, {"RETRIEVAL_QUERY"}]
    np.testing.assert_allclose(docs, deterministic_vectors(["doc one", "doc two"], D))
    np.testing.assert_allclose(query, deterministic_vectors(["the question"], D)[0])


async def test_langchain_adapter_async_types(server: EmbeddingServer) -> None:
    """The async LangChain methods send the same task types."""
    from embedguard.adapters.langchain import GuardedEmbeddings

    adapter = GuardedEmbeddings(gemini(server), api_key=KEY)
    try:
        await adapter.aembed_documents(["doc"])
        await adapter.aembed_query("question")
    finally:
        adapter.close()
    assert tasks(server.requests) == [{"RETRIEVAL_DOCUMENT"}, {"RETRIEVAL_QUERY"}]


def test_llamaindex_adapter_sends_query_and_document_types(server: EmbeddingServer) -> None:
    """GuardedEmbedding: text batches -> RETRIEVAL_DOCUMENT, queries -> RETRIEVAL_QUERY."""
    from embedguard.adapters.llamaindex import GuardedEmbedding

    adapter = GuardedEmbedding(gemini(server), api_key=KEY)
    try:
        adapter.get_text_embedding_batch(["node one", "node two"])
        adapter.get_query_embedding("the question")
    finally:
        adapter.close()
    assert tasks(server.requests) == [{"RETRIEVAL_DOCUMENT"}, {"RETRIEVAL_QUERY"}]


def test_llamaindex_single_text_is_a_document(server: EmbeddingServer) -> None:
    """get_text_embedding (one node) sends RETRIEVAL_DOCUMENT, like a batch of nodes."""
    from embedguard.adapters.llamaindex import GuardedEmbedding

    adapter = GuardedEmbedding(gemini(server), api_key=KEY)
    try:
        adapter.get_text_embedding("node")
    finally:
        adapter.close()
    assert tasks(server.requests) == [{"RETRIEVAL_DOCUMENT"}]


# -- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fault", "error", "code"),
    [
        (Fault.status(400), BadRequestError, "INVALID_ARGUMENT"),
        (Fault.status(401), AuthenticationError, "CREDENTIALS_MISSING"),
        (Fault.status(403), AuthenticationError, "PERMISSION_DENIED"),
        (Fault.status(404), ModelNotFoundError, "NOT_FOUND"),
        (Fault.context_length(), ContextLengthError, "INVALID_ARGUMENT"),
    ],
    ids=["400", "401", "403", "404", "context"],
)
def test_client_errors_are_typed_and_not_retried(
    server: EmbeddingServer, fault: Fault, error: type[Exception], code: str
) -> None:
    """Each 4xx envelope becomes its typed error, sent once, with the RPC status as code."""
    server.script(fault)
    with client(server) as c, pytest.raises(error) as info:
        c.embed(["x"])
    assert type(info.value) is error
    assert (info.value.code, info.value.status_code) == (code, fault.status_code or 400)  # type: ignore[attr-defined]
    assert len(server.requests) == 1 and KEY not in str(info.value)


def test_a_wrong_key_is_a_400_authentication_error(server: EmbeddingServer) -> None:
    """A wrong key: 400 INVALID_ARGUMENT with ErrorInfo API_KEY_INVALID -> AuthenticationError."""
    profile = gemini(server)
    with (
        EmbeddingClient(profile, api_key="AIzaWRONG-key-000", environ={}) as c,
        pytest.raises(AuthenticationError) as info,
    ):
        c.embed(["x"])
    assert (info.value.status_code, info.value.code) == (400, "API_KEY_INVALID")
    assert "AIzaWRONG-key-000" not in str(info.value) and len(server.requests) == 1


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.status(500), ServerError),
        (Fault.status(503), ServerError),
        (Fault.status(504), ProviderTimeoutError),
        (Fault.error_body_200(), ServerError),
    ],
    ids=["500", "503", "504", "error-in-200"],
)
def test_server_errors_are_retried(
    server: EmbeddingServer, fault: Fault, error: type[Exception]
) -> None:
    """500/503 (ServerError), 504 DEADLINE_EXCEEDED (timeout) and an error in a 200 are retried."""
    server.script(fault)
    with client(server) as c:
        vectors = c.embed(["x"])
        assert c.metrics().errors_by_kind == {error.kind: 1}  # type: ignore[attr-defined]
    np.testing.assert_array_equal(vectors, deterministic_vectors(["x"], D))
    assert [r.status for r in server.requests][-1] == 200 and len(server.requests) == 2


def test_429_retry_hint_comes_from_retry_info(server: EmbeddingServer) -> None:
    """A 429 has no Retry-After: its RetryInfo.retryDelay is the error's retry_after."""
    server.script(Fault.rate_limited(retry_after=1.25))
    with client(server, retry={"max_retries": 0}) as c, pytest.raises(RateLimitError) as info:
        c.embed(["x"])
    assert info.value.retry_after == 1.25 and info.value.code == "RESOURCE_EXHAUSTED"


def test_the_bodys_retry_delay_is_the_wait(server: EmbeddingServer) -> None:
    """The retry after a 429 waits exactly RetryInfo's delay (not the 30 s backoff); a delay
    over max_retry_after fails at once with the RateLimitError."""
    scheduled: list[float] = []

    def hook(event: Any) -> None:
        if isinstance(event, RetryScheduled):
            scheduled.append(event.delay)

    profile = gemini(server, retry={"initial_delay": 30.0, "max_delay": 30.0})
    with EmbeddingClient(profile, api_key=KEY, environ={}, hooks=[hook]) as c:
        server.script(Fault.rate_limited(retry_after=0.05))
        np.testing.assert_array_equal(c.embed(["x"]), deterministic_vectors(["x"], D))
        server.script(Fault.rate_limited(retry_after=3600))
        with pytest.raises(RateLimitError) as info:
            c.embed(["y"])
    assert scheduled == [0.05]
    assert info.value.retry_after == 3600 and len(server.requests) == 3


def test_a_server_rate_limit_is_followed_to_completion() -> None:
    """Over the server's RPM (429s with RetryInfo, no rate-limit headers) every text arrives."""
    texts = [f"text {i}" for i in range(126)]
    with EmbeddingServer(dimensions=D, require_key=KEY, rate_limit_rpm=120) as srv:
        with client(srv, batching={"max_inputs": 1}, retry={"max_retries": 10}) as c:
            vectors = c.embed(texts)
            assert c.rate_limit_status is None  # Gemini states no limits in headers
        limited = [r for r in srv.requests if r.status == 429]
        assert sum(r.status == 200 for r in srv.requests) == 126
    np.testing.assert_array_equal(vectors, deterministic_vectors(texts, D))
    assert limited and all(r.fault is None for r in limited)


# -- chaos and outage --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fault",
    [Fault.malformed(), Fault.wrong_count(), Fault.nan(), Fault.wrong_dimensions(),
     Fault.bad_index()],
    ids=str,
)  # fmt: skip
def test_a_bad_200_is_never_returned_as_vectors(server: EmbeddingServer, fault: Fault) -> None:
    """An HTML page, a missing or extra vector (no index to catch it otherwise), NaN or the
    wrong size: ResponseValidationError, not retried, no vectors handed back."""
    server.script(fault)
    with client(server) as c, pytest.raises(ResponseValidationError) as info:
        c.embed(["one", "two", "three"])
    assert info.value.partial is None and info.value.failed_indices == (0, 1, 2)
    assert len(server.requests) == 1


@pytest.mark.parametrize("seed", [1, 2])
def test_chaos_loses_no_vector(server: EmbeddingServer, seed: int) -> None:
    """25% retryable faults (500, 503, 504, 429 with RetryInfo, drops, cut bodies, an error in a
    200) under the default breaker: every text still gets its own vector, breaker closed."""
    faults = [
        Fault.status(500), Fault.status(503), Fault.status(504), Fault.rate_limited(0.01),
        Fault.drop(), Fault.truncate(), Fault.error_body_200(),
    ]  # fmt: skip
    unique = [f"passage {i}" for i in range(600)]
    texts = unique + unique[:200]
    server.chaos(0.25, faults, seed=seed)
    with client(server, batching={"max_inputs": 25}, retry={"max_retries": 8}) as c:
        vectors = c.embed(texts)
        assert c.circuit_state is CircuitState.CLOSED
    assert sum(r.fault is not None for r in server.requests) >= 5
    np.testing.assert_array_equal(vectors, deterministic_vectors(texts, D))


def test_an_outage_opens_the_breaker(server: EmbeddingServer) -> None:
    """503 UNAVAILABLE on every call: after the threshold the breaker opens and sends nothing."""
    server.set_down(True, status=503)
    breaker = {"failure_threshold": 3, "open_timeout": 60.0}
    with client(server, retry={"max_retries": 0}, breaker=breaker) as c:
        for i in range(3):
            with pytest.raises(ServerError):
                c.embed([f"down {i}"])
        assert c.circuit_state is CircuitState.OPEN
        with pytest.raises(CircuitOpenError):
            c.embed(["still down"])
    assert len(server.requests) == 3
