"""A logging hook: one line per retry, breaker transition and failover.

:class:`LoggingHook` writes to the ``embedguard`` logger (or one you pass). Each record carries
``extra={"embedguard": {...}}``: the same facts as a dict, under ``record.embedguard``, for
structured (JSON) handlers. Records hold provider and model names, attempt numbers, waits, error
kinds and HTTP statuses; never a text, a key or a header.

=====================  =========================  ==========================================
event                  default level              ``record.embedguard["event"]``
=====================  =========================  ==========================================
RetryScheduled         WARNING                    ``retry``
CircuitChanged         WARNING to open, else INFO ``circuit``
FailedOver             WARNING                    ``failover``
CallRejected           DEBUG                      ``rejected``
RequestFinished        DEBUG                      ``request``
=====================  =========================  ==========================================

Nothing is logged per successful request above DEBUG. ``RequestStarted`` and
``RateLimitObserved`` are not logged.

Example::

    import logging
    from embedguard.core.export.logs import LoggingHook

    logging.basicConfig(level=logging.INFO)
    hook = LoggingHook()        # pass it to the client's hooks
"""

from __future__ import annotations

import logging
from typing import Any

from embedguard.core.events import (
    CallRejected,
    CircuitChanged,
    Event,
    FailedOver,
    RequestFinished,
    RetryScheduled,
)

__all__ = ["LoggingHook"]


class LoggingHook:
    """Log pipeline events as one structured line each.

    Args:
        logger: Where to log; default ``logging.getLogger("embedguard")``.
        level_retry: Level of retry lines.
        level_circuit_open: Level of a breaker opening.
        level_circuit: Level of other breaker transitions (half-open, closed).
        level_failover: Level of failover lines.
        level_rejected: Level of calls refused unsent (one per call while the circuit is open).
        level_request: Level of the per-attempt line (successes and failures).
    """

    def __init__(
        self,
        logger: logging.Logger | None = None,
        *,
        level_retry: int = logging.INFO,
        level_circuit_open: int = logging.WARNING,
        level_circuit: int = logging.INFO,
        level_failover: int = logging.WARNING,
        level_rejected: int = logging.DEBUG,
        level_request: int = logging.DEBUG,
    ) -> None:
        self.logger = logger or logging.getLogger("embedguard")
        self.level_retry = level_retry
        self.level_circuit_open = level_circuit_open
        self.level_circuit = level_circuit
        self.level_failover = level_failover
        self.level_rejected = level_rejected
        self.level_request = level_request

    def __call__(self, event: Event) -> None:
        """Log ``event`` when its type is logged and its level is enabled."""
        if isinstance(event, RetryScheduled):
            self._retry(event)
        elif isinstance(event, CircuitChanged):
            self._circuit(event)
        elif isinstance(event, FailedOver):
            self._failover(event)
        elif isinstance(event, CallRejected):
            self._rejected(event)
        elif isinstance(event, RequestFinished):
            self._request(event)

    def _emit(self, level: int, fields: dict[str, Any], message: str, *args: object) -> None:
        self.logger.log(level, message, *args, extra={"embedguard": fields})

    def _retry(self, e: RetryScheduled) -> None:
        if not self.logger.isEnabledFor(self.level_retry):
            return
        fields = {
            "event": "retry", "provider": e.provider, "model": e.model, "attempt": e.attempt,
            "delay": e.delay, "reason": e.reason, "status_code": e.status_code,
            "request_id": e.request_id,
        }  # fmt: skip
        self._emit(
            self.level_retry,
            fields,
            "embedguard retry provider=%s model=%s retry=%d wait=%.3fs reason=%s status=%s",
            e.provider, e.model, e.attempt, e.delay, e.reason, _status(e.status_code),
        )  # fmt: skip

    def _circuit(self, e: CircuitChanged) -> None:
        level = self.level_circuit_open if e.new == "open" else self.level_circuit
        if not self.logger.isEnabledFor(level):
            return
        fields = {"event": "circuit", "provider": e.provider, "old": e.old, "new": e.new}
        self._emit(
            level, fields, "embedguard circuit provider=%s %s -> %s", e.provider, e.old, e.new
        )

    def _failover(self, e: FailedOver) -> None:
        if not self.logger.isEnabledFor(self.level_failover):
            return
        fields = {
            "event": "failover", "from_provider": e.from_provider, "to_provider": e.to_provider,
            "reason": e.reason,
        }  # fmt: skip
        self._emit(
            self.level_failover,
            fields,
            "embedguard failover provider=%s -> %s reason=%s",
            e.from_provider, e.to_provider, e.reason,
        )  # fmt: skip

    def _rejected(self, e: CallRejected) -> None:
        if not self.logger.isEnabledFor(self.level_rejected):
            return
        fields = {"event": "rejected", "provider": e.provider, "model": e.model, "reason": e.reason}
        self._emit(
            self.level_rejected,
            fields,
            "embedguard rejected provider=%s model=%s reason=%s",
            e.provider, e.model, e.reason,
        )  # fmt: skip

    def _request(self, e: RequestFinished) -> None:
        if not self.logger.isEnabledFor(self.level_request):
            return
        fields = {
            "event": "request", "provider": e.provider, "model": e.model,
            "request_id": e.request_id, "attempt": e.attempt, "inputs": e.inputs,
            "duration": e.duration, "input_tokens": e.input_tokens,
            "error_type": e.error_type, "status_code": e.status_code,
        }  # fmt: skip
        self._emit(
            self.level_request,
            fields,
            "embedguard request provider=%s model=%s attempt=%d inputs=%d duration=%.3fs "
            "tokens=%s outcome=%s status=%s",
            e.provider, e.model, e.attempt, e.inputs, e.duration, _status(e.input_tokens),
            e.error_type or "success", _status(e.status_code),
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"LoggingHook(logger={self.logger.name!r})"


def _status(value: int | None) -> str:
    return "-" if value is None else str(value)
