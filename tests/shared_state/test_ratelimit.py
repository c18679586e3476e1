"""RedisRateLimiter: one budget for every limiter on the same key (fake and real Redis).

Redis times the buckets with its own clock, so the checks use generous bounds around the
expected delays instead of a fake clock.
"""

from __future__ import annotations

import asyncio
import math

import pytest

from embedguard.core.config import RateLimit
from embedguard.core.ratelimit import RateLimitInfo
from embedguard.core.shared_state import RedisRateLimiter

from .conftest import Backend

RPM_120 = RateLimit(requests_per_minute=120, tokens_per_minute=None)  # 2 requests/s
TPM_600 = RateLimit(requests_per_minute=None, tokens_per_minute=600)  # 10 tokens/s


def make(
    backend: Backend,
    limit: RateLimit | None,
    *,
    fresh_client: bool = False,
    assumed: RateLimit | None = None,
) -> RedisRateLimiter:
    """A limiter on the test's key (``fresh_client``: as another process would connect)."""
    client = backend.make_client() if fresh_client else backend.client
    return RedisRateLimiter(limit, client, name="prov", key_prefix=backend.prefix, assumed=assumed)


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
    assert a.effective_limits[0] == b.effective_limits[0] == 120  # one 429 slows nothing


def test_a_429_with_retry_after_charges_no_booking(backend: Backend) -> None:
    """A 429 with Retry-After leaves the shared buckets where they were: no debt for the
    bookings other workers hold."""
    a, b = make(backend, RPM_120), make(backend, RPM_120, fresh_client=True)
    held = [b.reserve(0) for _ in range(50)]
    before = a.levels()[0]
    a.on_rate_limited(0.5)
    after = a.levels()[0]
    assert before is not None and after is not None and after >= before - 0.1
    for booking in held:
        b.correct(booking, 0)


def test_a_429_without_a_hint_empties_the_shared_buckets_to_zero(backend: Backend) -> None:
    """No Retry-After and no headers: every worker's next request waits for its own refill,
    and the bookings held elsewhere are not charged a second time (the level is 0, not -50)."""
    a, b = make(backend, RPM_120), make(backend, RPM_120, fresh_client=True)
    held = [b.reserve(0) for _ in range(50)]
    a.on_rate_limited(None)
    requests, _ = a.levels()
    assert requests is not None and -0.1 < requests < 0.5
    for booking in held:
        b.correct(booking, 0)


def test_the_shared_limiter_learns_from_stated_limits(backend: Backend) -> None:
    """Assumed limits apply until the server states its own; then the shared buckets are
    shaped by the stated limit (here higher than the guess)."""
    limiter = make(backend, None, assumed=RateLimit(requests_per_minute=60))
    assert limiter.limits_in_force["requests"] == (60.0, "assumed")
    limiter.observe(RateLimitInfo(limit_requests=6000))
    assert limiter.limits_in_force["requests"] == (6000.0, "server")
    assert [limiter.reserve(0).delay for _ in range(100)] == [0.0] * 100


@pytest.mark.parametrize(
    ("hint", "count"),
    [
        (math.inf, math.inf),
        (float("1e400"), 1e300),
        (1e300, -5),
        (-5.0, 0),
        (math.nan, math.nan),
        (1e9, 2**70),
    ],
    ids=str,
)
def test_a_hostile_hint_never_removes_zeroes_or_stalls_the_shared_limit(
    backend: Backend, hint: float, count: float
) -> None:
    """Garbage in retry-after or the rate-limit headers leaves a finite, positive shared limit,
    and no booking waits more than a minute because of it."""
    limiter = make(backend, None, assumed=RateLimit(requests_per_minute=600))
    info = RateLimitInfo(
        limit_requests=count,  # type: ignore[arg-type]
        remaining_requests=count,  # type: ignore[arg-type]
        reset_requests=hint,
    )
    limiter.observe(info)
    limiter.on_rate_limited(hint, info=info)
    assert limiter.limits_in_force["requests"] == (600.0, "assumed")
    requests, _ = limiter.levels()
    assert requests is not None and math.isfinite(requests)  # still limited, not "unlimited"
    delay = limiter.reserve(0).delay
    assert 0.0 <= delay <= 60.0


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
