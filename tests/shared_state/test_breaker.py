"""RedisCircuitBreaker: one state machine for every breaker on the same key (fake and real Redis).

Redis times the breaker with its own clock, so the timeouts here are short real ones, with
generous margins and polling instead of exact sleeps.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from embedguard.core.breaker import CircuitState, Permit
from embedguard.core.config import BreakerPolicy
from embedguard.core.errors import CircuitOpenError
from embedguard.core.shared_state import RedisCircuitBreaker

from .conftest import Backend

SLOW = BreakerPolicy(failure_threshold=3, open_timeout=60, half_open_max_attempts=2,
                     success_threshold=2)  # fmt: skip
FAST = BreakerPolicy(failure_threshold=2, open_timeout=0.2, half_open_max_attempts=3,
                     success_threshold=2, half_open_timeout=30)  # fmt: skip


def make(backend: Backend, policy: BreakerPolicy, *, fresh_client: bool = False):
    """A breaker on the test's key (``fresh_client``: as another process would connect)."""
    client = backend.make_client() if fresh_client else backend.client
    return RedisCircuitBreaker(policy, client, name="prov", key_prefix=backend.prefix)


def trip(breaker: RedisCircuitBreaker, times: int) -> None:
    for _ in range(times):
        breaker.record_failure(breaker.allow_request())


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_failures_from_every_worker_count_toward_opening(backend: Backend) -> None:
    """Failures reported by different breakers on one key add up and open it for all."""
    a, b = make(backend, SLOW), make(backend, SLOW, fresh_client=True)
    trip(a, 2)
    assert b.state is CircuitState.CLOSED
    trip(b, 1)
    assert a.state is CircuitState.OPEN
    with pytest.raises(CircuitOpenError) as info:
        a.allow_request()
    assert 50 < info.value.retry_in <= 60
    assert a.stats().rejected_count == 1


def test_a_success_anywhere_clears_the_consecutive_failures(backend: Backend) -> None:
    """A success reported by one worker resets the fleet's run of failures."""
    a, b = make(backend, SLOW), make(backend, SLOW)
    trip(a, 2)
    b.record_success(b.allow_request())
    trip(a, 2)
    assert a.stats().consecutive_failures == 2
    assert b.state is CircuitState.CLOSED


def test_a_breaker_made_later_joins_the_current_state(backend: Backend) -> None:
    """Construction never resets the shared state: a late worker sees the breaker open."""
    trip(make(backend, SLOW), 3)
    late = make(backend, SLOW, fresh_client=True)
    assert late.state is CircuitState.OPEN
    with pytest.raises(CircuitOpenError):
        late.allow_request()


def test_half_open_probes_are_bounded_across_all_breakers(backend: Backend) -> None:
    """After the open timeout, the fleet together gets half_open_max_attempts probes."""
    workers = [make(backend, FAST, fresh_client=True) for _ in range(4)]
    trip(workers[0], 2)
    wait_for(lambda: workers[1].state is CircuitState.HALF_OPEN)
    permits: list[Permit] = []
    refused: list[CircuitOpenError] = []
    for _ in range(3):
        for worker in workers:
            try:
                permits.append(worker.allow_request())
            except CircuitOpenError as exc:
                refused.append(exc)
    assert len(permits) == 3 and all(p.probe for p in permits)
    assert len(refused) == 9 and all(exc.retry_in == 0 for exc in refused)
    assert workers[3].stats().probes_in_flight == 3


def test_a_released_probe_gives_its_slot_back(backend: Backend) -> None:
    """Releasing a probe lets another worker take its slot; the others stay refused."""
    a, b = make(backend, FAST), make(backend, FAST)
    trip(a, 2)
    wait_for(lambda: a.state is CircuitState.HALF_OPEN)
    probes = [a.allow_request() for _ in range(3)]
    with pytest.raises(CircuitOpenError):
        b.allow_request()
    a.release(probes[0])
    assert b.allow_request().probe
    with pytest.raises(CircuitOpenError):
        b.allow_request()


def test_probe_successes_close_it_for_everyone(backend: Backend) -> None:
    """success_threshold probe successes, from different workers, close the shared breaker."""
    a, b, c = (make(backend, FAST) for _ in range(3))
    trip(a, 2)
    wait_for(lambda: c.state is CircuitState.HALF_OPEN)
    pa, pb = a.allow_request(), b.allow_request()
    a.record_success(pa)
    assert c.state is CircuitState.HALF_OPEN
    b.record_success(pb)
    assert c.state is CircuitState.CLOSED
    assert not c.allow_request().probe
    stats = c.stats()
    assert (stats.opened_count, stats.closed_count) == (1, 1)


def test_a_failed_probe_reopens_and_stale_reports_are_ignored(backend: Backend) -> None:
    """One failed probe reopens it; the episode's other probe then reports into the void."""
    a, b = make(backend, FAST), make(backend, FAST)
    trip(a, 2)
    wait_for(lambda: a.state is CircuitState.HALF_OPEN)
    pa, pb = a.allow_request(), b.allow_request()
    a.record_failure(pa)
    assert b.stats().opened_count == 2
    b.record_success(pb)
    stats = b.stats()
    assert (stats.opened_count, stats.closed_count, stats.half_open_successes) == (2, 0, 0)


def test_a_half_open_episode_without_verdict_reopens(backend: Backend) -> None:
    """Probes that never report cannot wedge the breaker: half_open_timeout reopens it."""
    policy = BreakerPolicy(failure_threshold=1, open_timeout=0.3, half_open_max_attempts=1,
                           success_threshold=1, half_open_timeout=0.5)  # fmt: skip
    a, b = make(backend, policy), make(backend, policy)
    trip(a, 1)
    wait_for(lambda: a.state is CircuitState.HALF_OPEN)
    a.allow_request()  # a probe that hangs
    with pytest.raises(CircuitOpenError):
        b.allow_request()
    wait_for(lambda: b.stats().opened_count == 2)
    wait_for(lambda: b.state is CircuitState.HALF_OPEN)
    assert b.allow_request().probe


def test_listeners_see_transitions_made_by_other_workers(backend: Backend) -> None:
    """A worker's listener hears of a change made elsewhere when it next looks, in order."""
    a, b = make(backend, FAST), make(backend, FAST)
    seen: list[tuple[str, str]] = []
    b.add_listener(lambda old, new: seen.append((old.value, new.value)))
    trip(a, 2)
    assert seen == []
    b.stats()
    assert seen == [("closed", "open")]
    wait_for(lambda: b.state is CircuitState.HALF_OPEN)
    b.record_success(b.allow_request())
    b.record_success(b.allow_request())
    assert seen == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_reset_closes_it_for_the_whole_fleet(backend: Backend) -> None:
    """reset() on one worker closes the shared breaker; old permits no longer count."""
    a, b = make(backend, SLOW), make(backend, SLOW)
    old = b.allow_request()
    trip(a, 3)
    a.reset()
    assert b.state is CircuitState.CLOSED
    b.record_failure(old)
    assert b.stats().consecutive_failures == 0


def test_a_disabled_policy_never_trips_nor_writes(backend: Backend) -> None:
    """enabled=False admits everything and leaves Redis untouched."""
    breaker = make(backend, BreakerPolicy(enabled=False, failure_threshold=1))
    trip(breaker, 5)
    assert breaker.state is CircuitState.CLOSED
    assert backend.client.keys(f"{backend.prefix}:*") == []


def test_state_is_kept_under_the_key_prefix(backend: Backend) -> None:
    """Breakers with another name or prefix are independent."""
    trip(make(backend, SLOW), 3)
    other = RedisCircuitBreaker(SLOW, backend.client, name="other", key_prefix=backend.prefix)
    assert other.state is CircuitState.CLOSED
    assert backend.client.hget(f"{backend.prefix}:{{prov}}:breaker", "state") == b"open"
    assert "{other}:breaker" in repr(other)
