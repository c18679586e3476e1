"""Circuit breaker: fail fast while a provider is down, probe carefully while it recovers.

The state machine (times read from an injectable monotonic clock)::

    CLOSED    --failure rate over the window reaches the threshold---------> OPEN
    OPEN      --open_timeout elapsed; the next allow_request is probe #1--> HALF_OPEN
    HALF_OPEN --success_threshold probe successes------------------------> CLOSED
    HALF_OPEN --any probe failure, or no verdict within half_open_timeout--> OPEN

A flaky provider is not an outage, so closed it counts a failure *rate* over a COUNT_BASED
sliding window (resilience4j's ``COUNT_BASED`` window with ``minimumNumberOfCalls``): with
``n`` the requests counted in the window (the last ``window_size`` reported with
``record_success`` or ``record_failure``; released ones count neither way) and ``f`` the failed
ones among them, a failure opens it when::

    n >= minimum_calls  and  f / n >= failure_rate_threshold

The window is kept while open (it explains the opening) and emptied on closing. Half-open
probes do not enter it. With the defaults (20, 10, 0.75) a provider failing 20% of attempts at
random opens a 2,000-attempt job's breaker with probability 2.9e-4 (exact Markov-chain
computation over the window), while a hard outage opens it after 10 failures, or 15 if the
last 20 requests had succeeded.

The breaker never wraps the call: :meth:`CircuitBreaker.allow_request` hands out a
:class:`Permit`, the caller sends the request with no lock held, then reports the permit exactly
once with ``record_success``, ``record_failure`` or ``release``. The bookkeeping is a few integer
updates under one :class:`threading.Lock` and never awaits, so one breaker serves threads and
asyncio tasks alike.

Example::

    permit = breaker.allow_request()        # raises CircuitOpenError when not admitted
    try:
        response = send()
    except ServerError as exc:              # a provider fault
        breaker.record_failure(permit, exc)
        raise
    except BaseException:                   # cancelled, or not the provider's fault
        breaker.release(permit)
        raise
    breaker.record_success(permit)
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from ._breakerparts import (
    BreakerStats,
    CircuitState,
    Listener,
    Permit,
    failure_note,
    refusal,
)
from .config import BreakerPolicy
from .errors import CircuitOpenError

__all__ = ["BreakerStats", "CircuitBreaker", "CircuitState", "Listener", "Permit"]

_log = logging.getLogger(__name__)


class Window:
    """The outcomes of the last ``size`` counted requests (``True`` = failed), with their sum.

    Not thread-safe: the breaker holds its lock around every call.
    """

    __slots__ = ("_outcomes", "failures")

    def __init__(self, size: int) -> None:
        self._outcomes: deque[bool] = deque(maxlen=size)
        self.failures = 0

    @property
    def calls(self) -> int:
        """Counted requests in the window (at most its size)."""
        return len(self._outcomes)

    def add(self, failed: bool) -> None:
        """Record one outcome; the oldest falls out when the window is full."""
        if len(self._outcomes) == self._outcomes.maxlen:
            self.failures -= self._outcomes[0]
        self._outcomes.append(failed)
        self.failures += failed

    def clear(self) -> None:
        """Forget every outcome."""
        self._outcomes.clear()
        self.failures = 0

    def trips(self, policy: BreakerPolicy) -> bool:
        """Whether the window opens a closed breaker under ``policy``."""
        calls = len(self._outcomes)
        return (
            calls >= policy.minimum_calls and self.failures / calls >= policy.failure_rate_threshold
        )


_CLOSED, _OPEN, _HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
_DISABLED_PERMIT = Permit(generation=-1)


class CircuitBreaker:
    """A thread-safe, asyncio-safe circuit breaker for one provider endpoint.

    Args:
        policy: Thresholds and timeouts; ``enabled=False`` admits everything and never trips.
        name: The provider name put on :class:`CircuitOpenError`.
        clock: A monotonic clock in seconds (injectable for tests).

    A refused request gets a :class:`CircuitOpenError` saying why the circuit opened and naming
    the last failure reported with :meth:`record_failure`, raised ``from`` it. Rules beyond the
    diagram above: half-open admits at most ``half_open_max_attempts`` probes per episode (a
    released probe gives its slot back) and refuses the rest with ``retry_in=0``; reports from
    an earlier episode are ignored, as are results of requests admitted while closed that
    finish after the breaker left that closed episode.
    """

    def __init__(
        self,
        policy: BreakerPolicy,
        *,
        name: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policy = policy
        self._name = name
        self._clock = clock
        self._enabled = policy.enabled
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._pending: deque[tuple[CircuitState, CircuitState]] = deque()
        self._delivering = False
        self._state = _CLOSED
        self._generation = 0
        self._closed_permit = Permit(0)  # shared by every request of one closed episode
        self._window = Window(policy.window_size)
        self._streak = 0
        self._reason = ""  # why it last opened
        self._last: BaseException | None = None  # the last failure counted, and its note
        self._note: str | None = None
        self._opened_at = 0.0
        self._half_open_at = 0.0
        self._successes = 0
        self._admitted = 0
        self._outstanding: set[int] = set()
        self._next_ticket = 0
        self._opened_count = 0
        self._closed_count = 0
        self._rejected_count = 0

    def __repr__(self) -> str:
        stats = self.stats()
        return (
            f"CircuitBreaker(name={self._name!r}, state={stats.state.value}, "
            f"failed={stats.window_failures}/{stats.window_calls}, "
            f"probes_in_flight={stats.probes_in_flight})"
        )

    @property
    def policy(self) -> BreakerPolicy:
        """The policy this breaker was built with."""
        return self._policy

    @property
    def name(self) -> str:
        """The provider name put on :class:`CircuitOpenError`."""
        return self._name

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(old, new)`` on every transition, in order, with no lock held.

        A listener may read the breaker. An exception it raises is logged and swallowed, so a
        broken metrics hook cannot break requests.
        """
        with self._lock:
            self._listeners.append(listener)

    # -- admission and reports ----------------------------------------------------------------
    def allow_request(self) -> Permit:
        """Admit a request or refuse it.

        Returns:
            The permit to report when the request ends.

        Raises:
            CircuitOpenError: The breaker is open (``retry_in`` is the time left) or half-open
                with every probe slot taken (``retry_in`` is 0).
        """
        if not self._enabled:
            return _DISABLED_PERMIT
        permit: Permit | None = None
        retry_in = 0.0
        refused: CircuitOpenError | None = None
        with self._lock:
            now = self._clock()
            notify = self._expire(now)
            if self._state is _CLOSED:
                permit = self._closed_permit
            else:
                if self._state is _OPEN:
                    retry_in = self._opened_at + self._policy.open_timeout - now
                    if retry_in <= 0:
                        retry_in = 0.0
                        notify |= self._transition(_HALF_OPEN, now)
                if (
                    self._state is _HALF_OPEN
                    and self._admitted < self._policy.half_open_max_attempts
                ):
                    self._next_ticket += 1
                    self._admitted += 1
                    self._outstanding.add(self._next_ticket)
                    permit = Permit(self._generation, probe=True, ticket=self._next_ticket)
                else:
                    self._rejected_count += 1
                    refused = refusal(self._name, retry_in=retry_in, reason=self._reason,
                                      note=self._note, last_failure=self._last)  # fmt: skip
        if notify:
            self._deliver()
        if permit is None:
            assert refused is not None
            if refused.last_failure is None:
                raise refused
            raise refused from refused.last_failure
        return permit

    def record_success(self, permit: Permit) -> None:
        """Report that the admitted request succeeded."""
        if not self._enabled:
            return
        with self._lock:
            now = self._clock()
            notify = self._expire(now)
            if permit.generation == self._generation:
                if permit.probe:
                    if permit.ticket in self._outstanding:
                        self._outstanding.discard(permit.ticket)
                        self._successes += 1
                        if self._successes >= self._policy.success_threshold:
                            notify |= self._transition(_CLOSED, now)
                elif self._state is _CLOSED:
                    self._window.add(False)
                    self._streak = 0
        if notify:
            self._deliver()

    def record_failure(self, permit: Permit, error: BaseException | None = None) -> None:
        """Report that the admitted request failed through the provider's fault.

        Args:
            permit: The permit of the request.
            error: What failed; remembered (when the report counts) to explain a later
                refusal. Its ``str`` goes into :class:`CircuitOpenError` messages, so it must
                hold no secret (embedguard's errors never do).
        """
        if not self._enabled:
            return
        with self._lock:
            now = self._clock()
            notify = self._expire(now)
            if permit.generation == self._generation:
                if permit.probe:
                    if permit.ticket in self._outstanding:
                        self._remember(error)
                        notify |= self._transition(_OPEN, now, "a half-open probe failed")
                elif self._state is _CLOSED:
                    self._remember(error)
                    window = self._window
                    window.add(True)
                    self._streak += 1
                    if window.trips(self._policy):
                        reason = f"{window.failures} of {window.calls} recent requests failed"
                        notify |= self._transition(_OPEN, now, reason)
        if notify:
            self._deliver()

    def release(self, permit: Permit) -> None:
        """Report a neutral outcome (cancelled, or an error that is not the provider's fault).

        Counts nothing; a probe's slot is given back to its episode.
        """
        if not self._enabled:
            return
        with self._lock:
            notify = self._expire(self._clock())
            if (
                permit.probe
                and permit.generation == self._generation
                and permit.ticket in self._outstanding
            ):
                self._outstanding.discard(permit.ticket)
                self._admitted -= 1
        if notify:
            self._deliver()

    # -- inspection and control ---------------------------------------------------------------
    @property
    def state(self) -> CircuitState:
        """The effective state now (an open breaker whose timeout elapsed reads half-open)."""
        if not self._enabled:
            return _CLOSED
        with self._lock:
            now = self._clock()
            notify = self._expire(now)
            state = self._effective(now)
        if notify:
            self._deliver()
        return state

    def stats(self) -> BreakerStats:
        """A consistent snapshot of the state and counters."""
        with self._lock:
            now = self._clock()
            notify = self._expire(now) if self._enabled else False
            state = self._effective(now)
            retry_in = 0.0
            if state is _OPEN:
                retry_in = max(0.0, self._opened_at + self._policy.open_timeout - now)
            calls, failures = self._window.calls, self._window.failures
            stats = BreakerStats(
                state=state,
                consecutive_failures=self._streak,
                half_open_successes=self._successes,
                probes_admitted=self._admitted,
                probes_in_flight=len(self._outstanding),
                opened_count=self._opened_count,
                closed_count=self._closed_count,
                rejected_count=self._rejected_count,
                retry_in=retry_in,
                window_calls=calls,
                window_failures=failures,
                failure_rate=failures / calls if calls else 0.0,
            )
        if notify:
            self._deliver()
        return stats

    def reset(self) -> None:
        """Go back to closed with the window, the last failure and probe counters cleared.

        Listeners are told when the state changes. Requests in flight from before the reset
        report into the void. The lifetime totals in :class:`BreakerStats` are kept.
        """
        with self._lock:
            if self._state is _CLOSED:
                self._generation += 1
                self._closed_permit = Permit(self._generation)
                self._forget()
                notify = False
            else:
                notify = self._transition(_CLOSED, self._clock())
        if notify:
            self._deliver()

    # -- internals (called with the lock held, except _deliver) -----------------------------
    def _effective(self, now: float) -> CircuitState:
        if self._state is _OPEN and now - self._opened_at >= self._policy.open_timeout:
            return _HALF_OPEN
        return self._state

    def _expire(self, now: float) -> bool:
        # A half-open episode with no verdict in time counts as failed, so hung or forgotten
        # probes cannot wedge the breaker. The new open timer starts at the deadline, not at
        # whenever someone next looks, so the state is a function of time alone.
        if self._state is _HALF_OPEN:
            deadline = self._half_open_at + self._policy.half_open_timeout
            if now >= deadline:
                reason = f"no half-open probe answered within {self._policy.half_open_timeout:g}s"
                return self._transition(_OPEN, deadline, reason)
        return False

    def _remember(self, error: BaseException | None) -> None:
        self._last = error
        self._note = None if error is None else failure_note(error)

    def _forget(self) -> None:
        self._window.clear()
        self._streak = 0
        self._reason = ""
        self._last = self._note = None

    def _transition(self, new: CircuitState, at: float, reason: str = "") -> bool:
        old = self._state
        self._state = new
        self._generation += 1
        self._successes = 0
        self._admitted = 0
        self._outstanding.clear()
        if new is _OPEN:
            self._opened_at = at
            self._opened_count += 1
            self._reason = reason
        elif new is _HALF_OPEN:
            self._half_open_at = at
        else:
            self._forget()
            self._closed_count += 1
            self._closed_permit = Permit(self._generation)
        if not self._listeners:
            return False
        self._pending.append((old, new))
        return True

    def _deliver(self) -> None:
        # One thread at a time drains the queue, so listeners see transitions in the order they
        # happened even when several threads trip the breaker at once. A thread that finds a
        # delivery under way leaves its transition to that thread.
        with self._lock:
            if self._delivering:
                return
            self._delivering = True
        try:
            while True:
                with self._lock:
                    if not self._pending:
                        self._delivering = False
                        return
                    old, new = self._pending.popleft()
                    listeners = tuple(self._listeners)
                for listener in listeners:
                    try:
                        listener(old, new)
                    except Exception:
                        _log.exception("circuit breaker %r: listener failed", self._name)
        except BaseException:
            with self._lock:
                self._delivering = False
            raise
