"""A full provider outage and its recovery, through the circuit breaker, over real HTTP.

The breaker runs on a fake clock, so "after the open timeout" is a clock step, not a sleep.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from embedguard import (
    BreakerPolicy,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    EmbeddingClient,
    ProviderConnectionError,
    ServerError,
)
from embedguard.testing import EmbeddingServer, Fault, RecordedRequest, deterministic_vectors

from .conftest import DIM, KEY, fast_profile, figure, identities, knob

POLICY = BreakerPolicy(
    failure_threshold=5,
    success_threshold=2,
    open_timeout=30.0,
    half_open_max_attempts=3,
    half_open_timeout=60.0,
)
CALLERS = 100
PROBE_HOLD = 1.0  # seconds the server holds each probe, so every caller arrives while they fly
FAILFAST_CALLS = int(knob("EMBEDGUARD_FAILFAST_CALLS", 1_000))


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    """The breaker's clock."""
    return FakeClock()


def _client(server: EmbeddingServer, clock: FakeClock, window: float | None) -> EmbeddingClient:
    """A client without retries whose breaker (POLICY) runs on the fake clock.

    ``window`` is the coalescing window (``None``: the client's default).
    """
    profile = fast_profile(server, retry={"max_retries": 0}, timeouts=10.0, pool_size=128)
    breaker = CircuitBreaker(POLICY, name=profile.name, clock=clock)
    extra: dict[str, Any] = {} if window is None else {"coalesce_window": window}
    return EmbeddingClient(profile, api_key=KEY, environ={}, breaker=breaker, **extra)


@pytest.fixture
def client(server: EmbeddingServer, clock: FakeClock) -> Iterator[EmbeddingClient]:
    """A client with the default coalescing window (see :func:`_client`)."""
    with _client(server, clock, None) as c:
        yield c


def _open(client: EmbeddingClient, server: EmbeddingServer, status: int = 503) -> None:
    """Take the provider down and fail exactly ``failure_threshold`` calls."""
    server.set_down(True, status=status)
    expected = ServerError if status else ProviderConnectionError
    for i in range(POLICY.failure_threshold):
        assert _state(client) is CircuitState.CLOSED, f"opened early, after {i} failures"
        with pytest.raises(expected):
            client.embed([f"outage {i}"])
    assert _state(client) is CircuitState.OPEN


@pytest.mark.parametrize("status", [503, 0], ids=["503", "dropped"])
def test_breaker_opens_after_threshold(
    client: EmbeddingClient, server: EmbeddingServer, status: int
) -> None:
    """An outage opens the breaker after exactly failure_threshold failures; then none is sent."""
    _open(client, server, status)
    sent = len(server.requests)
    assert sent == POLICY.failure_threshold
    for i in range(20):
        with pytest.raises(CircuitOpenError) as info:
            client.embed([f"still down {i}", "and this"])
        assert info.value.failed_indices == (0, 1)
        assert info.value.retry_in == pytest.approx(POLICY.open_timeout)
    assert len(server.requests) == sent
    snap = client.metrics()
    assert (snap.breaker_opens, snap.failed_requests, snap.rejected_requests) == (1, 5, 20)
    identities(snap)


_COALESCING_DEFAULT = pytest.param(None, id="default-window")


@pytest.mark.parametrize("window", [pytest.param(0.0, id="no-window"), _COALESCING_DEFAULT])
def test_open_breaker_fails_fast(
    server: EmbeddingServer, clock: FakeClock, window: float | None
) -> None:
    """While open, calls fail in well under a millisecond (median of 1,000) without a request."""
    calls = FAILFAST_CALLS if window == 0 else 200  # the failing variant needs fewer to show
    with _client(server, clock, window) as client:
        _open(client, server)
        sent = len(server.requests)
        durations = []
        for _ in range(calls):
            start = time.perf_counter()
            try:
                client.embed(["still down?"])
            except CircuitOpenError:
                durations.append(time.perf_counter() - start)

        async def async_calls() -> list[float]:
            spent = []
            for _ in range(calls):
                start = time.perf_counter()
                try:
                    await client.aembed(["still down?"])
                except CircuitOpenError:
                    spent.append(time.perf_counter() - start)
            return spent

        adurations = asyncio.run(async_calls())
        snap = client.metrics()
    assert len(durations) == len(adurations) == calls
    assert len(server.requests) == sent  # nothing reached the server while open
    median, amedian = statistics.median(durations), statistics.median(adurations)
    print(f"fail-fast median: sync {median * 1e6:.1f} us, async {amedian * 1e6:.1f} us")
    assert snap.rejected_requests == 2 * calls
    identities(snap)
    assert median < 1e-3 and amedian < 1e-3  # the bound is ~20x the value measured on CI
    if window == 0:
        figure("outage.failfast_median_us.sync", round(median * 1e6, 1))
        figure("outage.failfast_median_us.async", round(amedian * 1e6, 1))
        figure("outage.failfast_calls_timed", 2 * calls)


def _probe_window(server: EmbeddingServer, clock: FakeClock) -> int:
    """Recover the provider, hold the next probes, and step past the open timeout."""
    server.set_down(False)
    server.script(*[Fault.delay(PROBE_HOLD)] * POLICY.half_open_max_attempts)
    before = len(server.requests)
    clock.advance(POLICY.open_timeout + 0.001)
    return before


def _check_window(
    client: EmbeddingClient,
    probes: list[RecordedRequest],
    outcomes: dict[int, object],
    window: float | None,
    how: str,
) -> None:
    rejected = [o for o in outcomes.values() if isinstance(o, CircuitOpenError)]
    succeeded = {i: o for i, o in outcomes.items() if isinstance(o, np.ndarray)}
    assert len(outcomes) == CALLERS
    assert len(rejected) + len(succeeded) == CALLERS, [type(o) for o in outcomes.values()]
    for i, vector in succeeded.items():  # each caller served by a probe got its own vector
        np.testing.assert_array_equal(vector, deterministic_vectors([f"probe {i}"], DIM)[0])
    if window == 0:  # one caller per request: exactly the probe slots get through
        assert len(probes) == POLICY.half_open_max_attempts
        assert len(succeeded) == POLICY.half_open_max_attempts
        assert all(o.retry_in == 0 for o in rejected)  # refused: every probe slot was taken
    else:  # coalesced callers share requests: fewer probes may carry more callers
        assert 1 <= len(probes) <= POLICY.half_open_max_attempts
        assert len(succeeded) >= len(probes)
    assert _state(client) is CircuitState.CLOSED  # closed on recovery
    stats = client._breaker.stats()
    assert (stats.probes_in_flight, stats.closed_count, stats.opened_count) == (0, 1, 1)
    snap = client.metrics()
    assert (snap.breaker_opens, snap.breaker_half_opens, snap.breaker_closes) == (1, 1, 1)
    identities(snap)
    label = "no_window" if window == 0 else "default_window"
    figure(f"outage.half_open.{how}.{label}.callers", CALLERS)
    figure(f"outage.half_open.{how}.{label}.probes_reaching_server", len(probes))


WINDOWS = [pytest.param(0.0, id="no-window"), pytest.param(None, id="default-window")]
THREAD_WINDOWS = [
    pytest.param(0.0, id="no-window"),
    pytest.param(None, id="default-window"),
]


@pytest.mark.parametrize("window", THREAD_WINDOWS)
def test_half_open_admits_at_most_max_attempts_from_100_threads(
    server: EmbeddingServer, clock: FakeClock, window: float | None
) -> None:
    """100 threads after the open timeout send at most half_open_max_attempts probes."""
    client = _client(server, clock, window)
    _open(client, server)
    before = _probe_window(server, clock)
    barrier = threading.Barrier(CALLERS)
    outcomes: dict[int, object] = {}

    def caller(i: int) -> None:
        barrier.wait(timeout=10)
        try:
            outcomes[i] = client.embed([f"probe {i}"])[0]
        except Exception as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(CALLERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "a caller hung"
    _check_window(client, server.requests[before:], outcomes, window, "threads")
    assert client.embed(["after recovery"]).shape == (1, DIM)
    client.close()


@pytest.mark.parametrize("window", WINDOWS)
def test_half_open_admits_at_most_max_attempts_from_100_tasks(
    server: EmbeddingServer, clock: FakeClock, window: float | None
) -> None:
    """100 asyncio tasks after the open timeout send at most half_open_max_attempts probes."""
    client = _client(server, clock, window)
    _open(client, server)
    before = _probe_window(server, clock)

    async def caller(i: int) -> object:
        try:
            return (await client.aembed([f"probe {i}"]))[0]
        except Exception as exc:
            return exc

    async def run() -> dict[int, object]:
        jobs = asyncio.gather(*(caller(i) for i in range(CALLERS)))
        return dict(enumerate(await asyncio.wait_for(jobs, timeout=30)))

    outcomes = asyncio.run(run())
    _check_window(client, server.requests[before:], outcomes, window, "tasks")

    async def after() -> np.ndarray:
        async with client:
            return await client.aembed(["after recovery"])

    assert asyncio.run(after()).shape == (1, DIM)


def test_coalesced_callers_refused_by_the_breaker_get_typed_errors(
    client: EmbeddingClient, server: EmbeddingServer
) -> None:
    """Coalesced callers refused by an open breaker each get a CircuitOpenError."""
    _open(client, server)

    async def run() -> list[object]:
        calls = (client.aembed([f"coalesced {i}"]) for i in range(64))
        return list(await asyncio.gather(*calls, return_exceptions=True))

    outcomes = asyncio.run(run())
    assert [type(o).__name__ for o in outcomes] == ["CircuitOpenError"] * 64
    assert all(o.failed_indices == (0,) for o in outcomes if isinstance(o, CircuitOpenError))


def test_failed_probe_reopens(
    client: EmbeddingClient, server: EmbeddingServer, clock: FakeClock
) -> None:
    """A failed probe reopens the breaker with a fresh timeout; recovery still closes it."""
    _open(client, server)
    before = len(server.requests)
    clock.advance(POLICY.open_timeout + 0.001)
    assert _state(client) is CircuitState.HALF_OPEN
    with pytest.raises(ServerError):
        client.embed(["probe"])
    assert _state(client) is CircuitState.OPEN
    with pytest.raises(CircuitOpenError) as info:
        client.embed(["probe again"])
    assert info.value.retry_in == pytest.approx(POLICY.open_timeout)
    assert len(server.requests) == before + 1
    stats = client._breaker.stats()
    assert (stats.opened_count, stats.probes_in_flight) == (2, 0)
    # Recovery still works after a failed probe.
    server.set_down(False)
    clock.advance(POLICY.open_timeout + 0.001)
    for i in range(POLICY.success_threshold):
        client.embed([f"good probe {i}"])
    assert _state(client) is CircuitState.CLOSED
    snap = client.metrics()
    assert (snap.breaker_opens, snap.breaker_half_opens, snap.breaker_closes) == (2, 2, 1)
    identities(snap)


def test_hung_probes_reopen_after_half_open_timeout(
    client: EmbeddingClient, server: EmbeddingServer, clock: FakeClock
) -> None:
    """Hung probes reopen the breaker after half_open_timeout; their late success is ignored."""
    _open(client, server)
    server.set_down(False)
    server.script(Fault.delay(0.5))
    clock.advance(POLICY.open_timeout + 0.001)
    seen = len(server.requests)
    probe = threading.Thread(target=client.embed, args=(["slow probe"],))
    probe.start()
    deadline = time.monotonic() + 10
    while len(server.requests) == seen and time.monotonic() < deadline:
        time.sleep(0.005)
    clock.advance(POLICY.half_open_timeout + 0.001)
    assert _state(client) is CircuitState.OPEN
    probe.join(timeout=10)
    assert not probe.is_alive()
    assert _state(client) is CircuitState.OPEN  # the late success counted for nothing
    assert client._breaker.stats().probes_in_flight == 0


def _state(client: EmbeddingClient) -> CircuitState:
    """The breaker state now (a call, so each read is fresh to the type checker too)."""
    return client.circuit_state
