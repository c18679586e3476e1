"""Request metrics: a thread-safe collector and the immutable snapshot it produces.

A *request* is one HTTP attempt. Every attempt ends as exactly one success or one failure, so at
every snapshot ``total_requests == successful_requests + failed_requests`` and the failures split
exactly by error kind. What an open circuit breaker refuses is counted apart, twice over:
``rejected_requests`` counts the batches refused unsent (one batch may carry several coalesced
calls), ``rejected_calls`` the caller's calls that ended in ``CircuitOpenError``.

Example::

    metrics = MetricsCollector(provider="openai", model="text-embedding-3-small")
    metrics.record_success(items=16, tokens=420, latency=0.12, bytes_raw=900, bytes_sent=900)
    snap = metrics.snapshot()
    snap.success_rate, snap.latency_p95, snap.estimated_cost
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any

from embedguard.core.errors import ConfigurationError

from ._snapshot import MetricsSnapshot

__all__ = ["MetricsCollector", "MetricsSnapshot", "default_prices"]


@cache
def default_prices() -> Mapping[str, float]:
    """Return the bundled price table: model name -> USD per 1M input tokens.

    The table ships as ``embedguard/core/prices.json``; its ``_source`` and ``_date`` entries say
    where the prices come from and when they were read (prices drift: override them per client).
    """
    text = resources.files("embedguard.core").joinpath("prices.json").read_text("utf-8")
    raw: dict[str, Any] = json.loads(text)
    return MappingProxyType({k: float(v) for k, v in raw.items() if not k.startswith("_")})


def _percentile(ordered: list[float], percent: int) -> float:
    """Nearest-rank percentile: the smallest sample with at least ``percent``% of samples <= it."""
    if not ordered:
        return 0.0
    rank = max(1, -(-percent * len(ordered) // 100))  # ceil without float rounding
    return ordered[rank - 1]


def _state_name(state: object) -> str:
    """Normalise a breaker state (a str, or an Enum whose ``value`` is one) to ``half_open``."""
    return str(getattr(state, "value", state)).lower().replace("-", "_")


@dataclass(slots=True)
class _State:
    """Everything the collector counts (named as in the snapshot); replaced by ``reset()``."""

    started: float
    window: deque[float]
    successful_requests: int = 0
    failed_requests: int = 0
    retried_requests: int = 0
    rejected_requests: int = 0
    rejected_calls: int = 0
    items_embedded: int = 0
    tokens_used: int = 0
    bytes_raw: int = 0
    bytes_sent: int = 0
    latency_count: int = 0
    latency_sum: float = 0.0
    latency_max: float = 0.0
    breaker_opens: int = 0
    breaker_closes: int = 0
    breaker_half_opens: int = 0
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    rejected_by_kind: dict[str, int] = field(default_factory=dict)
    tokens_by_model: dict[str, int] = field(default_factory=dict)
    requests_by_provider: dict[str, int] = field(default_factory=dict)
    items_by_provider: dict[str, int] = field(default_factory=dict)
    failures_by_provider: dict[str, int] = field(default_factory=dict)
    cache_hits: int = 0
    cache_misses: int = 0
    cache_tokens_saved: int = 0
    inputs_adjusted: dict[str, int] = field(default_factory=dict)
    vector_bytes: int = 0

    def observe(self, latency: float, retry: bool, bytes_raw: int, bytes_sent: int) -> None:
        """Account the parts every attempt has, whatever its outcome."""
        self.latency_count += 1
        self.latency_sum += latency
        if latency > self.latency_max:
            self.latency_max = latency
        self.window.append(latency)
        if retry:
            self.retried_requests += 1
        self.bytes_raw += bytes_raw
        self.bytes_sent += bytes_sent


_COUNTED = tuple(f.name for f in fields(_State) if f.name not in ("started", "window"))
_BREAKER_COUNTERS = {
    "open": "breaker_opens", "closed": "breaker_closes", "half_open": "breaker_half_opens",
}  # fmt: skip


def _detached(value: Any) -> Any:
    return dict(value) if isinstance(value, dict) else value


def _bump(counts: dict[str, int], key: str, amount: int = 1) -> None:
    counts[key] = counts.get(key, 0) + amount


class MetricsCollector:
    """Thread-safe counters for one client; :meth:`snapshot` gives an immutable view.

    Safe to share between threads and asyncio tasks: one lock, held only for O(1) updates.
    Latencies (seconds, every attempt, success or failure) feed lifetime sum/count/max and a sliding
    window of the last ``reservoir_size`` samples, from which the percentiles are computed.

    Args:
        provider: Profile name of the provider this client talks to (labels the snapshot).
        model: Default model; tokens are attributed to it unless a call names another.
        enabled: When False every ``record_*`` call is a no-op and snapshots are all zeros.
        price_per_million_tokens: USD per 1M input tokens for ``model``, overriding the table.
        prices: Entries that override or extend the bundled table (:func:`default_prices`).
        reservoir_size: How many recent latencies the percentiles are computed from (>= 1).
        clock: Monotonic clock in seconds, for uptime (injectable for tests).

    Raises:
        ConfigurationError: ``reservoir_size`` < 1 or a negative price.
    """

    def __init__(
        self,
        *,
        provider: str,
        model: str,
        enabled: bool = True,
        price_per_million_tokens: float | None = None,
        prices: Mapping[str, float] | None = None,
        reservoir_size: int = 2048,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if reservoir_size < 1:
            raise ConfigurationError("must be at least 1", field="reservoir_size")
        table = dict(default_prices())
        table.update(prices or {})
        if price_per_million_tokens is not None:
            table[model] = price_per_million_tokens
        for name, price in table.items():
            if not price >= 0:  # also rejects NaN
                raise ConfigurationError(f"price for {name!r} must be >= 0, got {price!r}")
        self._provider = provider
        self._model = model
        self._enabled = enabled
        self._prices: Mapping[str, float] = MappingProxyType(table)
        self._reservoir_size = reservoir_size
        self._clock = clock
        self._lock = threading.Lock()
        self._state = self._fresh_state()

    @property
    def enabled(self) -> bool:
        """Whether recording is on (fixed at construction)."""
        return self._enabled

    @property
    def prices(self) -> Mapping[str, float]:
        """The effective price table (USD per 1M input tokens), overrides applied."""
        return self._prices

    def _fresh_state(self) -> _State:
        return _State(self._clock(), deque(maxlen=self._reservoir_size))

    def record_success(
        self,
        *,
        items: int,
        tokens: int,
        latency: float,
        bytes_raw: int,
        bytes_sent: int,
        retry: bool = False,
        model: str | None = None,
        provider: str | None = None,
    ) -> None:
        """Record one HTTP attempt that returned valid vectors.

        Args:
            items: Vectors received.
            tokens: Tokens billed, as the response reported them.
            latency: Seconds the attempt took.
            bytes_raw: Request body size before compression.
            bytes_sent: Request body size on the wire.
            retry: This attempt repeated an earlier one.
            model: The model that served it, when not the collector's default.
            provider: The provider that served it, when not the collector's default (fallback).
        """
        if not self._enabled:
            return
        model = model or self._model
        provider = provider or self._provider
        with self._lock:
            s = self._state
            s.successful_requests += 1
            s.items_embedded += items
            s.tokens_used += tokens
            _bump(s.tokens_by_model, model, tokens)
            _bump(s.requests_by_provider, provider)
            _bump(s.items_by_provider, provider, items)
            s.observe(latency, retry, bytes_raw, bytes_sent)

    def record_failure(
        self,
        *,
        kind: str,
        latency: float,
        bytes_raw: int = 0,
        bytes_sent: int = 0,
        retry: bool = False,
        provider: str | None = None,
    ) -> None:
        """Record one HTTP attempt that failed; ``kind`` is the error's ``kind`` (``"server"``)."""
        if not self._enabled:
            return
        provider = provider or self._provider
        with self._lock:
            s = self._state
            s.failed_requests += 1
            _bump(s.errors_by_kind, kind)
            _bump(s.failures_by_provider, provider)
            s.observe(latency, retry, bytes_raw, bytes_sent)

    def record_cache(self, *, hits: int, misses: int, tokens_saved: int) -> None:
        """Record one cache lookup: texts found, texts missing, estimated tokens not billed."""
        if not self._enabled:
            return
        with self._lock:
            s = self._state
            s.cache_hits += hits
            s.cache_misses += misses
            s.cache_tokens_saved += tokens_saved

    def record_vectors(self, nbytes: int) -> None:
        """Record the bytes of vectors handed to a caller (in the profile's dtype: an int8 vector
        of 1,536 dimensions is 1,536 bytes, a binary one 192, a float32 one 6,144)."""
        if not self._enabled:
            return
        with self._lock:
            self._state.vector_bytes += nbytes

    def record_inputs(self, adjusted: Mapping[str, int]) -> None:
        """Record inputs not embedded as given, by what was done to them.

        Keys are ``truncated``, ``chunked`` (``context_policy``), ``empty_zero`` and
        ``empty_skipped`` (``empty``); values are numbers of inputs, counted once per call.
        """
        if not self._enabled or not any(adjusted.values()):
            return
        with self._lock:
            for kind, count in adjusted.items():
                if count:
                    _bump(self._state.inputs_adjusted, kind, count)

    def record_rejected(self, kind: str = "circuit_open") -> None:
        """Record one *batch* refused without sending (not counted in ``total_requests``).

        Call it once per batch the breaker refuses; the calls that batch carried are counted
        with :meth:`record_rejected_call`.
        """
        if not self._enabled:
            return
        with self._lock:
            self._state.rejected_requests += 1
            _bump(self._state.rejected_by_kind, kind)

    def record_rejected_call(self) -> None:
        """Record one caller's call that ended in ``CircuitOpenError`` (``rejected_calls``).

        Call it once per call (``embed``, ``aembed``, ``embed_query``..., or one chunk of
        ``embed_iter``) that raises ``CircuitOpenError`` to its caller, however many of its
        batches were refused and however many other calls shared them.
        """
        if not self._enabled:
            return
        with self._lock:
            self._state.rejected_calls += 1

    def on_breaker_transition(self, old: object, new: object) -> None:
        """Breaker listener: count a change of state, by the state entered.

        States are ``"closed"``, ``"open"``, ``"half_open"`` (or an Enum whose ``value`` is one).
        Unknown states and non-changes are ignored: a listener must never break the breaker.
        """
        if not self._enabled:
            return
        entered = _state_name(new)
        counter = _BREAKER_COUNTERS.get(entered)
        if counter is None or entered == _state_name(old):
            return
        with self._lock:
            setattr(self._state, counter, getattr(self._state, counter) + 1)

    def reset(self) -> None:
        """Zero every counter and the latency window; uptime restarts now."""
        fresh = self._fresh_state()
        with self._lock:
            self._state = fresh

    def snapshot(self) -> MetricsSnapshot:
        """Return an immutable, self-consistent view (copied under the lock, computed outside)."""
        with self._lock:
            s = self._state
            counted = {name: _detached(getattr(s, name)) for name in _COUNTED}
            recent = list(s.window)
        ordered = sorted(recent)
        cost = 0.0
        cost_known = True
        for model, used in counted["tokens_by_model"].items():
            price = self._prices.get(model)
            if price is None:
                cost_known = cost_known and not used
            else:
                cost += used * price / 1e6
        return MetricsSnapshot(
            provider=self._provider,
            model=self._model,
            total_requests=counted["successful_requests"] + counted["failed_requests"],
            latency_p50=_percentile(ordered, 50),
            latency_p95=_percentile(ordered, 95),
            latency_p99=_percentile(ordered, 99),
            estimated_cost=cost,
            cost_known=cost_known,
            uptime=max(0.0, self._clock() - s.started) if self._enabled else 0.0,
            **counted,
        )

    def __repr__(self) -> str:
        with self._lock:
            s = self._state
            ok, failed, rejected = s.successful_requests, s.failed_requests, s.rejected_requests
        return (
            f"MetricsCollector(provider={self._provider!r}, model={self._model!r}, "
            f"ok={ok}, failed={failed}, rejected={rejected}, enabled={self._enabled})"
        )
