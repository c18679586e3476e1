"""Routes: one provider endpoint's codec, breaker, limiter and send loops; and failover."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from . import errors
from ._engine import Engine
from ._flight import GroupResult
from ._pipeline import Shared
from .breaker import CircuitBreaker
from .config import ProviderProfile
from .events import FailedOver, Hooks
from .metrics import MetricsCollector
from .providers.base import Codec, make_codec
from .providers.local import LocalModel
from .ratelimit import RateLimiter

# Failures another deployment of the same model may not share: the provider is down, slow,
# rate limiting or out of quota. A bad key or a bad input would fail there too.
_FAILOVER = (
    errors.CircuitOpenError,
    errors.ServerError,
    errors.ProviderTimeoutError,
    errors.ProviderConnectionError,
    errors.RateLimitError,
    errors.QuotaExhaustedError,
    errors.ResponseValidationError,
)


@dataclass
class Route:
    """Everything needed to send to one provider endpoint."""

    profile: ProviderProfile
    shared: Shared
    engine: Engine
    http: httpx.Client
    owns_http: bool

    def close(self) -> None:
        self.engine.close()
        if self.owns_http:
            self.http.close()


def build_route(
    profile: ProviderProfile,
    *,
    metrics: MetricsCollector,
    api_key: str | None = None,
    token_provider: Callable[[], str] | None = None,
    environ: Mapping[str, str] | None = None,
    breaker: CircuitBreaker | None = None,
    http_client: httpx.Client | None = None,
    async_http_client: httpx.AsyncClient | None = None,
    transport: httpx.BaseTransport | None = None,
    async_transport: httpx.AsyncBaseTransport | None = None,
    local_model: Any | None = None,
    hooks: Hooks | None = None,
    shared_state: Any | None = None,
) -> Route:
    """Build the codec, breaker, limiter and HTTP pools for ``profile``.

    ``shared_state`` (a Redis client) keeps the breaker and the rate limiter in Redis, shared
    with every other process that uses the same profile name.
    """
    local: LocalModel | None = None
    codec: Codec
    if profile.provider == "local":
        codec = local = LocalModel(profile, model=local_model)
    else:
        codec = make_codec(profile, api_key=api_key, token_provider=token_provider, environ=environ)
    limiter = RateLimiter(profile.rate_limit)
    if shared_state is not None:
        from .shared_state import RedisCircuitBreaker, RedisRateLimiter

        name = profile.name
        breaker = breaker or RedisCircuitBreaker(profile.breaker, shared_state, name=name)
        limiter = RedisRateLimiter(profile.rate_limit, shared_state, name=name)
    breaker = breaker or CircuitBreaker(profile.breaker, name=profile.name)
    breaker.add_listener(metrics.on_breaker_transition)
    shared = Shared(
        profile,
        codec,
        breaker=breaker,
        metrics=metrics,
        limiter=limiter,
        hooks=hooks,
    )
    timeout = httpx.Timeout(profile.timeouts.request, connect=profile.timeouts.connect)
    limits = httpx.Limits(
        max_connections=profile.pool_size, max_keepalive_connections=profile.pool_size
    )
    http = http_client or httpx.Client(
        timeout=timeout, limits=limits, transport=transport, follow_redirects=False
    )
    engine = Engine(
        shared,
        local=local,
        http=http,
        async_http=async_http_client,
        async_options={"timeout": timeout, "limits": limits, "transport": async_transport,
                       "follow_redirects": False},
        timeout=timeout,
    )  # fmt: skip
    return Route(profile, shared, engine, http, owns_http=http_client is None)


def check_same_space(primary: ProviderProfile, fallbacks: Sequence[ProviderProfile]) -> None:
    """Refuse a chain that would mix vector spaces (different models or dimensions)."""
    for i, other in enumerate(fallbacks):
        if other.model != primary.model or other.dimensions != primary.dimensions:
            raise errors.ConfigurationError(
                f"fallback {other.name!r} serves {other.model!r} ({other.dimensions} d), but "
                f"{primary.name!r} serves {primary.model!r} ({primary.dimensions} d); mixing "
                "vector spaces corrupts an index (pass allow_mixed_models=True to force it)",
                field=f"fallbacks[{i}]",
            )


def failover_rows(result: GroupResult) -> list[int]:
    """Rows whose failure another provider might not share."""
    return sorted(row for row, error in result.failed.items() if isinstance(error, _FAILOVER))


def patch(result: GroupResult, rows: Sequence[int], retried: GroupResult, n: int) -> GroupResult:
    """``result`` with ``rows`` replaced by ``retried`` (which holds just those rows, in order)."""
    failed = {row: e for row, e in result.failed.items() if row not in set(rows)}
    vectors = result.vectors
    if retried.vectors is not None:
        width = retried.vectors.shape[1]
        if vectors is None:
            vectors = np.empty((n, width), dtype=np.float32)
        elif vectors.shape[1] != width:
            mismatch = errors.ResponseValidationError(
                f"fallback returned {width} dimensions, expected {vectors.shape[1]}"
            )
            failed.update(dict.fromkeys(rows, mismatch))
            return GroupResult(vectors, failed)
        ok = [i for i in range(len(rows)) if i not in retried.failed]
        vectors[[rows[i] for i in ok]] = retried.vectors[ok]
    failed.update({rows[i]: e for i, e in retried.failed.items()})
    return GroupResult(vectors, failed)


def announce_failover(hooks: Hooks, primary: str, fallback: str, reason: BaseException) -> None:
    """Tell the hooks (and so the logs) that texts move from ``primary`` to ``fallback``."""
    if hooks:
        kind = getattr(reason, "kind", type(reason).__name__)
        hooks.emit(FailedOver(from_provider=primary, to_provider=fallback, reason=kind))
