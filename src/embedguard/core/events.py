"""Instrumentation hooks: what happened in the pipeline, as frozen dataclasses.

The pipeline describes each thing worth observing with one small immutable *event* and hands it
to a :class:`Hooks` fan-out, which calls every registered *hook* (any callable taking one event).
Sinks for logging, OpenTelemetry and Prometheus are hooks too
(:mod:`embedguard.core.export.logs`, :mod:`~embedguard.core.export.otel`,
:mod:`~embedguard.core.export.prometheus`). Events carry names, counts, timings and error kinds;
never a text, a vector, an API key or a header.

Events, in the order one request meets them::

    RequestStarted      an HTTP attempt is about to be sent
    RequestFinished     the attempt ended: duration, tokens, and the error kind on failure
    RetryScheduled      the attempt failed and will be repeated after ``delay`` seconds
    RateLimitObserved   the provider said how much of its rate limit is left
    CircuitChanged      a provider's circuit breaker changed state
    CallRejected        a call was refused without sending (e.g. the circuit is open)
    FailedOver          a call moved from one provider to another

A *request* (``request_id``) is one batch sent to one provider with all its attempts: every
attempt carries the same ``request_id`` and an ``attempt`` number counting from 1.

Example::

    from embedguard.core.events import Hooks, RetryScheduled

    def on_event(event):
        if isinstance(event, RetryScheduled):
            print(f"{event.provider}: retry {event.attempt} in {event.delay:.1f}s ({event.reason})")

    hooks = Hooks([on_event])
    hooks.emit(RetryScheduled(provider="openai", model="text-embedding-3-small",
                              attempt=1, delay=0.5, reason="rate_limit", status_code=429))
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeAlias

__all__ = [
    "CallRejected",
    "CircuitChanged",
    "Event",
    "FailedOver",
    "Hook",
    "Hooks",
    "RateLimitObserved",
    "RequestFinished",
    "RequestStarted",
    "RetryScheduled",
    "new_request_id",
]

_log = logging.getLogger("embedguard")
_request_ids = itertools.count(1)


def new_request_id() -> int:
    """Return the next request id of this process (1, 2, 3, ...; thread-safe)."""
    # next() on itertools.count is a single C call, atomic under the GIL.
    return next(_request_ids)


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestStarted:
    """An HTTP attempt is about to be sent.

    Attributes:
        provider: The client's provider label (the profile's ``name``).
        model: The model requested.
        server_address: The host the request goes to (``None`` for in-process models).
        inputs: How many texts the request carries.
        attempt: 1 for the first attempt of the request, 2 for its first retry, ...
        request_id: The request (batch) this attempt belongs to; see :func:`new_request_id`.
        provider_kind: The wire format (``openai``, ``azure``, ``mistral``, ``ollama``,
            ``openai_compatible``, ``local``); ``None`` when it equals ``provider``.
        server_port: The port the request goes to, when known.
    """

    provider: str
    model: str
    server_address: str | None
    inputs: int
    attempt: int
    request_id: int
    provider_kind: str | None = None
    server_port: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestFinished:
    """An HTTP attempt ended, with a validated response or a typed failure.

    Attributes:
        provider: The client's provider label (the profile's ``name``).
        model: The model requested.
        server_address: The host the request went to (``None`` for in-process models).
        inputs: How many texts the request carried.
        attempt: The attempt number within the request (from 1).
        request_id: The request (batch) this attempt belongs to.
        duration: Seconds from sending to the outcome.
        input_tokens: Tokens the provider billed (or the local estimate); ``None`` if unknown.
        response_model: The model the server said it used, when it said.
        error_type: The error's kind (``rate_limit``, ``timeout``, ``server``...; see
            :attr:`embedguard.EmbedGuardError.kind`); ``None`` on success.
        status_code: The HTTP status, when a response arrived.
        provider_kind: The wire format; ``None`` when it equals ``provider``.
        server_port: The port the request went to, when known.
    """

    provider: str
    model: str
    server_address: str | None
    inputs: int
    attempt: int
    request_id: int
    duration: float
    input_tokens: int | None
    response_model: str | None
    error_type: str | None
    status_code: int | None
    provider_kind: str | None = None
    server_port: int | None = None

    @property
    def ok(self) -> bool:
        """Whether the attempt succeeded."""
        return self.error_type is None


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryScheduled:
    """A failed attempt will be repeated after ``delay`` seconds.

    Attributes:
        provider: The client's provider label.
        model: The model requested.
        attempt: The number of the attempt that failed (the retry is ``attempt + 1``).
        delay: Seconds the pipeline waits before the retry.
        reason: The failure's error kind (e.g. ``rate_limit``, ``server``, ``timeout``).
        status_code: The HTTP status of the failed attempt, when a response arrived.
        request_id: The request being retried, when known.
    """

    provider: str
    model: str
    attempt: int
    delay: float
    reason: str
    status_code: int | None
    request_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimitObserved:
    """The provider's rate-limit headers said how much is left in the current window.

    Attributes:
        provider: The client's provider label.
        remaining_requests: Requests left, ``None`` when the provider did not say.
        remaining_tokens: Tokens left, ``None`` when the provider did not say.
    """

    provider: str
    remaining_requests: int | None
    remaining_tokens: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitChanged:
    """A provider's circuit breaker changed state.

    Attributes:
        provider: The client's provider label.
        old: The state left: ``closed``, ``open`` or ``half_open``.
        new: The state entered: ``closed``, ``open`` or ``half_open``.
    """

    provider: str
    old: str
    new: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRejected:
    """A call was refused without sending anything.

    Attributes:
        provider: The client's provider label.
        model: The model requested.
        reason: Why, as an error kind (``circuit_open``).
        provider_kind: The wire format; ``None`` when it equals ``provider``.
    """

    provider: str
    model: str
    reason: str
    provider_kind: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FailedOver:
    """A call moved from one provider to the next one in line.

    Attributes:
        from_provider: The provider label given up on.
        to_provider: The provider label tried next.
        reason: The error kind that made the call move (e.g. ``circuit_open``).
    """

    from_provider: str
    to_provider: str
    reason: str


Event: TypeAlias = (
    RequestStarted
    | RequestFinished
    | RetryScheduled
    | RateLimitObserved
    | CircuitChanged
    | CallRejected
    | FailedOver
)
"""Any event the pipeline emits."""


class Hook(Protocol):
    """Anything called with each event: a function, a bound method, or a sink object.

    A hook runs on the thread (or event-loop task) that produced the event, so it must be quick
    and must not block; it may ignore event types it does not know.
    """

    def __call__(self, event: Event) -> None: ...


class Hooks:
    """A thread-safe fan-out: :meth:`emit` calls every hook with the event, in order.

    A hook that raises never breaks a request: the exception is logged (with its traceback) on
    the ``embedguard`` logger the first time a hook of that type (or that function) fails, and
    ignored afterwards.
    ``Hooks`` is itself a hook, so fan-outs nest.

    Args:
        hooks: The initial hooks.
    """

    __slots__ = ("_failed", "_lock", "active")

    def __init__(self, hooks: Iterable[Hook] = ()) -> None:
        # Copy-on-write: emit() reads one tuple without locking; add/remove swap in a new one.
        self.active: tuple[Hook, ...] = tuple(hooks)
        """The hooks, in order (a tuple; empty when nothing listens)."""
        self._failed: set[tuple[type, str]] = set()
        self._lock = threading.Lock()

    def add(self, hook: Hook) -> None:
        """Call ``hook`` for every later event (after the hooks already added)."""
        if not callable(hook):
            raise TypeError(f"a hook must be callable, got {type(hook).__name__}")
        with self._lock:
            self.active = (*self.active, hook)

    def remove(self, hook: Hook) -> None:
        """Stop calling ``hook`` (its first registration, if added twice).

        Raises:
            ValueError: ``hook`` is not registered.
        """
        with self._lock:
            hooks = list(self.active)
            hooks.remove(hook)
            self.active = tuple(hooks)

    def emit(self, event: Event) -> None:
        """Call every hook with ``event``; returns at once when there is none."""
        hooks = self.active
        if not hooks:
            return
        for hook in hooks:
            try:
                hook(event)
            except Exception:
                self._report(hook)

    __call__ = emit

    def _report(self, hook: Hook) -> None:
        # Functions and bound methods all share a type; their qualified name tells them apart.
        name: str = getattr(hook, "__qualname__", None) or type(hook).__qualname__
        key = (type(hook), name)
        with self._lock:
            if key in self._failed:
                return
            self._failed.add(key)
        _log.exception("embedguard hook %s failed; its further failures are not logged", name)

    def __bool__(self) -> bool:
        return bool(self.active)

    def __len__(self) -> int:
        return len(self.active)

    def __iter__(self) -> Iterator[Hook]:
        return iter(self.active)

    def __repr__(self) -> str:
        return f"Hooks({list(self.active)!r})"
