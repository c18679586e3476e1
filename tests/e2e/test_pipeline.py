"""The pipeline end to end, over real HTTP on loopback."""

import asyncio
import logging
import threading

import numpy as np
import pytest

from embedguard import (
    AuthenticationError,
    BadRequestError,
    CircuitOpenError,
    CircuitState,
    EmbeddingClient,
    InputValidationError,
    QuotaExhaustedError,
    RateLimitError,
    ResponseValidationError,
    ServerError,
)
from embedguard.core.metrics import MetricsSnapshot
from embedguard.testing import EmbeddingServer, Fault, deterministic_vectors

from .conftest import KEY, openai_client


def _corpus(n: int, unique: int) -> list[str]:
    return [f"text number {i % unique} about embeddings" for i in range(n)]


def _identities(snap: MetricsSnapshot) -> None:
    assert snap.total_requests == snap.successful_requests + snap.failed_requests
    assert sum(snap.errors_by_kind.values()) == snap.failed_requests
    assert snap.retried_requests <= snap.total_requests


def test_10k_texts_with_duplicates_sync(server: EmbeddingServer) -> None:
    """10,000 texts with duplicates: each gets ITS vector, in order; distinct texts sent once."""
    texts = _corpus(10_000, 3_000)
    with openai_client(server) as client:
        vectors = client.embed(texts)
        snap = client.metrics()
    assert vectors.shape == (10_000, 64) and vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors, deterministic_vectors(texts, 64))
    sent = [t for r in server.requests for t in r.inputs]
    assert sorted(sent) == sorted(set(texts))
    assert snap.items_embedded == 3_000
    assert snap.successful_requests == len(server.requests)
    _identities(snap)


async def test_10k_texts_with_duplicates_async(server: EmbeddingServer) -> None:
    """The async path gives the same vectors in the same order."""
    texts = _corpus(10_000, 2_500)
    async with openai_client(server) as client:
        vectors = await client.aembed(texts)
    np.testing.assert_array_equal(vectors, deterministic_vectors(texts, 64))
    assert len({t for r in server.requests for t in r.inputs}) == 2_500


def test_batch_limits_are_respected(server: EmbeddingServer) -> None:
    """No request exceeds the profile's max inputs or token budget."""
    texts = [f"word {i} " * 20 for i in range(700)]
    batching = {"max_inputs": 50, "max_tokens_per_request": 2_000, "max_tokens_per_input": 1_000}
    with openai_client(server, batching=batching) as client:
        client.embed(texts)
        counter = client._counter  # the estimate the planner used
    assert server.requests
    for request in server.requests:
        assert len(request.inputs) <= 50
        assert sum(counter.count(t) for t in request.inputs) <= 2_000


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_concurrency_bound(mode: str) -> None:
    """Never more requests in flight than the profile's pool size."""
    with EmbeddingServer(dimensions=8, latency=0.02) as srv:
        client = openai_client(srv, pool_size=3, batching={"max_inputs": 10}, dimensions=8)
        texts = [f"t{i}" for i in range(200)]
        if mode == "sync":
            client.embed(texts)
            client.close()
        else:

            async def run() -> None:
                async with client:
                    await client.aembed(texts)

            asyncio.run(run())
        assert len(srv.requests) >= 20
        assert srv.max_in_flight == 3


def test_429_honours_retry_after(server: EmbeddingServer) -> None:
    """A 429 with Retry-After is retried after (at least) the requested wait."""
    server.script(Fault.rate_limited(retry_after=0.2))
    with openai_client(server) as client:
        vectors = client.embed(["a", "b"])
        snap = client.metrics()
    assert vectors.shape == (2, 64)
    first, second = server.requests
    assert second.received_at - first.received_at >= 0.19
    assert (snap.retried_requests, snap.errors_by_kind.get("rate_limit")) == (1, 1)
    _identities(snap)


def test_retry_after_ms_is_preferred(server: EmbeddingServer) -> None:
    """retry-after-ms wins over the backoff schedule."""
    server.script(Fault.rate_limited(retry_after=0.05, ms=True), Fault.status(503))
    with openai_client(server) as client:
        client.embed(["x"])
    assert len(server.requests) == 3


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.status(401), AuthenticationError),
        (Fault.quota(), QuotaExhaustedError),
        (Fault.status(400), BadRequestError),
    ],
)
def test_no_retry_on_caller_errors(
    server: EmbeddingServer, fault: Fault, error: type[Exception]
) -> None:
    """401, quota exhaustion and 400 are raised at once, never retried."""
    server.script(fault)
    with openai_client(server) as client, pytest.raises(error) as info:
        client.embed(["a", "b"])
    assert len(server.requests) == 1
    assert info.value.failed_indices == (0, 1)  # type: ignore[attr-defined]
    assert client.circuit_state is CircuitState.CLOSED  # the caller's fault, not the provider's


def test_retries_exhausted_reports_failed_inputs(server: EmbeddingServer) -> None:
    """After max_retries the typed error names every input without a vector."""
    server.set_down(True, status=500)
    with openai_client(server, retry={"max_retries": 2}, breaker={"enabled": False}) as client:
        with pytest.raises(ServerError) as info:
            client.embed(["a", "b", "a"])
        snap = client.metrics()
    assert info.value.failed_indices == (0, 1, 2)
    assert len(server.requests) == 3
    assert (snap.failed_requests, snap.retried_requests, snap.successful_requests) == (3, 2, 0)
    _identities(snap)


def test_breaker_opens_fails_fast_half_opens_and_closes(server: EmbeddingServer) -> None:
    """Open after the threshold, fail fast without sending, probe after the timeout, close."""
    breaker = {"failure_threshold": 3, "success_threshold": 1, "open_timeout": 0.3,
               "half_open_max_attempts": 1}  # fmt: skip
    server.set_down(True, status=503)
    with openai_client(server, retry={"max_retries": 0}, breaker=breaker) as client:
        for _ in range(3):
            with pytest.raises(ServerError):
                client.embed(["x"])
        assert client.circuit_state is CircuitState.OPEN
        seen = len(server.requests)
        with pytest.raises(CircuitOpenError):
            client.embed(["x"])
        assert len(server.requests) == seen  # nothing sent while open
        server.set_down(False)
        threading.Event().wait(0.35)
        assert client.embed(["x"]).shape == (1, 64)  # the probe succeeds
        assert client.circuit_state is CircuitState.CLOSED
        snap = client.metrics()
    assert (snap.breaker_opens, snap.breaker_closes, snap.rejected_requests) == (1, 1, 1)
    _identities(snap)


def test_gzip_above_threshold(server: EmbeddingServer) -> None:
    """Bodies above the threshold are gzipped; smaller ones are not; bytes are counted."""
    with openai_client(server, compression={"enabled": True, "threshold_bytes": 500}) as client:
        client.embed(["short"])
        client.embed([f"a longer text number {i}" for i in range(100)])
        snap = client.metrics()
    small, *big = server.requests
    assert not small.gzip and small.raw_size < 500
    assert big and all(r.gzip and r.wire_size < r.raw_size for r in big)
    assert snap.bytes_sent < snap.bytes_raw and snap.bytes_saved > 0


def test_gzip_is_off_by_default(server: EmbeddingServer) -> None:
    """No built-in profile gzips: a large body goes plain unless compression is enabled."""
    with openai_client(server) as client:
        client.embed([f"a longer text number {i} " * 20 for i in range(100)])
    assert server.requests and not any(r.gzip for r in server.requests)
    assert max(r.raw_size for r in server.requests) > client.profile.compression.threshold_bytes


def test_gzip_refused_falls_back_to_plain() -> None:
    """A server that refuses gzip gets the body again uncompressed, and plain from then on."""
    with EmbeddingServer(dimensions=64, accept_gzip=False) as srv:
        client = openai_client(
            srv, compression={"enabled": True, "threshold_bytes": 10}, pool_size=1
        )
        texts = [f"text {i}" for i in range(50)]
        np.testing.assert_array_equal(client.embed(texts), deterministic_vectors(texts, 64))
        client.embed([*texts[:10], "new"])
        client.close()
        gz = [r.gzip for r in srv.requests]
    assert gz == [True, False, False]


@pytest.mark.parametrize(
    "fault",
    [
        Fault.wrong_count(),
        Fault.bad_index(),
        Fault.nan(),
        Fault.wrong_dimensions(),
        Fault.malformed(),
    ],
    ids=lambda f: str(f),
)
def test_malformed_responses_are_rejected(server: EmbeddingServer, fault: Fault) -> None:
    """Every malformed 2xx raises a typed error; no vector is returned."""
    server.script(fault)
    with (
        openai_client(server) as client,
        pytest.raises((ResponseValidationError, BadRequestError, ServerError, RateLimitError)),
    ):
        client.embed(["a", "b", "c"])


@pytest.mark.parametrize(
    "fault", [Fault.truncate(), Fault.drop(), Fault.status(502), Fault.error_body_200()], ids=str
)
def test_transient_faults_are_retried(server: EmbeddingServer, fault: Fault) -> None:
    """A truncated body, a dropped connection, a 502 or a 200 carrying a server error is
    retried and then succeeds."""
    server.script(fault)
    with openai_client(server) as client:
        texts = ["a", "b", "c"]
        np.testing.assert_array_equal(client.embed(texts), deterministic_vectors(texts, 64))
        snap = client.metrics()
    assert snap.retried_requests == 1 and snap.failed_requests == 1
    _identities(snap)


def test_shuffled_indices_are_put_back_in_order(server: EmbeddingServer) -> None:
    """data[] in any order is placed by index."""
    server.script(Fault.shuffle())
    texts = [f"s{i}" for i in range(20)]
    with openai_client(server) as client:
        np.testing.assert_array_equal(client.embed(texts), deterministic_vectors(texts, 64))


def test_read_timeout_is_retried(server: EmbeddingServer) -> None:
    """A response slower than the timeout is a timeout, retried per policy."""
    server.script(Fault.delay(1.0))
    with openai_client(server, timeouts={"request": 0.2, "connect": 0.2}) as client:
        assert client.embed(["a"]).shape == (1, 64)
        assert client.metrics().errors_by_kind == {"timeout": 1}


def test_bad_input_raises_before_any_request(server: EmbeddingServer) -> None:
    """Invalid input is refused with its index, and nothing is sent."""
    with openai_client(server) as client:
        for bad, index in ((["ok", ""], 1), (["ok", "  "], 1), (["a", 3], 1), ("a string", None)):
            with pytest.raises(InputValidationError) as info:
                client.embed(bad)  # type: ignore[arg-type]
            assert info.value.index == index
        assert client.embed([]).shape[0] == 0
    assert server.requests == []


def test_embed_query(server: EmbeddingServer) -> None:
    """embed_query returns one vector; sync and async agree."""

    async def query(client: EmbeddingClient) -> np.ndarray:
        async with client:
            return await client.aembed_query("hello")

    with openai_client(server) as client:
        one = client.embed_query("hello")
    two = asyncio.run(query(openai_client(server)))
    assert one.shape == (64,)
    np.testing.assert_array_equal(one, two)


def test_secrets_never_leak(server: EmbeddingServer, caplog: pytest.LogCaptureFixture) -> None:
    """The key is absent from reprs, errors, logs and metrics, yet sent to the server."""
    caplog.set_level(logging.DEBUG)
    server.script(Fault.status(500), Fault.status(401))
    with openai_client(server) as client:
        with pytest.raises(AuthenticationError) as info:
            client.embed(["a"])
        texts = [repr(client), str(client), repr(client.profile), str(info.value),
                 repr(info.value), client.metrics().to_json(), caplog.text,
                 str(client.profile.to_dict()), client.profile.to_toml()]  # fmt: skip
    for text in texts:
        assert KEY not in text
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_async_pool_closes_with_its_event_loop(server: EmbeddingServer) -> None:
    """Calling aembed from several asyncio.run() loops without aclose() leaks no connection."""
    client = openai_client(server)
    for _ in range(3):
        asyncio.run(client.aembed(["a", "b"]))
    client.close()
    import gc

    gc.collect()  # an unclosed transport would raise ResourceWarning (warnings are errors)
    assert len(server.requests) == 3


def test_dropped_client_releases_its_sockets(server: EmbeddingServer) -> None:
    """A client garbage-collected without close() closes its pool (no ResourceWarning)."""
    import gc

    client = openai_client(server)
    client.embed(["a"])
    del client
    gc.collect()  # an unclosed socket would raise ResourceWarning here (warnings are errors)
    assert len(server.requests) == 1
