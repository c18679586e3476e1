"""Prometheus export of :class:`~embedguard.core.metrics.MetricsSnapshot` (extra: ``prometheus``).

:class:`PrometheusCollector` is a ``prometheus_client`` custom collector: every scrape takes a fresh
snapshot from each source. Every sample carries ``provider`` and ``model`` labels (plus any
``const_labels``). Families, with the default ``embedguard`` namespace::

    embedguard_requests_total{outcome="success"|"failure"}   HTTP attempts
    embedguard_retries_total                                 attempts that repeated an earlier one
    embedguard_rejected_requests_total                       calls refused unsent (breaker open)
    embedguard_items_total                                   vectors received
    embedguard_tokens_total{model=...}                       tokens billed, by the model used
    embedguard_errors_total{kind=...}                        failed attempts by error kind
    embedguard_breaker_transitions_total{to=...}             breaker changes, by state entered
    embedguard_cost_usd_total                                estimated spend from the price table
    embedguard_request_bytes_total{encoding="raw"|"sent"}    request bodies before/after compression
    embedguard_upstream_requests_total{upstream,outcome}     attempts, by the provider handling them
    embedguard_upstream_items_total{upstream}                vectors, by the provider sending them
    embedguard_request_duration_seconds{quantile=...}        summary: 0.5/0.95/0.99 over recent
                                                             attempts (NaN before the first), plus
                                                             lifetime _count and _sum
    embedguard_uptime_seconds                                since the collector was created/reset

Example::

    from prometheus_client import REGISTRY
    REGISTRY.register(PrometheusCollector(client))   # any object with .metrics()
    print(render_prometheus(client))                 # or one-off text exposition
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, TypeAlias

from embedguard._extras import require
from embedguard.core.errors import ConfigurationError
from embedguard.core.metrics import MetricsSnapshot

__all__ = ["PrometheusCollector", "render_prometheus"]


class _HasMetrics(Protocol):
    def metrics(self) -> MetricsSnapshot: ...


class _HasSnapshot(Protocol):
    def snapshot(self) -> MetricsSnapshot: ...


MetricsSource: TypeAlias = (
    Callable[[], MetricsSnapshot] | _HasMetrics | _HasSnapshot | MetricsSnapshot
)
"""Where snapshots come from: a client (``.metrics()``), a collector (``.snapshot()``), a
zero-argument callable, or a fixed snapshot (e.g. one loaded with ``MetricsSnapshot.from_dict``)."""

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_OWN_LABELS = frozenset(
    ("provider", "model", "outcome", "kind", "to", "encoding", "upstream", "quantile")
)
# (family, type, help). Counter names omit ``_total``: the exposition format appends it.
_FAMILIES = (
    ("requests", "counter", "HTTP attempts, by outcome."),
    ("retries", "counter", "HTTP attempts that repeated an earlier attempt."),
    ("rejected_requests", "counter", "Calls refused without sending (circuit breaker open)."),
    ("items", "counter", "Vectors received."),
    ("tokens", "counter", "Tokens billed, by the model that used them."),
    ("errors", "counter", "Failed HTTP attempts, by error kind."),
    ("breaker_transitions", "counter", "Circuit breaker state changes, by state entered."),
    ("cost_usd", "counter", "Estimated spend in USD, from the price table."),
    ("request_bytes", "counter", "Request body bytes: raw, and as sent after compression."),
    ("upstream_requests", "counter", "HTTP attempts, by the provider that handled them."),
    ("upstream_items", "counter", "Vectors received, by the provider that served them."),
    (
        "request_duration_seconds",
        "summary",
        "HTTP attempt latency; quantiles cover recent attempts, count and sum the lifetime.",
    ),
    ("uptime_seconds", "gauge", "Seconds since the metrics were created or reset."),
)

_Sample: TypeAlias = tuple[str, str, Mapping[str, str], float]


def _reader(source: MetricsSource) -> Callable[[], MetricsSnapshot]:
    """Turn any accepted source into a zero-argument snapshot reader."""
    if isinstance(source, MetricsSnapshot):
        return lambda: source
    for method in ("metrics", "snapshot"):
        bound = getattr(source, method, None)
        if callable(bound):
            return bound  # type: ignore[no-any-return]
    if callable(source):
        return source
    raise TypeError(
        f"cannot read metrics from {type(source).__name__}: pass a client (.metrics()), "
        "a MetricsCollector, a MetricsSnapshot or a zero-argument callable"
    )


def _samples(snap: MetricsSnapshot) -> Iterator[_Sample]:
    """Yield (family, sample-name suffix, extra labels, value) for one snapshot."""
    yield "requests", "_total", {"outcome": "success"}, snap.successful_requests
    yield "requests", "_total", {"outcome": "failure"}, snap.failed_requests
    yield "retries", "_total", {}, snap.retried_requests
    yield "rejected_requests", "_total", {}, snap.rejected_requests
    yield "items", "_total", {}, snap.items_embedded
    for model, used in sorted((snap.tokens_by_model or {snap.model: 0}).items()):
        yield "tokens", "_total", {"model": model}, used
    for kind, count in sorted(snap.errors_by_kind.items()):
        yield "errors", "_total", {"kind": kind}, count
    for state, count in (
        ("open", snap.breaker_opens),
        ("half_open", snap.breaker_half_opens),
        ("closed", snap.breaker_closes),
    ):
        yield "breaker_transitions", "_total", {"to": state}, count
    yield "cost_usd", "_total", {}, snap.estimated_cost
    yield "request_bytes", "_total", {"encoding": "raw"}, snap.bytes_raw
    yield "request_bytes", "_total", {"encoding": "sent"}, snap.bytes_sent
    for upstream in sorted(set(snap.requests_by_provider) | set(snap.failures_by_provider)):
        ok = snap.requests_by_provider.get(upstream, 0)
        failed = snap.failures_by_provider.get(upstream, 0)
        yield "upstream_requests", "_total", {"upstream": upstream, "outcome": "success"}, ok
        yield "upstream_requests", "_total", {"upstream": upstream, "outcome": "failure"}, failed
        items = snap.items_by_provider.get(upstream, 0)
        yield "upstream_items", "_total", {"upstream": upstream}, items
    # Prometheus convention: a summary quantile with no observations is NaN, not 0.
    empty = snap.latency_count == 0
    for quantile, value in (("0.5", snap.latency_p50), ("0.95", snap.latency_p95)):
        yield "request_duration_seconds", "", {"quantile": quantile}, math.nan if empty else value
    p99 = math.nan if empty else snap.latency_p99
    yield "request_duration_seconds", "", {"quantile": "0.99"}, p99
    yield "request_duration_seconds", "_count", {}, snap.latency_count
    yield "request_duration_seconds", "_sum", {}, snap.latency_sum
    yield "uptime_seconds", "", {}, snap.uptime


class PrometheusCollector:
    """A ``prometheus_client`` collector exporting one or more metrics sources.

    Register it once per registry; pass every client to the same collector (their
    ``provider``/``model`` pairs should differ) rather than registering several collectors,
    which the registry refuses as duplicated time series.

    Args:
        source: Where snapshots come from (see ``MetricsSource``); read at every scrape.
        *more_sources: Further sources exported through the same metric families.
        namespace: Prefix of every metric name (``""`` for none).
        const_labels: Labels added to every sample (e.g. ``{"service": "ingest"}``).

    Raises:
        MissingExtraError: ``prometheus_client`` is not installed (``embedguard[prometheus]``).
        ConfigurationError: Invalid namespace or label name, or a label name used by the exporter.
    """

    def __init__(
        self,
        source: MetricsSource,
        *more_sources: MetricsSource,
        namespace: str = "embedguard",
        const_labels: Mapping[str, str] | None = None,
    ) -> None:
        self._prom = require("prometheus_client", "prometheus")
        if namespace and not _NAME.match(namespace):
            raise ConfigurationError(
                f"not a valid metric name prefix: {namespace!r}", field="namespace"
            )
        labels = dict(const_labels or {})
        for name in labels:
            if not _LABEL.match(name) or name.startswith("__") or name in _OWN_LABELS:
                raise ConfigurationError(
                    f"label name {name!r} is invalid or reserved", field="const_labels"
                )
        self._prefix = f"{namespace}_" if namespace else ""
        self._const_labels = {k: str(v) for k, v in labels.items()}
        self._readers = tuple(_reader(s) for s in (source, *more_sources))

    def _families(self) -> dict[str, Any]:
        return {
            key: self._prom.Metric(self._prefix + key, doc, kind) for key, kind, doc in _FAMILIES
        }

    def describe(self) -> Iterator[Any]:
        """Yield the metric families without samples (lets a registry detect name clashes)."""
        return iter(self._families().values())

    def collect(self) -> Iterator[Any]:
        """Yield the metric families with one fresh snapshot per source."""
        families = self._families()
        for read in self._readers:
            snap = read()
            base = {"provider": snap.provider, "model": snap.model}
            for key, suffix, extra, value in _samples(snap):
                family = families[key]
                labels = {**base, **extra, **self._const_labels}
                family.add_sample(family.name + suffix, labels, float(value))
        return iter(families.values())

    def __repr__(self) -> str:
        return f"PrometheusCollector(sources={len(self._readers)}, prefix={self._prefix!r})"


def render_prometheus(
    *sources: MetricsSource,
    namespace: str = "embedguard",
    const_labels: Mapping[str, str] | None = None,
) -> str:
    """Return the Prometheus text exposition of ``sources`` (a private registry; nothing global).

    Example::

        print(render_prometheus(client))

    Raises:
        ValueError: No source was given.
        MissingExtraError: ``prometheus_client`` is not installed (``embedguard[prometheus]``).
    """
    if not sources:
        raise ValueError("render_prometheus needs at least one metrics source")
    prom = require("prometheus_client", "prometheus")
    collector = PrometheusCollector(*sources, namespace=namespace, const_labels=const_labels)
    registry = prom.CollectorRegistry(auto_describe=False)
    registry.register(collector)
    text: bytes = prom.generate_latest(registry)
    return text.decode("utf-8")
