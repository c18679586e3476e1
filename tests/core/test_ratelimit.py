"""Requests/min and tokens/min limiter, driven by a fake clock: buckets, headers, sources."""

from __future__ import annotations

import asyncio
import threading

import pytest

from embedguard.core.config import RateLimit
from embedguard.core.ratelimit import RateLimiter, RateLimitInfo, Reservation

from ._limiter import FakeClock, limiter


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
    """The repr shows each bucket's current level, its limit and where the limit comes from."""
    rl, clock = limiter(rpm=60, tpm=1000)
    rl.reserve(400)
    assert repr(rl) == (
        "RateLimiter(requests=59/60 per min (configured), tokens=600/1000 per min (configured))"
    )
    clock.advance(6.0)
    assert repr(rl) == (
        "RateLimiter(requests=60/60 per min (configured), tokens=700/1000 per min (configured))"
    )


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
    assert repr(rl) == "RateLimiter(tokens=300/1000 per min (configured))"
    rl.correct(in_flight, 400)
    assert repr(rl) == "RateLimiter(tokens=300/1000 per min (configured))"


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
    assert (
        repr(rl)
        == "RateLimiter(requests=498/500 per min (server), tokens=-60/600 per min (server))"
    )


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
    assert repr(rl) == "RateLimiter(tokens=-10/600 per min (server))"


def test_learned_bucket_counts_what_is_already_booked() -> None:
    """A bucket created from headers starts with the unsettled bookings already taken."""
    rl, _ = limiter()
    rl.reserve(500)
    rl.observe(RateLimitInfo(limit_tokens=600))
    assert rl.reserve(100).delay == 0.0
    assert rl.reserve(10).delay == pytest.approx(1.0)


# --- Which limit is in force: configured cap, server statement, assumption --------------------
OPENAI_GUESS = (3000, 1_000_000)


def test_assumed_limits_apply_until_the_server_states_its_own() -> None:
    """Without a cap, the provider's assumed limits pace the client and say so."""
    rl, _ = limiter(assumed=OPENAI_GUESS)
    assert rl.limits_in_force == {
        "requests": (3000.0, "assumed"),
        "tokens": (1_000_000.0, "assumed"),
    }
    assert rl.reserve(1_000_000).delay == 0.0
    assert rl.reserve(10_000).delay == pytest.approx(0.6)
    assert "tokens=-10000/1000000 per min (assumed)" in repr(rl)


def test_a_stated_limit_above_the_assumption_replaces_it_and_frees_the_headroom() -> None:
    """A server stating 10M TPM / 10k RPM raises the limits in force, and the extra burst is
    available at once: what was used of the guess stays used, nothing more."""
    rl, _ = limiter(assumed=OPENAI_GUESS)
    first = rl.reserve(900_000)
    rl.correct(first, 900_000)
    assert rl.reserve(200_000).delay > 0  # the guess is nearly spent
    rl.observe(RateLimitInfo(limit_requests=10_000, limit_tokens=10_000_000))
    assert rl.limits_in_force == {
        "requests": (10_000.0, "server"),
        "tokens": (10_000_000.0, "server"),
    }
    assert rl.reserve(8_000_000).delay == 0.0  # 10M - 1.1M used = 8.9M left
    assert rl.reserve(1_000_000).delay == pytest.approx(0.6)


def test_a_stated_limit_below_the_assumption_lowers_it_keeping_what_was_used() -> None:
    """A server stating less than the guess lowers the limit; what was used stays used."""
    rl, _ = limiter(assumed=OPENAI_GUESS)
    rl.correct(rl.reserve(100_000), 100_000)
    rl.observe(RateLimitInfo(limit_tokens=300_000))
    assert rl.limits_in_force["tokens"] == (300_000.0, "server")
    assert rl.limits_in_force["requests"] == (3000.0, "assumed")  # not stated: still the guess
    assert rl.reserve(200_000).delay == 0.0
    assert rl.reserve(5_000).delay == pytest.approx(1.0)


def test_stated_limits_are_followed_down_and_up_again() -> None:
    """Each statement replaces the previous one, in both directions."""
    rl, _ = limiter(assumed=OPENAI_GUESS)
    for stated in (500_000, 2_000_000, 100_000, 10_000_000):
        rl.observe(RateLimitInfo(limit_tokens=stated))
        assert rl.limits_in_force["tokens"] == (float(stated), "server")


def test_a_configured_cap_beats_the_assumption_and_a_higher_statement() -> None:
    """A cap set by the user replaces the guess and is never exceeded, whatever the server says."""
    rl, _ = limiter(tpm=200_000, assumed=OPENAI_GUESS)
    assert rl.limits_in_force == {
        "requests": (3000.0, "assumed"),  # a None field of the cap: learned
        "tokens": (200_000.0, "configured"),
    }
    rl.observe(RateLimitInfo(limit_requests=10_000, limit_tokens=10_000_000))
    assert rl.limits_in_force == {
        "requests": (10_000.0, "server"),
        "tokens": (200_000.0, "configured"),
    }
    rl.observe(RateLimitInfo(limit_tokens=150_000))
    assert rl.limits_in_force["tokens"] == (150_000.0, "server")  # the server is stricter


def test_no_cap_no_assumption_is_unlimited_until_stated() -> None:
    """A local server's profile (no cap, nothing assumed) paces nothing and says so."""
    rl, _ = limiter()
    assert rl.limits_in_force == {"requests": (None, "unlimited"), "tokens": (None, "unlimited")}
    assert repr(rl) == "RateLimiter(unlimited)"


def test_repr_names_the_source_and_the_slow_down() -> None:
    """The repr shows where each limit comes from, and a blind slow-down when one is on."""
    rl, clock = limiter(tpm=1000, assumed=(60, None))
    assert repr(rl) == (
        "RateLimiter(requests=60/60 per min (assumed), tokens=1000/1000 per min (configured))"
    )
    rl.on_rate_limited(None)
    clock.advance(3.0)
    rl.on_rate_limited(None)
    assert rl.slowdown == 0.5
    assert repr(rl).endswith("tokens=0/500 per min (configured), slowed x0.50)")


@pytest.mark.parametrize(
    "info",
    [
        RateLimitInfo(limit_requests=10_000, remaining_requests=9_999, reset_requests=0.006),
        RateLimitInfo(limit_requests=10_000, reset_requests=43_200.0),  # a daily window
        RateLimitInfo(limit_requests=10_000, remaining_requests=5, reset_requests=1e9),
    ],
    ids=["6ms", "12h", "1e9s"],
)
def test_resets_never_change_the_pace(info: RateLimitInfo) -> None:
    """x-ratelimit-reset-* are not used for pacing: whatever they say, the limit is the limit."""
    rl, _ = limiter(assumed=(3000, None))
    rl.observe(info)
    assert rl.limits_in_force["requests"] == (10_000.0, "server")
    remaining = info.remaining_requests if info.remaining_requests is not None else 10_000
    assert [rl.reserve(0).delay for _ in range(remaining)] == [0.0] * remaining
    assert rl.reserve(0).delay == pytest.approx(0.006)
