"""The Prometheus event hook (see :mod:`embedguard.core.export.prometheus`, which exports it)."""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Sequence
from typing import Any

from embedguard._extras import require
from embedguard.core.errors import ConfigurationError
from embedguard.core.events import (
    CircuitChanged,
    Event,
    RateLimitObserved,
    RequestFinished,
    RequestStarted,
)

__all__ = ["DEFAULT_BUCKETS", "PrometheusHook", "check_namespace"]

DEFAULT_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
)  # fmt: skip
"""Latency buckets (seconds) of :class:`PrometheusHook`: embeddings take 10 ms to a minute."""

_STATES = ("closed", "open", "half_open")
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


def check_namespace(namespace: str) -> str:
    """The metric name prefix for ``namespace`` (``"embedguard_"``; ``""`` for none).

    Raises:
        ConfigurationError: ``namespace`` is not a valid metric name prefix.
    """
    if namespace and not _NAME.match(namespace):
        raise ConfigurationError(
            f"not a valid metric name prefix: {namespace!r}", field="namespace"
        )
    return f"{namespace}_" if namespace else ""


class _Metrics:
    """The metrics of every hook on one registry under one prefix, and their shared state."""

    def __init__(self, prom: Any, registry: Any, prefix: str, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.latency = prom.Histogram(
            prefix + "attempt_duration_seconds",
            "HTTP attempt duration in seconds, by outcome.",
            ["provider", "model", "outcome"],
            buckets=buckets,
            registry=registry,
        )
        self.state = prom.Gauge(
            prefix + "circuit_state",
            "Circuit breaker state: 1 for the current state, 0 for the others.",
            ["provider", "state"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.remaining = prom.Gauge(
            prefix + "ratelimit_remaining",
            "Rate limit left in the provider's window, as its headers last said.",
            ["provider", "kind"],
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.seen: set[str] = set()
        self.lock = threading.Lock()


# registry -> prefix -> metrics: a second hook on a registry shares the first one's metrics.
_SHARED: weakref.WeakKeyDictionary[Any, dict[str, _Metrics]] = weakref.WeakKeyDictionary()
_SHARED_LOCK = threading.Lock()


def _metrics_for(prom: Any, registry: Any, prefix: str, buckets: tuple[float, ...]) -> _Metrics:
    with _SHARED_LOCK:
        try:
            by_prefix = _SHARED.setdefault(registry, {})
        except TypeError:  # a registry that cannot be weakly referenced: nothing is shared
            return _Metrics(prom, registry, prefix, buckets)
        found = by_prefix.get(prefix)
        if found is None:
            found = by_prefix[prefix] = _Metrics(prom, registry, prefix, buckets)
        elif found.buckets != buckets:
            raise ConfigurationError(
                f"a PrometheusHook on this registry already uses buckets {found.buckets}; "
                "hooks sharing a registry and namespace share one histogram",
                field="buckets",
            )
        return found


class PrometheusHook:
    """An event hook feeding a latency histogram and breaker and rate-limit gauges.

    The metrics are ``prometheus_client``'s own ``Histogram`` and ``Gauge``, registered on
    ``registry`` by the first hook made for it (and ``namespace``); every later hook on the same
    registry shares them, so each client may have its own hook, or share one. Series are told
    apart by the ``provider`` label, the profile's ``name``: give the profiles of different
    clients different names (``profiles.openai(name="search")``). With
    ``PROMETHEUS_MULTIPROC_DIR`` set, the metrics are written per process and merged by
    ``prometheus_client.multiprocess.MultiProcessCollector``: the histogram sums over
    processes, ``circuit_state`` uses ``livesum`` (how many live processes see each state) and
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
        ConfigurationError: Invalid namespace, or buckets other than those of the hooks already
            on the registry.
        ValueError: Something other than a hook registered these metric names.
    """

    def __init__(
        self,
        *,
        registry: Any = None,
        namespace: str = "embedguard",
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        prom = require("prometheus_client", "prometheus")
        prefix = check_namespace(namespace)
        registry = prom.REGISTRY if registry is None else registry
        self._m = _metrics_for(prom, registry, prefix, tuple(float(b) for b in buckets))

    def __call__(self, event: Event) -> None:
        """Update the metrics from ``event``; other event types are ignored."""
        m = self._m
        if isinstance(event, RequestFinished):
            outcome = "success" if event.error_type is None else "failure"
            m.latency.labels(event.provider, event.model, outcome).observe(event.duration)
        elif isinstance(event, RequestStarted):
            if event.provider not in m.seen:
                self._set_state(event.provider, "closed", only_if_unseen=True)
        elif isinstance(event, CircuitChanged):
            new = str(getattr(event.new, "value", event.new)).lower().replace("-", "_")
            self._set_state(event.provider, new, only_if_unseen=False)
        elif isinstance(event, RateLimitObserved):
            if event.remaining_requests is not None:
                m.remaining.labels(event.provider, "requests").set(event.remaining_requests)
            if event.remaining_tokens is not None:
                m.remaining.labels(event.provider, "tokens").set(event.remaining_tokens)

    def _set_state(self, provider: str, state: str, *, only_if_unseen: bool) -> None:
        # Under the lock, so racing transitions cannot leave two states at 1.
        m = self._m
        with m.lock:
            if only_if_unseen and provider in m.seen:
                return
            m.seen.add(provider)
            for name in _STATES:
                m.state.labels(provider, name).set(1 if name == state else 0)

    def __repr__(self) -> str:
        return f"PrometheusHook(providers={sorted(self._m.seen)!r})"
