"""Circuit breaker: fail fast while a provider is down, probe carefully while it recovers.

The state machine (times read from an injectable monotonic clock)::

    CLOSED    --failure_threshold consecutive failures------------------> OPEN
    OPEN      --open_timeout elapsed; the next allow_request is probe #1--> HALF_OPEN
    HALF_OPEN --success_threshold probe successes------------------------> CLOSED
    HALF_OPEN --any probe failure, or no verdict within half_open_timeout--> OPEN

The breaker never wraps the call: :meth:`CircuitBreaker.allow_request` hands out a
:class:`Permit`, the caller sends the request with no lock held, then reports the permit exactly
once with ``record_success``, ``record_failure`` or ``release``. The bookkeeping is a few integer
updates under one :class:`threading.Lock` and never awaits, so one breaker serves threads and
asyncio tasks alike.

Example::

    breaker = CircuitBreaker(BreakerPolicy(), name="openai")
    permit = breaker.allow_request()        # raises CircuitOpenError when not admitted
    try:
        response = send()
    except (ServerError, ProviderTimeoutError):
        breaker.record_failure(permit)
        raise
    except BaseException:
        breaker.release(permit)             # cancelled, or not the provider's fault
        raise
    breaker.record_success(permit)
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .config import BreakerPolicy
from .errors import CircuitOpenError

__all__ = ["BreakerStats", "CircuitBreaker", "CircuitState", "Permit"]

_log = logging.getLogger(__name__)


class CircuitState(enum.StrEnum):
    """The breaker state: ``closed`` (normal), ``open`` (failing fast), ``half_open`` (probing)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


Listener = Callable[[CircuitState, CircuitState], None]
"""Called with ``(old, new)`` on every state transition."""


@dataclass(frozen=True, slots=True)
class Permit:
    """An opaque admission ticket returned by :meth:`CircuitBreaker.allow_request`.

    It remembers the episode it was issued in, so a report that arrives after the breaker has
    moved on is ignored. Report each permit once.

    Attributes:
        generation: The breaker episode that issued the permit.
        probe: Whether the request is a half-open probe.
        ticket: The probe's number within the breaker (0 for ordinary requests).
    """

    generation: int
    probe: bool = False
    ticket: int = 0


@dataclass(frozen=True, slots=True)
class BreakerStats:
    """A consistent snapshot of a breaker.

    Attributes:
        state: The effective state now (an open breaker whose timeout elapsed reads half-open).
        consecutive_failures: Failures in a row while closed (kept while open, cleared on
            closing).
        half_open_successes: Probe successes in the current half-open episode.
        probes_admitted: Probe slots taken in the current episode (released ones excluded).
        probes_in_flight: Probes admitted and not yet reported.
        opened_count: Transitions into ``open`` since the breaker was made.
        closed_count: Transitions into ``closed`` (recoveries and resets) since it was made.
        rejected_count: Requests refused with :class:`CircuitOpenError` since it was made.
        retry_in: Seconds until an open breaker admits a probe (0 otherwise).
    """

    state: CircuitState
    consecutive_failures: int
    half_open_successes: int
    probes_admitted: int
    probes_in_flight: int
    opened_count: int
    closed_count: int
    rejected_count: int
    retry_in: float


_CLOSED, _OPEN, _HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
_DISABLED_PERMIT = Permit(generation=-1)


class CircuitBreaker:
    """A thread-safe, asyncio-safe circuit breaker for one provider endpoint.

    Args:
        policy: Thresholds and timeouts; ``enabled=False`` admits everything and never trips.
        name: The provider name put on :class:`CircuitOpenError`.
        clock: A monotonic clock in seconds (injectable for tests).

    Rules beyond the diagram above: half-open admits at most ``half_open_max_attempts`` probes
    per episode (a released probe gives its slot back) and refuses the rest with
    ``retry_in=0``; reports from an earlier episode are ignored, as are results of requests
    admitted while closed that finish after the breaker left that closed episode.
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
        self._failures = 0
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
            f"failures={stats.consecutive_failures}, probes_in_flight={stats.probes_in_flight})"
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
        if notify:
            self._deliver()
        if permit is None:
            if retry_in > 0:
                message = f"circuit open after repeated failures; next probe in {retry_in:.3g}s"
            else:
                message = "circuit half-open and every probe slot is taken"
            raise CircuitOpenError(message, provider=self._name or None, retry_in=retry_in)
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
                    self._failures = 0
        if notify:
            self._deliver()

    def record_failure(self, permit: Permit) -> None:
        """Report that the admitted request failed through the provider's fault."""
        if not self._enabled:
            return
        with self._lock:
            now = self._clock()
            notify = self._expire(now)
            if permit.generation == self._generation:
                if permit.probe:
                    if permit.ticket in self._outstanding:
                        notify |= self._transition(_OPEN, now)
                elif self._state is _CLOSED:
                    self._failures += 1
                    if self._failures >= self._policy.failure_threshold:
                        notify |= self._transition(_OPEN, now)
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
            stats = BreakerStats(
                state=state,
                consecutive_failures=self._failures,
                half_open_successes=self._successes,
                probes_admitted=self._admitted,
                probes_in_flight=len(self._outstanding),
                opened_count=self._opened_count,
                closed_count=self._closed_count,
                rejected_count=self._rejected_count,
                retry_in=retry_in,
            )
        if notify:
            self._deliver()
        return stats

    def reset(self) -> None:
        """Go back to closed with the failure and probe counters cleared.

        Listeners are told when the state changes. Requests in flight from before the reset
        report into the void. The lifetime totals in :class:`BreakerStats` are kept.
        """
        with self._lock:
            if self._state is _CLOSED:
                self._generation += 1
                self._closed_permit = Permit(self._generation)
                self._failures = 0
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
                return self._transition(_OPEN, deadline)
        return False

    def _transition(self, new: CircuitState, at: float) -> bool:
        old = self._state
        self._state = new
        self._generation += 1
        self._successes = 0
        self._admitted = 0
        self._outstanding.clear()
        if new is _OPEN:
            self._opened_at = at
            self._opened_count += 1
        elif new is _HALF_OPEN:
            self._half_open_at = at
        else:
            self._failures = 0
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
