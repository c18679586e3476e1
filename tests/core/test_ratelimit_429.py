"""The limiter after a 429 (pause, re-sync, blind slow-down) and with hostile hints (fake clock)."""

from __future__ import annotations

import math
import random
import threading

import pytest

from embedguard.core.config import RateLimit
from embedguard.core.ratelimit import MAX_PAUSE, RateLimiter, RateLimitInfo, Reservation

from ._limiter import FakeClock, limiter

OPENAI_GUESS = (3000, 1_000_000)


# --- A 429 costs what it asks -------------------------------------------------------------------


def test_a_429_with_retry_after_delays_new_bookings_by_about_that_much() -> None:
    """Retry-After: r makes the next booking wait r, and changes no limit."""
    rl, _ = limiter(assumed=OPENAI_GUESS)
    refused = rl.reserve(10_000)
    rl.correct(refused, 0)
    rl.on_rate_limited(0.05, reservation=refused)
    assert rl.reserve(10_000).delay == pytest.approx(0.05)
    assert rl.limits_in_force["tokens"] == (1_000_000.0, "assumed")
    assert rl.slowdown == 1.0


def test_a_429_never_turns_the_booked_job_into_debt() -> None:
    """With 19 batches booked and one refused (Retry-After 0.05), the refused one's retry waits
    about 0.05 s and nothing else is charged: not the whole booked job against the guess."""
    rl, clock = limiter(assumed=OPENAI_GUESS)
    job = [rl.reserve(45_000) for _ in range(20)]  # 900,000 of the assumed 1M tokens
    assert max(b.delay for b in job) == 0.0
    refused = job[7]
    rl.correct(refused, 0)
    rl.on_rate_limited(0.05, reservation=refused)
    for booking in job[:7] + job[8:]:
        rl.correct(booking, 45_000)
    retry = rl.reserve(45_000)
    assert retry.delay == pytest.approx(0.05)
    clock.advance(retry.delay)
    rl.correct(retry, 45_000)
    assert "tokens=100833/1000000 per min (assumed)" in repr(rl)  # 1M - 900k, + 0.05 s refill


def test_the_pause_applies_to_small_requests_too() -> None:
    """Every booking during the pause waits at least the rest of it, even a tiny one."""
    rl, clock = limiter(rpm=6000, tpm=6_000_000)
    rl.on_rate_limited(3.0)
    assert rl.reserve(1).delay >= 3.0
    clock.advance(1.0)
    assert rl.reserve(1).delay >= 2.0


def test_a_429_without_any_hint_empties_the_buckets_but_charges_no_booking() -> None:
    """No Retry-After, no headers: the buckets drop to 0 (not below), so the next request
    waits for its own refill and what is already booked is not charged a second time."""
    rl, _ = limiter(rpm=60, tpm=60_000)
    held = [rl.reserve(1000) for _ in range(5)]
    rl.correct(held[0], 0)
    rl.on_rate_limited(None, reservation=held[0])
    assert rl.reserve(0).delay == pytest.approx(1.0)  # one request refills in 1 s
    assert rl.reserve(1000).delay == pytest.approx(2.0)  # the queue, not the held bookings


def test_the_429s_own_headers_resync_instead_of_emptying() -> None:
    """A 429 carrying remaining counts re-syncs the buckets to them (minus what is booked)."""
    rl, _ = limiter(assumed=(600, 60_000))
    held = rl.reserve(1000)
    rl.on_rate_limited(None, info=RateLimitInfo(remaining_requests=100, remaining_tokens=6000))
    assert "requests=99/600" in repr(rl)
    assert "tokens=5000/60000" in repr(rl)
    rl.correct(held, 1000)


def test_a_429_on_an_unlimited_limiter_pauses() -> None:
    """An unlimited limiter honours Retry-After, and pauses 1 s when there is none."""
    rl, clock = limiter()
    rl.on_rate_limited(2.5)
    assert rl.reserve(10).delay == pytest.approx(2.5)
    clock.advance(10.0)
    assert rl.reserve(10).delay == 0.0
    rl.on_rate_limited(None)
    assert rl.reserve(10).delay == pytest.approx(1.0)
    assert rl.effective_limits == (None, None)


def test_a_429_from_a_server_that_states_its_limit_pauses_without_lowering_it() -> None:
    """With x-ratelimit-limit-* known, 429s pause for retry-after but never slow down."""
    rl, clock = limiter(tpm=1000)
    rl.observe(RateLimitInfo(limit_tokens=500))
    for _ in range(5):
        clock.advance(3.0)
        rl.on_rate_limited(2.0)
    assert rl.effective_limits[1] == pytest.approx(500.0)
    assert rl.reserve(1).delay >= 2.0


# --- Blind slow-down: only repeated header-less 429s --------------------------------------------


def _refused(rl: RateLimiter, clock: FakeClock, after: float, retry_after: float | None) -> None:
    """``after`` seconds on, a new booking is refused with a 429 (no rate-limit headers)."""
    clock.advance(after)
    booking = rl.reserve(100)
    rl.correct(booking, 0)
    rl.on_rate_limited(retry_after, reservation=booking)


def test_a_single_blind_429_slows_nothing_down() -> None:
    """The first 429 of a quiet period leaves every limit as it was."""
    rl, clock = limiter(assumed=OPENAI_GUESS)
    _refused(rl, clock, 0.0, 0.05)
    assert rl.slowdown == 1.0
    assert rl.effective_limits == (3000.0, 1_000_000.0)


def test_a_repeated_blind_429_halves_the_limits() -> None:
    """A second counted 429 within 10 s halves every limit in force (with or without a hint)."""
    for hint in (0.05, None):
        rl, clock = limiter(assumed=OPENAI_GUESS)
        _refused(rl, clock, 0.0, hint)
        _refused(rl, clock, 5.0, hint)
        assert rl.slowdown == 0.5
        assert rl.effective_limits == (1500.0, 500_000.0)


def test_429s_further_apart_than_the_window_do_not_slow_down() -> None:
    """Blind 429s 11 s apart, at full speed, are each a first: no slow-down."""
    rl, clock = limiter(assumed=OPENAI_GUESS)
    for _ in range(5):
        _refused(rl, clock, 11.0, 0.05)
    assert rl.slowdown == 1.0


def test_echoes_of_one_overshoot_count_once() -> None:
    """429s of requests booked before the counted one are echoes of the same overshoot."""
    rl, clock = limiter(assumed=OPENAI_GUESS)
    in_flight = [rl.reserve(100) for _ in range(10)]
    clock.advance(0.5)
    for booking in in_flight:
        rl.correct(booking, 0)
        rl.on_rate_limited(0.05, reservation=booking)
        clock.advance(0.5)  # spread over 5 s: time alone would not tell them apart
    assert rl.slowdown == 1.0
    _refused(rl, clock, 0.0, 0.05)  # booked after the first counted one: a repeat
    assert rl.slowdown == 0.5


def test_without_the_booking_429s_within_2s_are_echoes() -> None:
    """When the caller does not pass the refused booking, 2 s of hold-off tell echoes apart."""
    rl, clock = limiter(assumed=OPENAI_GUESS)
    rl.on_rate_limited(None)
    clock.advance(1.0)
    rl.on_rate_limited(None)
    assert rl.slowdown == 1.0
    clock.advance(1.5)
    rl.on_rate_limited(None)
    assert rl.slowdown == 0.5


def test_any_counted_429_while_slowed_halves_again_down_to_the_floor() -> None:
    """While still slowed, every counted 429 halves again, never below 10 % of the limit."""
    rl, clock = limiter(tpm=1000, assumed=(100, None))
    _refused(rl, clock, 0.0, None)
    _refused(rl, clock, 3.0, None)
    assert rl.slowdown == 0.5
    _refused(rl, clock, 12.0, None)  # 12 s later, but not recovered yet
    assert rl.slowdown == pytest.approx(0.5 * (0.5 + 2 / 20))
    for _ in range(10):
        _refused(rl, clock, 3.0, None)
    assert rl.slowdown == 0.1
    assert rl.effective_limits == pytest.approx((10.0, 100.0))


def test_recovery_starts_10s_after_the_last_429_and_takes_20s_from_one_halving() -> None:
    """Quiet time restores the limits: nothing for 10 s, then 1/20 per second, up to full."""
    rl, clock = limiter(assumed=OPENAI_GUESS)
    _refused(rl, clock, 0.0, None)
    _refused(rl, clock, 3.0, None)
    clock.advance(10.0)
    assert rl.slowdown == 0.5
    clock.advance(5.0)
    assert rl.slowdown == pytest.approx(0.75)
    clock.advance(5.0)
    assert rl.slowdown == 1.0
    assert rl.effective_limits == (3000.0, 1_000_000.0)
    clock.advance(3600.0)
    assert rl.reserve(1_000_000).delay == 0.0  # the burst capacity is back too


def test_recovery_from_the_floor_takes_under_30s() -> None:
    """From the 10 % floor, a quiet limiter is back to full within 28 s of the last 429."""
    rl, clock = limiter(assumed=OPENAI_GUESS)
    for _ in range(8):
        _refused(rl, clock, 3.0, None)
    assert rl.slowdown == 0.1
    clock.advance(27.9)
    assert rl.slowdown < 1.0
    clock.advance(0.1)
    assert rl.slowdown == 1.0


def test_the_first_stated_limit_replaces_a_blind_slow_down() -> None:
    """After a blind slow-down, the server's first stated limit rules, at full value."""
    rl, clock = limiter(tpm=1000)
    _refused(rl, clock, 0.0, None)
    _refused(rl, clock, 3.0, None)
    assert rl.effective_limits[1] == pytest.approx(500.0)
    rl.observe(RateLimitInfo(limit_tokens=800))
    assert rl.limits_in_force["tokens"] == (800.0, "server")
    _refused(rl, clock, 3.0, None)
    assert rl.limits_in_force["tokens"] == (800.0, "server")


def test_a_429_that_states_a_limit_is_not_blind() -> None:
    """x-ratelimit-limit-* on the 429 itself is followed; no guessing on top of it."""
    rl, clock = limiter(assumed=OPENAI_GUESS)
    for _ in range(3):
        clock.advance(3.0)
        booking = rl.reserve(100)
        rl.correct(booking, 0)
        info = RateLimitInfo(limit_tokens=2_000_000, remaining_tokens=0)
        rl.on_rate_limited(0.5, info=info, reservation=booking)
    assert rl.slowdown == 1.0
    assert rl.limits_in_force["tokens"] == (2_000_000.0, "server")


# --- Hostile hints -----------------------------------------------------------------------------
HOSTILE_SECONDS = [math.inf, float("1e400"), 1e300, -5.0, math.nan, 1e9, -math.inf, 0.0]


@pytest.mark.parametrize("hint", HOSTILE_SECONDS, ids=str)
def test_a_hostile_retry_after_never_raises_nor_pauses_beyond_a_minute(hint: float) -> None:
    """inf, 1e400, 1e300, -5, NaN or 1e9 s: the pause is at most 60 s, later calls work."""
    rl, clock = limiter(assumed=OPENAI_GUESS)
    rl.on_rate_limited(hint)
    delay = rl.reserve(100).delay
    assert 0.0 <= delay <= MAX_PAUSE
    clock.advance(MAX_PAUSE)
    booking = rl.reserve(100)
    assert booking.delay == 0.0
    rl.correct(booking, 100)
    assert rl.effective_limits == (3000.0, 1_000_000.0)


HOSTILE_COUNTS: list[object] = [math.inf, 1e400, 1e300, -5, 0, -1, math.nan, 2**70, "junk", 1.5]


@pytest.mark.parametrize("value", HOSTILE_COUNTS, ids=repr)
def test_hostile_header_values_never_raise_nor_remove_a_limit(value: object) -> None:
    """Garbage in any field of the headers (limits, remaining, resets) is ignored: no
    ZeroDivisionError or OverflowError later, the limit stays, and no wait grows without bound."""
    rl, _ = limiter(assumed=OPENAI_GUESS)
    infos = [
        RateLimitInfo(**{field: value})  # type: ignore[arg-type]
        for field in RateLimitInfo.__dataclass_fields__
    ]
    for info in infos:
        rl.observe(info)
        rl.on_rate_limited(0.05, info=info)
    for _ in range(100):
        booking = rl.reserve(1000)
        assert 0.0 <= booking.delay < 120.0
        rl.correct(booking, 1000)
    requests, tokens = rl.effective_limits
    assert requests is not None and 1 <= requests <= 10**12
    assert tokens is not None and 1 <= tokens <= 10**12


def test_reset_of_1e9_seconds_does_not_wait_2e7_seconds() -> None:
    """The issue's reset of 1000000000 s with a near-full bucket no longer stretches the
    refill over that time: the next request waits for the stated per-minute rate only."""
    rl, _ = limiter(assumed=OPENAI_GUESS)
    rl.observe(RateLimitInfo(limit_tokens=1000, remaining_tokens=999, reset_tokens=1e9))
    rl.reserve(999)
    assert rl.reserve(100).delay == pytest.approx(6.0)


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
                    clock.advance(0.01)
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


# --- A whole job against a server whose limit the client is not told ---------------------------


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


def _simulate(*, adapt: bool, hint: bool, hidden_tpm: int = 100_000) -> tuple[float, float]:
    """Drive 3,000 requests through the fake clock, the client assuming twice the hidden TPM.

    ``adapt``: the client follows the remaining counts and reports 429s (with Retry-After when
    ``hint``); otherwise it just waits as told. Returns the sustained tokens/min (without the
    server's initial full bucket) as a share of the hidden limit, and the share of 429s.
    """
    rng = random.Random(7)
    clock = FakeClock(0.0)
    server = _HiddenLimitServer(hidden_tpm, clock)
    rl = RateLimiter(None, RateLimit(tokens_per_minute=2 * hidden_tpm), clock=clock)
    sent_tokens = refused = 0
    n = 3000
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
                rl.on_rate_limited(value if hint else None, reservation=booked)
            else:
                clock.advance(value)  # a plain client just waits as told
    minutes = clock.now / 60.0
    return (sent_tokens - hidden_tpm) / minutes / hidden_tpm, refused / n


def test_simulation_runs_at_a_hidden_limit_with_few_429s(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Assuming twice a hidden TPM limit, the client sustains >= 95 % of it with <= 8 % 429s
    (with or without Retry-After), where a client that only waits as told gets ~50 % 429s."""
    results = {hint: _simulate(adapt=True, hint=hint) for hint in (True, False)}
    _, plain_429 = _simulate(adapt=False, hint=True)
    with capsys.disabled():
        for hint, (sustained, share) in results.items():
            print(f"\nhint={hint}: {sustained:.1%} of the hidden limit, 429s {share:.2%}", end="")
        print(f"; waiting as told: 429s {plain_429:.2%}")
    for sustained, share_429 in results.values():
        assert sustained >= 0.95
        assert share_429 <= 0.08
    assert plain_429 > 0.3  # the scenario is hard: without adapting, 429s are frequent


def test_reservation_equality_ignores_when_it_was_booked() -> None:
    """Two bookings of the same size and delay compare equal, whenever they were made."""
    assert Reservation(10, 0.0, 1.0) == Reservation(10, 0.0, 2.0) == Reservation(10, 0.0)
