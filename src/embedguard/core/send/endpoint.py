"""One provider endpoint: its codec, transport, breaker, limiter, metrics, and what it has learned.

An :class:`Endpoint` is plain state. What happens to it during a request is written in
:mod:`~embedguard.core.send.attempt` (the one attempt flow); how bytes reach it, in
:mod:`~embedguard.core.send.drivers`. A client has one endpoint, plus one per fallback profile.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from .. import errors
from ..breaker import CircuitBreaker, CircuitState
from ..config import ProviderProfile
from ..events import CircuitChanged, Hooks
from ..metrics import MetricsCollector
from ..profiles import assumed_rate_limit
from ..providers.base import Codec, RateLimitInfo
from ..providers.registry import make_codec
from ..ratelimit import RateLimiter
from ..retry import RetryBudget
from .attempt import Reply, Send
from .drivers import HttpTransport

__all__ = ["Endpoint", "Transport", "build_endpoint", "check_same_space", "endpoint_identity"]


class Transport(Protocol):
    """How an attempt reaches the model: over HTTP, or to an in-process model.

    ``send`` and ``asend`` return the whole reply within the profile's request timeout, or raise
    (an ``httpx`` error, ``TimeoutError``, or a typed :class:`~embedguard.ProviderError`).
    """

    def send(self, attempt: Send) -> Reply: ...

    async def asend(self, attempt: Send) -> Reply: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


class Endpoint:
    """Everything needed to send to one provider endpoint, and what it learned from replies.

    Attributes:
        identity: Profile name, URL and model: the key of its shared (Redis) state.
        dimensions: The profile's vector size, or the first one a reply had.
        gzip: Whether request bodies are compressed (the profile's wish, until refused).
        token_ratio: Billed tokens per estimated token, learned from reported usage.
        gate: Done once the first reply calibrated ``token_ratio`` (see the attempt flow).
        circuit_closed: The breaker's last transition was into ``closed``: small calls share
            requests only then (open, they must fail fast; half-open, only probes may pass).
    """

    def __init__(
        self,
        profile: ProviderProfile,
        codec: Codec,
        transport: Transport,
        *,
        breaker: CircuitBreaker,
        limiter: RateLimiter,
        metrics: MetricsCollector,
        hooks: Hooks,
        rng: random.Random | None = None,
    ) -> None:
        self.profile = profile
        self.name = profile.name
        self.codec = codec
        # Batches padded to their longest text are planned over texts sorted by length.
        self.pads_batches: bool = getattr(codec, "pads_batches", False)
        self.transport = transport
        self.breaker = breaker
        self.limiter = limiter
        self.metrics = metrics
        self.hooks = hooks
        self.budget = RetryBudget(profile.retry)
        self.rng = rng or random.Random()
        self.url: str = codec.url
        self.identity = endpoint_identity(profile, self.url)
        split = urlsplit(self.url)
        self.server_address = split.hostname
        self.server_port = split.port
        # The row width replies must have: packed bytes for the bit dtypes.
        width = profile.dimensions
        if width is not None and profile.dtype in ("binary", "ubinary"):
            width //= 8
        self.dimensions: int | None = width
        self.gzip = profile.compression.enabled
        self.rate_limit_status: RateLimitInfo | None = None
        self.price = metrics.prices.get(profile.model, 0.0)  # USD per 1M tokens
        self.token_ratio = 1.0
        self.usage_seen = False
        self.gate: Future[None] = Future()
        self.gate_taken = False
        self.circuit_closed = True
        self.paced = True  # False: the profile turned client-side rate limiting off
        self.lock = threading.Lock()
        self.executor: ThreadPoolExecutor | None = None  # runs a sync call's batches
        self.owner: Callable[[], object] | None = None  # the client, for usage blocks on it
        breaker.add_listener(self._circuit_changed)

    def __repr__(self) -> str:
        return f"Endpoint({self.name!r}, url={self.url!r}, circuit={self.breaker.state.value!r})"

    def _circuit_changed(self, old: CircuitState, new: CircuitState) -> None:
        self.circuit_closed = new == CircuitState.CLOSED
        if self.hooks:
            self.hooks.emit(CircuitChanged(provider=self.name, old=str(old), new=str(new)))

    def transport_error(self, exc: BaseException | None) -> errors.ProviderError:
        """The typed error for an attempt that got no reply; it names this endpoint and keeps
        the cause. Never includes headers or the key: only the exception type, the OS reason
        and host:port. An exception that is no transport failure (a bug) is raised as itself.
        """
        if isinstance(exc, errors.ProviderError):  # an in-process model reports typed errors
            return exc
        if exc is not None and not isinstance(exc, httpx.HTTPError | OSError | TimeoutError):
            raise exc
        where = self.server_address or self.url
        if self.server_port is not None:
            where = f"{where}:{self.server_port}"
        error: errors.ProviderError
        if isinstance(exc, httpx.TimeoutException | TimeoutError):
            error = errors.ProviderTimeoutError(
                f"request to {where} timed out ({type(exc).__name__})", provider=self.name
            )
        elif isinstance(exc, httpx.DecodingError):
            error = errors.ResponseValidationError(
                f"the response from {where} could not be decoded", truncated=True,
                provider=self.name,
            )  # fmt: skip
        else:
            error = errors.ProviderConnectionError(f"{_reason(exc)} ({where})", provider=self.name)
        error.__cause__ = exc
        return error

    def close(self) -> None:
        """Stop the batch threads and close what the transport owns."""
        with self.lock:
            executor, self.executor = self.executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        self.transport.close()


def build_endpoint(
    profile: ProviderProfile,
    *,
    metrics: MetricsCollector,
    hooks: Hooks,
    api_key: str | None = None,
    token_provider: Callable[[], str] | None = None,
    environ: Mapping[str, str] | None = None,
    breaker: CircuitBreaker | None = None,
    http_client: httpx.Client | None = None,
    async_http_client: httpx.AsyncClient | None = None,
    transport: httpx.BaseTransport | None = None,
    async_transport: httpx.AsyncBaseTransport | None = None,
    local_model: Any | None = None,
    shared_state: Any | None = None,
) -> Endpoint:
    """Build the codec, transport, breaker and limiter for ``profile``.

    ``shared_state`` (a Redis client) keeps the breaker and the rate limiter in Redis, shared with
    every process that talks to the same endpoint (profile name, URL and model).
    """
    codec: Codec
    wire: Transport
    if profile.provider == "local":
        from ..providers.local import LocalModel

        codec = wire = LocalModel(profile, model=local_model)
    else:
        codec = make_codec(profile, api_key=api_key, token_provider=token_provider, environ=environ)
        wire = HttpTransport(
            profile,
            http_client=http_client,
            async_http_client=async_http_client,
            transport=transport,
            async_transport=async_transport,
        )
    assumed = assumed_rate_limit(profile.provider)  # a guess the server's stated limits replace
    paced = profile.rate_limit is None or profile.rate_limit.enabled
    limiter = RateLimiter(profile.rate_limit, assumed) if paced else RateLimiter(None, None)
    if shared_state is not None:
        from ..shared_state import RedisCircuitBreaker, RedisRateLimiter

        identity = endpoint_identity(profile, codec.url)
        breaker = breaker or RedisCircuitBreaker(profile.breaker, shared_state, name=identity)
        if paced:
            limiter = RedisRateLimiter(
                profile.rate_limit, shared_state, name=identity, assumed=assumed
            )
    breaker = breaker or CircuitBreaker(profile.breaker, name=profile.name)
    breaker.add_listener(metrics.on_breaker_transition)
    endpoint = Endpoint(
        profile, codec, wire, breaker=breaker, limiter=limiter, metrics=metrics, hooks=hooks
    )
    endpoint.paced = paced
    return endpoint


def endpoint_identity(profile: ProviderProfile, url: str) -> str:
    """Profile name, URL (no credentials, no query) and model: what shared state is keyed by.

    Two endpoints of one profile name (say, two Azure regions) never share a breaker or limits.
    """
    split = urlsplit(url)
    where = f"{split.scheme}://{split.hostname or ''}"
    if split.port is not None:
        where += f":{split.port}"
    return f"{profile.name}|{where}{split.path}|{profile.deployment or profile.model}"


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


# Words a transport exception's message may hold, when no OS error says why it failed.
_REASONS = (
    "connection refused",
    "connection reset",
    "name or service not known",
    "server disconnected",
    "no route to host",
    "network is unreachable",
)


def _reason(exc: BaseException | None) -> str:
    """What went wrong with the connection, in a few words: the OS reason when there is one."""
    seen = exc
    while seen is not None:
        if isinstance(seen, OSError) and (seen.errno or seen.strerror):
            # asyncio words its errors "Connect call failed (...)": the errno says why.
            return (os.strerror(seen.errno) if seen.errno else str(seen.strerror)).lower()
        seen = seen.__cause__ or seen.__context__
    if exc is None:
        return "connection failed (no response)"
    text = str(exc).lower()
    for needle in _REASONS:
        if needle in text:
            return needle
    return f"connection failed ({type(exc).__name__})"
