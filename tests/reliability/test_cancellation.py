"""Cancelling async callers mid-flight leaks nothing: no probe slot, no rate-limit booking, no
connection, no in-flight registration; and the client keeps working afterwards.

A cancelled caller stops waiting at once; the request it started is not torn down (other callers
may share its texts): it settles in the background, and ``aclose()`` waits for it. Only the end of
the event loop cancels a send, and then it gives its probe slot and its booking back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator

import numpy as np
import pytest

from embedguard import (
    BreakerPolicy,
    CircuitBreaker,
    CircuitState,
    EmbeddingClient,
    RateLimit,
    ServerError,
)
from embedguard.core.ratelimit import RateLimiter
from embedguard.testing import EmbeddingServer, Fault, deterministic_vectors

from .conftest import DIM, KEY, fast_profile, identities

HOLD = 0.5  # seconds the server holds a request, so the caller can be cancelled meanwhile
RPM, TPM = 1_000, 100_000


def _frozen() -> float:
    return 0.0


def _install_frozen_limiter(client: EmbeddingClient, limit: RateLimit) -> RateLimiter:
    # A limiter whose clock never moves: its levels change only by bookings and settlements,
    # so "given back" and "leaked" are exact numbers.
    limiter = RateLimiter(limit, clock=_frozen)
    client._primary.limiter = limiter
    return limiter


def _check_limiter(limiter: RateLimiter, *, requests_sent: int, tokens_used: int) -> None:
    """Nothing booked is left unsettled, and the levels account for exactly what was sent."""
    units = (limiter._requests, limiter._tokens)
    assert [u.outstanding for u in units] == [0, 0], "a reservation was never settled"
    levels = [u.bucket.level for u in units if u.bucket is not None]
    assert levels == [RPM - requests_sent, TPM - tokens_used]


async def _wait_for_requests(server: EmbeddingServer, n: int) -> None:
    deadline = time.monotonic() + 5.0
    while len(server.requests) < n:
        assert time.monotonic() < deadline, "the request never reached the server"
        await asyncio.sleep(0.002)


async def _settled(client: EmbeddingClient, attempts: int) -> None:
    """Wait until the client has recorded ``attempts`` attempts (successes and failures)."""
    deadline = time.monotonic() + 10.0
    while client.metrics().total_requests < attempts:
        assert time.monotonic() < deadline, "an abandoned request never settled"
        await asyncio.sleep(0.005)


def _open_connections(server: EmbeddingServer, timeout: float = 3.0) -> int:
    """Connections the server still holds open, once closing ones have had time to close."""
    deadline = time.monotonic() + timeout
    while server._connections and time.monotonic() < deadline:
        time.sleep(0.01)
    return len(server._connections)


@pytest.fixture
def client(server: EmbeddingServer) -> Iterator[EmbeddingClient]:
    """A client whose rate limiter runs on a frozen clock."""
    limits = {"requests_per_minute": RPM, "tokens_per_minute": TPM}
    with EmbeddingClient(
        fast_profile(server, rate_limit=limits, timeouts=5.0), api_key=KEY, environ={}
    ) as c:
        _install_frozen_limiter(c, c.profile.rate_limit)
        yield c


async def _cancel(call: asyncio.Task[np.ndarray]) -> None:
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call


async def _time_out(call: asyncio.Task[np.ndarray]) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(call, timeout=0.01)


@pytest.mark.parametrize("stop", [_cancel, _time_out], ids=["task.cancel", "wait_for"])
def test_cancelled_caller_leaks_nothing(
    client: EmbeddingClient,
    server: EmbeddingServer,
    stop: Callable[[asyncio.Task[np.ndarray]], Awaitable[None]],
) -> None:
    """A cancelled caller stops at once and leaves no booking, registration or connection behind."""
    server.script(Fault.delay(HOLD))
    limiter = client._primary.limiter

    held = [f"held {i}" for i in range(30)]  # one batch
    again = ["after the cancel", *held[::3]]

    async def run() -> np.ndarray:
        call = asyncio.ensure_future(client.aembed(held))
        await _wait_for_requests(server, 1)
        await stop(call)
        assert server.requests[0].status == 0  # the caller stopped before the server answered
        await _settled(client, 1)  # the request it started still settles, in the background
        # Its texts are no longer registered in flight: asking again sends them again.
        after = await asyncio.wait_for(client.aembed(again), timeout=10)
        await client.aclose()
        return after

    after = asyncio.run(run())
    np.testing.assert_array_equal(after, deterministic_vectors(again, DIM))
    assert len(server.requests) == 2
    snap = client.metrics()
    identities(snap)
    assert snap.total_requests == len(server.requests) == snap.successful_requests
    assert client._breaker.stats().probes_in_flight == 0
    _check_limiter(limiter, requests_sent=len(server.requests), tokens_used=snap.tokens_used)
    assert _open_connections(server) == 0


def test_cancelled_caller_does_not_cancel_callers_sharing_its_texts(
    client: EmbeddingClient, server: EmbeddingServer
) -> None:
    """Cancelling one caller leaves another caller sharing its request with its vectors."""
    texts = [f"shared {i}" for i in range(30)]
    server.script(Fault.delay(HOLD))

    async def run() -> np.ndarray:
        first = asyncio.ensure_future(client.aembed(texts))
        await _wait_for_requests(server, 1)
        second = asyncio.ensure_future(client.aembed(texts[::-1]))
        await asyncio.sleep(0.01)
        await _cancel(first)
        result = await asyncio.wait_for(second, timeout=10)
        await client.aclose()
        return result

    np.testing.assert_array_equal(asyncio.run(run()), deterministic_vectors(texts[::-1], DIM))
    assert len(server.requests) == 1


def _probe_client(server: EmbeddingServer, clock: list[float]) -> EmbeddingClient:
    policy = BreakerPolicy(failure_threshold=1, success_threshold=1, half_open_max_attempts=1,
                           open_timeout=10.0)  # fmt: skip
    breaker = CircuitBreaker(policy, clock=lambda: clock[0])
    profile = fast_profile(server, retry={"max_retries": 0}, timeouts=5.0)
    return EmbeddingClient(profile, api_key=KEY, environ={}, breaker=breaker, coalesce_window=0)


def _open_and_half_open(
    client: EmbeddingClient, server: EmbeddingServer, clock: list[float]
) -> None:
    server.script(Fault.status(503))
    with pytest.raises(ServerError):
        client.embed(["trip"])
    assert _state(client) is CircuitState.OPEN
    clock[0] += 11.0
    assert _state(client) is CircuitState.HALF_OPEN


def test_cancelled_probe_caller_leaves_no_probe_slot_taken(server: EmbeddingServer) -> None:
    """A probe whose caller is cancelled still settles: the breaker closes, no slot stays taken."""
    clock = [0.0]
    client = _probe_client(server, clock)
    _open_and_half_open(client, server, clock)
    server.script(Fault.delay(HOLD))

    async def run() -> np.ndarray:
        call = asyncio.ensure_future(client.aembed(["probe"]))
        await _wait_for_requests(server, 2)
        await _cancel(call)
        assert client._breaker.stats().probes_in_flight == 1  # the probe itself goes on
        await _settled(client, 2)
        stats = client._breaker.stats()
        assert (stats.state, stats.probes_in_flight) == (CircuitState.CLOSED, 0)
        after = await client.aembed(["works"])
        await client.aclose()
        return after

    assert asyncio.run(run()).shape == (1, DIM)


def test_probe_cut_by_loop_shutdown_gives_its_slot_back(server: EmbeddingServer) -> None:
    """A probe cut by the end of the event loop gives its slot back, so the next call can probe."""
    clock = [0.0]
    client = _probe_client(server, clock)
    _open_and_half_open(client, server, clock)
    server.script(Fault.delay(2.0))

    async def run() -> None:
        call = asyncio.ensure_future(client.aembed(["probe"]))
        await _wait_for_requests(server, 2)
        await _cancel(call)  # then the loop ends with the probe still in flight

    asyncio.run(run())
    stats = client._breaker.stats()
    assert (stats.state, stats.probes_in_flight, stats.probes_admitted) == (
        CircuitState.HALF_OPEN, 0, 0,
    )  # fmt: skip
    assert client.embed(["next probe"]).shape == (1, DIM)
    assert _state(client) is CircuitState.CLOSED
    client.close()


def test_send_waiting_on_the_rate_limit_cut_by_loop_shutdown_gives_its_booking_back(
    server: EmbeddingServer,
) -> None:
    """A send queued on the rate limit and cut by loop shutdown gives its booking back."""
    profile = fast_profile(server, rate_limit={"requests_per_minute": 1, "tokens_per_minute": TPM})
    client = EmbeddingClient(profile, api_key=KEY, environ={}, coalesce_window=0)
    limiter = _install_frozen_limiter(client, profile.rate_limit)

    async def run() -> None:
        await client.aembed(["first"])  # takes the only request of the minute
        call = asyncio.ensure_future(client.aembed(["second"]))  # waits ~60 s for the next
        await asyncio.sleep(0.05)
        await _cancel(call)

    asyncio.run(run())
    units = (limiter._requests, limiter._tokens)
    assert [u.outstanding for u in units] == [0, 0]
    assert limiter._requests.bucket is not None and limiter._requests.bucket.level == 0
    assert len(server.requests) == 1
    client.close()


def test_nothing_is_sent_after_aclose(server: EmbeddingServer) -> None:
    """A call cancelled inside the coalescing window sends nothing after aclose() returned."""
    window = 0.05  # long enough for aclose() to finish inside it, even on a busy machine
    client = EmbeddingClient(fast_profile(server), api_key=KEY, environ={}, coalesce_window=window)

    async def run() -> int:
        call = asyncio.ensure_future(client.aembed(["cancelled early"]))
        await asyncio.sleep(0)  # the call has queued its text for the coalescing window
        await _cancel(call)
        await client.aclose()
        closed_at = len(server.requests)
        await asyncio.sleep(4 * window)
        return len(server.requests) - closed_at

    assert asyncio.run(run()) == 0


def _state(client: EmbeddingClient) -> CircuitState:
    """The breaker state now (a call, so each read is fresh to the type checker too)."""
    return client.circuit_state
