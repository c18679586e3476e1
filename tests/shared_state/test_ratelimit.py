"""RedisRateLimiter: one budget for every limiter on the same key (fake and real Redis).

Redis times the buckets with its own clock, so the checks use generous bounds around the
expected delays instead of a fake clock.
"""

from __future__ import annotations

import asyncio

import pytest

from embedguard.core.config import RateLimit
from embedguard.core.providers.base import RateLimitInfo
from embedguard.core.shared_state import RedisRateLimiter

from .conftest import Backend

RPM_120 = RateLimit(requests_per_minute=120, tokens_per_minute=None)  # 2 requests/s
TPM_600 = RateLimit(requests_per_minute=None, tokens_per_minute=600)  # 10 tokens/s


def make(backend: Backend, limit: RateLimit, *, fresh_client: bool = False) -> RedisRateLimiter:
    """A limiter on the test's key (``fresh_client``: as another process would connect)."""
    client = backend.make_client() if fresh_client else backend.client
    return RedisRateLimiter(limit, client, name="prov", key_prefix=backend.prefix)


def test_workers_share_one_bucket(backend: Backend) -> None:
    """Two limiters draw from one bucket: the burst is the limit, not twice the limit."""
    a, b = make(backend, RPM_120), make(backend, RPM_120, fresh_client=True)
    delays = [(a if i % 2 else b).reserve(0).delay for i in range(130)]
    assert max(delays[:100]) == 0  # well within the capacity: no wait
    # 10 requests of debt at 2 requests/s: 5 s, less what refilled while booking. Two
    # separate buckets of 120 would hold the 65 each books without any wait.
    assert 3.5 < delays[-1] <= 5.0
    assert delays[-10:] == sorted(delays[-10:])


def test_a_request_larger_than_the_bucket_is_delayed_not_rejected(backend: Backend) -> None:
    """Booking twice the tokens bucket succeeds, with the wait for the excess to refill."""
    limiter = make(backend, TPM_600)
    reservation = limiter.reserve(1200)
    assert reservation.tokens == 1200
    assert 55 < reservation.delay <= 60  # 600 tokens of debt at 10 tokens/s


def test_correct_gives_back_unused_tokens(backend: Backend) -> None:
    """Settling with fewer tokens than booked returns the difference to every worker."""
    a, b = make(backend, TPM_600), make(backend, TPM_600)
    reservation = a.reserve(600)
    assert b.reserve(300).delay > 20
    a.correct(reservation, 0)
    assert b.reserve(200).delay == 0
    levels = b.levels()
    assert levels[0] is None and levels[1] is not None and 90 < levels[1] < 150


def test_correct_takes_more_when_the_estimate_was_low(backend: Backend) -> None:
    """Settling with more tokens than booked takes them, delaying the next booking."""
    limiter = make(backend, TPM_600)
    limiter.correct(limiter.reserve(100), 700)
    assert 9 < limiter.reserve(0).delay < 10.5


def test_cancel_returns_the_whole_booking(backend: Backend) -> None:
    """A cancelled booking gives back its request and tokens."""
    limiter = make(backend, RateLimit(requests_per_minute=60, tokens_per_minute=600))
    held = limiter.reserve(600)
    limiter.cancel(held)
    requests, tokens = limiter.levels()
    assert requests is not None and tokens is not None
    assert requests > 59.5 and tokens > 599


def test_observe_lowers_the_shared_level(backend: Backend) -> None:
    """remaining_* headers lower the bucket for every worker, minus this worker's bookings."""
    a, b = make(backend, RPM_120), make(backend, RPM_120)
    held = a.reserve(0)
    a.observe(RateLimitInfo(limit_requests=120, remaining_requests=10))
    requests, _ = b.levels()
    assert requests is not None and 8.9 < requests < 11
    a.correct(held, 0)
    b.observe(RateLimitInfo(limit_requests=-1, remaining_requests=0))  # a placeholder: ignored
    assert (b.levels()[0] or 0) > 8.9


def test_a_429_pauses_every_worker(backend: Backend) -> None:
    """on_rate_limited(retry_after) makes the next booking of any worker wait that long."""
    a, b = make(backend, RPM_120), make(backend, RPM_120, fresh_client=True)
    a.on_rate_limited(3.0)
    assert 2.5 < b.reserve(0).delay <= 3.0
    assert b.effective_limits[0] == 120  # the AIMD slow-down is per process
    assert a.effective_limits[0] is not None and a.effective_limits[0] < 120


def test_an_unlimited_limiter_still_shares_pauses(backend: Backend) -> None:
    """Without limits nothing is paced, but a 429 without retry-after pauses everyone 1 s."""
    unlimited = RateLimit(requests_per_minute=None, tokens_per_minute=None)
    a, b = make(backend, unlimited), make(backend, unlimited)
    assert not a.enabled
    assert [a.reserve(10**6).delay for _ in range(3)] == [0.0, 0.0, 0.0]
    a.on_rate_limited(None)
    assert 0.5 < b.reserve(1).delay <= 1.0


async def test_a_cancelled_wait_returns_the_booking(backend: Backend) -> None:
    """aacquire cancelled while waiting gives its booking back to the shared bucket."""
    limiter = make(backend, TPM_600)
    limiter.reserve(600)
    task = asyncio.create_task(limiter.aacquire(100))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    _, tokens = limiter.levels()
    assert tokens is not None and -1 < tokens < 20  # without the cancel: -100


def test_negative_tokens_are_refused(backend: Backend) -> None:
    """reserve() validates its argument before touching Redis."""
    with pytest.raises(ValueError, match="tokens"):
        make(backend, TPM_600).reserve(-1)


def test_idle_keys_expire(backend: Backend) -> None:
    """The bucket key carries a TTL, so abandoned limiters do not leak keys."""
    make(backend, RPM_120).reserve(0)
    ttl = backend.client.pttl(f"{backend.prefix}:{{prov}}:ratelimit")
    assert 59_000 <= ttl <= 61_000
