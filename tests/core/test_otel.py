"""Tests for the OpenTelemetry hook, read back through the SDK's in-memory exporter and reader."""

from __future__ import annotations

import dataclasses
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from embedguard.core.events import (
    CallRejected,
    CircuitChanged,
    FailedOver,
    RateLimitObserved,
    RequestFinished,
    RequestStarted,
    RetryScheduled,
)
from embedguard.core.export.otel import SCHEMA_URL, OpenTelemetryHook, provider_name


@dataclass
class Telemetry:
    """A hook wired to in-memory span and metric sinks."""

    hook: OpenTelemetryHook
    tracer_provider: TracerProvider
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader

    def spans(self) -> list[ReadableSpan]:
        """Finished spans, oldest first."""
        return list(self.exporter.get_finished_spans())

    def points(self, name: str) -> list[HistogramDataPoint]:
        """Histogram data points of the metric ``name``."""
        data = self.reader.get_metrics_data()
        found: list[HistogramDataPoint] = []
        if data is None:
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)  # type: ignore[arg-type]
        return found

    def metric_units(self) -> dict[str, str]:
        """Metric name -> unit, for every metric recorded."""
        data = self.reader.get_metrics_data()
        assert data is not None
        return {
            m.name: m.unit
            for r in data.resource_metrics
            for s in r.scope_metrics
            for m in s.metrics
        }


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    """A fresh tracer and meter provider with in-memory sinks, and a hook using them."""
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    hook = OpenTelemetryHook(tracer_provider=tracer_provider, meter_provider=meter_provider)
    yield Telemetry(hook, tracer_provider, exporter, reader)
    tracer_provider.shutdown()
    meter_provider.shutdown()


def finished(**changes: Any) -> RequestFinished:
    """A successful OpenAI attempt, with ``changes`` applied."""
    base = RequestFinished(
        provider="openai", model="text-embedding-3-small", server_address="api.openai.com",
        inputs=16, attempt=1, request_id=41, duration=0.25, input_tokens=420,
        response_model="text-embedding-3-small-v2", error_type=None, status_code=200,
        provider_kind="openai", server_port=443,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


def retry(**changes: Any) -> RetryScheduled:
    """A retry of request 41 after its first attempt failed with a 503, with ``changes``."""
    base = RetryScheduled(
        provider="openai", model="text-embedding-3-small", attempt=1, delay=0.75,
        reason="server", status_code=503, request_id=41,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


def test_success_is_one_client_span_with_genai_attributes(otel: Telemetry) -> None:
    """A finished attempt becomes a CLIENT span 'embeddings {model}' with the GenAI attributes."""
    otel.hook(finished())
    [span] = otel.spans()
    assert span.name == "embeddings text-embedding-3-small"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert dict(span.attributes or {}) == {
        "gen_ai.operation.name": "embeddings",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "text-embedding-3-small",
        "gen_ai.response.model": "text-embedding-3-small-v2",
        "gen_ai.usage.input_tokens": 420,
        "server.address": "api.openai.com",
        "server.port": 443,
        "http.response.status_code": 200,
        "embedguard.provider": "openai",
        "embedguard.request.id": 41,
        "embedguard.attempt": 1,
        "embedguard.inputs": 16,
    }
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "embedguard"
    assert span.instrumentation_scope.schema_url == SCHEMA_URL


def test_span_lasts_the_attempt_duration(otel: Telemetry) -> None:
    """The span's start and end are the attempt's real duration apart."""
    otel.hook(finished(duration=1.5))
    [span] = otel.spans()
    assert span.start_time is not None and span.end_time is not None
    assert span.end_time - span.start_time == 1_500_000_000


def test_failure_sets_error_type_and_error_status(otel: Telemetry) -> None:
    """A failed attempt carries error.type = the error kind and an ERROR status."""
    otel.hook(finished(error_type="rate_limit", status_code=429, input_tokens=None,
                       response_model=None))  # fmt: skip
    [span] = otel.spans()
    attributes = dict(span.attributes or {})
    assert span.status.status_code is StatusCode.ERROR
    assert attributes["error.type"] == "rate_limit"
    assert attributes["http.response.status_code"] == 429
    assert "gen_ai.usage.input_tokens" not in attributes
    assert "gen_ai.response.model" not in attributes


@pytest.mark.parametrize(
    ("label", "kind", "expected"),
    [
        ("openai", None, "openai"),
        ("prod", "openai", "openai"),
        ("azure", "azure", "azure.ai.openai"),
        ("mistral", "mistral", "mistral_ai"),
        ("ollama", "ollama", "ollama"),
        ("vllm", "openai_compatible", "vllm"),
        ("local", "local", "local"),
    ],
)
def test_provider_kinds_map_to_genai_provider_names(
    otel: Telemetry, label: str, kind: str | None, expected: str
) -> None:
    """gen_ai.provider.name uses the conventions' well-known values, else the profile's name."""
    assert provider_name(label, kind) == expected
    otel.hook(finished(provider=label, provider_kind=kind))
    [span] = otel.spans()
    assert (span.attributes or {})["gen_ai.provider.name"] == expected
    assert (span.attributes or {})["embedguard.provider"] == label


def test_in_process_models_get_internal_spans(otel: Telemetry) -> None:
    """A local (in-process) model's span is INTERNAL, with no server address."""
    otel.hook(finished(provider="local", provider_kind="local", server_address=None,
                       server_port=None, status_code=None))  # fmt: skip
    [span] = otel.spans()
    assert span.kind is SpanKind.INTERNAL
    assert "server.address" not in (span.attributes or {})
    assert "server.port" not in (span.attributes or {})


def test_span_is_a_child_of_the_current_span(otel: Telemetry) -> None:
    """The attempt span is parented to the span current where the attempt finished."""
    tracer = otel.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("ingest") as parent:
        otel.hook(finished())
    attempt = next(s for s in otel.spans() if s.name.startswith("embeddings"))
    assert attempt.parent is not None
    assert attempt.parent.span_id == parent.get_span_context().span_id


def test_retry_is_an_event_on_the_next_attempts_span(otel: Telemetry) -> None:
    """A scheduled retry shows as a 'retry' event on the span of the attempt that follows it."""
    otel.hook(finished(error_type="server", status_code=503, input_tokens=None))
    otel.hook(retry())
    otel.hook(finished(request_id=99))  # another request: no retry event
    otel.hook(finished(attempt=2))
    failed, other, retried = otel.spans()
    assert failed.events == () and other.events == ()
    [event] = retried.events
    assert event.name == "retry"
    assert dict(event.attributes or {}) == {
        "attempt": 1, "delay": 0.75, "reason": "server", "status_code": 503,
    }  # fmt: skip
    assert event.timestamp == retried.start_time


def test_retry_is_not_attached_to_an_unrelated_attempt_number(otel: Telemetry) -> None:
    """A retry after attempt 1 does not decorate a later attempt 3 of the same request."""
    otel.hook(retry(request_id=5, reason="timeout", status_code=None))
    otel.hook(finished(request_id=5, attempt=3))
    [span] = otel.spans()
    assert span.events == ()


def test_retry_announced_before_the_failed_attempt_ends_waits_for_the_next(
    otel: Telemetry,
) -> None:
    """A retry of attempt 2 emitted before attempt 2's own span decorates attempt 3 only."""
    otel.hook(retry(attempt=2))
    otel.hook(finished(attempt=2, error_type="server", status_code=503))
    otel.hook(finished(attempt=3))
    second, third = otel.spans()
    assert second.events == ()
    [event] = third.events
    assert (event.attributes or {})["attempt"] == 2


def test_retry_without_request_id_goes_to_the_current_span(otel: Telemetry) -> None:
    """With no request id, the retry is an event on the caller's current span."""
    tracer = otel.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("ingest"):
        otel.hook(retry(request_id=None, attempt=2, reason="rate_limit", status_code=429))
    [parent] = otel.spans()
    [event] = parent.events
    assert event.name == "retry"
    assert (event.attributes or {})["reason"] == "rate_limit"


def test_breaker_and_failover_are_events_on_the_current_span(otel: Telemetry) -> None:
    """Circuit transitions and failovers are recorded on the current span, if there is one."""
    otel.hook(CircuitChanged(provider="openai", old="closed", new="open"))  # no span: ignored
    tracer = otel.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("ingest"):
        otel.hook(CircuitChanged(provider="openai", old="closed", new="open"))
        otel.hook(FailedOver(from_provider="openai", to_provider="mistral", reason="circuit_open"))
    [parent] = otel.spans()
    assert [e.name for e in parent.events] == ["circuit_changed", "failover"]
    assert dict(parent.events[0].attributes or {}) == {
        "provider": "openai", "old": "closed", "new": "open",
    }  # fmt: skip
    assert (parent.events[1].attributes or {})["to"] == "mistral"


def test_rejected_call_is_a_zero_length_error_span(otel: Telemetry) -> None:
    """A call refused by the breaker is an ERROR span with error.type circuit_open, no duration."""
    otel.hook(
        CallRejected(provider="prod", model="m", reason="circuit_open", provider_kind="azure")
    )
    [span] = otel.spans()
    attributes = dict(span.attributes or {})
    assert span.name == "embeddings m"
    assert span.status.status_code is StatusCode.ERROR
    assert attributes["error.type"] == "circuit_open"
    assert attributes["gen_ai.provider.name"] == "azure.ai.openai"
    assert span.start_time == span.end_time
    assert otel.points("gen_ai.client.operation.duration") == []


def test_duration_histogram_has_conventions_attributes_and_buckets(otel: Telemetry) -> None:
    """gen_ai.client.operation.duration records each attempt in seconds, split by error.type."""
    otel.hook(finished(duration=0.25))
    otel.hook(finished(duration=0.5, request_id=2))
    otel.hook(finished(duration=2.0, error_type="timeout", input_tokens=None, status_code=None))
    points = otel.points("gen_ai.client.operation.duration")
    by_error = {p.attributes.get("error.type"): p for p in points if p.attributes is not None}
    ok, timeout = by_error[None], by_error["timeout"]
    assert (ok.count, ok.sum) == (2, pytest.approx(0.75))
    assert (timeout.count, timeout.sum) == (1, pytest.approx(2.0))
    assert dict(ok.attributes or {}) == {
        "gen_ai.operation.name": "embeddings",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "text-embedding-3-small",
        "gen_ai.response.model": "text-embedding-3-small-v2",
        "server.address": "api.openai.com",
        "server.port": 443,
    }
    assert list(ok.explicit_bounds) == [
        0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
    ]  # fmt: skip
    assert otel.metric_units()["gen_ai.client.operation.duration"] == "s"


def test_token_usage_histogram_counts_input_tokens(otel: Telemetry) -> None:
    """gen_ai.client.token.usage records known input tokens with gen_ai.token.type=input."""
    otel.hook(finished(input_tokens=100))
    otel.hook(finished(input_tokens=300, request_id=2))
    otel.hook(finished(input_tokens=None, error_type="server", status_code=500))
    [point] = otel.points("gen_ai.client.token.usage")
    assert (point.count, point.sum) == (2, 400)
    assert (point.attributes or {})["gen_ai.token.type"] == "input"
    assert point.explicit_bounds[0] == 1 and point.explicit_bounds[-1] == 67108864
    assert otel.metric_units()["gen_ai.client.token.usage"] == "{token}"


def test_events_without_telemetry_are_ignored(otel: Telemetry) -> None:
    """RequestStarted and RateLimitObserved produce no span and no metric."""
    otel.hook(RequestStarted(provider="openai", model="m", server_address=None, inputs=1,
                             attempt=1, request_id=1))  # fmt: skip
    otel.hook(RateLimitObserved(provider="openai", remaining_requests=1, remaining_tokens=1))
    assert otel.spans() == []
    assert otel.points("gen_ai.client.operation.duration") == []


def test_concurrent_attempts_from_threads_are_all_recorded(otel: Telemetry) -> None:
    """The hook is thread-safe: attempts finishing on many threads each get a span and a point."""

    def worker(base: int) -> None:
        for i in range(50):
            otel.hook(retry(request_id=base + i))
            otel.hook(finished(request_id=base + i, attempt=2))

    threads = [threading.Thread(target=worker, args=(n * 1000,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spans = otel.spans()
    assert len(spans) == 200
    assert all(len(s.events) == 1 for s in spans)
    [point] = otel.points("gen_ai.client.operation.duration")
    assert point.count == 200


def test_missing_opentelemetry_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without opentelemetry installed, making the hook raises ImportError naming the extra."""
    monkeypatch.setitem(sys.modules, "opentelemetry.trace", None)
    with pytest.raises(ImportError, match=r"embedguard\[otel\]"):
        OpenTelemetryHook()
