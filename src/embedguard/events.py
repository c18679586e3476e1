"""Events embedguard emits, and the hooks that receive them (a stable public module).

A hook is any callable taking one event; pass hooks to ``EmbeddingClient(hooks=[...])`` or add
them later with ``client.hooks.add(hook)``::

    from embedguard.events import RetryScheduled

    def on_event(event):
        if isinstance(event, RetryScheduled):
            print("retrying in", event.delay)
"""

from .core.events import (
    CallRejected,
    CircuitChanged,
    Event,
    FailedOver,
    Hook,
    Hooks,
    RateLimitObserved,
    RequestFinished,
    RequestStarted,
    RetryScheduled,
)
from .core.export.logs import LoggingHook

__all__ = [
    "CallRejected",
    "CircuitChanged",
    "Event",
    "FailedOver",
    "Hook",
    "Hooks",
    "LoggingHook",
    "RateLimitObserved",
    "RequestFinished",
    "RequestStarted",
    "RetryScheduled",
]
