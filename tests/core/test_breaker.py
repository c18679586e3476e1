"""Circuit breaker state machine, driven by a fake clock."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

import pytest

from embedguard.core.breaker import BreakerStats, CircuitBreaker, CircuitState, Permit
from embedguard.core.config import BreakerPolicy
from embedguard.core.errors import CircuitOpenError

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


POLICY = BreakerPolicy(
    window_size=6,
    minimum_calls=3,
    failure_rate_threshold=0.5,
    success_threshold=2,
    open_timeout=10.0,
    half_open_max_attempts=3,
    half_open_timeout=5.0,
)


def make(policy: BreakerPolicy = POLICY) -> tuple[CircuitBreaker, FakeClock, list[tuple[str, str]]]:
    clock = FakeClock()
    breaker = CircuitBreaker(policy, name="openai", clock=clock)
    events: list[tuple[str, str]] = []
    breaker.add_listener(lambda old, new: events.append((old.value, new.value)))
    return breaker, clock, events


def trip(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.policy.minimum_calls):
        breaker.record_failure(breaker.allow_request())


def half_open(breaker: CircuitBreaker, clock: FakeClock) -> Permit:
    trip(breaker)
    clock.advance(breaker.policy.open_timeout)
    return breaker.allow_request()


def run_with_timeout(target: Callable[[], None], seconds: float = 5.0) -> None:
    """Run ``target`` in a thread; fail (instead of hanging) if it deadlocks."""
    errors: list[BaseException] = []

    def wrapper() -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=wrapper, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "deadlock: the call did not return"
    if errors:
        raise errors[0]


# -- closed ---------------------------------------------------------------------------------------
def test_closed_opens_once_minimum_calls_have_failed() -> None:
    """From an empty window, minimum_calls failures open the breaker, one fewer does not."""
    breaker, _, events = make()
    for _ in range(2):
        breaker.record_failure(breaker.allow_request())
    assert breaker.state is CLOSED
    breaker.record_failure(breaker.allow_request())
    assert breaker.state is OPEN
    assert events == [("closed", "open")]


def test_a_success_does_not_reset_the_window() -> None:
    """A success lowers the rate but forgets no failure; only a failure can open the breaker."""
    breaker, _, _ = make()
    for _ in range(2):
        breaker.record_failure(breaker.allow_request())
    breaker.record_success(breaker.allow_request())
    stats = breaker.stats()
    assert (stats.consecutive_failures, stats.window_calls, stats.window_failures) == (0, 3, 2)
    assert stats.failure_rate == pytest.approx(2 / 3)
    assert breaker.state is CLOSED
    breaker.record_failure(breaker.allow_request())  # 3 of 4 failed: over 0.5
    assert breaker.state is OPEN


def test_release_in_closed_counts_nothing() -> None:
    """A released (neutral) request counts neither as a call nor as a failure."""
    breaker, _, _ = make()
    breaker.record_failure(breaker.allow_request())
    breaker.release(breaker.allow_request())
    stats = breaker.stats()
    assert (stats.consecutive_failures, stats.window_calls, stats.window_failures) == (1, 1, 1)


# -- open -----------------------------------------------------------------------------------------
def test_open_rejects_with_time_left() -> None:
    """An open breaker fails fast with the provider name and the seconds until a probe."""
    breaker, clock, _ = make()
    trip(breaker)
    clock.advance(4.0)
    with pytest.raises(CircuitOpenError) as info:
        breaker.allow_request()
    assert info.value.provider == "openai"
    assert info.value.retry_in == pytest.approx(6.0)
    assert breaker.stats().rejected_count == 1
    assert breaker.stats().retry_in == pytest.approx(6.0)


def test_open_reads_half_open_once_timeout_elapsed() -> None:
    """After open_timeout the state reads half-open; the transition happens on the next request."""
    breaker, clock, events = make()
    trip(breaker)
    clock.advance(9.999)
    assert breaker.state is OPEN
    clock.advance(0.001)
    assert breaker.state is HALF_OPEN
    assert events == [("closed", "open")]
    permit = breaker.allow_request()
    assert permit.probe
    assert events == [("closed", "open"), ("open", "half_open")]
    assert breaker.stats().probes_in_flight == 1


# -- half-open ------------------------------------------------------------------------------------
def test_half_open_admits_at_most_max_attempts() -> None:
    """The first caller is probe #1; at most half_open_max_attempts probes, then retry_in=0."""
    breaker, clock, _ = make()
    first = half_open(breaker, clock)
    others = [breaker.allow_request() for _ in range(2)]
    assert all(p.probe for p in [first, *others])
    with pytest.raises(CircuitOpenError) as info:
        breaker.allow_request()
    assert info.value.retry_in == 0.0
    assert breaker.stats().probes_admitted == 3


def test_half_open_closes_after_success_threshold() -> None:
    """success_threshold probe successes close the breaker and clear its counters."""
    breaker, clock, events = make()
    first = half_open(breaker, clock)
    second = breaker.allow_request()
    breaker.record_success(first)
    assert breaker.state is HALF_OPEN
    breaker.record_success(second)
    assert breaker.state is CLOSED
    assert events[-1] == ("half_open", "closed")
    stats = breaker.stats()
    assert (stats.consecutive_failures, stats.probes_in_flight, stats.closed_count) == (0, 0, 1)
    assert not breaker.allow_request().probe


def test_probe_failure_reopens_with_fresh_timer() -> None:
    """Any probe failure reopens the breaker for a full open_timeout from now."""
    breaker, clock, events = make()
    first = half_open(breaker, clock)
    breaker.record_success(first)
    second = breaker.allow_request()
    clock.advance(1.0)
    breaker.record_failure(second)
    assert breaker.state is OPEN
    assert events[-1] == ("half_open", "open")
    assert breaker.stats().retry_in == pytest.approx(10.0)
    assert breaker.stats().opened_count == 2


def test_released_probe_gives_its_slot_back() -> None:
    """A cancelled probe frees its slot, so another caller can probe."""
    breaker, clock, _ = make(POLICY.evolve(half_open_max_attempts=2, success_threshold=1))
    first = half_open(breaker, clock)
    breaker.allow_request()
    with pytest.raises(CircuitOpenError):
        breaker.allow_request()
    breaker.release(first)
    breaker.release(first)  # a second release of the same permit frees nothing more
    assert breaker.allow_request().probe
    with pytest.raises(CircuitOpenError):
        breaker.allow_request()
    assert breaker.state is HALF_OPEN


def test_half_open_timeout_unwedges() -> None:
    """Probes that never report: after half_open_timeout the episode counts as failed."""
    breaker, clock, events = make()
    hung = [half_open(breaker, clock), breaker.allow_request(), breaker.allow_request()]
    clock.advance(4.9)
    with pytest.raises(CircuitOpenError):
        breaker.allow_request()
    clock.advance(0.1)
    assert breaker.state is OPEN
    assert events[-1] == ("half_open", "open")
    assert breaker.stats().retry_in == pytest.approx(10.0)
    for permit in hung:  # the hung probes finally answer: too late to count
        breaker.record_success(permit)
    assert breaker.state is OPEN
    clock.advance(10.0)
    assert breaker.allow_request().probe


def test_half_open_timeout_counts_from_the_deadline() -> None:
    """A breaker looked at long after its episode expired is already due for a new probe."""
    breaker, clock, events = make()
    half_open(breaker, clock)
    clock.advance(5.0 + 10.0)
    permit = breaker.allow_request()
    assert permit.probe
    assert events[-2:] == [("half_open", "open"), ("open", "half_open")]


def test_stale_probe_reports_are_ignored() -> None:
    """A probe from an earlier episode cannot close, reopen, or free a slot of the new one."""
    breaker, clock, _ = make(POLICY.evolve(half_open_max_attempts=2, success_threshold=2))
    old_a = half_open(breaker, clock)
    old_b = breaker.allow_request()
    breaker.record_failure(old_a)  # episode 1 fails
    clock.advance(10.0)
    new_a = breaker.allow_request()
    new_b = breaker.allow_request()
    breaker.record_success(old_b)
    breaker.record_success(old_b)
    assert breaker.stats().half_open_successes == 0
    breaker.record_failure(old_b)
    assert breaker.state is HALF_OPEN
    breaker.release(old_b)
    with pytest.raises(CircuitOpenError):
        breaker.allow_request()
    breaker.record_success(new_a)
    breaker.record_success(new_b)
    assert breaker.state is CLOSED


def test_closed_era_success_is_not_a_probe_result() -> None:
    """A request admitted while closed that succeeds during half-open does not count as a probe."""
    breaker, clock, _ = make(POLICY.evolve(success_threshold=1, half_open_max_attempts=1))
    early = breaker.allow_request()
    trip(breaker)
    clock.advance(10.0)
    breaker.allow_request()
    breaker.record_success(early)
    assert breaker.state is HALF_OPEN
    assert breaker.stats().half_open_successes == 0


def test_closed_era_failure_while_open_is_ignored() -> None:
    """A late failure of a closed-era request does not restart the open timer."""
    breaker, clock, _ = make()
    early = breaker.allow_request()
    trip(breaker)
    clock.advance(6.0)
    breaker.record_failure(early)
    assert breaker.stats().retry_in == pytest.approx(4.0)
    assert breaker.stats().opened_count == 1


def test_closed_era_failure_after_recovery_is_ignored() -> None:
    """A failure from before the breaker opened does not count against the recovered breaker."""
    breaker, clock, _ = make(POLICY.evolve(minimum_calls=1))
    early = breaker.allow_request()
    trip(breaker)
    clock.advance(10.0)
    breaker.record_success(breaker.allow_request())
    breaker.record_success(breaker.allow_request())
    assert breaker.state is CLOSED
    breaker.record_failure(early)
    assert breaker.state is CLOSED


# -- concurrency ----------------------------------------------------------------------------------
def test_probe_bound_holds_for_100_threads() -> None:
    """100 threads arriving as the timeout elapses: exactly half_open_max_attempts get through."""
    breaker, clock, events = make()
    trip(breaker)
    clock.advance(10.0)
    barrier = threading.Barrier(100)
    admitted: list[Permit] = []
    rejected: list[CircuitOpenError] = []

    def worker() -> None:
        barrier.wait()
        try:
            admitted.append(breaker.allow_request())
        except CircuitOpenError as exc:
            rejected.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(admitted) == 3
    assert len({p.ticket for p in admitted}) == 3
    assert len(rejected) == 97
    assert all(exc.retry_in == 0.0 for exc in rejected)
    assert events.count(("open", "half_open")) == 1
    assert breaker.stats().rejected_count == 97


async def test_probe_bound_holds_for_100_tasks() -> None:
    """100 asyncio tasks arriving as the timeout elapses: exactly half_open_max_attempts probe."""
    breaker, clock, _ = make()
    trip(breaker)
    go = asyncio.Event()

    async def worker() -> bool:
        await go.wait()
        try:
            permit = breaker.allow_request()
        except CircuitOpenError:
            return False
        await asyncio.sleep(0)  # the probe is in flight while others arrive
        breaker.release(permit)
        return True

    tasks = [asyncio.create_task(worker()) for _ in range(100)]
    await asyncio.sleep(0)
    clock.advance(10.0)
    go.set()
    results = await asyncio.gather(*tasks)
    assert sum(results) == 3
    assert breaker.stats().probes_in_flight == 0


# -- listeners ------------------------------------------------------------------------------------
def test_listeners_see_every_transition_in_order() -> None:
    """Each listener gets (old, new) for every transition, in the order they happened."""
    breaker, clock, events = make()
    second: list[tuple[CircuitState, CircuitState]] = []
    breaker.add_listener(lambda old, new: second.append((old, new)))
    probe = half_open(breaker, clock)
    breaker.record_failure(probe)
    clock.advance(10.0)
    breaker.record_success(breaker.allow_request())
    breaker.record_success(breaker.allow_request())
    expected = [("closed", "open"), ("open", "half_open"), ("half_open", "open")]
    expected += [("open", "half_open"), ("half_open", "closed")]
    assert events == expected
    assert [(o.value, n.value) for o, n in second] == expected


def test_listener_runs_outside_the_lock() -> None:
    """A listener may read the breaker without deadlocking."""
    breaker, _, _ = make()
    seen: list[tuple[CircuitState, BreakerStats]] = []
    breaker.add_listener(lambda old, new: seen.append((breaker.state, breaker.stats())))
    run_with_timeout(lambda: trip(breaker))
    assert seen[0][0] is OPEN
    assert seen[0][1].opened_count == 1


def test_listener_causing_a_transition_keeps_order() -> None:
    """A transition caused inside a listener reaches every listener after the current one."""
    breaker = CircuitBreaker(POLICY, clock=FakeClock())
    breaker.add_listener(lambda old, new: breaker.reset() if new is OPEN else None)
    events: list[tuple[CircuitState, CircuitState]] = []
    breaker.add_listener(lambda old, new: events.append((old, new)))
    run_with_timeout(lambda: trip(breaker))
    assert events == [(CLOSED, OPEN), (OPEN, CLOSED)]
    assert breaker.state is CLOSED


def test_failing_listener_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """A listener that raises is logged; the request path and other listeners carry on."""
    breaker, _, events = make()

    def broken(old: CircuitState, new: CircuitState) -> None:
        raise RuntimeError("metrics backend down")

    breaker.add_listener(broken)
    with caplog.at_level(logging.ERROR, logger="embedguard.core.breaker"):
        trip(breaker)
    assert breaker.state is OPEN
    assert events == [("closed", "open")]
    assert "listener failed" in caplog.text


# -- disabled, reset, stats ------------------------------------------------------------------
def test_disabled_breaker_always_admits() -> None:
    """enabled=False admits every request and never changes state."""
    breaker, _, events = make(POLICY.evolve(enabled=False))
    for _ in range(100):
        breaker.record_failure(breaker.allow_request())
    assert breaker.state is CLOSED
    assert events == []
    assert breaker.stats().opened_count == 0


def test_reset_closes_and_clears_counters() -> None:
    """reset() returns an open breaker to closed, tells listeners, and clears the counts."""
    breaker, _, events = make()
    trip(breaker)
    breaker.reset()
    assert breaker.state is CLOSED
    assert events == [("closed", "open"), ("open", "closed")]
    stats = breaker.stats()
    assert (stats.window_calls, stats.consecutive_failures, stats.retry_in) == (0, 0, 0.0)
    assert breaker.allow_request() is not None


def test_reset_while_closed_is_silent_and_forgets_failures() -> None:
    """reset() in closed clears the failure count, ignores older permits, and tells no one."""
    breaker, _, events = make()
    early = breaker.allow_request()
    breaker.record_failure(breaker.allow_request())
    breaker.record_failure(breaker.allow_request())
    breaker.reset()
    assert breaker.stats().window_calls == 0
    breaker.record_failure(early)
    assert breaker.stats().window_calls == 0
    assert events == []


def test_reset_during_half_open_ignores_the_old_probes() -> None:
    """After a reset, probes from the interrupted half-open episode cannot reopen the breaker."""
    breaker, clock, events = make()
    probe = half_open(breaker, clock)
    breaker.reset()
    breaker.record_failure(probe)
    assert breaker.state is CLOSED
    assert events[-1] == ("half_open", "closed")


def test_stats_snapshot() -> None:
    """stats() reports the state, counters and time left consistently."""
    breaker, clock, _ = make()
    assert breaker.stats() == BreakerStats(CLOSED, 0, 0, 0, 0, 0, 0, 0, 0.0, 0, 0, 0.0)
    probe = half_open(breaker, clock)
    breaker.allow_request()
    breaker.record_success(probe)
    assert breaker.stats() == BreakerStats(HALF_OPEN, 3, 1, 2, 1, 1, 0, 0, 0.0, 3, 3, 1.0)
    assert "half_open" in repr(breaker) and "failed=3/3" in repr(breaker)
