"""Prometheus export of :class:`~embedguard.core.metrics.MetricsSnapshot` (extra: ``prometheus``).

:class:`PrometheusCollector` is a ``prometheus_client`` custom collector: every scrape takes a fresh
snapshot from each source. Every sample carries ``provider`` and ``model`` labels (plus any
``const_labels``). Families, with the default ``embedguard`` namespace::

    embedguard_requests_total{outcome="success"|"failure"}   HTTP attempts
    embedguard_retries_total                                 attempts that repeated an earlier one
    embedguard_rejected_requests_total                       batches refused unsent (breaker open)
    embedguard_rejected_calls_total                          calls that ended in CircuitOpenError
    embedguard_items_total                                   vectors received
    embedguard_tokens_total{model=...}                       tokens billed, by the model used
    embedguard_errors_total{kind=...}                        failed attempts by error kind
    embedguard_breaker_transitions_total{to=...}             breaker changes, by state entered
    embedguard_cost_usd_total                                estimated spend from the price table
    embedguard_request_bytes_total{encoding="raw"|"sent"}    request bodies before/after compression
    embedguard_vector_bytes_total                            bytes of vectors returned (dtype's)
    embedguard_inputs_adjusted_total{how=...}                inputs truncated, chunked, blank...
    embedguard_upstream_requests_total{upstream,outcome}     attempts, by the provider handling them
    embedguard_upstream_items_total{upstream}                vectors, by the provider sending them
    embedguard_request_duration_seconds{quantile=...}        summary: 0.5/0.95/0.99 over recent
                                                             attempts (NaN before the first), plus
                                                             lifetime _count and _sum
    embedguard_uptime_seconds                                since the collector was created/reset

Several clients: a registry holds one collector per namespace, exporting every client. Call
:func:`register_prometheus` once per client (it finds or makes that collector), or pass all the
clients to one :class:`PrometheusCollector`. A client's series are told apart by ``provider``,
its profile's ``name``: two clients whose profiles share a name and model would emit duplicate
series, so the collector refuses the second (name them, e.g. ``profiles.openai(name="search")``).

Example::

    register_prometheus(ingest_client)               # on prometheus_client.REGISTRY
    register_prometheus(search_client)               # same collector, more series
    print(render_prometheus(client))                 # or one-off text exposition

:class:`PrometheusHook` is an event hook (see :mod:`embedguard.core.events`) feeding
``prometheus_client``'s own metric classes, so it also works in multiprocess mode; hooks made
for one registry share its metrics (one hook per client is fine)::

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
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, TypeAlias

from embedguard._extras import require
from embedguard.core.errors import ConfigurationError
from embedguard.core.metrics import MetricsSnapshot

from ._promhook import DEFAULT_BUCKETS, PrometheusHook, check_namespace

__all__ = [
    "DEFAULT_BUCKETS",
    "PrometheusCollector",
    "PrometheusHook",
    "register_prometheus",
    "render_prometheus",
]


class _HasMetrics(Protocol):
    def metrics(self) -> MetricsSnapshot: ...


class _HasSnapshot(Protocol):
    def snapshot(self) -> MetricsSnapshot: ...


MetricsSource: TypeAlias = (
    Callable[[], MetricsSnapshot] | _HasMetrics | _HasSnapshot | MetricsSnapshot
)
"""Where snapshots come from: a client (``.metrics()``), a collector (``.snapshot()``), a
zero-argument callable, or a fixed snapshot (e.g. one loaded with ``MetricsSnapshot.from_dict``)."""

_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_OWN_LABELS = frozenset(
    ("provider", "model", "outcome", "kind", "to", "encoding", "upstream", "quantile")
)
# (family, type, help). Counter names omit ``_total``: the exposition format appends it.
_FAMILIES = (
    ("requests", "counter", "HTTP attempts, by outcome."),
    ("retries", "counter", "HTTP attempts that repeated an earlier attempt."),
    ("rejected_requests", "counter", "Batches refused without sending (circuit breaker open)."),
    ("rejected_calls", "counter", "Calls that ended in CircuitOpenError (nothing sent)."),
    ("items", "counter", "Vectors received."),
    ("tokens", "counter", "Tokens billed, by the model that used them."),
    ("errors", "counter", "Failed HTTP attempts, by error kind."),
    ("breaker_transitions", "counter", "Circuit breaker state changes, by state entered."),
    ("cost_usd", "counter", "Estimated spend in USD, from the price table."),
    ("request_bytes", "counter", "Request body bytes: raw, and as sent after compression."),
    ("vector_bytes", "counter", "Bytes of vectors returned to callers, in the profile's dtype."),
    ("inputs_adjusted", "counter", "Inputs not embedded as given, by what was done to them."),
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
    yield "rejected_calls", "_total", {}, snap.rejected_calls
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
    yield "vector_bytes", "_total", {}, snap.vector_bytes
    for how, count in sorted(snap.inputs_adjusted.items()):
        yield "inputs_adjusted", "_total", {"how": how}, count
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

    A registry takes one collector per namespace (a second one exports the same names, which the
    registry refuses): put every client in it, here or with :meth:`add`, or let
    :func:`register_prometheus` do that. Each source must have its own ``provider``/``model``
    pair (its profile's ``name`` and model), else their series would be duplicates.

    Args:
        source: Where snapshots come from (see ``MetricsSource``); read at every scrape.
        *more_sources: Further sources exported through the same metric families.
        namespace: Prefix of every metric name (``""`` for none).
        const_labels: Labels added to every sample (e.g. ``{"service": "ingest"}``).

    Raises:
        MissingExtraError: ``prometheus_client`` is not installed (``embedguard[prometheus]``).
        ConfigurationError: Invalid namespace or label name, a label name used by the exporter,
            or two sources with the same provider and model.
    """

    def __init__(
        self,
        source: MetricsSource,
        *more_sources: MetricsSource,
        namespace: str = "embedguard",
        const_labels: Mapping[str, str] | None = None,
    ) -> None:
        self._prom = require("prometheus_client", "prometheus")
        self._prefix = check_namespace(namespace)
        labels = dict(const_labels or {})
        for name in labels:
            if not _LABEL.match(name) or name.startswith("__") or name in _OWN_LABELS:
                raise ConfigurationError(
                    f"label name {name!r} is invalid or reserved", field="const_labels"
                )
        self._const_labels = {k: str(v) for k, v in labels.items()}
        self._lock = threading.Lock()
        self._sources: list[MetricsSource] = []
        self._readers: tuple[Callable[[], MetricsSnapshot], ...] = ()
        self._exported: set[tuple[str, str]] = set()
        for each in (source, *more_sources):
            self.add(each)

    @property
    def const_labels(self) -> Mapping[str, str]:
        """The labels added to every sample."""
        return dict(self._const_labels)

    def add(self, source: MetricsSource) -> None:
        """Export ``source`` too, from the next scrape on (a source already here is ignored).

        Raises:
            TypeError: ``source`` cannot give a snapshot.
            ConfigurationError: Another source already exports this provider and model.
        """
        read = _reader(source)
        snap = read()
        exported = (snap.provider, snap.model)
        with self._lock:
            if any(s is source or s == source for s in self._sources):
                return
            if exported in self._exported:
                raise ConfigurationError(
                    f"two sources export provider={snap.provider!r}, model={snap.model!r}: "
                    "their series would be duplicates; give the clients' profiles distinct "
                    "names, e.g. profiles.openai(name='search')",
                    field="source",
                )
            self._exported.add(exported)
            self._sources.append(source)
            self._readers = (*self._readers, read)

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
        for read in self._readers:  # a tuple, replaced whole by add(): safe to iterate
            snap = read()
            base = {"provider": snap.provider, "model": snap.model}
            for key, suffix, extra, value in _samples(snap):
                family = families[key]
                labels = {**base, **extra, **self._const_labels}
                family.add_sample(family.name + suffix, labels, float(value))
        return iter(families.values())

    def __repr__(self) -> str:
        return f"PrometheusCollector(sources={len(self._readers)}, prefix={self._prefix!r})"


# registry -> namespace -> the collector register_prometheus made for it.
_REGISTERED: weakref.WeakKeyDictionary[Any, dict[str, PrometheusCollector]]
_REGISTERED = weakref.WeakKeyDictionary()
_REGISTERED_LOCK = threading.Lock()


def register_prometheus(
    source: MetricsSource,
    *,
    registry: Any = None,
    namespace: str = "embedguard",
    const_labels: Mapping[str, str] | None = None,
) -> PrometheusCollector:
    """Export ``source`` on ``registry``, in the one collector this function keeps per namespace.

    Call it once per client, from anywhere: the first call registers a
    :class:`PrometheusCollector`, later ones add to it. Registering the same source again does
    nothing.

    Example::

        register_prometheus(ingest_client)   # prometheus_client.REGISTRY by default
        register_prometheus(search_client)   # profiles named "ingest" and "search"

    Args:
        source: A client (or any ``MetricsSource``).
        registry: Where to export; default ``prometheus_client.REGISTRY``.
        namespace: Prefix of every metric name.
        const_labels: Labels on every sample; every call for one registry and namespace must
            pass the same ones.

    Returns:
        The registry's collector for ``namespace``.

    Raises:
        MissingExtraError: ``prometheus_client`` is not installed (``embedguard[prometheus]``).
        ConfigurationError: ``const_labels`` differ from the collector's, or another source
            already exports the same provider and model.
    """
    prom = require("prometheus_client", "prometheus")
    registry = prom.REGISTRY if registry is None else registry
    wanted = {k: str(v) for k, v in (const_labels or {}).items()}
    with _REGISTERED_LOCK:
        by_namespace = _REGISTERED.setdefault(registry, {})
        collector = by_namespace.get(namespace)
        if collector is None:
            collector = PrometheusCollector(source, namespace=namespace, const_labels=wanted)
            registry.register(collector)
            by_namespace[namespace] = collector
            return collector
    if collector.const_labels != wanted:
        raise ConfigurationError(
            f"this registry's collector has const_labels {collector.const_labels}, not {wanted}",
            field="const_labels",
        )
    collector.add(source)
    return collector


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
