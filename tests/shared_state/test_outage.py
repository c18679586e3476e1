"""Redis outages: breaker and limiter keep working on local state, warn once, and re-sync."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import fakeredis
import pytest
import redis

from embedguard.core.breaker import CircuitState
from embedguard.core.config import BreakerPolicy, RateLimit
from embedguard.core.errors import CircuitOpenError
from embedguard.core.shared_state import RedisCircuitBreaker, RedisRateLimiter, connect

from .conftest import NO_REDIS_SERVER, REDIS_SERVER, RedisProcess, free_port

POLICY = BreakerPolicy(failure_threshold=2, open_timeout=60, half_open_max_attempts=1,
                       success_threshold=1)  # fmt: skip
LIMIT = RateLimit(requests_per_minute=120, tokens_per_minute=None)
LOGGER = "embedguard.core.shared_state"
UNAVAILABLE = "shared state unavailable, using local state"


def warnings_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


@dataclass
class Outage:
    """A Redis that can be taken down and brought back mid-test."""

    client: redis.Redis
    down: Callable[[], None]
    up: Callable[[], None]
    make_client: Callable[[], redis.Redis]


@pytest.fixture(params=["fakeredis", "redis-server"])
def outage(request: pytest.FixtureRequest) -> Iterator[Outage]:
    """fakeredis with its connection switched off, or a real redis-server stopped and restarted."""
    clients: list[redis.Redis] = []
    if request.param == "fakeredis":
        server = fakeredis.FakeServer()

        def make() -> redis.Redis:
            clients.append(fakeredis.FakeRedis(server=server))
            return clients[-1]

        def set_connected(value: bool) -> Callable[[], None]:
            return lambda: setattr(server, "connected", value)

        yield Outage(make(), set_connected(False), set_connected(True), make)
    else:
        if REDIS_SERVER is None:
            pytest.skip(NO_REDIS_SERVER)
        process = RedisProcess().start()

        def make_real() -> redis.Redis:
            clients.append(connect(process.url))
            return clients[-1]

        yield Outage(make_real(), process.stop, process.start, make_real)
        process.stop()
    for client in clients:
        client.close()


def test_an_unreachable_redis_means_local_state_and_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With nothing listening, both classes work like the plain ones and each warns once."""
    caplog.set_level(logging.INFO, LOGGER)
    client = connect(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    try:
        breaker = RedisCircuitBreaker(POLICY, client, name="p", resync_interval=0.05)
        limiter = RedisRateLimiter(LIMIT, client, name="p", resync_interval=0.05)
        delays = [limiter.reserve(0).delay for _ in range(130)]
        assert max(delays[:100]) == 0 and 3.5 < delays[-1] <= 5.0  # 10 over at 2/s
        for _ in range(2):
            breaker.record_failure(breaker.allow_request())
            time.sleep(0.06)  # past the re-sync interval: Redis is tried again, and fails
        with pytest.raises(CircuitOpenError):
            breaker.allow_request()
        assert breaker.state is CircuitState.OPEN
        assert breaker.degraded and limiter.degraded
        logged = warnings_logged(caplog)
        assert len(logged) == 2 and all(UNAVAILABLE in m for m in logged)
    finally:
        client.close()


def test_an_outage_mid_run_falls_back_then_resyncs(
    outage: Outage, caplog: pytest.LogCaptureFixture
) -> None:
    """Calls go on during an outage with one warning each; afterwards Redis is used again."""
    caplog.set_level(logging.INFO, LOGGER)
    breaker = RedisCircuitBreaker(POLICY, outage.client, name="p", resync_interval=0.2)
    limiter = RedisRateLimiter(LIMIT, outage.client, name="p", resync_interval=0.2)
    shared_permit = breaker.allow_request()
    shared_booking = limiter.reserve(0)
    assert not breaker.degraded and not limiter.degraded

    outage.down()
    for _ in range(20):  # every call answers, from local state
        permit = breaker.allow_request()
        breaker.record_success(permit)
        limiter.correct(limiter.reserve(0), 0)
    breaker.record_failure(shared_permit)  # reported to Redis: dropped while it is down
    limiter.correct(shared_booking, 0)
    assert breaker.degraded and limiter.degraded
    assert breaker.state is CircuitState.CLOSED
    local_permit = breaker.allow_request()
    logged = warnings_logged(caplog)
    assert len(logged) == 2 and all(UNAVAILABLE in m for m in logged)

    outage.up()
    wait_for(lambda: breaker.state is CircuitState.CLOSED and not breaker.degraded)
    wait_for(lambda: limiter.levels()[0] is not None and not limiter.degraded)
    breaker.record_failure(local_permit)  # a local permit goes to the local state
    assert breaker.stats().consecutive_failures == 0
    # Re-synced: what this worker does is seen by another worker through Redis.
    other = RedisCircuitBreaker(POLICY, outage.make_client(), name="p")
    breaker.record_failure(breaker.allow_request())
    breaker.record_failure(breaker.allow_request())
    assert other.state is CircuitState.OPEN
    peer = RedisRateLimiter(LIMIT, outage.make_client(), name="p")
    before = peer.levels()[0]
    for _ in range(20):
        limiter.reserve(0)
    after = peer.levels()[0]
    assert before is not None and after is not None and before - after > 10
    assert len(warnings_logged(caplog)) == 2
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert sum("re-synced" in m for m in infos) == 2


def test_each_outage_warns_again(outage: Outage, caplog: pytest.LogCaptureFixture) -> None:
    """One warning per outage, not one per process lifetime."""
    caplog.set_level(logging.INFO, LOGGER)
    limiter = RedisRateLimiter(LIMIT, outage.client, name="p", resync_interval=0.1)
    for _ in range(2):
        outage.down()
        for _ in range(5):
            limiter.reserve(0)
        outage.up()
        wait_for(lambda: limiter.levels()[0] is not None)
    assert len(warnings_logged(caplog)) == 2
    assert not limiter.degraded


def test_a_redis_error_never_fails_the_caller(
    outage: Outage, caplog: pytest.LogCaptureFixture
) -> None:
    """A foreign value under the key (WRONGTYPE) degrades to local state instead of raising."""
    caplog.set_level(logging.INFO, LOGGER)
    outage.client.set("embedguard:{p}:breaker", "not a hash")
    outage.client.set("embedguard:{p}:ratelimit", "not a hash")
    breaker = RedisCircuitBreaker(POLICY, outage.client, name="p")
    limiter = RedisRateLimiter(LIMIT, outage.client, name="p")
    breaker.record_success(breaker.allow_request())
    assert limiter.reserve(0).delay == 0
    assert breaker.degraded and limiter.degraded
    logged = warnings_logged(caplog)
    assert len(logged) == 2 and all("WRONGTYPE" in m for m in logged)
