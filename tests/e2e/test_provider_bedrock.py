"""Amazon Bedrock through the client, over real HTTP, against the loopback server's Bedrock route.

Every request is signed with SigV4 from fake credentials and the server verifies the signature
with botocore (its ``require_key`` is the secret access key), so each test also proves that the
exact bytes and path sent were the ones signed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import numpy as np
import pytest

from embedguard import (
    AuthenticationError,
    BadRequestError,
    CircuitOpenError,
    CircuitState,
    ContextLengthError,
    InputValidationError,
    ModelNotFoundError,
    QuotaExhaustedError,
    RateLimitError,
    ResponseValidationError,
    ServerError,
)
from embedguard.testing import EmbeddingServer, Fault, deterministic_vectors

from ._bedrock import SECRET, client

TEXTS = ["alpha", "beta", "gamma", "alpha"]
# model id -> the vector size the profile defaults to
MODELS = {
    "amazon.titan-embed-text-v2:0": 1024,
    "amazon.titan-embed-text-v1": 1536,
    "cohere.embed-english-v3": 1024,
    "us.cohere.embed-v4:0": 1536,
}


@pytest.fixture
def server() -> Iterator[EmbeddingServer]:
    """A loopback server that verifies SigV4 signatures made with SECRET."""
    with EmbeddingServer(require_key=SECRET) as srv:
        yield srv


# -- the happy path, per model family ----------------------------------------------------------
@pytest.mark.parametrize("model", list(MODELS))
def test_each_family_sync(server: EmbeddingServer, model: str) -> None:
    """Titan v1/v2 and Cohere v3/v4 return each text's own vector, in order, tokens counted."""
    with client(server, model) as c:
        vectors = c.embed(TEXTS)
        snap = c.metrics()
    d = MODELS[model]
    np.testing.assert_array_equal(vectors, deterministic_vectors(TEXTS, d))
    titan = model.startswith("amazon")
    assert len(server.requests) == (3 if titan else 1)  # Titan: one text per request
    assert sorted(t for r in server.requests for t in r.inputs) == ["alpha", "beta", "gamma"]
    assert snap.successful_requests == len(server.requests) and snap.tokens_used == 3


@pytest.mark.parametrize("model", list(MODELS))
async def test_each_family_async(server: EmbeddingServer, model: str) -> None:
    """The async path speaks both Bedrock body families too."""
    async with client(server, model) as c:
        vectors = await c.aembed(TEXTS)
    np.testing.assert_array_equal(vectors, deterministic_vectors(TEXTS, MODELS[model]))


# -- input types ---------------------------------------------------------------------------------
def _input_types(server: EmbeddingServer) -> list[str | None]:
    return [r.body.get("input_type") for r in server.requests]


def test_cohere_sends_query_and_document_types(server: EmbeddingServer) -> None:
    """embed_query sends search_query, embed search_document, a per-call type is sent as is."""
    with client(server, "cohere.embed-english-v3") as c:
        c.embed_query("what is a question")
        c.embed(["a document"])
        c.embed(["a label me text"], input_type="classification")
    assert _input_types(server) == ["search_query", "search_document", "classification"]


def test_profile_input_types_override_the_provider_ones(server: EmbeddingServer) -> None:
    """query_input_type / document_input_type replace Cohere's search_* types."""
    model = "cohere.embed-english-v3"
    with client(server, model, query_input_type="clustering",
                document_input_type="classification") as c:  # fmt: skip
        c.embed_query("q")
        c.embed(["d"])
    assert _input_types(server) == ["clustering", "classification"]


def test_input_types_through_the_langchain_adapter(server: EmbeddingServer) -> None:
    """GuardedEmbeddings' embed_query and embed_documents send Cohere's two types."""
    from embedguard.adapters.langchain import GuardedEmbeddings

    embeddings = GuardedEmbeddings(client(server, "cohere.embed-english-v3"))
    query = embeddings.embed_query("q")
    embeddings.embed_documents(["d1", "d2"])
    assert _input_types(server) == ["search_query", "search_document"]
    np.testing.assert_allclose(query, deterministic_vectors(["q"], 1024)[0], rtol=1e-6)


async def test_input_types_through_the_llamaindex_adapter(server: EmbeddingServer) -> None:
    """GuardedEmbedding's query and text embeddings (sync and async) send the right types."""
    from embedguard.adapters.llamaindex import GuardedEmbedding

    embedding = GuardedEmbedding(client(server, "cohere.embed-v4:0"))
    embedding.get_query_embedding("q")
    embedding.get_text_embedding("d")
    await embedding.aget_query_embedding("q2")
    await embedding.aget_text_embedding("d2")
    assert _input_types(server) == ["search_query", "search_document"] * 2


def test_titan_takes_no_input_type(server: EmbeddingServer) -> None:
    """Titan bodies never carry a type; a per-call type is refused before any request."""
    with client(server) as c:
        c.embed_query("q")
        c.embed(["d"])
        assert all("input_type" not in r.body for r in server.requests)
        with pytest.raises(InputValidationError, match="takes no input type"):
            c.embed(["x"], input_type="classification")
    assert len(server.requests) == 2


# -- errors --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fault", "error", "name"),
    [
        (Fault.status(400), BadRequestError, "ValidationException"),
        (Fault.status(401), AuthenticationError, "UnrecognizedClientException"),
        (Fault.status(403), AuthenticationError, "AccessDeniedException"),
        (Fault.status(404), ModelNotFoundError, "ResourceNotFoundException"),
        (Fault.quota(), QuotaExhaustedError, "ServiceQuotaExceededException"),
        (Fault.context_length(), ContextLengthError, "ValidationException"),
        (Fault.status(424), type(None), "ModelErrorException"),
    ],
    ids=["400", "401", "403", "404", "quota", "context", "424"],
)
def test_errors_that_are_not_retried(
    server: EmbeddingServer, fault: Fault, error: type, name: str
) -> None:
    """Bedrock's non-retryable errors become their typed error, with code and request id."""
    server.script(fault)
    with client(server, "cohere.embed-english-v3") as c, pytest.raises(Exception) as info:
        c.embed(["x"])
    raised = info.value
    if error is not type(None):
        assert isinstance(raised, error)
    assert type(raised).__name__ != "ServerError" and not raised.retryable
    assert raised.code == name
    assert raised.request_id and len(raised.request_id) == 36
    assert len(server.requests) == 1 and SECRET not in str(raised)


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.status(429), RateLimitError),
        (Fault.status(429, body={"message": "Model is not ready for inference."},
                      headers={"x-amzn-ErrorType": "ModelNotReadyException:x"}), ServerError),
        (Fault.status(408), type(None)),
        (Fault.status(500), ServerError),
        (Fault.status(503), ServerError),
    ],
    ids=["throttling", "model-not-ready", "408", "500", "503"],
)  # fmt: skip
def test_errors_that_are_retried(server: EmbeddingServer, fault: Fault, error: type) -> None:
    """Throttling, a model not ready, timeouts and 5xx are retried; without retries, typed."""
    server.script(fault)
    with client(server) as c:
        np.testing.assert_array_equal(c.embed(["x"]), deterministic_vectors(["x"], 1024))
    assert [r.status for r in server.requests] == [fault.status_code, 200]
    server.reset()
    server.script(fault)
    with client(server, retry={"max_retries": 0}) as c, pytest.raises(Exception) as info:
        c.embed(["x"])
    assert info.value.retryable
    if error is not type(None):
        assert type(info.value) is error


@pytest.mark.parametrize(
    "fault",
    [Fault.nan(), Fault.wrong_count(), Fault.wrong_dimensions(), Fault.bad_index(),
     Fault.malformed(), Fault.error_body_200()],
    ids=lambda fault: fault.name,
)  # fmt: skip
@pytest.mark.parametrize("model", ["amazon.titan-embed-text-v2:0", "cohere.embed-english-v3"])
def test_a_damaged_200_is_never_returned_as_vectors(
    server: EmbeddingServer, model: str, fault: Fault
) -> None:
    """NaN, a missing or extra vector, a short vector, an HTML page or an error document with
    status 200: a ResponseValidationError, nothing returned, not retried."""
    server.script(fault)
    with client(server, model) as c, pytest.raises(ResponseValidationError) as info:
        c.embed(["alpha", "beta"] if "cohere" in model else ["alpha"])
    assert not info.value.retryable and info.value.partial is None
    assert len(server.requests) == 1


def test_a_truncated_200_is_retried_once(server: EmbeddingServer) -> None:
    """A body cut short (valid framing, half the JSON) is retried and then succeeds."""
    server.script(Fault.truncate())
    with client(server, "cohere.embed-english-v3") as c:
        vectors = c.embed(TEXTS)
    np.testing.assert_array_equal(vectors, deterministic_vectors(TEXTS, 1024))
    assert [r.fault for r in server.requests] == ["truncate", None]


def test_an_unknown_model_id_is_model_not_found(server: EmbeddingServer) -> None:
    """Bedrock's 400 "The provided model identifier is invalid." is ModelNotFoundError."""
    with client(server, "amazon.titan-embed-text-v2:9") as c, pytest.raises(ModelNotFoundError):
        c.embed(["x"])


def test_a_text_over_the_token_limit_is_context_length(server: EmbeddingServer) -> None:
    """A Cohere v3 text over 512 tokens is refused by the server as Bedrock does (the client's
    own limit switched off), and that 400 is a ContextLengthError."""
    long_text = " ".join(["word"] * 600)
    batching = {"max_tokens_per_input": 100_000, "max_tokens_per_request": 100_000}
    with (
        client(server, "cohere.embed-english-v3", batching=batching) as c,
        pytest.raises(ContextLengthError, match="Too many input tokens"),
    ):
        c.embed([long_text])


# -- limits, rate limits, chaos, breaker ---------------------------------------------------------
def test_titan_sends_one_request_per_text_concurrently_in_order() -> None:
    """200 texts are 200 single-text requests, at most pool_size (16) at once, vectors in
    order; with 10 ms per request the call cannot take less than 200 x 10 ms / 16."""
    texts = [f"passage number {i}" for i in range(200)]
    with EmbeddingServer(require_key=SECRET, latency=0.01) as srv, client(srv) as c:
        started = time.perf_counter()
        vectors = c.embed(texts)
        elapsed = time.perf_counter() - started
        assert c.profile.pool_size == 16
        assert len(srv.requests) == 200 and all(len(r.inputs) == 1 for r in srv.requests)
        assert 1 < srv.max_in_flight <= 16
    np.testing.assert_array_equal(vectors, deterministic_vectors(texts, 1024))
    assert elapsed >= 200 * 0.01 / 16


def test_titan_wall_time_follows_the_pool_size() -> None:
    """64 single-text requests of 50 ms: a pool of 4 needs at least 0.8 s, a pool of 16 (the
    profile's) clearly less; the pool, not the batch size, sets Titan's throughput."""
    texts = [f"passage number {i}" for i in range(64)]
    times = {}
    with EmbeddingServer(require_key=SECRET, latency=0.05) as srv:
        for pool in (4, 16):
            with client(srv, pool_size=pool) as c:
                started = time.perf_counter()
                c.embed(texts)
                times[pool] = time.perf_counter() - started
    assert times[4] >= 64 * 0.05 / 4
    assert times[16] < 0.75 * times[4]  # ideal 0.25x; loose for a loaded CI machine


def test_the_server_limiter_throttles_without_stating_a_limit() -> None:
    """Over the server's limit, Bedrock's route answers ThrottlingException 429 with no wait and
    no x-ratelimit headers: the client learns no limit and gets no retry_after."""
    with (
        EmbeddingServer(require_key=SECRET, rate_limit_rpm=1) as srv,
        client(srv, retry={"max_retries": 0}) as c,
    ):
        with pytest.raises(RateLimitError) as info:
            c.embed(["a", "b"])
        assert c.rate_limit_status is None
    assert info.value.code == "ThrottlingException" and info.value.retry_after is None
    assert sorted(r.status for r in srv.requests) == [200, 429]


def test_rate_limited_429_carries_no_wait(server: EmbeddingServer) -> None:
    """The loopback ThrottlingException, like Bedrock's, has no Retry-After: retry_after None."""
    server.script(Fault.rate_limited(retry_after=0.5))
    with client(server, retry={"max_retries": 0}) as c, pytest.raises(RateLimitError) as info:
        c.embed(["x"])
    assert info.value.retry_after is None and info.value.code == "ThrottlingException"


@pytest.mark.parametrize("seed", [1, 3])  # typical draws (seed 7 faults 7 of the first 10)
@pytest.mark.parametrize("model", ["amazon.titan-embed-text-v2:0", "cohere.embed-english-v3"])
def test_a_flaky_bedrock_loses_no_vector(model: str, seed: int) -> None:
    """20% faults (500, 503, 408, ModelNotReady 429s, dropped connections): every text gets its
    own vector, the breaker stays closed. (Throttling is left out here: with no wait stated, each
    ThrottlingException pauses the client for a second; see the rate-limit tests.)"""
    texts = [f"passage {i}" for i in range(300)]
    not_ready = Fault.status(
        429, body={"message": "Model is not ready"},
        headers={"x-amzn-ErrorType": "ModelNotReadyException"},
    )  # fmt: skip
    faults = [Fault.status(500), Fault.status(503), Fault.status(408), Fault.drop(), not_ready]
    batching = {"max_inputs": 10} if "cohere" in model else {}
    with EmbeddingServer(require_key=SECRET) as srv:
        srv.chaos(0.2, faults, seed=seed)
        with client(srv, model, batching=batching, retry={"budget_min": 100}) as c:
            vectors = c.embed(texts)
            assert c.circuit_state is CircuitState.CLOSED
        faulted = sum(r.fault is not None for r in srv.requests)
    assert faulted >= 3  # the faults really happened
    np.testing.assert_array_equal(vectors, deterministic_vectors(texts, 1024))


def test_an_outage_opens_the_breaker(server: EmbeddingServer) -> None:
    """Bedrock down (503 ServiceUnavailable): calls fail, the breaker opens, later calls fail
    fast without a request."""
    server.set_down(True, status=503)
    with client(server, breaker={"minimum_calls": 4, "window_size": 4},
                retry={"max_retries": 1}) as c:  # fmt: skip
        for _ in range(4):
            with pytest.raises((ServerError, CircuitOpenError)):
                c.embed(["x"])
        assert c.circuit_state is CircuitState.OPEN
        sent = len(server.requests)
        with pytest.raises(CircuitOpenError):
            c.embed(["y"])
        assert len(server.requests) == sent


async def test_concurrent_async_calls_share_the_pool(server: EmbeddingServer) -> None:
    """50 concurrent aembed_query calls on Titan: 50 requests, each vector its own text's."""
    async with client(server) as c:
        texts = [f"question {i}" for i in range(50)]
        results = await asyncio.gather(*(c.aembed_query(t) for t in texts))
    np.testing.assert_array_equal(np.stack(results), deterministic_vectors(texts, 1024))
    assert len(server.requests) == 50 and server.max_in_flight <= 16
