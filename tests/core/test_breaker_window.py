"""The breaker's COUNT_BASED window: flaky is not down, and a refusal names what opened it."""

from __future__ import annotations

import random

import pytest

from embedguard.core.breaker import CircuitBreaker, CircuitState
from embedguard.core.config import BreakerPolicy
from embedguard.core.errors import (
    CircuitOpenError,
    ProviderConnectionError,
    ServerError,
)

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
DEFAULT = BreakerPolicy()
SMALL = BreakerPolicy(window_size=5, minimum_calls=4, failure_rate_threshold=0.6)
REFUSED = ProviderConnectionError("connection refused (127.0.0.1:9)", provider="openai")


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make(policy: BreakerPolicy = DEFAULT) -> tuple[CircuitBreaker, FakeClock]:
    clock = FakeClock()
    return CircuitBreaker(policy, name="openai", clock=clock), clock


def feed(breaker: CircuitBreaker, outcomes: str) -> None:
    """Report one request per character: ``F`` failed, ``S`` succeeded, ``R`` released."""
    for outcome in outcomes:
        permit = breaker.allow_request()
        if outcome == "F":
            breaker.record_failure(permit, ServerError("boom", status_code=500))
        elif outcome == "S":
            breaker.record_success(permit)
        else:
            breaker.release(permit)


def opens_on_flaky_run(policy: BreakerPolicy, seed: int, rate: float, attempts: int) -> bool:
    """Drive ``attempts`` requests failing independently with probability ``rate``."""
    breaker, _ = make(policy)
    rng = random.Random(seed)
    for _ in range(attempts):
        permit = breaker.allow_request()
        if rng.random() < rate:
            breaker.record_failure(permit)
        else:
            breaker.record_success(permit)
        if breaker.state is not CLOSED:
            return True
    return False


# -- the window -----------------------------------------------------------------------------------
def test_no_verdict_before_minimum_calls() -> None:
    """Fewer than minimum_calls counted requests never open it, whatever their rate."""
    breaker, _ = make(SMALL)
    feed(breaker, "FFF")
    assert breaker.state is CLOSED and breaker.stats().failure_rate == 1.0
    feed(breaker, "F")
    assert breaker.state is OPEN


def test_opens_when_the_rate_reaches_the_threshold() -> None:
    """The breaker opens on the failure that brings f/n to the threshold (inclusive)."""
    breaker, _ = make(SMALL)
    feed(breaker, "SFSF")  # 2 of 4 = 0.5 < 0.6
    assert breaker.state is CLOSED
    feed(breaker, "F")  # 3 of 5 = 0.6
    assert breaker.state is OPEN
    stats = breaker.stats()
    assert (stats.window_calls, stats.window_failures) == (5, 3)


def test_old_outcomes_slide_out() -> None:
    """Only the last window_size requests count: old failures fall out of the window."""
    breaker, _ = make(SMALL)
    feed(breaker, "FFSSS")  # 2 of 5
    feed(breaker, "F")  # FSSSF: still 2 of 5, the first failure slid out
    stats = breaker.stats()
    assert (stats.window_calls, stats.window_failures, breaker.state) == (5, 2, CLOSED)
    feed(breaker, "F")  # SSSFF: the second old failure slid out too
    assert (breaker.stats().window_failures, breaker.state) == (2, CLOSED)
    feed(breaker, "F")  # SSFFF: 3 of 5
    assert breaker.state is OPEN


def test_released_requests_count_neither_way() -> None:
    """Released (neutral) permits add no call toward minimum_calls and no failure."""
    breaker, _ = make(SMALL)
    feed(breaker, "FRFRRFR")
    stats = breaker.stats()
    assert (stats.window_calls, stats.window_failures, breaker.state) == (3, 3, CLOSED)
    feed(breaker, "F")
    assert breaker.state is OPEN


def test_window_is_kept_while_open_and_emptied_on_closing() -> None:
    """The counts that opened it stay visible while open; recovery starts a fresh window."""
    breaker, clock = make(SMALL.evolve(success_threshold=1, half_open_max_attempts=1))
    feed(breaker, "SFFF")
    clock.advance(breaker.policy.open_timeout)
    probe = breaker.allow_request()
    assert breaker.stats().window_failures == 3  # probes do not enter the window
    breaker.record_success(probe)
    stats = breaker.stats()
    assert (stats.state, stats.window_calls, stats.window_failures) == (CLOSED, 0, 0)
    feed(breaker, "FFF")
    assert breaker.state is CLOSED  # fewer than minimum_calls again


# -- flaky is not down ----------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [0.15, 0.20])
def test_a_flaky_provider_never_opens_the_default_breaker(rate: float) -> None:
    """Seeded runs of 2,000 attempts failing independently at 15-20% leave it closed."""
    opened = [seed for seed in range(20) if opens_on_flaky_run(DEFAULT, seed, rate, 2000)]
    assert opened == []


def test_the_same_runs_opened_the_old_consecutive_rule() -> None:
    """Control: '5 failures in a row' (the old default) opens on those same 20% runs."""
    old_rule = BreakerPolicy(failure_threshold=5)
    opened = [seed for seed in range(20) if opens_on_flaky_run(old_rule, seed, 0.20, 2000)]
    assert len(opened) >= 5


def test_nine_faults_in_the_first_twenty_requests_do_not_open() -> None:
    """The issue's run: 9 faults (5 in a row) in the first 20 requests is not an outage."""
    breaker, _ = make()
    feed(breaker, "SFSSFFFFFSSSFSSFSSFS")
    stats = breaker.stats()
    assert (stats.window_calls, stats.window_failures, breaker.state) == (20, 9, CLOSED)


def test_a_hard_outage_opens_after_minimum_calls_with_twenty_in_flight() -> None:
    """20 requests in flight all fail: the 10th failure opens it, the late ones are ignored."""
    breaker, _ = make()
    in_flight = [breaker.allow_request() for _ in range(20)]
    for i, permit in enumerate(in_flight, 1):
        breaker.record_failure(permit, REFUSED)
        assert breaker.state is (OPEN if i >= DEFAULT.minimum_calls else CLOSED)
    stats = breaker.stats()
    assert (stats.opened_count, stats.window_failures) == (1, DEFAULT.minimum_calls)
    refused = 0
    for _ in range(100):  # fail fast from now on
        with pytest.raises(CircuitOpenError):
            breaker.allow_request()
        refused += 1
    assert breaker.stats().rejected_count == refused


def test_a_hard_outage_after_a_healthy_run_opens_within_fifteen_failures() -> None:
    """After a full window of successes, 15 failures (0.75 of 20) open it, 14 do not."""
    breaker, _ = make()
    feed(breaker, "S" * 100 + "F" * 14)
    assert breaker.state is CLOSED
    feed(breaker, "F")
    assert breaker.state is OPEN


# -- what opened the circuit ----------------------------------------------------------------------
def test_refusal_names_the_rate_and_the_last_failure() -> None:
    """CircuitOpenError says how many failed and what the last failure was, raised from it."""
    breaker, clock = make(SMALL)
    feed(breaker, "SF")
    permits = [breaker.allow_request() for _ in range(2)]
    for permit in permits:
        breaker.record_failure(permit, REFUSED)
    clock.advance(5.0)
    with pytest.raises(CircuitOpenError) as info:
        breaker.allow_request()
    error = info.value
    assert str(error) == (
        "[openai] circuit open: 3 of 4 recent requests failed; "
        "last: ProviderConnectionError: connection refused (127.0.0.1:9); next probe in 25s"
    )
    assert error.last_failure is REFUSED and error.__cause__ is REFUSED
    assert error.retry_in == pytest.approx(25.0)


def test_a_late_failure_does_not_replace_the_one_that_opened_it() -> None:
    """Failures reported after the opening (stale permits) do not change the named cause."""
    breaker, _ = make(SMALL)
    stale = breaker.allow_request()
    feed(breaker, "FFF")
    breaker.record_failure(breaker.allow_request(), REFUSED)
    breaker.record_failure(stale, ServerError("a late one", status_code=503))
    with pytest.raises(CircuitOpenError) as info:
        breaker.allow_request()
    assert info.value.last_failure is REFUSED


def test_refusal_in_half_open_says_why_it_opened() -> None:
    """Probes busy: the refusal still names the failed probe that reopened it."""
    policy = SMALL.evolve(half_open_max_attempts=1, success_threshold=1)
    breaker, clock = make(policy)
    feed(breaker, "FFFF")
    clock.advance(policy.open_timeout)
    probe = breaker.allow_request()
    with pytest.raises(CircuitOpenError, match=r"every probe slot is taken \(opened: 4 of 4"):
        breaker.allow_request()
    breaker.record_failure(probe, ServerError("still down", status_code=503))
    with pytest.raises(CircuitOpenError) as info:
        breaker.allow_request()
    assert "a half-open probe failed; last: ServerError: still down (status 503)" in str(info.value)


def test_refusal_after_an_unanswered_half_open_episode() -> None:
    """A half-open episode that timed out is named as the reason, keeping the last failure."""
    policy = SMALL.evolve(half_open_max_attempts=1, success_threshold=1)
    breaker, clock = make(policy)
    feed(breaker, "FFF")
    breaker.record_failure(breaker.allow_request(), REFUSED)
    clock.advance(policy.open_timeout)
    breaker.allow_request()  # a probe that never answers
    clock.advance(policy.half_open_timeout)
    with pytest.raises(CircuitOpenError) as info:
        breaker.allow_request()
    assert "no half-open probe answered within 30s; last: ProviderConnectionError" in str(
        info.value
    )
    assert info.value.__cause__ is REFUSED


def test_a_failure_without_an_error_leaves_no_cause() -> None:
    """record_failure without an error: the refusal gives the rate only, with no __cause__."""
    breaker, _ = make(SMALL)
    feed(breaker, "FFF")
    breaker.record_failure(breaker.allow_request())
    with pytest.raises(CircuitOpenError) as info:
        breaker.allow_request()
    assert "4 of 4 recent requests failed; next probe" in str(info.value)
    assert info.value.last_failure is None and info.value.__cause__ is None


def test_the_failure_note_is_one_bounded_line() -> None:
    """A long, multi-line error text is folded to one line and cut to a bounded length."""
    breaker, _ = make(SMALL)
    feed(breaker, "FFF")
    breaker.record_failure(breaker.allow_request(), RuntimeError("line\n" * 200))
    with pytest.raises(CircuitOpenError) as info:
        breaker.allow_request()
    message = str(info.value)
    assert "\n" not in message and len(message) < 450
    assert "last: RuntimeError: line line" in message


# -- the deprecated failure_threshold -------------------------------------------------------------
def test_failure_threshold_is_the_old_rule_exactly() -> None:
    """failure_threshold=n maps to a window of n that must be all failures: n in a row."""
    policy = BreakerPolicy(failure_threshold=3)
    assert policy == BreakerPolicy(window_size=3, minimum_calls=3, failure_rate_threshold=1.0)
    assert policy.failure_threshold == 3
    breaker, _ = make(policy)
    feed(breaker, "FFSFFRSFF")
    assert breaker.state is CLOSED
    feed(breaker, "F")
    assert breaker.state is OPEN


def test_failure_threshold_round_trips_as_the_new_fields() -> None:
    """The alias is not stored: dumps carry the window fields; evolve() replaces them."""
    policy = BreakerPolicy(failure_threshold=4)
    assert "failure_threshold" not in policy.to_dict()
    assert BreakerPolicy.from_dict(policy.to_dict()) == policy
    assert DEFAULT.evolve(failure_threshold=2) == BreakerPolicy(failure_threshold=2)
    assert policy.evolve(minimum_calls=2).window_size == 4
    assert DEFAULT.failure_threshold == DEFAULT.minimum_calls == 10


@pytest.mark.parametrize(
    "fields",
    [
        {"failure_threshold": 3, "window_size": 10},
        {"failure_threshold": 0},
        {"minimum_calls": 21},
        {"failure_rate_threshold": 0},
        {"failure_rate_threshold": 1.5},
    ],
)
def test_inconsistent_window_settings_are_refused(fields: dict[str, object]) -> None:
    """The alias with the new fields, minimum_calls over the window, or a bad rate are refused."""
    with pytest.raises(ValueError, match=r"failure_threshold|minimum_calls|failure_rate"):
        BreakerPolicy(**fields)  # type: ignore[arg-type]
