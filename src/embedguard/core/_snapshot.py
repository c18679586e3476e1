"""The immutable metrics snapshot (see :class:`~embedguard.core.metrics.MetricsCollector`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

__all__ = ["MetricsSnapshot"]


def _ratio(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """An immutable, self-consistent view of a collector at one instant.

    Latency percentiles (``latency_p50/p95/p99``, seconds, nearest-rank) describe *recent* traffic:
    the last ``reservoir_size`` attempts. ``latency_count/sum/max`` and every counter cover the
    whole lifetime since creation or :meth:`MetricsCollector.reset`. Mappings are read-only.

    ``rejected_requests`` counts the batches an open breaker refused unsent (several coalesced
    calls may share one); ``rejected_calls`` counts the calls that ended in ``CircuitOpenError``.
    ``provider`` and ``model`` name the client's primary; ``served_by`` and
    ``items_by_provider`` say who actually returned vectors (fallbacks included).
    """

    provider: str
    model: str
    total_requests: int
    successful_requests: int
    failed_requests: int
    retried_requests: int
    rejected_requests: int
    items_embedded: int
    tokens_used: int
    latency_count: int
    latency_sum: float
    latency_max: float
    latency_p50: float
    latency_p95: float
    latency_p99: float
    breaker_opens: int
    breaker_closes: int
    breaker_half_opens: int
    bytes_raw: int
    bytes_sent: int
    errors_by_kind: Mapping[str, int]
    tokens_by_model: Mapping[str, int]
    requests_by_provider: Mapping[str, int]
    estimated_cost: float
    cost_known: bool
    uptime: float
    items_by_provider: Mapping[str, int] = field(default_factory=dict)
    failures_by_provider: Mapping[str, int] = field(default_factory=dict)
    rejected_by_kind: Mapping[str, int] = field(default_factory=dict)
    cache_hits: int = 0
    cache_misses: int = 0
    cache_tokens_saved: int = 0
    rejected_calls: int = 0
    # Inputs the client did not embed as given (truncated, chunked, empty_zero, empty_skipped).
    inputs_adjusted: Mapping[str, int] = field(default_factory=dict)
    # Bytes of vectors returned to callers, in the profile's dtype (compact types: fewer).
    vector_bytes: int = 0

    def __post_init__(self) -> None:
        # Copy then wrap, so neither the caller's dict nor the snapshot can change afterwards.
        for name in _MAPPING_FIELDS:
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    @property
    def success_rate(self) -> float:
        """Successful attempts / all attempts (0.0 when nothing was sent)."""
        return _ratio(self.successful_requests, self.total_requests)

    @property
    def failure_rate(self) -> float:
        """Failed attempts / all attempts (0.0 when nothing was sent)."""
        return _ratio(self.failed_requests, self.total_requests)

    @property
    def retry_rate(self) -> float:
        """Attempts that were retries / all attempts (0.0 when nothing was sent)."""
        return _ratio(self.retried_requests, self.total_requests)

    @property
    def compression_ratio(self) -> float:
        """Bytes sent / raw request bytes (1.0 when nothing was sent; < 1.0: compression paid)."""
        return self.bytes_sent / self.bytes_raw if self.bytes_raw else 1.0

    @property
    def bytes_saved(self) -> int:
        """Raw request bytes minus bytes actually sent."""
        return self.bytes_raw - self.bytes_sent

    @property
    def average_batch_size(self) -> float:
        """Items embedded per successful attempt (0.0 when none succeeded)."""
        return _ratio(self.items_embedded, self.successful_requests)

    @property
    def cache_hit_rate(self) -> float:
        """Texts found in the cache / texts looked up (0.0 without a cache)."""
        return _ratio(self.cache_hits, self.cache_hits + self.cache_misses)

    @property
    def served_by(self) -> tuple[str, ...]:
        """The providers that returned vectors, most vectors first (the primary and fallbacks)."""
        served = [(-n, name) for name, n in self.items_by_provider.items() if n > 0]
        return tuple(name for _, name in sorted(served))

    @property
    def average_latency(self) -> float:
        """Mean latency in seconds over the whole lifetime (0.0 without samples)."""
        return _ratio(self.latency_sum, self.latency_count)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict of every field plus the derived rates and averages."""
        data: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            data[f.name] = dict(value) if isinstance(value, Mapping) else value
        for name in _DERIVED:
            data[name] = getattr(self, name)
        return data

    def to_json(self, *, indent: int | None = None) -> str:
        """Return :meth:`to_dict` as a JSON string."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricsSnapshot:
        """Rebuild a snapshot from :meth:`to_dict` output (derived and unknown keys are ignored).

        Raises:
            ValueError: A required field is missing or has the wrong type.
        """
        kwargs: dict[str, Any] = {}
        missing: list[str] = []
        for f in fields(cls):
            if f.name not in data:
                if f.name not in _OPTIONAL_FIELDS:
                    missing.append(f.name)
                continue
            try:
                kwargs[f.name] = _COERCE[str(f.type)](data[f.name])
            except (TypeError, ValueError, AttributeError) as exc:
                raise ValueError(f"snapshot field {f.name!r} is invalid: {exc}") from exc
        if missing:
            raise ValueError(f"snapshot data is missing fields: {', '.join(missing)}")
        return cls(**kwargs)

    def format(self) -> str:
        """Return a short human-readable multi-line summary."""
        ms = 1000.0
        errors = ", ".join(f"{k}={v}" for k, v in sorted(self.errors_by_kind.items())) or "none"
        unpriced = "" if self.cost_known else " (some models unpriced)"
        cost = f"${self.estimated_cost:.6f}{unpriced}"
        lines = [
            f"embedguard metrics: {self._header()}uptime {self.uptime:.1f} s)",
            f"  requests  {self.total_requests} total, {self.successful_requests} ok "
            f"({self.success_rate:.1%}), {self.failed_requests} failed, "
            f"{self.retried_requests} retries, {self.rejected_requests} rejected",
            f"  errors    {errors}",
            f"  latency   p50 {self.latency_p50 * ms:.1f} ms, p95 {self.latency_p95 * ms:.1f} ms, "
            f"p99 {self.latency_p99 * ms:.1f} ms (recent); avg {self.average_latency * ms:.1f} ms, "
            f"max {self.latency_max * ms:.1f} ms",
            f"  items     {self.items_embedded} embedded "
            f"(avg batch {self.average_batch_size:.1f}), {self.vector_bytes} vector bytes returned",
            f"  tokens    {self.tokens_used}, estimated cost {cost}",
            f"  bytes     {self.bytes_raw} raw, {self.bytes_sent} sent, {self.bytes_saved} saved "
            f"(ratio {self.compression_ratio:.2f})",
            f"  breaker   {self.breaker_opens} opened, {self.breaker_half_opens} half-opened, "
            f"{self.breaker_closes} closed",
        ]
        if self.rejected_calls or self.rejected_requests:
            lines.append(
                f"  calls     {self.rejected_calls} rejected by the open breaker (nothing sent)"
            )
        if self.inputs_adjusted:
            adjusted = ", ".join(f"{k}={v}" for k, v in sorted(self.inputs_adjusted.items()))
            lines.append(f"  inputs    {adjusted}")
        if self.cache_hits or self.cache_misses:
            lines.append(
                f"  cache     {self.cache_hits} hits, {self.cache_misses} misses "
                f"({self.cache_hit_rate:.1%}), {self.cache_tokens_saved} tokens saved"
            )
        return "\n".join(lines)

    def _header(self) -> str:
        """``who / model (``: who served, with which model; the primary when a fallback did."""
        served = self.served_by
        if served in ((), (self.provider,)):
            who = self.provider
        elif len(served) == 1:
            who = served[0]
        else:
            counts = {name: self.items_by_provider[name] for name in served}
            who = " + ".join(f"{p} ({n} vector{'s' * (n != 1)})" for p, n in counts.items())
        used = sorted((-n, m) for m, n in self.tokens_by_model.items() if n > 0)
        models = [m for _, m in used]
        model = self.model if models in ([], [self.model]) else " + ".join(models)
        if (who, model) == (self.provider, self.model):
            return f"{who} / {model} ("
        return f"{who} / {model} (primary {self.provider} / {self.model}; "


_COERCE: dict[str, Callable[[Any], Any]] = {
    "str": str, "int": int, "float": float, "bool": bool, "Mapping[str, int]": dict,
}  # fmt: skip
_MAPPING_FIELDS = tuple(f.name for f in fields(MetricsSnapshot) if f.type == "Mapping[str, int]")
_OPTIONAL_FIELDS = frozenset(
    ("items_by_provider", "failures_by_provider", "rejected_by_kind", "cache_hits",
     "cache_misses", "cache_tokens_saved", "rejected_calls", "inputs_adjusted", "vector_bytes")
)  # fmt: skip
_DERIVED = (
    "success_rate", "failure_rate", "retry_rate", "compression_ratio", "bytes_saved",
    "average_batch_size", "average_latency", "cache_hit_rate",
)  # fmt: skip
