"""OpenTelemetry traces and metrics for embedding requests (extra: ``otel``).

:class:`OpenTelemetryHook` follows the OpenTelemetry semantic conventions for generative AI
client operations, as released in semantic-conventions v1.37.0 (the first release with
``gen_ai.provider.name``; these names are unchanged in later releases). Those conventions are
still marked *Development* upstream.

**Spans.** One span per HTTP attempt, named ``embeddings {model}``, kind ``CLIENT``
(``INTERNAL`` for in-process models), created when the attempt ends with its real start and end
times, as a child of whatever span is current there. Attributes:

===============================  ===================================================
``gen_ai.operation.name``        ``embeddings``
``gen_ai.provider.name``         ``openai``, ``azure.ai.openai``, ``mistral_ai``, ``ollama``;
                                 other providers: the profile's name
``gen_ai.request.model``         the model requested
``gen_ai.response.model``        the model the server reported, when it did
``gen_ai.usage.input_tokens``    tokens billed, when known
``server.address``/``.port``     where the request went, when known
``error.type``                   on failure (span status ``ERROR``): the error kind, one of
                                 ``authentication``, ``rate_limit``, ``quota``,
                                 ``bad_request``, ``context_length``, ``model_not_found``,
                                 ``endpoint_not_found``,
                                 ``server``, ``timeout``, ``connection``,
                                 ``invalid_response``, ``provider``, ``circuit_open``
``http.response.status_code``    the HTTP status, when a response arrived
``embedguard.provider``          the profile's name
``embedguard.request.id``        the request (batch) the attempt belongs to
``embedguard.attempt``           1 for a first attempt, 2 for its first retry...
``embedguard.inputs``            texts in the request
===============================  ===================================================

A retried attempt's span carries a ``retry`` event (``attempt``, ``delay``, ``reason``,
``status_code`` of the failure that caused it). A call refused by an open circuit breaker is a
zero-length span with ``error.type`` = ``circuit_open``. Breaker transitions
(``circuit_changed``) and failovers (``failover``) are events on the current span, if any.
No text, vector, key or header is ever recorded.

**Metrics.** Histograms ``gen_ai.client.operation.duration`` (``s``) and
``gen_ai.client.token.usage`` (``{token}``, with ``gen_ai.token.type`` = ``input``), with the
conventions' bucket boundaries as advice, and the span's ``gen_ai.*``, ``server.*`` and
``error.type`` attributes (no per-request ids). Refused calls are not recorded as durations.

Example::

    from embedguard.core.export.otel import OpenTelemetryHook

    hook = OpenTelemetryHook()    # the global tracer and meter providers; or pass your own
"""

from __future__ import annotations

import threading
import time
from importlib import metadata
from typing import Any

from embedguard._extras import require
from embedguard.core.events import (
    CallRejected,
    CircuitChanged,
    Event,
    FailedOver,
    RequestFinished,
    RetryScheduled,
)

__all__ = ["SCHEMA_URL", "OpenTelemetryHook", "provider_name"]

SCHEMA_URL = "https://opentelemetry.io/schemas/1.37.0"
"""The semantic-conventions version the telemetry follows."""

_PROVIDER_NAMES = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "mistral": "mistral_ai",
    "ollama": "ollama",
}
# Bucket boundaries the GenAI conventions advise for these two histograms.
_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48,
                     40.96, 81.92)  # fmt: skip
_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304,
                  16777216, 67108864)  # fmt: skip
_MAX_PENDING = 4096  # retries remembered for spans not yet seen (bounded: aborted batches)


def provider_name(provider: str, kind: str | None = None) -> str:
    """The ``gen_ai.provider.name`` for a provider label and its wire format (``kind``).

    Example::

        provider_name("prod", "azure")   # 'azure.ai.openai'
        provider_name("vllm", "openai_compatible")   # 'vllm'
    """
    return _PROVIDER_NAMES.get(kind or provider, provider)


def _version() -> str:
    try:
        return metadata.version("embedguard")
    except metadata.PackageNotFoundError:  # pragma: no cover - a source tree without metadata
        return "0+unknown"


class OpenTelemetryHook:
    """A hook that turns pipeline events into OpenTelemetry spans and metrics.

    Thread-safe; one hook can serve several clients.

    Args:
        tracer_provider: Where spans go; default: the global tracer provider.
        meter_provider: Where metrics go; default: the global meter provider.

    Raises:
        MissingExtraError: ``opentelemetry-api`` is not installed (``embedguard[otel]``).
    """

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        self._trace = require("opentelemetry.trace", "otel")
        metrics = require("opentelemetry.metrics", "otel")
        version = _version()
        self._tracer = self._trace.get_tracer(
            "embedguard", version, tracer_provider=tracer_provider, schema_url=SCHEMA_URL
        )
        meter = metrics.get_meter(
            "embedguard", version, meter_provider=meter_provider, schema_url=SCHEMA_URL
        )
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self._tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
        )
        self._pending: dict[int, RetryScheduled] = {}
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        """Record ``event``; event types without telemetry are ignored."""
        if isinstance(event, RequestFinished):
            self._finished(event)
        elif isinstance(event, RetryScheduled):
            self._retry(event)
        elif isinstance(event, CallRejected):
            self._rejected(event)
        elif isinstance(event, CircuitChanged):
            self._current_event(
                "circuit_changed", {"provider": event.provider, "old": event.old, "new": event.new}
            )
        elif isinstance(event, FailedOver):
            self._current_event(
                "failover",
                {"from": event.from_provider, "to": event.to_provider, "reason": event.reason},
            )

    # -- requests ------------------------------------------------------------------------------
    def _finished(self, e: RequestFinished) -> None:
        metric_attrs = _metric_attributes(e)
        end = time.time_ns()
        start = end - max(0, round(e.duration * 1e9))
        span_attrs = {
            **metric_attrs,
            "embedguard.provider": e.provider,
            "embedguard.request.id": e.request_id,
            "embedguard.attempt": e.attempt,
            "embedguard.inputs": e.inputs,
        }
        if e.input_tokens is not None:
            span_attrs["gen_ai.usage.input_tokens"] = e.input_tokens
        if e.status_code is not None:
            span_attrs["http.response.status_code"] = e.status_code
        kind = self._trace.SpanKind
        span = self._tracer.start_span(
            f"embeddings {e.model}",
            kind=kind.INTERNAL if e.provider_kind == "local" else kind.CLIENT,
            attributes=span_attrs,
            start_time=start,
        )
        retry = self._take_retry(e.request_id, e.attempt)
        if retry is not None:
            span.add_event("retry", _retry_attributes(retry), timestamp=start)
        if e.error_type is not None:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, e.error_type))
        span.end(end_time=end)
        self._duration.record(e.duration, metric_attrs)
        if e.input_tokens is not None:
            self._tokens.record(e.input_tokens, {**metric_attrs, "gen_ai.token.type": "input"})

    def _retry(self, e: RetryScheduled) -> None:
        if e.request_id is None:
            self._current_event("retry", _retry_attributes(e))
            return
        with self._lock:
            self._pending[e.request_id] = e
            if len(self._pending) > _MAX_PENDING:
                del self._pending[next(iter(self._pending))]

    def _take_retry(self, request_id: int, attempt: int) -> RetryScheduled | None:
        if attempt <= 1:
            return None
        # Only the retry announced after the previous attempt belongs to this one; a retry
        # announced before this attempt's own outcome stays for the next attempt.
        with self._lock:
            retry = self._pending.get(request_id)
            if retry is None or retry.attempt != attempt - 1:
                return None
            del self._pending[request_id]
        return retry

    def _rejected(self, e: CallRejected) -> None:
        now = time.time_ns()
        span = self._tracer.start_span(
            f"embeddings {e.model}",
            kind=self._trace.SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "embeddings",
                "gen_ai.provider.name": provider_name(e.provider, e.provider_kind),
                "gen_ai.request.model": e.model,
                "error.type": e.reason,
                "embedguard.provider": e.provider,
            },
            start_time=now,
        )
        span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, e.reason))
        span.end(end_time=now)

    def _current_event(self, name: str, attributes: dict[str, Any]) -> None:
        span = self._trace.get_current_span()
        if span.is_recording():
            span.add_event(name, attributes)

    def __repr__(self) -> str:
        return f"OpenTelemetryHook(schema_url={SCHEMA_URL!r})"


def _metric_attributes(e: RequestFinished) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "embeddings",
        "gen_ai.provider.name": provider_name(e.provider, e.provider_kind),
        "gen_ai.request.model": e.model,
    }
    if e.response_model:
        attrs["gen_ai.response.model"] = e.response_model
    if e.server_address:
        attrs["server.address"] = e.server_address
        if e.server_port is not None:
            attrs["server.port"] = e.server_port
    if e.error_type is not None:
        attrs["error.type"] = e.error_type
    return attrs


def _retry_attributes(e: RetryScheduled) -> dict[str, Any]:
    attrs: dict[str, Any] = {"attempt": e.attempt, "delay": e.delay, "reason": e.reason}
    if e.status_code is not None:
        attrs["status_code"] = e.status_code
    return attrs
