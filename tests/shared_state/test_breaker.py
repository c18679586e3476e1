"""RedisCircuitBreaker: one state machine for every breaker on the same key (fake and real Redis).

Redis times the breaker with its own clock, so the timeouts here are short real ones, with
generous margins and polling instead of exact sleeps.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from embedguard.core.breaker import CircuitState, Permit
from embedguard.core.config import BreakerPolicy
from embedguard.core.errors import CircuitOpenError, ProviderConnectionError, ServerError
from embedguard.core.shared_state import RedisCircuitBreaker, connect
from embedguard.core.shared_state._link import key_tag

from .conftest import Backend

SLOW = BreakerPolicy(window_size=4, minimum_calls=3, failure_rate_threshold=0.75,
                     open_timeout=60, half_open_max_attempts=2, success_threshold=2)  # fmt: skip
FAST = BreakerPolicy(window_size=2, minimum_calls=2, failure_rate_threshold=1.0,
                     open_timeout=0.2, half_open_max_attempts=3, success_threshold=2,
                     half_open_timeout=30)  # fmt: skip
REFUSED = ProviderConnectionError("connection refused (127.0.0.1:9)", provider="openai")


def make(
    backend: Backend, policy: BreakerPolicy, *, fresh_client: bool = False, name: str = "prov"
) -> RedisCircuitBreaker:
    """A breaker on the test's key (``fresh_client``: as another process would connect)."""
    client = backend.make_client() if fresh_client else backend.client
    return RedisCircuitBreaker(policy, client, name=name, key_prefix=backend.prefix)


def trip(breaker: RedisCircuitBreaker, times: int, error: BaseException | None = None) -> None:
    for _ in range(times):
        breaker.record_failure(breaker.allow_request(), error)


def feed(breaker: RedisCircuitBreaker, outcomes: str) -> None:
    """Report one request per character: ``F`` failed, ``S`` succeeded, ``R`` released."""
    for outcome in outcomes:
        permit = breaker.allow_request()
        if outcome == "F":
            breaker.record_failure(permit, ServerError("boom", status_code=500))
        elif outcome == "S":
            breaker.record_success(permit)
        else:
            breaker.release(permit)


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


def test_every_worker_fills_one_window(backend: Backend) -> None:
    """Outcomes of all workers share one window: a success elsewhere lowers the rate only."""
    a, b = make(backend, SLOW), make(backend, SLOW, fresh_client=True)
    feed(a, "FF")
    feed(b, "S")
    stats = b.stats()
    assert (stats.window_calls, stats.window_failures, stats.consecutive_failures) == (3, 2, 0)
    assert stats.failure_rate == pytest.approx(2 / 3)
    feed(a, "F")  # FFSF: 3 of 4 = 0.75
    assert b.state is CircuitState.OPEN


def test_the_shared_window_slides_and_ignores_releases(backend: Backend) -> None:
    """Only the last window_size counted outcomes stay; released permits count neither way."""
    a = make(backend, SLOW)
    feed(a, "FFRSRSS")  # counted: FFSSS -> last 4: FSSS
    stats = a.stats()
    assert (stats.window_calls, stats.window_failures) == (4, 1)
    feed(a, "FF")  # SSFF: 2 of 4
    assert a.state is CircuitState.CLOSED
    feed(a, "F")  # SFFF: 3 of 4
    assert a.state is CircuitState.OPEN
    assert a.stats().window_failures == 3


def test_the_window_needs_minimum_calls(backend: Backend) -> None:
    """Below minimum_calls the shared window gives no verdict, even at a 100% failure rate."""
    a, b = make(backend, SLOW), make(backend, SLOW)
    feed(a, "F")
    feed(b, "F")
    assert a.state is CircuitState.CLOSED
    feed(b, "F")
    assert a.state is CircuitState.OPEN


def test_a_refusal_says_what_opened_it_in_every_worker(backend: Backend) -> None:
    """Every worker's refusal names the rate and the last failure; the reporter gets the cause."""
    a, b = make(backend, SLOW), make(backend, SLOW, fresh_client=True)
    feed(b, "F")
    trip(a, 2, REFUSED)
    with pytest.raises(CircuitOpenError) as theirs:
        b.allow_request()
    assert str(theirs.value).startswith(
        "[prov] circuit open: 3 of 3 recent requests failed; "
        "last: ProviderConnectionError: connection refused (127.0.0.1:9); next probe in "
    )
    assert theirs.value.last_failure is None and theirs.value.__cause__ is None
    with pytest.raises(CircuitOpenError) as mine:
        a.allow_request()
    assert mine.value.last_failure is REFUSED and mine.value.__cause__ is REFUSED


def test_a_failed_probe_is_named_as_the_reason(backend: Backend) -> None:
    """A probe failure reopens it and the refusals say so, naming the probe's error."""
    a, b = make(backend, FAST), make(backend, FAST)
    trip(a, 2)
    wait_for(lambda: a.state is CircuitState.HALF_OPEN)
    probe = a.allow_request()
    a.record_failure(probe, ServerError("still down", status_code=503))
    with pytest.raises(CircuitOpenError) as info:
        b.allow_request()
    assert "a half-open probe failed; last: ServerError: still down (status 503)" in str(info.value)


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
    policy = BreakerPolicy(minimum_calls=1, open_timeout=0.3, half_open_max_attempts=1,
                           success_threshold=1, half_open_timeout=0.5)  # fmt: skip
    a, b = make(backend, policy), make(backend, policy)
    trip(a, 1)
    wait_for(lambda: a.state is CircuitState.HALF_OPEN)
    a.allow_request()  # a probe that hangs
    with pytest.raises(CircuitOpenError):
        b.allow_request()
    wait_for(lambda: b.stats().opened_count == 2)
    reason = backend.client.hget(f"{backend.prefix}:{{prov}}:breaker", "reason")
    assert reason == b"no half-open probe answered within 0.5s"
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
    stats = b.stats()
    assert (stats.window_calls, stats.consecutive_failures) == (0, 0)


def test_a_disabled_policy_never_trips_nor_writes(backend: Backend) -> None:
    """enabled=False admits everything and leaves Redis untouched."""
    breaker = make(backend, BreakerPolicy(enabled=False, minimum_calls=1))
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


# -- endpoint identity ----------------------------------------------------------------------------
EAST = "azure|https://east.example.openai.azure.com/openai/deployments/emb|text-embedding-3-small"
WEST = "azure|https://west.example.openai.azure.com/openai/deployments/emb|text-embedding-3-small"


def test_two_endpoints_of_one_profile_do_not_share_state(backend: Backend) -> None:
    """Same profile name, different URLs: the dead region opens alone, apart from the other."""
    east, west = make(backend, SLOW, name=EAST), make(backend, SLOW, name=WEST)
    feed(east, "FF")
    feed(west, "SSSS")
    feed(east, "F")
    assert east.state is CircuitState.OPEN
    assert west.state is CircuitState.CLOSED
    assert west.stats().window_failures == 0
    keys = {k.decode() for k in backend.client.keys(f"{backend.prefix}:*")}
    assert len(keys) == 2 and not any("https" in k or "|" in k for k in keys)


def test_key_tags_are_plain_bounded_and_distinct() -> None:
    """Plain names stay readable; any other name becomes a bounded head plus a hash."""
    assert key_tag("openai") == "openai"
    east, west = key_tag(EAST), key_tag(WEST)
    assert east.startswith("azure~") and west.startswith("azure~") and east != west
    odd = ["x" * 65, "{a}", "a}b{c", "", "\udcff", "é", "p:q", "~"]
    tags = [key_tag(name) for name in odd]
    assert len(set(tags)) == len(odd)
    for tag in [east, *tags]:
        assert "{" not in tag and "}" not in tag and ":" not in tag and len(tag) <= 49


# -- a Redis that hangs ---------------------------------------------------------------------------
class HungRedis:
    """A TCP server that accepts connections and never answers; counts the connections."""

    def __init__(self) -> None:
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self._server.settimeout(0.05)
        self.url = f"redis://127.0.0.1:{self._server.getsockname()[1]}/0"
        self.connections: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                self.connections.append(self._server.accept()[0])
            except TimeoutError:
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self.connections:
            conn.close()
        self._server.close()


@pytest.fixture
def hung_redis() -> Iterator[HungRedis]:
    """A Redis that hangs: connected, silent."""
    server = HungRedis()
    yield server
    server.close()


def test_a_hung_redis_costs_one_short_timeout_then_local_state(hung_redis: HungRedis) -> None:
    """Connected but silent: one attempt (no retry of a timeout), then local state, no stall."""
    client = connect(hung_redis.url)
    try:
        assert client.connection_pool.connection_kwargs["socket_timeout"] <= 0.25
        breaker = RedisCircuitBreaker(SLOW, client, name="p", resync_interval=60)
        started = time.monotonic()
        permit = breaker.allow_request()
        assert breaker.degraded and time.monotonic() - started < 2.0
        assert len(hung_redis.connections) == 1  # the timed-out command was not retried
        breaker.record_failure(permit, REFUSED)  # local state, no Redis until the re-sync
        trip(breaker, 2, REFUSED)
        with pytest.raises(CircuitOpenError) as info:
            breaker.allow_request()
        assert info.value.last_failure is REFUSED
        assert len(hung_redis.connections) == 1 and time.monotonic() - started < 2.0
    finally:
        client.close()


def test_a_hung_redis_stalls_no_concurrent_caller_for_long(hung_redis: HungRedis) -> None:
    """Eight threads calling at once each give up on Redis quickly, then go local."""
    client = connect(hung_redis.url)
    try:
        breaker = RedisCircuitBreaker(SLOW, client, name="p", resync_interval=60)
        times: list[float] = []

        def call() -> None:
            started = time.monotonic()
            breaker.record_success(breaker.allow_request())
            times.append(time.monotonic() - started)

        threads = [threading.Thread(target=call) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert len(times) == 8 and max(times) < 2.0
        assert breaker.degraded
    finally:
        client.close()
