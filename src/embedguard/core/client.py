"""EmbeddingClient: the resilient pipeline, with sync and async entry points."""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Self

import httpx
import numpy as np
from pydantic import SecretStr

from . import errors
from ._loops import LoopPool, close_at_loop_shutdown
from ._pipeline import (
    AbortedError,
    Attempt,
    BatchRun,
    Done,
    Outcome,
    Retry,
    Shared,
    Split,
    assemble,
    collect,
)
from .breaker import CircuitBreaker, CircuitState
from .config import ProviderProfile
from .metrics import MetricsCollector, MetricsSnapshot
from .planning import Batch, ContextPolicy, Plan, plan_batches, validate_texts
from .providers.base import Codec, RateLimitInfo, make_codec
from .providers.local import LocalModel
from .ratelimit import RateLimiter
from .tokens import TokenCounter, default_token_counter

__all__ = ["EmbeddingClient"]


class EmbeddingClient:
    """Embeds texts through one provider with retries, a circuit breaker, limits and metrics.

    Results come back in input order, exactly one float32 vector per input (a numpy array of
    shape ``(len(texts), dimensions)``; call ``.tolist()`` for plain lists). Identical texts are
    sent once. Bad input raises :class:`~embedguard.InputValidationError` before any request; a
    call that cannot embed every input raises a typed error whose ``failed_indices`` names the
    inputs without a vector; nothing is ever returned partially.

    Example::

        from embedguard import EmbeddingClient, profiles

        with EmbeddingClient(profiles.openai()) as client:      # key from OPENAI_API_KEY
            vectors = client.embed(["first text", "second text"])
            print(vectors.shape, client.metrics().format())

    Args:
        profile: The provider profile (see :mod:`embedguard.profiles`).
        api_key: The key; default: the environment variable the profile names.
        token_provider: Azure Entra ID: a callable returning a bearer token, called per request.
        http_client: A ``httpx.Client`` to send sync requests with (you keep ownership).
        async_http_client: A ``httpx.AsyncClient`` for async requests (you keep ownership).
        transport: A sync httpx transport for the client embedguard creates (e.g. for tests).
        async_transport: An async httpx transport for the async client embedguard creates.
        context_policy: What to do with a text over the model's token limit: ``"error"``
            (default: :class:`~embedguard.InputValidationError` before sending), ``"truncate"``,
            or ``"chunk"`` (embed pieces, token-weighted average, renormalised).
        token_counter: Counts tokens for batching and limits; default: tiktoken when its files
            are cached locally, else a conservative estimate.
        breaker: A circuit breaker to share between clients of the same endpoint.
        environ: Environment to read keys and URLs from (default ``os.environ``).
        local_model: For a ``local`` profile, an already loaded sentence-transformers model.
    """

    def __init__(
        self,
        profile: ProviderProfile,
        *,
        api_key: str | SecretStr | None = None,
        token_provider: Callable[[], str] | None = None,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        context_policy: ContextPolicy = "error",
        token_counter: TokenCounter | None = None,
        breaker: CircuitBreaker | None = None,
        environ: Mapping[str, str] | None = None,
        local_model: Any | None = None,
    ) -> None:
        if not isinstance(profile, ProviderProfile):
            raise errors.ConfigurationError(
                f"expected a ProviderProfile, got {type(profile).__name__}", field="profile"
            )
        if context_policy not in ("error", "truncate", "chunk"):
            raise errors.ConfigurationError(
                f"must be 'error', 'truncate' or 'chunk', got {context_policy!r}",
                field="context_policy",
            )
        key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        self._profile = profile
        self._context_policy: ContextPolicy = context_policy
        self._counter = token_counter or default_token_counter()
        self._local: LocalModel | None = None
        codec: Codec
        if profile.provider == "local":
            codec = self._local = LocalModel(profile, model=local_model)
        else:
            codec = make_codec(profile, api_key=key, token_provider=token_provider, environ=environ)
        self._breaker = breaker or CircuitBreaker(profile.breaker, name=profile.name)
        metrics = MetricsCollector(
            provider=profile.name,
            model=profile.model,
            enabled=profile.metrics,
            price_per_million_tokens=profile.price_per_million_tokens,
        )
        self._breaker.add_listener(metrics.on_breaker_transition)
        self._shared = Shared(
            profile,
            codec,
            breaker=self._breaker,
            metrics=metrics,
            limiter=RateLimiter(profile.rate_limit),
            secrets=tuple(s for s in (key,) if s),
        )
        timeout = httpx.Timeout(profile.timeouts.request, connect=profile.timeouts.connect)
        limits = httpx.Limits(
            max_connections=profile.pool_size, max_keepalive_connections=profile.pool_size
        )
        self._timeout = timeout
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(
            timeout=timeout, limits=limits, transport=transport, follow_redirects=False
        )
        self._user_ahttp = async_http_client
        # httpx.AsyncClient connections belong to one event loop: one pool per loop.
        self._ahttp: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopPool]
        self._ahttp = weakref.WeakKeyDictionary()
        self._async_options: dict[str, Any] = {
            "timeout": timeout, "limits": limits, "transport": async_transport,
            "follow_redirects": False,
        }  # fmt: skip
        self._slots = threading.BoundedSemaphore(profile.pool_size)
        self._aslots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]
        self._aslots = weakref.WeakKeyDictionary()
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False

    # -- public surface ----------------------------------------------------------------------
    @property
    def profile(self) -> ProviderProfile:
        """The profile this client was built with."""
        return self._profile

    @property
    def circuit_state(self) -> CircuitState:
        """The breaker's state now: ``CLOSED``, ``OPEN`` or ``HALF_OPEN``."""
        return self._breaker.state

    @property
    def dimensions(self) -> int | None:
        """The vector size: the profile's, or learned from the first response."""
        return self._shared.dimensions

    @property
    def rate_limit_status(self) -> RateLimitInfo | None:
        """What the provider's ``x-ratelimit-*`` headers said on the latest response, if any."""
        return self._shared.rate_limit_status

    def metrics(self) -> MetricsSnapshot:
        """An immutable snapshot of this client's metrics, taken atomically."""
        return self._shared.metrics.snapshot()

    def reset_metrics(self) -> None:
        """Zero every counter."""
        self._shared.metrics.reset()

    def reset_circuit_breaker(self) -> None:
        """Close the breaker and clear its counts (e.g. after fixing a misconfiguration)."""
        self._breaker.reset()

    def __repr__(self) -> str:
        return (
            f"EmbeddingClient(provider={self._profile.provider!r}, name={self._profile.name!r}, "
            f"model={self._profile.model!r}, circuit={self._breaker.state.value!r})"
        )

    # -- sync ----------------------------------------------------------------------------------
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``; returns a float32 array of shape ``(len(texts), dimensions)``."""
        plan = self._plan(texts)
        if not plan.batches:
            return self._empty()
        return assemble(plan, self._run_sync(plan))

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one text; returns a float32 vector."""
        vector: np.ndarray = self.embed(_single(text))[0]
        return vector

    def close(self) -> None:
        """Close the connection pools this client created."""
        self._closed = True
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._local is not None:
            self._local.close()
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- async ---------------------------------------------------------------------------------
    async def aembed(self, texts: Sequence[str]) -> np.ndarray:
        """Async :meth:`embed`: batches run concurrently, bounded by the profile's pool size."""
        plan = self._plan(texts)
        if not plan.batches:
            return self._empty()
        return assemble(plan, await self._run_async(plan))

    async def aembed_query(self, text: str) -> np.ndarray:
        """Async :meth:`embed_query`."""
        vector: np.ndarray = (await self.aembed(_single(text)))[0]
        return vector

    async def aclose(self) -> None:
        """Close the async connection pool this client created, then the sync one."""
        pool = self._ahttp.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.closer.aclose()
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- planning and assembly (shared) -------------------------------------------------------
    def _plan(self, texts: Sequence[str]) -> Plan:
        if self._closed:
            raise errors.ConfigurationError("the client is closed", field="client")
        valid = validate_texts(texts, provider=self._profile.name)
        return plan_batches(
            valid,
            batching=self._profile.batching,
            counter=self._counter,
            context_policy=self._context_policy,
            concurrency=self._profile.pool_size,
            provider=self._profile.name,
        )

    def _empty(self) -> np.ndarray:
        return np.empty((0, self._shared.dimensions or 0), dtype=np.float32)

    # -- the sync send loop --------------------------------------------------------------------
    def _run_sync(self, plan: Plan) -> list[tuple[Batch, np.ndarray]]:
        abort = threading.Event()
        if len(plan.batches) == 1:
            outcomes = [self._batch_sync(plan.batches[0], abort)]
        else:
            pool = self._pool()
            futures = [pool.submit(self._batch_sync, b, abort) for b in plan.batches]
            outcomes = [f.result() for f in futures]
        return collect(plan, outcomes)

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self._profile.pool_size, thread_name_prefix="embedguard"
                )
            return self._executor

    def _batch_sync(
        self, batch: Batch, abort: threading.Event
    ) -> list[tuple[Batch, np.ndarray | BaseException]]:
        run = BatchRun(self._shared, batch)
        try:
            while True:
                if abort.is_set():
                    raise AbortedError()
                permit, request = run.begin()
                reservation = self._shared.limiter.acquire(batch.tokens)
                attempt = run.prepare(permit, request, reservation)
                outcome = self._exchange_sync(run, attempt)
                if isinstance(outcome, Done):
                    return [(batch, outcome.vectors)]
                if isinstance(outcome, Split):
                    return [p for half in outcome.halves for p in self._batch_sync(half, abort)]
                if isinstance(outcome, Retry) and outcome.delay > 0:
                    time.sleep(outcome.delay)
        except Exception as exc:
            if not isinstance(exc, AbortedError):
                abort.set()
            return [(batch, exc)]

    def _exchange_sync(self, run: BatchRun, attempt: Attempt) -> Outcome:
        if self._local is None:
            response, exc = self._send_sync(attempt)
            return run.settle(attempt, response, exc)
        try:
            outcome = self._local.call(
                run.batch.texts, dimensions=self._shared.dimensions, timeout=self._timeout.read
            )
        except BaseException:
            self._abandon(attempt)
            raise
        return run.finish(attempt, outcome)

    def _send_sync(self, attempt: Attempt) -> tuple[httpx.Response | None, Exception | None]:
        with self._slots:
            try:
                response = self._http.post(
                    attempt.request.url,
                    content=attempt.body,
                    headers=attempt.headers,
                    timeout=self._timeout,
                )
            except httpx.HTTPError as exc:
                return None, exc
            except BaseException:
                self._abandon(attempt)
                raise
        return response, None

    # -- the async send loop -------------------------------------------------------------------
    async def _run_async(self, plan: Plan) -> list[tuple[Batch, np.ndarray]]:
        abort = asyncio.Event()
        outcomes = await asyncio.gather(*(self._batch_async(b, abort) for b in plan.batches))
        return collect(plan, list(outcomes))

    async def _batch_async(
        self, batch: Batch, abort: asyncio.Event
    ) -> list[tuple[Batch, np.ndarray | BaseException]]:
        run = BatchRun(self._shared, batch)
        try:
            while True:
                if abort.is_set():
                    raise AbortedError()
                permit, request = run.begin()
                try:
                    reservation = await self._shared.limiter.aacquire(batch.tokens)
                except BaseException:
                    self._shared.breaker.release(permit)
                    raise
                attempt = run.prepare(permit, request, reservation)
                outcome = await self._exchange_async(run, attempt)
                if isinstance(outcome, Done):
                    return [(batch, outcome.vectors)]
                if isinstance(outcome, Split):
                    halves = [self._batch_async(half, abort) for half in outcome.halves]
                    return [p for part in await asyncio.gather(*halves) for p in part]
                if isinstance(outcome, Retry) and outcome.delay > 0:
                    await asyncio.sleep(outcome.delay)
        except Exception as exc:
            if not isinstance(exc, AbortedError):
                abort.set()
            return [(batch, exc)]

    async def _exchange_async(self, run: BatchRun, attempt: Attempt) -> Outcome:
        if self._local is None:
            response, exc = await self._send_async(attempt)
            return run.settle(attempt, response, exc)
        try:
            outcome = await self._local.acall(
                run.batch.texts, dimensions=self._shared.dimensions, timeout=self._timeout.read
            )
        except BaseException:
            self._abandon(attempt)
            raise
        return run.finish(attempt, outcome)

    async def _send_async(self, attempt: Attempt) -> tuple[httpx.Response | None, Exception | None]:
        slots = self._async_slots()
        try:
            async with slots:
                http = await self._async_http()
                response = await http.post(
                    attempt.request.url,
                    content=attempt.body,
                    headers=attempt.headers,
                    timeout=self._timeout,
                )
        except httpx.HTTPError as exc:
            return None, exc
        except BaseException:  # cancelled: give the probe slot and the reservation back
            self._abandon(attempt)
            raise
        return response, None

    def _abandon(self, attempt: Attempt) -> None:
        self._shared.breaker.release(attempt.permit)
        self._shared.limiter.cancel(attempt.reservation)

    async def _async_http(self) -> httpx.AsyncClient:
        if self._user_ahttp is not None:
            return self._user_ahttp
        loop = asyncio.get_running_loop()
        pool = self._ahttp.get(loop)
        if pool is None:
            http = httpx.AsyncClient(**self._async_options)
            closer = close_at_loop_shutdown(http)
            await anext(closer)
            pool = self._ahttp[loop] = LoopPool(http, closer)
        return pool.http

    def _async_slots(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        slots = self._aslots.get(loop)
        if slots is None:
            slots = self._aslots[loop] = asyncio.Semaphore(self._profile.pool_size)
        return slots


def _single(text: Any) -> list[str]:
    if not isinstance(text, str):
        raise errors.InputValidationError(f"expected a str, got {type(text).__name__}", index=0)
    return [text]
