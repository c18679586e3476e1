"""Requests/min and tokens/min limiter, driven by a fake clock."""

from __future__ import annotations

import asyncio
import random
import threading

import pytest

from embedguard.core.config import RateLimit
from embedguard.core.providers.base import RateLimitInfo
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
    assert reservation.tokens == 1200
    assert reservation.delay == pytest.approx(60.0)
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


# --- Adapting to the server: observe(), on_rate_limited(), effective_limits -------------------


def test_observe_lowers_the_level_to_the_servers_remaining() -> None:
    """Fewer tokens remaining on the server than in the bucket lowers the bucket to match."""
    rl, _ = limiter(rpm=60, tpm=1000)
    rl.observe(RateLimitInfo(remaining_tokens=300, remaining_requests=5))
    assert rl.reserve(300).delay == 0.0
    assert rl.reserve(1).delay == pytest.approx(0.06)
    assert "requests=3/60" in repr(rl)
    assert rl.effective_limits == (60.0, 1000.0)


def test_observe_never_raises_the_level() -> None:
    """A server reporting more remaining than the bucket holds does not refill the bucket."""
    rl, _ = limiter(tpm=1000)
    rl.reserve(900)
    rl.correct(rl.reserve(0), 0)
    rl.observe(RateLimitInfo(limit_tokens=1000, remaining_tokens=1000))
    assert rl.reserve(100).delay == 0.0
    assert rl.reserve(6).delay == pytest.approx(0.36)


def test_observe_subtracts_what_is_booked_but_unsettled() -> None:
    """Bookings not yet settled are not in the server's count, so they come off its remaining."""
    rl, _ = limiter(tpm=1000)
    in_flight = rl.reserve(400)
    settled = rl.reserve(100)
    rl.correct(settled, 100)
    rl.observe(RateLimitInfo(remaining_tokens=700))
    assert repr(rl) == "RateLimiter(tokens=300/1000 per min)"
    rl.correct(in_flight, 400)
    assert repr(rl) == "RateLimiter(tokens=300/1000 per min)"


def test_observe_without_headers_changes_nothing() -> None:
    """An empty RateLimitInfo leaves the limits and the levels as they were."""
    rl, _ = limiter(rpm=60, tpm=1000)
    rl.reserve(250)
    before = repr(rl)
    rl.observe(RateLimitInfo())
    assert repr(rl) == before
    assert rl.effective_limits == (60.0, 1000.0)


def test_server_limit_lower_than_profile_is_adopted() -> None:
    """A server limit below the configured one becomes the limit in force, burst and rate."""
    rl, _ = limiter(rpm=3000, tpm=1000)
    rl.observe(RateLimitInfo(limit_requests=500, limit_tokens=600))
    assert rl.effective_limits == (500.0, 600.0)
    assert rl.reserve(600).delay == 0.0
    assert rl.reserve(60).delay == pytest.approx(6.0)  # 600/min = 10 tokens/s
    assert repr(rl) == "RateLimiter(requests=498/500 per min, tokens=-60/600 per min)"


def test_server_limit_higher_than_profile_is_not_adopted() -> None:
    """The configured limit stays a ceiling: a more generous server does not raise it."""
    rl, _ = limiter(rpm=60, tpm=1000)
    rl.observe(RateLimitInfo(limit_requests=10_000, limit_tokens=10_000_000))
    assert rl.effective_limits == (60.0, 1000.0)
    assert rl.reserve(1001).delay == pytest.approx(0.06)


def test_server_limit_is_followed_when_it_rises_again() -> None:
    """A server limit raised after being lowered is followed, up to the configured limit."""
    rl, _ = limiter(tpm=1000)
    rl.observe(RateLimitInfo(limit_tokens=400))
    assert rl.effective_limits == (None, 400.0)
    rl.observe(RateLimitInfo(limit_tokens=800))
    assert rl.effective_limits == (None, 800.0)
    rl.observe(RateLimitInfo(limit_tokens=5000))
    assert rl.effective_limits == (None, 1000.0)


def test_placeholder_limits_are_ignored() -> None:
    """Non-positive limits (Azure's -1/0 placeholders) leave limits and levels alone."""
    rl, _ = limiter(rpm=60, tpm=1000)
    rl.observe(
        RateLimitInfo(limit_requests=-1, remaining_requests=0, limit_tokens=0, remaining_tokens=0)
    )
    assert rl.effective_limits == (60.0, 1000.0)
    assert rl.reserve(1000).delay == 0.0


def test_azure_remaining_only_headers() -> None:
    """Azure's remaining-only headers lower the levels and leave the limits alone."""
    rl, _ = limiter(rpm=120, tpm=120_000)
    rl.observe(RateLimitInfo(remaining_requests=119, remaining_tokens=60_000))
    assert rl.effective_limits == (120.0, 120_000.0)
    assert rl.reserve(60_000).delay == 0.0
    assert rl.reserve(2000).delay == pytest.approx(1.0)


def test_mistral_per_minute_headers() -> None:
    """Mistral's per-minute limits are adopted when lower; the tightest remaining applies."""
    rl, _ = limiter(rpm=3000, tpm=1_000_000)
    info = RateLimitInfo(
        limit_requests=60, remaining_requests=2, limit_tokens=20_000_000, remaining_tokens=19_999
    )
    rl.observe(info)
    assert rl.effective_limits == (60.0, 1_000_000.0)
    assert [rl.reserve(1).delay for _ in range(3)] == pytest.approx([0.0, 0.0, 1.0])


def test_openai_headers_with_all_six_values() -> None:
    """OpenAI's six headers: limits above the profile keep it; remaining lowers the levels."""
    rl, _ = limiter(rpm=3000, tpm=1_000_000)
    info = RateLimitInfo(
        limit_requests=10_000,
        remaining_requests=9_999,
        reset_requests=0.006,
        limit_tokens=1_000_000,
        remaining_tokens=500_000,
        reset_tokens=30.0,
    )
    rl.observe(info)
    assert rl.effective_limits == (3000.0, 1_000_000.0)
    assert rl.reserve(500_000).delay == 0.0
    assert rl.reserve(1000).delay == pytest.approx(0.06)


def test_long_reset_reveals_a_slower_bucket() -> None:
    """A reset longer than a minute (a daily limit) sets the refill rate to (limit - rem)/reset."""
    rl, _ = limiter(rpm=3000, tpm=None)
    rl.observe(RateLimitInfo(limit_requests=200, remaining_requests=100, reset_requests=43_200))
    requests_per_minute, _ = rl.effective_limits
    assert requests_per_minute == pytest.approx(60 * 100 / 43_200)
    assert [rl.reserve(0).delay for _ in range(100)] == [0.0] * 100
    assert rl.reserve(0).delay == pytest.approx(432.0)
    assert "requests=-1/200, refill 0.139 per min" in repr(rl)


def test_short_reset_keeps_the_per_minute_reading() -> None:
    """A reset within a minute (OpenAI's per-minute buckets, rounded) does not change the rate."""
    rl, _ = limiter(tpm=1_000_000)
    rl.observe(RateLimitInfo(limit_tokens=600_000, remaining_tokens=599_000, reset_tokens=1.0))
    assert rl.effective_limits == (None, 600_000.0)


def test_unlimited_limiter_learns_limits_from_headers() -> None:
    """Without configured limits, no waiting until the server reports a limit, then pacing."""
    rl, _ = limiter()
    booked = rl.reserve(10**6)
    assert booked.delay == 0.0
    rl.observe(RateLimitInfo(remaining_tokens=0, remaining_requests=0))  # no limit: no pacing
    assert not rl.enabled
    assert rl.effective_limits == (None, None)
    rl.correct(booked, 10**6)
    rl.observe(RateLimitInfo(limit_tokens=600, remaining_tokens=300))
    assert rl.enabled
    assert rl.effective_limits == (None, 600.0)
    assert rl.reserve(300).delay == 0.0
    assert rl.reserve(10).delay == pytest.approx(1.0)
    assert repr(rl) == "RateLimiter(tokens=-10/600 per min)"


def test_learned_bucket_counts_what_is_already_booked() -> None:
    """A bucket created from headers starts with the unsettled bookings already taken."""
    rl, _ = limiter()
    rl.reserve(500)
    rl.observe(RateLimitInfo(limit_tokens=600))
    assert rl.reserve(100).delay == 0.0
    assert rl.reserve(10).delay == pytest.approx(1.0)


def test_429_with_retry_after_delays_the_next_reservation() -> None:
    """After a 429 with retry-after, the next request of the refused size waits retry-after."""
    rl, _ = limiter(tpm=6000)  # 100 tokens/s; after the decrease 80 tokens/s
    refused = rl.reserve(1000)
    rl.correct(refused, 0)
    rl.on_rate_limited(5.0, reservation=refused)
    assert rl.effective_limits[1] == pytest.approx(4800.0)
    assert rl.reserve(1000).delay == pytest.approx(5.0)
    assert rl.reserve(1000).delay == pytest.approx(5.0 + 1000 / 80)


def test_429_retry_after_without_the_reservation_uses_the_typical_size() -> None:
    """Without the refused booking, the typical booking size stands in for it."""
    rl, _ = limiter(tpm=6000)
    rl.correct(rl.reserve(1000), 1000)
    rl.on_rate_limited(5.0)
    assert rl.reserve(1000).delay == pytest.approx(5.0)
    assert rl.reserve(1000).delay == pytest.approx(5.0 + 1000 / 80)


def test_429_pause_applies_to_small_requests_too() -> None:
    """Every reservation during the pause waits at least retry-after, even a tiny one."""
    rl, clock = limiter(rpm=6000, tpm=6_000_000)
    rl.on_rate_limited(3.0)
    assert rl.reserve(1).delay >= 3.0
    clock.advance(1.0)
    assert rl.reserve(1).delay >= 2.0


def test_429_without_retry_after_empties_the_buckets() -> None:
    """Without retry-after the buckets are emptied: the next request waits its own refill."""
    rl, _ = limiter(rpm=60, tpm=60_000)
    rl.on_rate_limited(None)  # -> 48 requests/min, 48,000 tokens/min
    assert rl.reserve(0).delay == pytest.approx(60 / 48)
    assert rl.reserve(800).delay == pytest.approx(2 * 60 / 48)


def test_429_on_an_unlimited_limiter_pauses() -> None:
    """An unlimited limiter still honours retry-after, or pauses 1 s when there is none."""
    rl, clock = limiter()
    rl.on_rate_limited(2.5)
    assert rl.reserve(10).delay == pytest.approx(2.5)
    clock.advance(10.0)
    assert rl.reserve(10).delay == 0.0
    rl.on_rate_limited(None)
    assert rl.reserve(10).delay == pytest.approx(1.0)
    assert rl.effective_limits == (None, None)


def test_429_retry_after_is_capped_at_a_minute() -> None:
    """A day-long retry-after (a quota message) pauses the limiter for one minute at most."""
    rl, _ = limiter()
    rl.on_rate_limited(86_400.0)
    assert rl.reserve(1).delay == pytest.approx(60.0)


def test_aimd_decrease_holdoff_and_floor() -> None:
    """A 429 cuts the rate by 0.8, once per 2 s, never below 10 % of the limit."""
    rl, clock = limiter(rpm=100, tpm=1000)
    rl.on_rate_limited(None)
    assert rl.effective_limits == pytest.approx((80.0, 800.0))
    clock.advance(1.0)
    rl.on_rate_limited(None)  # an echo of the same overshoot: no cut, 1 s of recovery kept
    assert rl.effective_limits == pytest.approx((80 + 5 / 60, 800 + 50 / 60))
    clock.advance(2.0)
    rl.on_rate_limited(None)
    assert rl.effective_limits == pytest.approx((0.8 * (80 + 15 / 60), 0.8 * (800 + 150 / 60)))
    for _ in range(20):
        clock.advance(2.0)
        rl.on_rate_limited(None)
    assert rl.effective_limits == pytest.approx((10.0, 100.0))
    assert "requests=0/10 per min, tokens=0/100 per min" in repr(rl)


def test_aimd_additive_recovery_over_quiet_minutes() -> None:
    """Each quiet minute restores 5 % of the limit, up to the limit and no further."""
    rl, clock = limiter(rpm=100, tpm=1000)
    rl.on_rate_limited(None)
    clock.advance(60.0)
    assert rl.effective_limits == pytest.approx((85.0, 850.0))
    clock.advance(120.0)
    assert rl.effective_limits == pytest.approx((95.0, 950.0))
    rl.on_rate_limited(None)  # the quiet period starts again
    assert rl.effective_limits == pytest.approx((76.0, 760.0))
    clock.advance(3600.0)
    assert rl.effective_limits == (100.0, 1000.0)
    assert rl.reserve(1000).delay == 0.0  # the burst capacity is back too


def test_the_first_stated_limit_replaces_a_blind_slow_down() -> None:
    """A 429 before any header slows down; the server's first stated limit then rules."""
    rl, clock = limiter(tpm=1000)
    rl.on_rate_limited(None)  # no header yet: slow down blindly
    assert rl.effective_limits[1] == pytest.approx(800.0)
    rl.observe(RateLimitInfo(limit_tokens=500))
    assert rl.effective_limits == (None, 500.0)
    clock.advance(3600.0)
    assert rl.effective_limits == (None, 500.0)


def test_a_429_from_a_server_that_states_its_limit_pauses_without_lowering_it() -> None:
    """With x-ratelimit-limit-* known, a 429 pauses for retry-after but keeps the rate."""
    rl, _clock = limiter(tpm=1000)
    rl.observe(RateLimitInfo(limit_tokens=500))
    rl.on_rate_limited(2.0)
    assert rl.effective_limits[1] == pytest.approx(500.0)
    assert rl.reserve(1).delay >= 2.0


def test_concurrent_reserve_observe_and_429s() -> None:
    """Threads mixing every call leave a consistent limiter: limits in range, nothing leaked."""
    rl, clock = limiter(rpm=600, tpm=60_000)
    barrier = threading.Barrier(8)
    failures: list[BaseException] = []

    def worker(seed: int) -> None:
        barrier.wait()
        try:
            for i in range(300):
                booked = rl.reserve(10 + (seed * 31 + i) % 90)
                if i % 17 == seed:
                    rl.correct(booked, 0)
                    rl.on_rate_limited(0.5 if i % 2 else None, reservation=booked)
                elif i % 13 == 0:
                    rl.cancel(booked)
                else:
                    rl.correct(booked, booked.tokens // 2)
                    rl.observe(RateLimitInfo(remaining_tokens=30_000, remaining_requests=300))
                requests, tokens = rl.effective_limits
                assert requests is not None and 60.0 <= requests <= 600.0
                assert tokens is not None and 6000.0 <= tokens <= 60_000.0
        except BaseException as exc:  # reported below: a thread's failure would be lost
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert failures == []
    clock.advance(3600.0)  # recovered and refilled
    assert rl.effective_limits == (600.0, 60_000.0)
    rl.observe(RateLimitInfo(remaining_tokens=1000))  # everything settled: nothing comes off
    assert rl.reserve(1000).delay == 0.0
    assert rl.reserve(1).delay == pytest.approx(0.001)


class _HiddenLimitServer:
    """A server with a tokens-per-minute bucket the client is not told about."""

    def __init__(self, tpm: int, clock: FakeClock) -> None:
        self.capacity = float(tpm)
        self.rate = tpm / 60.0
        self.level = self.capacity
        self.clock = clock
        self.updated = clock.now

    def send(self, tokens: int) -> tuple[bool, float]:
        """Admit (True, remaining) or refuse (False, retry_after) a request."""
        now = self.clock.now
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now
        if tokens > self.level:
            return False, (tokens - self.level) / self.rate
        self.level -= tokens
        return True, self.level


def _simulate(*, adapt: bool, hidden_tpm: int = 100_000) -> tuple[float, float, float]:
    """Drive 2,000 requests through the fake clock.

    Returns the achieved tokens/min, the same without the server's initial full bucket (the
    sustained rate), and the share of requests refused with a 429.
    """
    rng = random.Random(7)
    clock = FakeClock(0.0)
    server = _HiddenLimitServer(hidden_tpm, clock)
    rl = RateLimiter(
        RateLimit(requests_per_minute=None, tokens_per_minute=2 * hidden_tpm), clock=clock
    )
    sent_tokens = refused = 0
    n = 2000
    for _ in range(n):
        size = rng.randint(200, 2000)
        booked = rl.reserve(size)
        clock.advance(booked.delay)
        admitted, value = server.send(size)
        clock.advance(0.05)  # latency
        if admitted:
            sent_tokens += size
            rl.correct(booked, size)
            if adapt:
                rl.observe(RateLimitInfo(remaining_tokens=int(value)))
        else:
            refused += 1
            rl.correct(booked, 0)
            if adapt:
                rl.on_rate_limited(value, reservation=booked)
            else:
                clock.advance(value)  # a plain client just waits as told
    minutes = clock.now / 60.0
    return sent_tokens / minutes, (sent_tokens - hidden_tpm) / minutes, refused / n


def test_simulation_converges_to_a_hidden_server_limit(capsys: pytest.CaptureFixture[str]) -> None:
    """Configured at twice a hidden TPM limit, the client runs at >= 85 % of it with <= 2 % 429s."""
    hidden = 100_000
    rate, sustained, share_429 = _simulate(adapt=True, hidden_tpm=hidden)
    _, _, plain_429 = _simulate(adapt=False, hidden_tpm=hidden)
    with capsys.disabled():
        print(
            f"\nadaptive: {rate / hidden:.1%} of the hidden limit ({sustained / hidden:.1%} "
            f"sustained), 429s {share_429:.2%}; non-adaptive: 429s {plain_429:.2%}"
        )
    assert rate >= 0.85 * hidden
    assert sustained >= 0.85 * hidden
    assert share_429 <= 0.02
    assert plain_429 > 0.2  # the scenario is hard: without adapting, 429s are frequent
