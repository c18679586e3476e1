"""EmbeddingClient: the resilient pipeline, with sync and async entry points."""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import copy_context
from itertools import islice
from typing import Any, Self

import httpx
import numpy as np
from pydantic import SecretStr

from . import errors
from ._lists import as_lists
from .breaker import BreakerStats, CircuitBreaker, CircuitState
from .cache import EmbeddingCache, open_cache
from .config import ProviderProfile
from .events import Hook, Hooks
from .export.logs import LoggingHook
from .metrics import MetricsCollector, MetricsSnapshot
from .planning import ContextPolicy, EmptyPolicy, Plan, plan_units, validate_texts
from .providers.base import RateLimitInfo
from .providers.local import LocalModel
from .send.cached import CacheView
from .send.calls import Calls
from .send.discover import discovery_for
from .send.endpoint import Endpoint, build_endpoint, check_same_space
from .tokens import TokenCounter, default_token_counter

__all__ = ["EmbeddingClient"]


class EmbeddingClient:
    """Embeds texts through one provider with retries, a circuit breaker, limits and metrics.

    Results come back in input order, exactly one float32 vector per input (a numpy array of
    shape ``(len(texts), dimensions)`` that the caller owns; call ``.tolist()`` for plain lists).
    Identical texts are sent once. Bad input raises :class:`~embedguard.InputValidationError`
    before any request; a call that cannot embed every input raises a typed error whose
    ``failed_indices`` names the inputs without a vector and whose ``partial`` holds the vectors
    it did get (NaN rows at ``failed_indices``); those are also in the cache, when one is set, so
    a rerun sends only the failed texts. A successful return is always complete.

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
            or ``"chunk"`` (embed pieces, token-weighted average, renormalised). The limit is the
            profile's ``batching.max_tokens_per_input``; for a ``local`` profile, what the model
            reads (its ``max_seq_length``, counted with its own tokenizer).
        empty: What to do with an empty or whitespace-only text: ``"error"`` (default:
            :class:`~embedguard.InputValidationError` naming it, nothing sent), ``"zero"`` (a
            zero vector) or ``"skip"`` (a row of NaN, as in a failed call's ``partial``). Either
            way the result keeps one row per input and the text is never sent nor billed;
            metrics count them (``inputs_adjusted``: ``empty_zero`` / ``empty_skipped``).
        token_counter: Counts tokens for batching and limits; default: tiktoken when its files
            are cached locally, else a conservative estimate (a ``local`` profile: the model's
            own tokenizer).
        breaker: A circuit breaker to share between clients of the same endpoint.
        environ: Environment to read keys and URLs from (default ``os.environ``).
        local_model: For a ``local`` profile, an already loaded sentence-transformers model.
        coalesce_window: Small calls (at most 16 distinct texts, e.g. queries) share requests:
            one that finds no other small request in flight is sent at once; those arriving
            while one is in flight are sent together when it ends, gathered for at least this
            many seconds after the first of them arrived. ``0`` sends every call on its own.
            Identical texts in flight are always shared between concurrent calls.
        cache: A per-text cache (off by default): ``"memory"``, ``"sqlite:///path.db"``, a
            path ending ``.db``, or an :class:`~embedguard.core.cache.EmbeddingCache`. Cached
            texts are not sent (nor billed); only the misses are.
        fallbacks: Profiles (or ``(profile, api_key)`` pairs) tried in order for the texts the
            primary cannot embed (breaker open, retries exhausted, quota): e.g. an Azure
            deployment of the same model. Each keeps its own breaker and limits; metrics count
            which provider served each batch (``requests_by_provider``).
        allow_mixed_models: Allow fallbacks of another model or dimension. Off by default:
            vectors of different models must not share an index.
        hooks: Callables receiving :mod:`~embedguard.core.events` (requests, retries, breaker
            changes, failovers), e.g. the logging, OpenTelemetry or Prometheus hooks. Default:
            one :class:`~embedguard.core.export.logs.LoggingHook`; ``[]`` for none.
        shared_state: A Redis URL (``redis://host:6379/0``, extra ``redis``): the breaker and
            the rate limits live there, shared by every process using the same profile names,
            so a fleet of workers keeps one budget and sees one breaker. If Redis is down,
            each process goes on with local state (one warning) and re-syncs when it returns.
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
        empty: EmptyPolicy = "error",
        token_counter: TokenCounter | None = None,
        breaker: CircuitBreaker | None = None,
        environ: Mapping[str, str] | None = None,
        local_model: Any | None = None,
        coalesce_window: float = 0.002,
        cache: str | EmbeddingCache | None = None,
        fallbacks: Sequence[ProviderProfile | tuple[ProviderProfile, str | SecretStr]] = (),
        allow_mixed_models: bool = False,
        hooks: Iterable[Hook] | None = None,
        shared_state: str | None = None,
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
        if empty not in ("error", "skip", "zero"):
            raise errors.ConfigurationError(
                f"must be 'error', 'skip' or 'zero', got {empty!r}", field="empty"
            )
        if coalesce_window < 0:
            raise errors.ConfigurationError("must not be negative", field="coalesce_window")
        chain = [f if isinstance(f, tuple) else (f, None) for f in fallbacks]
        if not allow_mixed_models:
            check_same_space(profile, [p for p, _ in chain])
        _check_dtype(profile, [p for p, _ in chain], context_policy)
        self._profile = profile
        self._context_policy: ContextPolicy = context_policy
        self._empty_policy: EmptyPolicy = empty
        self._given_counter = token_counter
        self._counter = token_counter or default_token_counter()
        metrics = MetricsCollector(
            provider=profile.name,
            model=profile.model,
            enabled=profile.metrics,
            price_per_million_tokens=profile.price_per_million_tokens,
        )
        self._hooks = Hooks([LoggingHook()] if hooks is None else hooks)
        redis = None
        if shared_state is not None:
            from .shared_state import connect

            redis = connect(shared_state)
        primary = build_endpoint(
            profile,
            metrics=metrics,
            hooks=self._hooks,
            api_key=_reveal(api_key),
            token_provider=token_provider,
            environ=environ,
            breaker=breaker,
            http_client=http_client,
            async_http_client=async_http_client,
            transport=transport,
            async_transport=async_transport,
            local_model=local_model,
            shared_state=redis,
        )
        self._endpoints = [primary] + [
            build_endpoint(
                p,
                metrics=metrics,
                hooks=self._hooks,
                api_key=_reveal(k),
                environ=environ,
                shared_state=redis,
            )
            for p, k in chain
        ]
        self._primary = primary
        self._local = primary.codec if isinstance(primary.codec, LocalModel) else None
        self._discovery = discovery_for(primary)  # a server that states its limits (TEI /info)
        self._breaker = primary.breaker
        store = open_cache(cache)
        self._cache = None
        if store is not None:
            spaces = [(ep.profile, ep.url) for ep in self._endpoints]
            self._cache = CacheView(store, spaces, metrics, owned=store is not cache)
        owner = weakref.ref(self)  # usage blocks opened on this client (track_usage(owner=...))
        for endpoint in self._endpoints:
            endpoint.owner = owner
        if self._cache is not None:
            self._cache.owner = owner
        self._calls = Calls(self._endpoints, self._cache, coalesce_window)
        self._closed = False
        # A client dropped without close() still releases its sockets (no ResourceWarning).
        weakref.finalize(self, _release_pools, self._endpoints)

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
        """The vector size: the profile's, or learned from the first response (for the
        ``binary``/``ubinary`` dtypes: in bits, eight per byte of a returned row)."""
        width = self._primary.dimensions
        return width * 8 if width is not None and self._profile.dtype in _BITS else width

    @property
    def rate_limit_status(self) -> RateLimitInfo | None:
        """What the provider's ``x-ratelimit-*`` headers said on the latest response, if any."""
        return self._primary.rate_limit_status

    @property
    def breaker_stats(self) -> BreakerStats:
        """A consistent snapshot of the breaker: state, its window's failure rate, probes."""
        return self._breaker.stats()

    @property
    def rate_limits(self) -> dict[str, tuple[float | None, str]]:
        """The per-minute limits in force now and where each came from.

        ``{"requests": (10000.0, "server"), "tokens": (1000000.0, "assumed")}``: ``server`` (the
        provider stated it), ``configured`` (your cap), ``assumed`` (the profile's guess, until
        the server says) or ``unlimited``.
        """
        return dict(self._primary.limiter.limits_in_force)

    @property
    def hooks(self) -> Hooks:
        """The hooks receiving this client's events; ``client.hooks.add(hook)`` adds one."""
        return self._hooks

    def metrics(self) -> MetricsSnapshot:
        """An immutable snapshot of this client's metrics, taken atomically."""
        return self._primary.metrics.snapshot()

    def reset_metrics(self) -> None:
        """Zero every counter."""
        self._primary.metrics.reset()

    def reset_circuit_breaker(self) -> None:
        """Close the breaker and clear its counts (e.g. after fixing a misconfiguration)."""
        self._breaker.reset()

    def __repr__(self) -> str:
        return (
            f"EmbeddingClient(provider={self._profile.provider!r}, name={self._profile.name!r}, "
            f"model={self._profile.model!r}, circuit={self._breaker.state.value!r}, "
            f"limiter={self._primary.limiter!r})"
        )

    # -- sync ----------------------------------------------------------------------------------
    def embed(self, texts: Sequence[str], *, input_type: str | None = None) -> np.ndarray:
        """Embed ``texts`` as documents; returns an array of shape ``(len(texts), dimensions)``.

        float32 unless the profile asks for a compact ``dtype`` (``binary``/``ubinary`` rows are
        ``dimensions / 8`` packed bytes). Providers that take an input type get the profile's
        document type (e.g. Cohere's ``search_document``), and the profile's
        ``document_prefix`` goes before each text on the wire.

        Args:
            texts: The texts, in order; one row comes back per text.
            input_type: The provider's own input type for this call instead (e.g. Cohere's
                ``"classification"``, Gemini's ``"SEMANTIC_SIMILARITY"``), sent as is;
                no prefix is added. Cached apart from documents and queries. ``"query"`` and
                ``"document"`` mean embedguard's two kinds (the provider's types and prefixes
                for them). A type the provider does not take is an ``InputValidationError``
                before sending where the provider's list is known.
        """
        return self._embed(texts, _kind(input_type, "document"))

    def _embed(self, texts: Sequence[str], kind: str) -> np.ndarray:
        return self._run(self._prepare(texts), kind)

    def _prepare(self, texts: Sequence[str]) -> Plan:
        valid = self._valid(texts)
        if self._discovery is not None and valid:
            self._discovery.ensure()
        return self._plan(valid)

    def _run(self, plan: Plan, kind: str, lists: list[Any] | None = None) -> np.ndarray:
        if not plan.units:
            return self._cast(self._empty(plan))
        return self._cast(self._calls.run(plan, kind, lists))

    def embed_query(self, text: str, *, input_type: str | None = None) -> np.ndarray:
        """Embed one search query; returns one vector (float32 unless the profile's ``dtype``
        says otherwise).

        Sends the provider's query input type (e.g. ``search_query``, ``RETRIEVAL_QUERY``) and
        the profile's ``query_prefix``; ``input_type`` sends the provider's own type instead.
        """
        vector: np.ndarray = self._embed(_single(text), _kind(input_type, "query"))[0]
        return vector

    def _embed_lists(self, texts: Sequence[str], kind: str) -> list[list[float]]:
        """:meth:`embed` as lists of floats (for the adapters): rows are converted as their
        batches arrive, on the batches' threads, instead of all after the last reply."""
        plan = self._prepare(texts)
        lists = self._lists(plan)
        return _filled(lists, self._run(plan, kind, lists))

    async def _aembed_lists(self, texts: Sequence[str], kind: str) -> list[list[float]]:
        """Async :meth:`_embed_lists`."""
        plan = await self._aprepare(texts)
        lists = self._lists(plan)
        return _filled(lists, await self._arun(plan, kind, lists))

    def _lists(self, plan: Plan) -> list[Any] | None:
        """Room for the rows as lists, when the sent rows are the returned ones (every input
        its own unit, float32 kept as it is), else ``None``."""
        if not plan.units or not plan.identity or self._profile.dtype != "float32":
            return None
        return [None] * len(plan.units)

    def _cast(self, vectors: np.ndarray) -> np.ndarray:
        dtype = _DTYPES.get(self._profile.dtype)
        if dtype is not None:
            if np.isnan(vectors).any():  # "skip" rows: a compact type has no NaN
                raise errors.ConfigurationError(
                    f"empty='skip' needs float vectors, not {self._profile.dtype}", field="empty"
                )
            vectors = vectors.astype(dtype)
        self._primary.metrics.record_vectors(vectors.nbytes)
        return vectors

    def embed_iter(
        self, texts: Iterable[str], *, chunk_size: int | None = None, window: int = 2
    ) -> Iterator[np.ndarray]:
        """Embed a large or endless iterable lazily, in bounded memory.

        Reads ``chunk_size`` texts at a time (default: the profile's max inputs per request),
        keeps at most ``window`` chunks in flight, and yields one float32 array per chunk, in
        input order. Errors name positions in the whole stream.
        """
        size = chunk_size or self._profile.batching.max_inputs
        if size < 1 or window < 1:
            raise errors.ConfigurationError("chunk_size and window must be at least 1")
        source = iter(texts)
        pending: deque[tuple[int, Future[np.ndarray]]] = deque()
        offset = 0
        with ThreadPoolExecutor(window, thread_name_prefix="embedguard-iter") as pool:
            try:
                while True:
                    while len(pending) < window:
                        chunk = list(islice(source, size))
                        if not chunk:
                            break
                        pending.append((offset, pool.submit(copy_context().run, self.embed, chunk)))
                        offset += len(chunk)
                    if not pending:
                        return
                    start, future = pending.popleft()
                    try:
                        vectors = future.result()
                    except errors.EmbedGuardError as error:
                        raise error.shifted(start) from error.__cause__
                    yield vectors
            finally:
                for _, future in pending:
                    future.cancel()

    def close(self) -> None:
        """Close the connection pools and worker threads this client created."""
        self._closed = True
        for endpoint in self._endpoints:
            endpoint.close()
        if self._cache is not None:
            self._cache.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- async ---------------------------------------------------------------------------------
    async def aembed(self, texts: Sequence[str], *, input_type: str | None = None) -> np.ndarray:
        """Async :meth:`embed`: batches run concurrently, bounded by the profile's pool size."""
        return await self._aembed(texts, _kind(input_type, "document"))

    async def _aembed(self, texts: Sequence[str], kind: str) -> np.ndarray:
        return await self._arun(await self._aprepare(texts), kind)

    async def _aprepare(self, texts: Sequence[str]) -> Plan:
        if self._local is not None and not self._local.loaded and texts:
            await self._local.aload()  # planning reads the model's tokenizer: load it off the loop
        valid = self._valid(texts)
        if self._discovery is not None and valid:
            await self._discovery.aensure()
        return self._plan(valid)

    async def _arun(self, plan: Plan, kind: str, lists: list[Any] | None = None) -> np.ndarray:
        if not plan.units:
            return self._cast(self._empty(plan))
        return self._cast(await self._calls.arun(plan, kind, lists))

    async def aembed_query(self, text: str, *, input_type: str | None = None) -> np.ndarray:
        """Async :meth:`embed_query`."""
        vector: np.ndarray = (await self._aembed(_single(text), _kind(input_type, "query")))[0]
        return vector

    async def aembed_iter(
        self,
        texts: Iterable[str] | AsyncIterable[str],
        *,
        chunk_size: int | None = None,
        window: int = 2,
    ) -> AsyncIterator[np.ndarray]:
        """Async :meth:`embed_iter`; ``texts`` may be an async iterable."""
        size = chunk_size or self._profile.batching.max_inputs
        if size < 1 or window < 1:
            raise errors.ConfigurationError("chunk_size and window must be at least 1")
        pending: deque[tuple[int, asyncio.Task[np.ndarray]]] = deque()
        offset = 0
        chunks = _achunks(texts, size)
        try:
            while True:
                while len(pending) < window:
                    chunk = await anext(chunks, None)
                    if chunk is None:
                        break
                    pending.append((offset, asyncio.ensure_future(self.aembed(chunk))))
                    offset += len(chunk)
                if not pending:
                    return
                start, task = pending.popleft()
                try:
                    vectors = await task
                except errors.EmbedGuardError as error:
                    raise error.shifted(start) from error.__cause__
                yield vectors
        finally:
            for _, task in pending:
                task.cancel()

    async def aclose(self) -> None:
        """Wait for this loop's sends, close its connection pool, then the sync one."""
        await self._calls.drain()
        for endpoint in self._endpoints:
            await endpoint.transport.aclose()
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- planning and assembly (shared) -------------------------------------------------------
    def _valid(self, texts: Sequence[str]) -> list[str]:
        if self._closed:
            raise errors.ConfigurationError("the client is closed", field="client")
        return validate_texts(texts, provider=self._profile.name, empty=self._empty_policy)

    def _plan(self, valid: list[str]) -> Plan:
        batching, counter = self._primary.profile.batching, self._counter  # learned, if any
        if self._local is not None and valid:  # plan with what the model reads (loads it)
            batching = self._local.batching
            counter = self._given_counter or self._local.token_counter or counter
        plan = plan_units(
            valid,
            batching=batching,
            counter=counter,
            context_policy=self._context_policy,
            provider=self._profile.name,
            empty=self._empty_policy,
        )
        if plan.truncated or plan.pieces or plan.blank:
            self._primary.metrics.record_inputs(plan.adjusted())
        return plan

    def _empty(self, plan: Plan) -> np.ndarray:
        local = self._local if plan.blank else None  # no need to load a model for [] alone
        d = self._primary.dimensions or (local.dimensions if local else None)
        return plan.assemble_nothing_sent(d, provider=self._profile.name)


_BITS = ("binary", "ubinary")
_DTYPES = {"int8": np.int8, "uint8": np.uint8, "binary": np.int8, "ubinary": np.uint8}


def _filled(lists: list[Any] | None, vectors: np.ndarray) -> list[list[float]]:
    """``lists`` with the rows no batch converted (a call that shared or failed over) taken
    from ``vectors``; without ``lists``, all of ``vectors`` as lists."""
    if lists is None:
        return as_lists(vectors)
    for i, row in enumerate(lists):
        if row is None:
            lists[i] = vectors[i].tolist()
    return lists


def _kind(input_type: str | None, default: str) -> str:
    if input_type is None:
        return default
    if not isinstance(input_type, str) or not input_type.strip():
        raise errors.InputValidationError(
            f"input_type must be a non-empty string, got {input_type!r}"
        )
    return input_type


def _check_dtype(
    profile: ProviderProfile, fallbacks: Sequence[ProviderProfile], context_policy: str
) -> None:
    """A compact dtype needs the same dtype on every fallback and whole, unaveraged texts."""
    for i, other in enumerate(fallbacks):
        if other.dtype != profile.dtype:
            raise errors.ConfigurationError(
                f"fallback {other.name!r} returns {other.dtype} vectors, but {profile.name!r} "
                f"returns {profile.dtype}",
                field=f"fallbacks[{i}]",
            )
    if profile.dtype != "float32" and context_policy == "chunk":
        raise errors.ConfigurationError(
            f"context_policy='chunk' averages vectors, which {profile.dtype} vectors cannot be; "
            "use 'truncate' or 'error'",
            field="context_policy",
        )
    if profile.dtype in _BITS and profile.dimensions is not None and profile.dimensions % 8:
        raise errors.ConfigurationError(
            f"{profile.dtype} vectors pack 8 dimensions per byte; {profile.dimensions} is not a "
            "multiple of 8",
            field="dimensions",
        )


def _release_pools(endpoints: list[Endpoint]) -> None:
    for endpoint in endpoints:
        endpoint.transport.close()


def _reveal(key: str | SecretStr | None) -> str | None:
    return key.get_secret_value() if isinstance(key, SecretStr) else key


async def _achunks(
    texts: Iterable[str] | AsyncIterable[str], size: int
) -> AsyncIterator[list[str]]:
    if isinstance(texts, AsyncIterable):
        chunk: list[str] = []
        async for text in texts:
            chunk.append(text)
            if len(chunk) == size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk
        return
    source = iter(texts)
    while chunk := list(islice(source, size)):
        yield chunk


def _single(text: Any) -> list[str]:
    if not isinstance(text, str):
        raise errors.InputValidationError(f"expected a str, got {type(text).__name__}", index=0)
    return [text]
