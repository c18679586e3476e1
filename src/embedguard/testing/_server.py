"""EmbeddingServer: a real loopback HTTP server speaking each provider's embeddings wire format."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from ._engine import Engine, RecordedRequest
from ._faults import Fault
from ._http import serve_connection
from ._ratelimit import TokenBuckets
from ._routes import Limits, VectorMode
from ._vectors import count_tokens

__all__ = ["EmbeddingServer", "RecordedRequest"]

_START_TIMEOUT = 5.0


class EmbeddingServer:
    """A loopback embeddings server for tests and benchmarks, with fault injection.

    It listens on ``127.0.0.1`` on an ephemeral port, in an event loop on a background daemon
    thread, and speaks the OpenAI (``/v1/embeddings``), Azure OpenAI
    (``/openai/deployments/{deployment}/embeddings?api-version=...`` and
    ``/openai/v1/embeddings``), Mistral (``/mistral/v1/embeddings``), Ollama (``/api/embed``,
    legacy ``/api/embeddings``), Cohere (``/cohere/v2/embed``), Voyage (``/voyage/v1/embeddings``),
    Gemini (``/gemini/v1beta/models/{model}:batchEmbedContents``), Bedrock
    (``/bedrock/model/{modelId}/invoke``) and Text Embeddings Inference (``/tei/embed``,
    ``GET /tei/info``) wire formats. Each vector is ``deterministic_vector(text, d)``
    (pseudo-random per text), or with ``vectors="lexical"`` ``lexical_vectors([text], d)[0]``,
    so that texts sharing words are close and retrieval over the vectors is meaningful.

    Every request sleeps ``latency + latency_per_input * n_inputs`` while holding one of
    ``max_concurrency`` slots (further requests queue). Usage counts tokens with
    :meth:`count_tokens`. Checks run in this order: outage, path (404), method (405), key
    (401), body encoding (415/400), request validation (400); only then does a valid request
    take the next scripted or chaos fault, and a request without a fault passes the rate
    limits (429 with ``retry-after`` and ``x-ratelimit-*`` headers). Vectors never depend on
    ``seed``; it seeds the server's own random choices (request ids, shuffle orders, NaN
    positions).

    Example:
        >>> with EmbeddingServer(dimensions=8) as server:  # doctest: +SKIP
        ...     server.script(Fault.rate_limited(retry_after=0.05), Fault.drop())
        ...     base_url = server.base_url("openai")  # "http://127.0.0.1:PORT/v1"

    Args:
        dimensions: the vector length when a request names none.
        latency: seconds every embedding request takes.
        latency_per_input: extra seconds per input of the request.
        max_concurrency: requests processed at once; more wait for a slot (``None``: no limit).
        accept_gzip: when false, a gzip request body gets 415.
        rate_limit_rpm: requests per minute allowed (token bucket), else 429.
        rate_limit_tpm: tokens per minute allowed (token bucket), else 429.
        require_key: when set, 401 unless ``Authorization: Bearer <key>``, ``api-key: <key>``
            or ``x-goog-api-key: <key>`` (Gemini answers a wrong key with 400, none with 403).
            Bedrock routes always need a bearer token or a well-formed SigV4 signature; with
            ``require_key`` the token must equal it, or the signature must verify with it as
            the secret access key (see ``_wire_bedrock_auth``).
        seed: seeds request ids and the random parts of faults.
        max_input_tokens: when set, an input with more tokens gets the provider's 400 context
            length error (Ollama truncates unless ``truncate`` is false).
        max_batch_size: when set, a request with more inputs gets 400.
        vectors: ``"random"`` (default: :func:`deterministic_vectors`, unrelated per text) or
            ``"lexical"`` (:func:`lexical_vectors`: the normalised sum of per-word vectors).
    """

    def __init__(
        self,
        *,
        dimensions: int = 1536,
        latency: float = 0.0,
        latency_per_input: float = 0.0,
        max_concurrency: int | None = None,
        accept_gzip: bool = True,
        rate_limit_rpm: int | None = None,
        rate_limit_tpm: int | None = None,
        require_key: str | None = None,
        seed: int = 0,
        max_input_tokens: int | None = None,
        max_batch_size: int | None = None,
        vectors: VectorMode = "random",
    ) -> None:
        if dimensions < 1:
            raise ValueError(f"dimensions must be at least 1, got {dimensions}")
        if latency < 0 or latency_per_input < 0:
            raise ValueError("latency and latency_per_input must be >= 0")
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        if vectors not in ("random", "lexical"):
            raise ValueError(f"vectors must be 'random' or 'lexical', got {vectors!r}")
        self._limits = Limits(dimensions, max_input_tokens, max_batch_size, vectors)
        self._max_concurrency = max_concurrency
        self._engine = Engine(
            limits=self._limits,
            latency=latency,
            latency_per_input=latency_per_input,
            accept_gzip=accept_gzip,
            buckets=TokenBuckets(rate_limit_rpm, rate_limit_tpm),
            require_key=require_key,
            seed=seed,
        )
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._port: int | None = None
        self._start_error: BaseException | None = None
        self._connections: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "stopped"
        mode = "" if self._limits.vectors == "random" else f", vectors={self._limits.vectors!r}"
        return f"EmbeddingServer({where}, dimensions={self._limits.dimensions}{mode})"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> EmbeddingServer:
        """Start serving (a no-op when already running); returns the server."""
        if self._thread is not None:
            return self
        ready = threading.Event()
        self._start_error = None
        thread = threading.Thread(
            target=self._run, args=(ready,), name="embedguard-test-server", daemon=True
        )
        thread.start()
        if not ready.wait(_START_TIMEOUT) or self._start_error is not None:
            thread.join(_START_TIMEOUT)
            raise RuntimeError("the embedding test server failed to start") from self._start_error
        self._thread = thread
        return self

    def stop(self) -> None:
        """Close every connection, stop the server and join its thread (idempotent)."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None or loop is None or stopping is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop may already be closed
            loop.call_soon_threadsafe(stopping.set)
        thread.join(_START_TIMEOUT)
        self._thread = self._loop = self._stopping = None
        self._port = None

    def __enter__(self) -> EmbeddingServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self, ready: threading.Event) -> None:
        try:
            asyncio.run(self._main(ready))
        except BaseException as exc:  # reported to start(); the thread must not die silently
            self._start_error = exc
            ready.set()

    async def _main(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._engine.bind(self._max_concurrency)
        self._connections = set()
        server = await asyncio.start_server(self._on_connection, "127.0.0.1", 0, backlog=1024)
        self._port = int(server.sockets[0].getsockname()[1])
        ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            for _ in range(2):  # let accepted-but-unstarted handlers register themselves
                await asyncio.sleep(0)
            tasks = list(self._connections)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await server.wait_closed()

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await serve_connection(reader, writer, self._engine.handle)
        except asyncio.CancelledError:
            pass  # stop() cancels connections still open; that is the normal way out
        finally:
            self._connections.discard(task)

    # -- public controls ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The server's root URL, ``http://127.0.0.1:PORT`` (only while running)."""
        if self._port is None:
            raise RuntimeError("the server is not running; call start() or use `with`")
        return f"http://127.0.0.1:{self._port}"

    @property
    def dimensions(self) -> int:
        """The default vector length."""
        return self._limits.dimensions

    def base_url(self, provider: str) -> str:
        """The base URL a client of ``provider`` should be given.

        ``"openai"`` / ``"openai_compatible"``: ``{url}/v1``; ``"mistral"``:
        ``{url}/mistral/v1``; ``"cohere"``: ``{url}/cohere`` (its client adds ``/v2/embed``);
        ``"voyage"``: ``{url}/voyage/v1`` (vectors of the model's native size or
        ``output_dimension``, not ``dimensions``: see ``_wire_voyage``); ``"ollama"`` and
        ``"azure"``: ``{url}`` (the Azure client adds
        ``/openai/deployments/{deployment}/embeddings?api-version=...`` or ``/openai/v1/...``);
        ``"gemini"``: ``{url}/gemini`` (the client adds ``/v1beta/models/{model}:...``);
        ``"bedrock"``: ``{url}/bedrock`` (the client adds ``/model/{modelId}/invoke``);
        ``"tei"``: ``{url}/tei``.
        """
        suffix = {"openai": "/v1", "openai_compatible": "/v1", "mistral": "/mistral/v1",
                  "cohere": "/cohere", "voyage": "/voyage/v1", "bedrock": "/bedrock",
                  "tei": "/tei"}  # fmt: skip
        if provider in suffix:
            return self.url + suffix[provider]
        if provider in {"ollama", "azure"}:
            return self.url
        if provider == "gemini":
            return self.url + "/gemini"  # the client adds /v1beta/models/{model}:...
        raise ValueError(f"unknown provider {provider!r}")

    def script(self, *faults: Fault) -> None:
        """Queue faults: the next valid embedding requests get them in order, then normal."""
        self._engine.script(faults)

    def chaos(self, rate: float, faults: Sequence[Fault], *, seed: int = 0) -> None:
        """With probability ``rate``, give each request a fault drawn from ``faults``.

        Scripted faults come first. The draws are seeded, so a run is reproducible.
        """
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be in [0, 1], got {rate}")
        if rate > 0 and not faults:
            raise ValueError("chaos needs at least one fault")
        self._engine.chaos(rate, faults, seed)

    def set_down(self, down: bool = True, *, status: int = 503) -> None:
        """Simulate a full outage: every request fails with ``status`` (0: dropped connection)."""
        if down and status != 0 and not 400 <= status <= 599:
            raise ValueError(f"status must be 0 or in 400..599, got {status}")
        self._engine.set_down(status if down else None)

    def reset(self) -> None:
        """Clear the script, chaos, outage, request log, ``max_in_flight`` and rate buckets."""
        self._engine.reset()

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received since the last reset, in arrival order (a copy)."""
        return self._engine.requests()

    @property
    def max_in_flight(self) -> int:
        """The highest number of requests processed at the same time."""
        return self._engine.max_in_flight()

    def count_tokens(self, text: str) -> int:
        """The server's token count for ``text``: its number of words, at least 1."""
        return count_tokens(text)
