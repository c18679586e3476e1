"""A slow server is a timeout, retried per policy, never a hang.

``Fault.delay`` holds the whole response back; ``Fault.trickle`` sends the headers at once and
then the body in small pieces, each arriving well within the read timeout, spread over far longer
than the request timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np
import pytest

from embedguard import EmbeddingClient, ProviderTimeoutError
from embedguard.testing import EmbeddingServer, Fault, deterministic_vectors

from .conftest import DIM, figure, identities, make_client

TIMEOUT = 0.2
RETRIES = 2


def _call(client: EmbeddingClient, texts: list[str], mode: str) -> np.ndarray:
    if mode == "sync":
        with client:
            return client.embed(texts)

    async def run() -> np.ndarray:
        async with client:
            return await client.aembed(texts)

    return asyncio.run(run())


def _client(server: EmbeddingServer) -> EmbeddingClient:
    return make_client(
        server,
        timeouts={"request": TIMEOUT, "connect": TIMEOUT},
        retry={"max_retries": RETRIES},
        breaker={"enabled": False},
    )


def _timed(call: Callable[[], object]) -> tuple[object, float]:
    start = time.monotonic()
    try:
        result: object = call()
    except Exception as exc:
        result = exc
    return result, time.monotonic() - start


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_delayed_response_is_a_timeout_then_retried(server: EmbeddingServer, mode: str) -> None:
    """A response held back beyond the read timeout is a timeout; the retry succeeds."""
    server.script(Fault.delay(1.0))
    client = _client(server)
    texts = ["slow", "server"]
    result, elapsed = _timed(lambda: _call(client, texts, mode))
    assert isinstance(result, np.ndarray), repr(result)
    np.testing.assert_array_equal(result, deterministic_vectors(texts, DIM))
    assert elapsed < 1.0  # the client gave up on the slow attempt instead of waiting for it
    snap = client.metrics()
    assert dict(snap.errors_by_kind) == {"timeout": 1} and snap.retried_requests == 1
    identities(snap)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_server_that_stays_slow_ends_in_a_typed_timeout(
    server: EmbeddingServer, mode: str
) -> None:
    """A server slow on every attempt ends in ProviderTimeoutError after max_retries, in time."""
    server.script(*[Fault.delay(1.0)] * (RETRIES + 1))
    client = _client(server)
    result, elapsed = _timed(lambda: _call(client, ["a", "b", "a"], mode))
    assert isinstance(result, ProviderTimeoutError), repr(result)
    assert result.failed_indices == (0, 1, 2)
    assert elapsed < (RETRIES + 1) * TIMEOUT + 1.0
    assert len(server.requests) == RETRIES + 1
    snap = client.metrics()
    assert dict(snap.errors_by_kind) == {"timeout": RETRIES + 1}
    identities(snap)
    figure("slow.timeouts_observed", RETRIES + 1, add=True)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_trickled_body_is_a_timeout_then_retried(server: EmbeddingServer, mode: str) -> None:
    """A body trickled over 6x the request timeout is cut at the timeout and retried."""
    server.script(Fault.trickle(6 * TIMEOUT))
    client = _client(server)
    texts = ["trickled", "body"]
    result, elapsed = _timed(lambda: _call(client, texts, mode))
    assert isinstance(result, np.ndarray), repr(result)
    np.testing.assert_array_equal(result, deterministic_vectors(texts, DIM))
    assert dict(client.metrics().errors_by_kind) == {"timeout": 1}
    assert elapsed < 4 * TIMEOUT
