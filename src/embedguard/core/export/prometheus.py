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

:class:`PrometheusHook` is an event hook (see :mod:`embedguard.core.events`) feeding
``prometheus_client``'s own metric classes, so it also works in multiprocess mode::

    embedguard_attempt_duration_seconds{provider,model,outcome}  histogram of HTTP attempts,
                                                                 buckets 0.01 s .. 60 s
    embedguard_circuit_state{provider,state}                     1 for the breaker's state, else 0
    embedguard_ratelimit_remaining{provider,kind}                requests/tokens left (provider's
                                                                 rate-limit headers)

Its histogram is not named ``request_duration_seconds``: that name is the collector's summary, and
the two can be registered side by side.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeAlias

from embedguard._extras import require
from embedguard.core.errors import ConfigurationError
from embedguard.core.events import (
    CircuitChanged,
    Event,
    RateLimitObserved,
    RequestFinished,
    RequestStarted,
)
from embedguard.core.metrics import MetricsSnapshot

__all__ = ["DEFAULT_BUCKETS", "PrometheusCollector", "PrometheusHook", "render_prometheus"]


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


DEFAULT_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
)  # fmt: skip
"""Latency buckets (seconds) of :class:`PrometheusHook`: embeddings take 10 ms to a minute."""

_STATES = ("closed", "open", "half_open")


class PrometheusHook:
    """An event hook feeding a latency histogram and breaker and rate-limit gauges.

    The metrics are ``prometheus_client``'s own ``Histogram`` and ``Gauge``, registered on
    ``registry`` when the hook is made (make one hook per registry and share it between
    clients). With ``PROMETHEUS_MULTIPROC_DIR`` set, they are written per process and merged by
    ``prometheus_client.multiprocess.MultiProcessCollector``: the histogram sums over processes,
    ``circuit_state`` uses ``livesum`` (how many live processes see each state) and
    ``ratelimit_remaining`` uses ``livemostrecent`` (the latest value any live process saw).

    Metrics (with the default namespace):

    - ``embedguard_attempt_duration_seconds{provider,model,outcome}``: histogram of HTTP attempt
      durations from ``RequestFinished`` (``outcome`` is ``success`` or ``failure``).
    - ``embedguard_circuit_state{provider,state}``: 1 for the breaker's current state and 0 for
      the others, from ``CircuitChanged``; a provider first seen in ``RequestStarted`` starts
      ``closed``.
    - ``embedguard_ratelimit_remaining{provider,kind="requests"|"tokens"}``: what the provider
      said is left, from ``RateLimitObserved`` (a kind it did not report is not set).

    Args:
        registry: Where to register; default ``prometheus_client.REGISTRY``.
        namespace: Prefix of every metric name (``""`` for none).
        buckets: Histogram bucket upper bounds in seconds.

    Raises:
        MissingExtraError: ``prometheus_client`` is not installed (``embedguard[prometheus]``).
        ConfigurationError: Invalid namespace.
        ValueError: The registry already has these metric names.
    """

    def __init__(
        self,
        *,
        registry: Any = None,
        namespace: str = "embedguard",
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        prom = require("prometheus_client", "prometheus")
        if namespace and not _NAME.match(namespace):
            raise ConfigurationError(
                f"not a valid metric name prefix: {namespace!r}", field="namespace"
            )
        prefix = f"{namespace}_" if namespace else ""
        registry = prom.REGISTRY if registry is None else registry
        self._latency = prom.Histogram(
            prefix + "attempt_duration_seconds",
            "HTTP attempt duration in seconds, by outcome.",
            ["provider", "model", "outcome"],
            buckets=tuple(buckets),
            registry=registry,
        )
        self._state = prom.Gauge(
            prefix + "circuit_state",
            "Circuit breaker state: 1 for the current state, 0 for the others.",
            ["provider", "state"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._remaining = prom.Gauge(
            prefix + "ratelimit_remaining",
            "Rate limit left in the provider's window, as its headers last said.",
            ["provider", "kind"],
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        """Update the metrics from ``event``; other event types are ignored."""
        if isinstance(event, RequestFinished):
            outcome = "success" if event.error_type is None else "failure"
            self._latency.labels(event.provider, event.model, outcome).observe(event.duration)
        elif isinstance(event, RequestStarted):
            if event.provider not in self._seen:
                self._set_state(event.provider, "closed", only_if_unseen=True)
        elif isinstance(event, CircuitChanged):
            new = str(getattr(event.new, "value", event.new)).lower().replace("-", "_")
            self._set_state(event.provider, new, only_if_unseen=False)
        elif isinstance(event, RateLimitObserved):
            if event.remaining_requests is not None:
                self._remaining.labels(event.provider, "requests").set(event.remaining_requests)
            if event.remaining_tokens is not None:
                self._remaining.labels(event.provider, "tokens").set(event.remaining_tokens)

    def _set_state(self, provider: str, state: str, *, only_if_unseen: bool) -> None:
        # Under the lock, so racing transitions cannot leave two states at 1.
        with self._lock:
            if only_if_unseen and provider in self._seen:
                return
            self._seen.add(provider)
            for name in _STATES:
                self._state.labels(provider, name).set(1 if name == state else 0)

    def __repr__(self) -> str:
        return f"PrometheusHook(providers={sorted(self._seen)!r})"
