"""Requests/min and tokens/min limiter, driven by a fake clock."""

from __future__ import annotations

import asyncio
import threading

import pytest

from embedguard.core.config import RateLimit
from embedguard.core.ratelimit import RateLimiter, Reservation


class FakeClock:
    """A monotonic clock that moves only when told to (or when a fake sleep waits)."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


def limiter(rpm: int | None = None, tpm: int | None = None) -> tuple[RateLimiter, FakeClock]:
    clock = FakeClock()
    limit = RateLimit(requests_per_minute=rpm, tokens_per_minute=tpm)
    return RateLimiter(limit, clock=clock, sleep=clock.sleep, asleep=clock.asleep), clock


def test_burst_up_to_capacity_passes_immediately() -> None:
    """A full bucket lets a burst of up to the per-minute limit through without waiting."""
    rl, _ = limiter(rpm=60, tpm=1000)
    assert [rl.reserve(10).delay for _ in range(60)] == [0.0] * 60
    assert rl.reserve(0).delay == pytest.approx(1.0)


def test_tokens_burst_then_wait() -> None:
    """Tokens up to capacity pass at once; the next token waits 60/limit seconds."""
    rl, _ = limiter(tpm=1000)
    assert rl.reserve(400).delay == 0.0
    assert rl.reserve(600).delay == 0.0
    assert rl.reserve(1).delay == pytest.approx(0.06)


def test_steady_state_paces_to_exactly_the_limit() -> None:
    """After the burst, acquire() spaces requests at exactly 60/limit seconds."""
    rl, clock = limiter(rpm=60)
    start = clock.now
    for _ in range(60 + 600):
        rl.acquire(1)
    assert clock.now - start == pytest.approx(600.0)
    assert clock.sleeps[:3] == pytest.approx([1.0, 1.0, 1.0])
    assert len(clock.sleeps) == 600


def test_queued_reservations_wait_in_turn() -> None:
    """Reservations made at the same instant get successively longer delays."""
    rl, _ = limiter(rpm=60)
    for _ in range(60):
        rl.reserve(0)
    assert [rl.reserve(0).delay for _ in range(3)] == pytest.approx([1.0, 2.0, 3.0])


def test_refill_never_exceeds_capacity() -> None:
    """Idling for an hour still allows only one minute's burst."""
    rl, clock = limiter(rpm=60)
    clock.advance(3600)
    delays = [rl.reserve(0).delay for _ in range(61)]
    assert delays[59] == 0.0
    assert delays[60] == pytest.approx(1.0)


def test_oversized_request_is_delayed_not_rejected() -> None:
    """A request larger than the bucket waits for the excess to refill."""
    rl, _ = limiter(tpm=600)
    reservation = rl.reserve(1200)
    assert reservation == Reservation(tokens=1200, delay=pytest.approx(60.0))
    assert rl.reserve(0).delay == pytest.approx(60.0)


def test_correct_gives_back_unused_tokens() -> None:
    """Fewer tokens used than booked are returned to the bucket."""
    rl, _ = limiter(tpm=600)
    booked = rl.reserve(600)
    rl.correct(booked, 300)
    assert rl.reserve(300).delay == 0.0
    assert rl.reserve(10).delay == pytest.approx(1.0)


def test_correct_takes_extra_tokens() -> None:
    """More tokens used than booked delay later requests."""
    rl, _ = limiter(tpm=600)
    booked = rl.reserve(600)
    rl.correct(booked, 900)
    assert rl.reserve(0).delay == pytest.approx(30.0)


def test_correct_never_overfills() -> None:
    """Giving back tokens cannot push the bucket above its capacity."""
    rl, _ = limiter(tpm=600)
    rl.correct(Reservation(tokens=500, delay=0.0), 0)
    assert rl.reserve(600).delay == 0.0
    assert rl.reserve(60).delay == pytest.approx(6.0)


def test_cancel_gives_both_back() -> None:
    """A cancelled reservation returns its request and its tokens."""
    rl, _ = limiter(rpm=2, tpm=600)
    rl.reserve(300)
    booked = rl.reserve(300)
    rl.cancel(booked)
    assert rl.reserve(300).delay == 0.0
    assert rl.reserve(0).delay > 0


def test_combined_limits_larger_delay_wins() -> None:
    """With both limits, the wait is the longer of the two."""
    rl, _ = limiter(rpm=60, tpm=600)
    assert rl.reserve(1200).delay == pytest.approx(60.0)  # tokens bind
    rl2, _ = limiter(rpm=1, tpm=600)
    rl2.reserve(1)
    assert rl2.reserve(1).delay == pytest.approx(60.0)  # requests bind


def test_one_limit_only() -> None:
    """A None limit is unlimited while the other still applies."""
    rl, _ = limiter(rpm=None, tpm=60)
    assert rl.enabled
    assert [rl.reserve(0).delay for _ in range(1000)] == [0.0] * 1000
    assert rl.reserve(120).delay == pytest.approx(60.0)


def test_disabled_limiter_costs_nothing() -> None:
    """With both limits None, every reservation is free and immediate."""
    rl, clock = limiter()
    assert not rl.enabled
    assert rl.reserve(10**9) == Reservation(tokens=10**9, delay=0.0)
    rl.correct(Reservation(5, 0.0), 10)
    rl.cancel(Reservation(5, 0.0))
    rl.acquire(10**9)
    assert clock.sleeps == []
    assert repr(rl) == "RateLimiter(unlimited)"


def test_negative_tokens_rejected() -> None:
    """Reserving a negative amount is an error."""
    rl, _ = limiter(tpm=60)
    with pytest.raises(ValueError, match="tokens"):
        rl.reserve(-1)


def test_repr_shows_live_levels() -> None:
    """The repr shows each bucket's current level and limit."""
    rl, clock = limiter(rpm=60, tpm=1000)
    rl.reserve(400)
    assert repr(rl) == "RateLimiter(requests=59/60 per min, tokens=600/1000 per min)"
    clock.advance(6.0)
    assert repr(rl) == "RateLimiter(requests=60/60 per min, tokens=700/1000 per min)"


def test_acquire_sleeps_only_when_needed() -> None:
    """acquire() sleeps for the delay, and not at all when there is none."""
    rl, clock = limiter(rpm=60)
    rl.acquire(0)
    assert clock.sleeps == []
    for _ in range(59):
        rl.acquire(0)
    reservation = rl.acquire(0)
    assert clock.sleeps == [pytest.approx(1.0)]
    assert reservation.delay == pytest.approx(1.0)


def test_acquire_interrupted_cancels_the_reservation() -> None:
    """If the sync wait is interrupted, the booking is given back."""
    clock = FakeClock()

    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    rl = RateLimiter(
        RateLimit(requests_per_minute=None, tokens_per_minute=60), clock=clock, sleep=interrupted
    )
    rl.reserve(60)
    with pytest.raises(KeyboardInterrupt):
        rl.acquire(60)
    assert rl.reserve(0).delay == 0.0


async def test_aacquire_waits_with_the_async_sleep() -> None:
    """aacquire() awaits the injected sleep for the delay."""
    rl, clock = limiter(tpm=600)
    await rl.aacquire(600)
    reservation = await rl.aacquire(60)
    assert reservation.delay == pytest.approx(6.0)
    assert clock.sleeps == [pytest.approx(6.0)]


async def test_aacquire_cancelled_returns_the_reservation() -> None:
    """A task cancelled while waiting gives its booking back and re-raises CancelledError."""
    clock = FakeClock()
    waiting = asyncio.Event()

    async def forever(seconds: float) -> None:
        waiting.set()
        await asyncio.Event().wait()

    rl = RateLimiter(
        RateLimit(requests_per_minute=60, tokens_per_minute=600), clock=clock, asleep=forever
    )
    rl.reserve(600)
    task = asyncio.create_task(rl.aacquire(300))
    await waiting.wait()
    assert rl.reserve(0).delay == pytest.approx(30.0)  # the waiting task holds 300 tokens
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert rl.reserve(0).delay == 0.0
    assert "requests=57/60" in repr(rl)  # three reservations kept, one given back


def test_threads_share_the_limit() -> None:
    """Reservations from many threads at one instant never overlap: delays are all distinct."""
    rl, _ = limiter(rpm=60)
    barrier = threading.Barrier(20)
    delays: list[float] = []

    def worker() -> None:
        barrier.wait()
        delays.extend(rl.reserve(0).delay for _ in range(10))

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(delays) == pytest.approx([0.0] * 60 + [float(n) for n in range(1, 141)])
