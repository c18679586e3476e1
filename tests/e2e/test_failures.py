"""Failing calls hand back what they got, name their root cause, and keep vector spaces apart."""

from __future__ import annotations

import asyncio
import socket

import httpx
import numpy as np
import pytest

from embedguard import (
    CircuitOpenError,
    CircuitState,
    EmbeddingClient,
    EmbedGuardError,
    ProviderConnectionError,
    ServerError,
    profiles,
)
from embedguard.core.cache import MemoryCache
from embedguard.testing import EmbeddingServer, Fault, deterministic_vectors

from .conftest import fast

D = 16


def _profile(server: EmbeddingServer, **changes: object) -> object:
    return fast(profiles.openai(base_url=server.base_url("openai"), dimensions=D), **changes)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return seen


def test_a_call_that_fails_part_way_hands_back_what_it_got() -> None:
    """error.partial holds every vector received, NaN rows exactly at failed_indices; with a
    cache, a rerun sends only the failed texts."""
    texts = [f"document {i}" for i in range(30)]
    with EmbeddingServer(dimensions=D) as server:
        server.script(Fault.status(400))  # one batch is refused for good (not retryable)
        profile = _profile(server, batching={"max_inputs": 10}, pool_size=1)
        with EmbeddingClient(profile, api_key="sk-x", environ={}, cache="memory") as client:
            with pytest.raises(EmbedGuardError) as info:
                client.embed(texts)
            error = info.value
            failed = list(error.failed_indices)
            assert len(failed) == 10
            assert error.partial is not None and error.partial.dtype == np.float32
            assert np.isnan(error.partial[failed]).all()
            good = [i for i in range(30) if i not in failed]
            expected = deterministic_vectors(texts, D)
            np.testing.assert_array_equal(error.partial[good], expected[good])
            server.reset()
            vectors = client.embed(texts)  # only the ten failed texts are sent again
            assert sum(len(r.inputs) for r in server.requests) == 10
    np.testing.assert_array_equal(vectors, expected)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_dead_endpoint_reads_connection_refused_with_host_and_port(mode: str) -> None:
    """The first call to a port nothing listens on names the refusal and host:port, and keeps
    the OS error in its cause chain, whether or not the breaker opened on the way."""
    port = _free_port()
    profile = profiles.openai(
        base_url=f"http://127.0.0.1:{port}/v1", dimensions=D,
        retry={"initial_delay": 0.001, "max_delay": 0.01},
    )  # fmt: skip
    texts = [f"text {i}" for i in range(40)]
    with EmbeddingClient(profile, api_key="sk-x", environ={}) as client:
        call = client.embed if mode == "sync" else lambda t: asyncio.run(client.aembed(t))
        with pytest.raises((ProviderConnectionError, CircuitOpenError)) as info:
            call(texts)
    text = str(info.value).lower()
    assert "connection refused" in text and f"127.0.0.1:{port}" in text
    chain = _chain(info.value)
    assert any(isinstance(e, httpx.ConnectError) for e in chain)
    assert any(isinstance(e, ConnectionRefusedError) for e in chain)


async def test_callers_sharing_a_failed_request_get_its_error() -> None:
    """Small calls merged into one request that fails get that request's error, even when the
    breaker opened while it was retried."""
    with EmbeddingServer(dimensions=D) as server:
        server.set_down(True, status=503)
        profile = _profile(server, breaker={"failure_threshold": 2}, retry={"max_retries": 3})
        async with EmbeddingClient(
            profile, api_key="sk-x", environ={}, coalesce_window=0.05
        ) as client:
            results = await asyncio.gather(
                *(client.aembed_query(f"question {i}") for i in range(8)), return_exceptions=True
            )
    assert all(isinstance(r, ServerError) for r in results), [type(r) for r in results]


def test_fallback_vectors_are_cached_under_the_model_that_made_them() -> None:
    """With allow_mixed_models, what a fallback of another model embedded is cached under that
    model: a later client without the fallback does not receive it as its own."""
    texts = ["alpha", "beta", "gamma"]
    cache = MemoryCache()
    with EmbeddingServer(dimensions=D) as primary, EmbeddingServer(dimensions=D) as other:
        primary.set_down(True, status=503)
        main = _profile(primary, breaker={"enabled": False}, retry={"max_retries": 0})
        fallback = fast(
            profiles.openai("text-embedding-3-large", base_url=other.base_url("openai"),
                            dimensions=D)
        )  # fmt: skip
        with EmbeddingClient(
            main, api_key="sk-x", environ={}, cache=cache, fallbacks=[(fallback, "sk-y")],
            allow_mixed_models=True,
        ) as client:  # fmt: skip
            client.embed(texts)
        assert sum(len(r.inputs) for r in other.requests) == 3
        primary.set_down(False)
        primary.reset()
        with EmbeddingClient(main, api_key="sk-x", environ={}, cache=cache) as alone:
            alone.embed(texts)
        assert sum(len(r.inputs) for r in primary.requests) == 3  # no fallback vectors reused


@pytest.mark.parametrize(
    ("fault", "gzip_after"), [(Fault.status(415), False), (Fault.status(503), True)]
)
def test_a_refused_gzip_body_is_resent_plain_once(fault: Fault, gzip_after: bool) -> None:
    """A 415 or 5xx on a gzipped body is resent uncompressed at once; only the clear refusal
    (415) turns gzip off for the endpoint."""
    with EmbeddingServer(dimensions=D) as server:
        server.script(fault)
        profile = _profile(
            server, compression={"enabled": True, "threshold_bytes": 0}, retry={"max_retries": 0}
        )
        with EmbeddingClient(profile, api_key="sk-x", environ={}, coalesce_window=0) as client:
            client.embed(["first text"])
            first, resent = server.requests[:2]
            assert first.gzip and not resent.gzip
            client.embed(["second text"])
            assert server.requests[-1].gzip is gzip_after


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_flaky_provider_is_not_an_outage(seed: int) -> None:
    """20% random faults (500, 503, 429 with Retry-After, dropped connections) under the default
    breaker and retry counts: the call completes with every text's own vector, breaker closed."""
    unique = [f"passage {i}" for i in range(1400)]
    texts = unique + unique[:600]  # 30% duplicates
    faults = [Fault.status(500), Fault.status(503), Fault.rate_limited(0.01), Fault.drop()]
    with EmbeddingServer(dimensions=D) as server:
        server.chaos(0.2, faults, seed=seed)
        profile = _profile(server, batching={"max_inputs": 50})  # 28 batches: many draws
        with EmbeddingClient(profile, api_key="sk-x", environ={}) as client:
            vectors = client.embed(texts)
            assert client.circuit_state is CircuitState.CLOSED
        faulted = sum(r.fault is not None for r in server.requests)
    assert faulted >= 3  # the faults really happened
    np.testing.assert_array_equal(vectors, deterministic_vectors(texts, D))


def test_a_batch_of_a_dead_endpoint_still_gives_up_after_max_retries() -> None:
    """Retries beyond max_retries are for a healthy endpoint only: a failing one stops there."""
    with EmbeddingServer(dimensions=D) as server:
        server.set_down(True, status=503)
        profile = _profile(server, retry={"max_retries": 3})
        client = EmbeddingClient(profile, api_key="sk-x", environ={}, coalesce_window=0)
        with client, pytest.raises(ServerError):
            client.embed(["one batch"])
        assert len(server.requests) == 4  # the first attempt and three retries
