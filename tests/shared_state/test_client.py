"""The shared breaker as a drop-in: two clients (two "workers") share one through ``breaker=``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from embedguard import EmbeddingClient, profiles
from embedguard.core.breaker import CircuitState
from embedguard.core.errors import CircuitOpenError, EmbedGuardError
from embedguard.core.shared_state import RedisCircuitBreaker, RedisRateLimiter
from embedguard.testing import EmbeddingServer

from .conftest import Backend, RedisProcess

KEY = "sk-test-shared-state-0123456789"


@pytest.fixture
def server() -> Iterator[EmbeddingServer]:
    with EmbeddingServer(dimensions=16) as srv:
        yield srv


def _client(server: EmbeddingServer, backend: Backend) -> EmbeddingClient:
    profile = profiles.openai(
        base_url=server.base_url("openai"),
        dimensions=16,
        retry={"max_retries": 0},
        breaker={"failure_threshold": 2, "open_timeout": 60},
    )
    breaker = RedisCircuitBreaker(
        profile.breaker, backend.make_client(), name=profile.name, key_prefix=backend.prefix
    )
    return EmbeddingClient(profile, api_key=KEY, breaker=breaker, hooks=[])


def test_failures_in_one_client_open_the_circuit_of_another(
    server: EmbeddingServer, backend: Backend
) -> None:
    """Client A trips the shared breaker; client B then fails fast without calling the server."""
    a, b = _client(server, backend), _client(server, backend)
    try:
        assert b.embed(["before"]).shape == (1, 16)
        server.set_down(True)
        for _ in range(2):
            with pytest.raises(EmbedGuardError):
                a.embed(["down"])
        sent = len(server.requests)
        assert b.circuit_state is CircuitState.OPEN
        with pytest.raises(CircuitOpenError):
            b.embed(["refused"])
        assert len(server.requests) == sent
        b.reset_circuit_breaker()  # closes it for both
        server.set_down(False)
        assert a.circuit_state is CircuitState.CLOSED
        assert a.embed(["after"]).shape == (1, 16)
    finally:
        a.close()
        b.close()


async def test_the_async_path_uses_the_shared_breaker(
    server: EmbeddingServer, backend: Backend
) -> None:
    """aembed admits and reports through the shared breaker too."""
    a, b = _client(server, backend), _client(server, backend)
    try:
        server.set_down(True)
        for _ in range(2):
            with pytest.raises(EmbedGuardError):
                await a.aembed(["down"])
        with pytest.raises(CircuitOpenError):
            await b.aembed(["refused"])
    finally:
        await a.aclose()
        await b.aclose()


def test_shared_state_url_shares_breaker_and_budget(
    server: EmbeddingServer, redis_server: RedisProcess
) -> None:
    """Clients given the same shared_state URL share one breaker and one request budget."""
    profile = profiles.openai(
        name=f"fleet-{uuid.uuid4().hex[:8]}",  # a fresh key space in the session's Redis
        base_url=server.base_url("openai"),
        dimensions=16,
        retry={"max_retries": 0},
        breaker={"failure_threshold": 2, "open_timeout": 60},
        rate_limit={"requests_per_minute": 600, "tokens_per_minute": None},
    )
    a = EmbeddingClient(profile, api_key=KEY, shared_state=redis_server.url, hooks=[])
    b = EmbeddingClient(profile, api_key=KEY, shared_state=redis_server.url, hooks=[])
    try:
        assert isinstance(a._primary.limiter, RedisRateLimiter)  # the budget lives in Redis too
        server.set_down(True)
        for _ in range(2):
            with pytest.raises(EmbedGuardError):
                a.embed(["down"])
        assert b.circuit_state is CircuitState.OPEN
        with pytest.raises(CircuitOpenError):
            b.embed(["refused"])
        b.reset_circuit_breaker()
        server.set_down(False)
        server.reset()
        start = time.monotonic()
        for i in range(40):  # 600/min shared: the fleet's burst is the bucket, then 10/s
            (a if i % 2 else b).embed([f"t{i}"])
        assert time.monotonic() - start < 30
        assert len(server.requests) == 40
    finally:
        a.close()
        b.close()
