"""Tests for the Prometheus exporter (parsed back with prometheus_client's own parser)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from embedguard.core.errors import ConfigurationError
from embedguard.core.events import (
    CallRejected,
    CircuitChanged,
    FailedOver,
    RateLimitObserved,
    RequestFinished,
    RequestStarted,
    RetryScheduled,
)
from embedguard.core.export.prometheus import (
    DEFAULT_BUCKETS,
    PrometheusCollector,
    PrometheusHook,
    register_prometheus,
    render_prometheus,
)
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
    m.record_vectors(6_144 * 3)
    m.record_inputs({"truncated": 2, "empty_zero": 1})
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
    assert samples[key("embedguard_vector_bytes_total")] == 18_432
    assert samples[key("embedguard_inputs_adjusted_total", how="truncated")] == 2
    assert samples[key("embedguard_inputs_adjusted_total", how="empty_zero")] == 1


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
    c = MetricsCollector(provider="local", model="all-MiniLM-L6-v2")
    text = render_prometheus(FakeClient(a), b.snapshot(), c.snapshot)
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


# -- PrometheusHook: a histogram and gauges fed by events ------------------------------------------

OPENAI = {"provider": "openai", "model": "text-embedding-3-small"}


def attempt(duration: float, *, error_type: str | None = None, **changes: Any) -> RequestFinished:
    """A finished OpenAI attempt lasting ``duration`` seconds."""
    fields: dict[str, Any] = {
        "provider": "openai", "model": "text-embedding-3-small", "server_address": None,
        "inputs": 4, "attempt": 1, "request_id": 1, "duration": duration, "input_tokens": 10,
        "response_model": None, "error_type": error_type, "status_code": None,
    }  # fmt: skip
    return RequestFinished(**{**fields, **changes})


def started(provider: str = "openai") -> RequestStarted:
    """An attempt starting at ``provider``."""
    return RequestStarted(
        provider=provider, model="m", server_address=None, inputs=1, attempt=1, request_id=1
    )


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample, by exact name and labels."""
    return parse(text)[(name, frozenset(labels.items()))]


def test_hook_histogram_counts_attempts_in_embedding_sized_buckets() -> None:
    """attempt_duration_seconds is a histogram from 0.01 s to 60 s, split by outcome."""
    registry = CollectorRegistry()
    hook = PrometheusHook(registry=registry)
    for seconds in (0.005, 0.3, 0.3, 45.0):
        hook(attempt(seconds))
    hook(attempt(120.0, error_type="timeout"))
    text = generate_latest(registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["embedguard_attempt_duration_seconds"].type == "histogram"
    name = "embedguard_attempt_duration_seconds"
    ok = {**OPENAI, "outcome": "success"}
    assert sample(text, f"{name}_bucket", **ok, le="0.01") == 1
    assert sample(text, f"{name}_bucket", **ok, le="0.25") == 1
    assert sample(text, f"{name}_bucket", **ok, le="0.5") == 3
    assert sample(text, f"{name}_bucket", **ok, le="30.0") == 3
    assert sample(text, f"{name}_bucket", **ok, le="60.0") == 4
    assert sample(text, f"{name}_count", **ok) == 4
    assert sample(text, f"{name}_sum", **ok) == pytest.approx(45.605)
    failed = {**OPENAI, "outcome": "failure"}
    assert sample(text, f"{name}_bucket", **failed, le="60.0") == 0
    assert sample(text, f"{name}_bucket", **failed, le="+Inf") == 1
    bounds = {s.labels["le"] for s in families[name].samples if s.name.endswith("_bucket")}
    assert bounds == {str(b) for b in DEFAULT_BUCKETS} | {"+Inf"}


def test_circuit_state_gauge_follows_transitions() -> None:
    """circuit_state is 1 for the current state only; first sight of a provider means closed."""
    registry = CollectorRegistry()
    hook = PrometheusHook(registry=registry)
    hook(started("openai"))
    text = generate_latest(registry).decode()
    name = "embedguard_circuit_state"
    assert sample(text, name, provider="openai", state="closed") == 1
    assert sample(text, name, provider="openai", state="open") == 0
    hook(CircuitChanged(provider="openai", old="closed", new="open"))
    hook(started("openai"))  # a request seen while open does not reset the state
    text = generate_latest(registry).decode()
    assert sample(text, name, provider="openai", state="closed") == 0
    assert sample(text, name, provider="openai", state="open") == 1
    assert sample(text, name, provider="openai", state="half_open") == 0
    hook(CircuitChanged(provider="openai", old="open", new="half_open"))
    hook(CircuitChanged(provider="mistral", old="closed", new="open"))
    text = generate_latest(registry).decode()
    assert sample(text, name, provider="openai", state="half_open") == 1
    assert sample(text, name, provider="openai", state="open") == 0
    assert sample(text, name, provider="mistral", state="open") == 1
    assert sample(text, name, provider="mistral", state="closed") == 0


def test_ratelimit_remaining_gauge_keeps_the_latest_reported_values() -> None:
    """ratelimit_remaining holds the last requests/tokens left; unreported kinds stay unset."""
    registry = CollectorRegistry()
    hook = PrometheusHook(registry=registry)
    hook(RateLimitObserved(provider="openai", remaining_requests=499, remaining_tokens=None))
    text = generate_latest(registry).decode()
    name = "embedguard_ratelimit_remaining"
    assert sample(text, name, provider="openai", kind="requests") == 499
    assert ("embedguard_ratelimit_remaining", frozenset(
        {"provider": "openai", "kind": "tokens"}.items()
    )) not in parse(text)  # fmt: skip
    hook(RateLimitObserved(provider="openai", remaining_requests=498, remaining_tokens=999_000))
    text = generate_latest(registry).decode()
    assert sample(text, name, provider="openai", kind="requests") == 498
    assert sample(text, name, provider="openai", kind="tokens") == 999_000


def test_hook_ignores_events_it_does_not_export() -> None:
    """Retries, rejections and failovers leave the hook's metrics untouched."""
    registry = CollectorRegistry()
    hook = PrometheusHook(registry=registry)
    before = generate_latest(registry)
    hook(RetryScheduled(provider="openai", model="m", attempt=1, delay=1.0, reason="server",
                        status_code=500))  # fmt: skip
    hook(CallRejected(provider="openai", model="m", reason="circuit_open"))
    hook(FailedOver(from_provider="openai", to_provider="mistral", reason="server"))
    assert generate_latest(registry) == before


def test_hook_and_snapshot_collector_share_one_registry() -> None:
    """The hook's names do not clash with the collector's, so both register side by side."""
    m = MetricsCollector(provider="openai", model="text-embedding-3-small")
    registry = CollectorRegistry()
    registry.register(PrometheusCollector(m))
    hook = PrometheusHook(registry=registry)
    hook(attempt(0.2))
    families = {f.name: f.type for f in text_string_to_metric_families(
        generate_latest(registry).decode()
    )}  # fmt: skip
    assert families["embedguard_request_duration_seconds"] == "summary"
    assert families["embedguard_attempt_duration_seconds"] == "histogram"


def test_hook_namespace_and_registry_checks() -> None:
    """A custom namespace prefixes the names; bad prefixes and a second hook are refused."""
    registry = CollectorRegistry()
    hook = PrometheusHook(registry=registry, namespace="rag", buckets=(0.1, 1.0))
    hook(attempt(0.5))
    text = generate_latest(registry).decode()
    assert sample(text, "rag_attempt_duration_seconds_bucket", **OPENAI, outcome="success",
                  le="1.0") == 1  # fmt: skip
    with pytest.raises(ConfigurationError):
        PrometheusHook(registry=CollectorRegistry(), namespace="bad-name")
    with pytest.raises(ConfigurationError, match="buckets"):
        PrometheusHook(registry=registry, namespace="rag")  # the default buckets differ


_CHILD = """
import sys
from prometheus_client import CollectorRegistry
from embedguard.core.events import (
    CircuitChanged, RateLimitObserved, RequestFinished, RequestStarted,
)
from embedguard.core.export.prometheus import PrometheusHook

hook = PrometheusHook(registry=CollectorRegistry())
hook(RequestStarted(provider="openai", model="m", server_address=None, inputs=1, attempt=1,
                    request_id=1))
hook(RequestFinished(provider="openai", model="m", server_address=None, inputs=1, attempt=1,
                     request_id=1, duration=float(sys.argv[1]), input_tokens=1,
                     response_model=None, error_type=None, status_code=200))
if sys.argv[2] == "open":
    hook(CircuitChanged(provider="openai", old="closed", new="open"))
hook(RateLimitObserved(provider="openai", remaining_requests=int(sys.argv[3]),
                       remaining_tokens=None))
"""


def test_multiprocess_mode_merges_processes(tmp_path: Path) -> None:
    """With PROMETHEUS_MULTIPROC_DIR, histograms sum, states livesum and headroom is most recent."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    env.pop("prometheus_multiproc_dir", None)
    for args in (("0.2", "open", "100"), ("0.4", "closed", "40")):
        subprocess.run([sys.executable, "-c", _CHILD, *args], env=env, check=True, timeout=60)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    text = generate_latest(registry).decode()
    labels = {"provider": "openai", "model": "m", "outcome": "success"}
    assert sample(text, "embedguard_attempt_duration_seconds_count", **labels) == 2
    assert sample(text, "embedguard_attempt_duration_seconds_sum", **labels) == pytest.approx(0.6)
    # One process has its breaker open, the other closed: livesum counts processes per state.
    state = "embedguard_circuit_state"
    assert sample(text, state, provider="openai", state="open") == 1
    assert sample(text, state, provider="openai", state="closed") == 1
    assert sample(text, state, provider="openai", state="half_open") == 0
    remaining = "embedguard_ratelimit_remaining"
    assert sample(text, remaining, provider="openai", kind="requests") == 40


def test_missing_prometheus_client_hook_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without prometheus_client, making the hook raises ImportError naming the extra."""
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ImportError, match=r"embedguard\[prometheus\]"):
        PrometheusHook(registry=object())


# -- several clients (issue 15.6) ---------------------------------------------------------------
def samples_list(text: str) -> list[Key]:
    """Every (sample name, labels) in an exposition, duplicates kept."""
    return [
        (sample.name, frozenset(sample.labels.items()))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def test_rejected_calls_are_exported_apart_from_rejected_batches() -> None:
    """rejected_calls_total counts calls, rejected_requests_total the batches refused unsent."""
    m = MetricsCollector(provider="openai", model="text-embedding-3-small")
    m.record_rejected()
    m.record_rejected_call()
    m.record_rejected_call()
    samples = parse(render_prometheus(m))
    assert samples[key("embedguard_rejected_requests_total")] == 1
    assert samples[key("embedguard_rejected_calls_total")] == 2


def test_two_default_named_sources_are_refused_with_the_remedy() -> None:
    """Two sources with the same provider and model would emit duplicate series: refused."""
    a = MetricsCollector(provider="openai", model="text-embedding-3-small")
    b = MetricsCollector(provider="openai", model="text-embedding-3-small")
    with pytest.raises(ConfigurationError, match=r"name=") as info:
        PrometheusCollector(a, b)
    assert "provider='openai'" in str(info.value)
    collector = PrometheusCollector(a)
    with pytest.raises(ConfigurationError, match=r"name="):
        collector.add(b)


def test_register_prometheus_puts_every_client_in_one_collector_per_registry() -> None:
    """register_prometheus, once per client, gives one set of families and no duplicate series."""
    registry = CollectorRegistry()
    ingest = MetricsCollector(provider="ingest", model="text-embedding-3-small")
    search = MetricsCollector(provider="search", model="text-embedding-3-small")
    first = register_prometheus(ingest, registry=registry)
    assert register_prometheus(search, registry=registry) is first
    assert register_prometheus(ingest, registry=registry) is first  # already there: no-op
    ingest.record_success(items=3, tokens=1, latency=0.1, bytes_raw=1, bytes_sent=1)
    text = generate_latest(registry).decode()
    assert text.count("# TYPE embedguard_items_total counter") == 1
    listed = samples_list(text)
    assert len(listed) == len(set(listed))
    assert parse(text)[key("embedguard_items_total", provider="ingest")] == 3
    assert parse(text)[key("embedguard_items_total", provider="search")] == 0
    other = CollectorRegistry()
    assert register_prometheus(search, registry=other) is not first


def test_register_prometheus_refuses_other_const_labels_on_the_same_registry() -> None:
    """One registry's collector has one set of const labels: a different set is refused."""
    registry = CollectorRegistry()
    a = MetricsCollector(provider="a", model="m")
    b = MetricsCollector(provider="b", model="m")
    register_prometheus(a, registry=registry, const_labels={"service": "rag"})
    with pytest.raises(ConfigurationError, match="const_labels"):
        register_prometheus(b, registry=registry, const_labels={"service": "other"})


def test_hooks_on_one_registry_share_their_metrics() -> None:
    """A second PrometheusHook on a registry reuses the first one's metrics and state."""
    registry = CollectorRegistry()
    first, second = PrometheusHook(registry=registry), PrometheusHook(registry=registry)
    first(attempt(0.2))
    second(attempt(0.3, provider="search"))
    first(CircuitChanged(provider="openai", old="closed", new="open"))
    second(started("openai"))  # already seen by the first hook: its open state is kept
    text = generate_latest(registry).decode()
    name = "embedguard_attempt_duration_seconds_count"
    assert sample(text, name, **OPENAI, outcome="success") == 1
    assert sample(text, name, provider="search", model=OPENAI["model"], outcome="success") == 1
    assert sample(text, "embedguard_circuit_state", provider="openai", state="open") == 1
    listed = samples_list(text)
    assert len(listed) == len(set(listed))


def test_two_real_clients_export_together(tmp_path: Path) -> None:
    """Two clients on one server, each with a hook and registered: one clean exposition."""
    from embedguard import EmbeddingClient, profiles
    from embedguard.testing import EmbeddingServer

    registry = CollectorRegistry()
    with EmbeddingServer(dimensions=8) as server:
        made = []
        for name in ("ingest", "search"):
            profile = profiles.openai(base_url=server.base_url("openai"), dimensions=8, name=name)
            client = EmbeddingClient(
                profile, api_key="sk-x", hooks=[PrometheusHook(registry=registry)]
            )
            register_prometheus(client, registry=registry)
            made.append(client)
        for client in made:
            client.embed(["a", "b"])
            client.close()
    text = generate_latest(registry).decode()
    listed = samples_list(text)
    assert len(listed) == len(set(listed))
    for name in ("ingest", "search"):
        assert parse(text)[key("embedguard_items_total", provider=name)] == 2
        labels = {"provider": name, "model": "text-embedding-3-small", "outcome": "success"}
        assert sample(text, "embedguard_attempt_duration_seconds_count", **labels) == 1
