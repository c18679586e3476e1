"""A circuit breaker whose state lives in Redis, shared by every worker of a fleet."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._breakerparts import failure_note, refusal
from ..breaker import BreakerStats, CircuitBreaker, CircuitState, Listener, Permit
from ..config import BreakerPolicy
from . import _lua
from ._link import Arg, Link, key_tag

if TYPE_CHECKING:
    import redis

__all__ = ["RedisCircuitBreaker"]

_log = logging.getLogger("embedguard.core.shared_state")
_KEPT_FAILURES = 16  # failures this process reported, kept to be the cause of a refusal


class _SharedPermit(Permit):
    """A permit issued from the shared state (reported to Redis, not to the local breaker)."""

    __slots__ = ()


class RedisCircuitBreaker(CircuitBreaker):
    """A :class:`CircuitBreaker` shared through Redis by any number of processes.

    The state machine is the plain breaker's, run fleet-wide by a Lua script: the COUNT_BASED
    window holds the last ``window_size`` outcomes reported by any worker and opens the breaker
    for all by the same rule (``n >= minimum_calls and f / n >= failure_rate_threshold``); the
    open state, its timeout, the half-open episode with at most ``half_open_max_attempts``
    probes across all workers, ``success_threshold`` and ``half_open_timeout`` are all shared.
    Times are the Redis server's. A breaker made later joins the current state (construction
    never resets it); :meth:`reset` resets it for everyone.

    Why it opened and the last failure's description (class and message, at most 300
    characters) are shared, so a refusal in any worker says what opened the circuit; its
    ``last_failure`` (and ``__cause__``) is set only in the process that reported that failure.

    Listeners are called for the transitions this process observes, best effort: the ones its
    own calls cause, and a change made by another worker (as ``(last seen, now)``) when one of
    its calls sees it. :class:`BreakerStats` counters are fleet-wide.

    While Redis is unreachable the breaker works on its local state (the plain breaker, reset
    when the outage starts), logs one warning per outage and reads :attr:`degraded`; it goes
    back to the shared state when Redis answers (tried at most every ``resync_interval``
    seconds). Reports of permits from the other side of a switch go where the permit came
    from (and are dropped when that is Redis and it is down).

    Args:
        policy: Thresholds and timeouts, normally the same in every worker.
        redis: The Redis client (see :func:`~embedguard.core.shared_state.connect`).
        name: The endpoint's identity (put on :class:`CircuitOpenError`); breakers with the
            same name share one state. Any characters and length: the keys hold it as is when
            it is at most 64 of ``[A-Za-z0-9._-]``, else its leading such characters (up to
            32) and a hash of the whole (see :func:`~._link.key_tag`).
        key_prefix: The prefix of the Redis keys: ``<key_prefix>:{<tag>}:breaker`` and
            ``...:breaker:probes`` (the braces keep both in one Redis Cluster slot).
        clock: Monotonic clock of the local state and of the re-sync timer.
        resync_interval: Seconds between attempts to reach Redis during an outage.
    """

    def __init__(
        self,
        policy: BreakerPolicy,
        redis: redis.Redis,
        *,
        name: str,
        key_prefix: str = "embedguard",
        clock: Callable[[], float] | None = None,
        resync_interval: float = 2.0,
    ) -> None:
        clock = clock or time.monotonic
        super().__init__(policy, name=name, clock=clock)
        tag = key_tag(name)
        base = f"{key_prefix}:{{{tag}}}:breaker"
        self._keys = (base, f"{base}:probes")
        self._link = Link(
            redis,
            what=f"circuit breaker {tag!r}",
            clock=clock,
            resync_interval=resync_interval,
            on_outage=super().reset,
        )
        self._script = self._link.register(_lua.BREAKER)
        self._shared_listeners: list[Listener] = []
        self._seen_lock = threading.Lock()
        self._seen = CircuitState.CLOSED
        self._reported: OrderedDict[str, BaseException] = OrderedDict()

    def __repr__(self) -> str:
        return f"RedisCircuitBreaker(key={self._keys[0]!r}, degraded={self.degraded})"

    @property
    def degraded(self) -> bool:
        """Whether Redis is unreachable and the local state is in use."""
        return self._link.degraded

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(old, new)`` on the transitions this process observes (best effort)."""
        super().add_listener(listener)
        with self._seen_lock:
            self._shared_listeners.append(listener)

    # -- admission and reports ----------------------------------------------------------------
    def allow_request(self) -> Permit:
        """Admit a request or refuse it (see :meth:`CircuitBreaker.allow_request`).

        Raises:
            CircuitOpenError: The shared breaker is open, or half-open with every probe slot
                of the fleet taken.
        """
        if not self.policy.enabled:
            return super().allow_request()
        reply = self._call("allow")
        if reply is None:
            return super().allow_request()
        code, generation, ticket = reply[0], int(reply[4]), int(reply[5])
        if code == "ok":
            return _SharedPermit(generation)
        if code == "probe":
            return _SharedPermit(generation, probe=True, ticket=ticket)
        with self._seen_lock:
            cause = self._reported.get(reply[19]) if reply[19] else None
        refused = refusal(self.name, retry_in=float(reply[6]), reason=reply[17],
                          note=reply[18] or None, last_failure=cause)  # fmt: skip
        if cause is None:
            raise refused
        raise refused from cause

    def record_success(self, permit: Permit) -> None:
        """Report that the admitted request succeeded."""
        if not isinstance(permit, _SharedPermit):
            super().record_success(permit)
        elif self.policy.enabled:
            self._call("success", permit)

    def record_failure(self, permit: Permit, error: BaseException | None = None) -> None:
        """Report that the admitted request failed through the provider's fault.

        ``error`` is described in the shared state (see :meth:`CircuitBreaker.record_failure`).
        """
        if not isinstance(permit, _SharedPermit):
            super().record_failure(permit, error)
        elif self.policy.enabled:
            if error is None:
                self._call("failure", permit)
                return
            note_id = uuid.uuid4().hex
            with self._seen_lock:
                self._reported[note_id] = error
                while len(self._reported) > _KEPT_FAILURES:
                    self._reported.popitem(last=False)
            self._call("failure", permit, failure_note(error), note_id)

    def release(self, permit: Permit) -> None:
        """Report a neutral outcome; a probe's slot is given back to its episode."""
        if not isinstance(permit, _SharedPermit):
            super().release(permit)
        elif self.policy.enabled:
            self._call("release", permit)

    # -- inspection and control ---------------------------------------------------------------
    @property
    def state(self) -> CircuitState:
        """The effective shared state (an open breaker whose timeout elapsed reads half-open)."""
        if not self.policy.enabled:
            return CircuitState.CLOSED
        reply = self._call("peek")
        if reply is None:
            return super().state
        return CircuitState(reply[3])

    def stats(self) -> BreakerStats:
        """A consistent snapshot of the shared state; the counters are fleet-wide."""
        reply = self._call("peek") if self.policy.enabled else None
        if reply is None:
            return super().stats()
        calls, failures = int(reply[15]), int(reply[16])
        return BreakerStats(
            state=CircuitState(reply[3]),
            consecutive_failures=int(reply[7]),
            half_open_successes=int(reply[8]),
            probes_admitted=int(reply[9]),
            probes_in_flight=int(reply[10]),
            opened_count=int(reply[11]),
            closed_count=int(reply[12]),
            rejected_count=int(reply[13]),
            retry_in=float(reply[6]),
            window_calls=calls,
            window_failures=failures,
            failure_rate=failures / calls if calls else 0.0,
        )

    def reset(self) -> None:
        """Close the breaker for the whole fleet, clearing the counters (locally when degraded)."""
        if self._call("reset") is None:
            super().reset()

    # -- internals ----------------------------------------------------------------------------
    def _call(
        self, op: str, permit: Permit | None = None, note: str = "", note_id: str = ""
    ) -> list[Any] | None:
        policy = self.policy
        args: list[Arg] = [
            op,
            policy.window_size,
            policy.minimum_calls,
            repr(policy.failure_rate_threshold),
            policy.success_threshold,
            repr(policy.open_timeout),
            policy.half_open_max_attempts,
            repr(policy.half_open_timeout),
            permit.generation if permit else -1,
            int(permit.probe) if permit else 0,
            permit.ticket if permit else 0,
            note,
            note_id,
        ]
        raw = self._link.run(self._script, self._keys, args)
        if raw is None:
            return None
        reply = [x.decode() if isinstance(x, bytes) else x for x in raw]
        self._observe(CircuitState(reply[1]), CircuitState(reply[2]), str(reply[14]))
        return reply

    def _observe(self, start: CircuitState, end: CircuitState, moves: str) -> None:
        # Transitions this call made, preceded by any change another worker made since this
        # process last looked. Two threads may interleave here; listeners are best effort.
        events: list[tuple[CircuitState, CircuitState]] = []
        with self._seen_lock:
            if start is not self._seen:
                events.append((self._seen, start))
            for move in filter(None, moves.split(",")):
                old, new = move.split(">")
                events.append((CircuitState(old), CircuitState(new)))
            self._seen = end
            listeners = tuple(self._shared_listeners)
        for old, new in events:
            for listener in listeners:
                try:
                    listener(old, new)
                except Exception:
                    _log.exception("circuit breaker %r: listener failed", self.name)
