"""Tests for the Prometheus exporter (parsed back with prometheus_client's own parser)."""

from __future__ import annotations

import math
import sys

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from embedguard.core.errors import ConfigurationError
from embedguard.core.export.prometheus import PrometheusCollector, render_prometheus
from embedguard.core.metrics import MetricsCollector, MetricsSnapshot

Key = tuple[str, frozenset[tuple[str, str]]]


def parse(text: str) -> dict[Key, float]:
    """Map (sample name, labels) -> value for every sample in an exposition text."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def key(name: str, **labels: str) -> Key:
    """Sample key with the default provider/model labels, overridable."""
    merged = {"provider": "openai", "model": "text-embedding-3-small", **labels}
    return name, frozenset(merged.items())


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class FakeClient:
    """Anything with a .metrics() method, as the embeddings client has."""

    def __init__(self, collector: MetricsCollector) -> None:
        self.collector = collector

    def metrics(self) -> MetricsSnapshot:
        return self.collector.snapshot()


def busy_collector() -> MetricsCollector:
    """A collector with successes, failures, a retry, a rejection, fallback and breaker traffic."""
    clock = FakeClock()
    m = MetricsCollector(provider="openai", model="text-embedding-3-small", clock=clock)
    for ms in range(1, 101):
        m.record_success(items=2, tokens=10_000, latency=ms / 1000, bytes_raw=100, bytes_sent=40)
    m.record_failure(kind="rate_limit", latency=0.5, retry=True)
    m.record_failure(kind="server", latency=0.25, bytes_raw=100, bytes_sent=40)
    m.record_success(
        items=7, tokens=1_000_000, latency=0.1, bytes_raw=0, bytes_sent=0,
        provider="mistral", model="mistral-embed", retry=True,
    )  # fmt: skip
    m.record_rejected()
    m.on_breaker_transition("closed", "open")
    m.on_breaker_transition("open", "half_open")
    clock.now += 30
    return m


def test_exposition_values_match_the_snapshot() -> None:
    """Counters, bytes, cost, breaker transitions and the summary carry the snapshot's values."""
    m = busy_collector()
    samples = parse(render_prometheus(FakeClient(m)))
    assert samples[key("embedguard_requests_total", outcome="success")] == 101
    assert samples[key("embedguard_requests_total", outcome="failure")] == 2
    assert samples[key("embedguard_retries_total")] == 2
    assert samples[key("embedguard_rejected_requests_total")] == 1
    assert samples[key("embedguard_items_total")] == 207
    assert samples[key("embedguard_tokens_total")] == 1_000_000
    assert samples[key("embedguard_tokens_total", model="mistral-embed")] == 1_000_000
    assert samples[key("embedguard_errors_total", kind="rate_limit")] == 1
    assert samples[key("embedguard_errors_total", kind="server")] == 1
    assert samples[key("embedguard_breaker_transitions_total", to="open")] == 1
    assert samples[key("embedguard_breaker_transitions_total", to="half_open")] == 1
    assert samples[key("embedguard_breaker_transitions_total", to="closed")] == 0
    assert samples[key("embedguard_cost_usd_total")] == pytest.approx(0.02 + 0.10)
    assert samples[key("embedguard_request_bytes_total", encoding="raw")] == 10_100
    assert samples[key("embedguard_request_bytes_total", encoding="sent")] == 4_040
    assert samples[key("embedguard_uptime_seconds")] == 30.0


def test_upstream_samples_say_which_provider_served_each_batch() -> None:
    """Per-upstream success/failure counts and items follow the provider passed when recording."""
    samples = parse(render_prometheus(busy_collector()))
    name = "embedguard_upstream_requests_total"
    assert samples[key(name, upstream="openai", outcome="success")] == 100
    assert samples[key(name, upstream="openai", outcome="failure")] == 2
    assert samples[key(name, upstream="mistral", outcome="success")] == 1
    assert samples[key(name, upstream="mistral", outcome="failure")] == 0
    assert samples[key("embedguard_upstream_items_total", upstream="mistral")] == 7


def test_latency_is_a_summary_in_seconds_with_quantiles_count_and_sum() -> None:
    """request_duration_seconds is typed summary with 0.5/0.95/0.99 quantiles, _count and _sum."""
    text = render_prometheus(busy_collector())
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["embedguard_request_duration_seconds"].type == "summary"
    samples = parse(text)
    name = "embedguard_request_duration_seconds"
    # Window: 1..100 ms, 500 ms, 250 ms, 100 ms -> 103 samples, nearest rank.
    assert samples[key(name, quantile="0.5")] == 0.052
    assert samples[key(name, quantile="0.95")] == 0.098
    assert samples[key(name, quantile="0.99")] == 0.25
    assert samples[key(f"{name}_count")] == 103
    assert samples[key(f"{name}_sum")] == pytest.approx(5.05 + 0.5 + 0.25 + 0.1)


def test_names_follow_prometheus_conventions() -> None:
    """Counters are typed counter and end in _total; every sample has provider and model."""
    text = render_prometheus(busy_collector())
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("embedguard_")
        for sample in family.samples:
            assert {"provider", "model"} <= sample.labels.keys()
            if family.type == "counter":
                assert sample.name.endswith("_total")
    assert "# TYPE embedguard_cost_usd_total counter" in text
    assert "# TYPE embedguard_uptime_seconds gauge" in text


def test_empty_metrics_give_zero_counters_and_nan_quantiles() -> None:
    """Before any request counters are 0 and quantiles NaN (no observations), never invented."""
    m = MetricsCollector(provider="openai", model="text-embedding-3-small")
    samples = parse(render_prometheus(m))
    assert samples[key("embedguard_requests_total", outcome="success")] == 0
    assert samples[key("embedguard_tokens_total")] == 0
    assert math.isnan(samples[key("embedguard_request_duration_seconds", quantile="0.5")])
    assert samples[key("embedguard_request_duration_seconds_count")] == 0


def test_registered_collector_reads_fresh_values_at_every_scrape() -> None:
    """A collector on a registry reflects records made after registration."""
    m = MetricsCollector(provider="openai", model="text-embedding-3-small")
    registry = CollectorRegistry()
    registry.register(PrometheusCollector(m.snapshot))
    first = parse(generate_latest(registry).decode())
    m.record_failure(kind="timeout", latency=1.0)
    second = parse(generate_latest(registry).decode())
    assert first[key("embedguard_requests_total", outcome="failure")] == 0
    assert second[key("embedguard_requests_total", outcome="failure")] == 1
    assert second[key("embedguard_errors_total", kind="timeout")] == 1


def test_several_sources_share_one_set_of_families() -> None:
    """Sources of different kinds are exported together, told apart by provider/model labels."""
    a = MetricsCollector(provider="openai", model="text-embedding-3-small")
    b = MetricsCollector(provider="mistral", model="mistral-embed")
    a.record_success(items=1, tokens=1, latency=0.1, bytes_raw=1, bytes_sent=1)
    b.record_success(items=1, tokens=1, latency=0.1, bytes_raw=1, bytes_sent=1)
    b.record_success(items=1, tokens=1, latency=0.1, bytes_raw=1, bytes_sent=1)
    text = render_prometheus(FakeClient(a), b.snapshot(), b.snapshot)
    assert text.count("# TYPE embedguard_requests_total counter") == 1
    samples = parse(text)
    assert samples[key("embedguard_requests_total", outcome="success")] == 1
    mistral = {"provider": "mistral", "model": "mistral-embed", "outcome": "success"}
    assert samples[("embedguard_requests_total", frozenset(mistral.items()))] == 2


def test_namespace_and_const_labels_apply_to_every_sample() -> None:
    """A custom namespace prefixes every name and const_labels appear on every sample."""
    text = render_prometheus(busy_collector(), namespace="rag", const_labels={"service": "ingest"})
    families = list(text_string_to_metric_families(text))
    assert families
    for family in families:
        assert family.name.startswith("rag_")
        for sample in family.samples:
            assert sample.labels["service"] == "ingest"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"namespace": "bad-name"},
        {"const_labels": {"provider": "x"}},
        {"const_labels": {"quantile": "x"}},
        {"const_labels": {"9lives": "x"}},
    ],
)
def test_invalid_namespace_or_reserved_labels_are_rejected(kwargs: dict[str, object]) -> None:
    """Invalid names and labels the exporter sets itself raise ConfigurationError."""
    m = MetricsCollector(provider="openai", model="text-embedding-3-small")
    with pytest.raises(ConfigurationError):
        PrometheusCollector(m, **kwargs)  # type: ignore[arg-type]


def test_two_collectors_on_one_registry_are_refused() -> None:
    """describe() lets the registry refuse a second collector exporting the same names."""
    m = MetricsCollector(provider="openai", model="text-embedding-3-small")
    registry = CollectorRegistry()
    registry.register(PrometheusCollector(m))
    with pytest.raises(ValueError, match="Duplicated"):
        registry.register(PrometheusCollector(m))


def test_bad_sources_are_rejected() -> None:
    """No source at all, or an object that cannot give a snapshot, is an error up front."""
    with pytest.raises(ValueError, match="at least one"):
        render_prometheus()
    with pytest.raises(TypeError, match="cannot read metrics"):
        PrometheusCollector(42)  # type: ignore[arg-type]


def test_missing_prometheus_client_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without prometheus_client, using the exporter raises ImportError naming the extra."""
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    m = MetricsCollector(provider="openai", model="text-embedding-3-small")
    with pytest.raises(ImportError, match=r"embedguard\[prometheus\]"):
        PrometheusCollector(m)
    with pytest.raises(ImportError, match=r"embedguard\[prometheus\]"):
        render_prometheus(m)
