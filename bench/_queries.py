"""S11's contenders: one query at a time (``one``) and many queries at once (``burst``).

``one`` is the sync single-text call a retriever makes per question (``embed_query``,
``get_query_embedding``, one ``embeddings.create``); ``burst`` starts every query of the list
as its own concurrent async call on the runner's event loop and returns the vectors in order.
The floor is a raw httpx POST of one input, decoded with orjson, pybase64 and numpy; in the
burst it keeps at most the server's slot count in flight (httpx's pool slows down badly when
hundreds of requests queue in it, which would make the floor no floor).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import _scenarios as sc
from _contenders import API_KEY, MODEL, Context


class QueryRunner:
    """One library's single-query calls, sync and async, on one event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._one: Callable[[str], Any] = lambda text: None
        self._aone: Callable[[str], Awaitable[Any]] = self._missing

    async def _missing(self, text: str) -> Any:
        raise NotImplementedError

    def one(self, text: str) -> Any:
        """Embed one query with the sync API; returns its vector."""
        return self._one(text)

    def burst(self, texts: list[str]) -> list[Any]:
        """Embed each text as its own concurrent async call; returns the vectors in order."""

        async def every() -> list[Any]:
            return list(await asyncio.gather(*(self._aone(t) for t in texts)))

        return self.loop.run_until_complete(every())

    def close(self) -> None:
        """Release connections and the loop."""
        self.loop.close()


class _Embedguard(QueryRunner):
    def __init__(self, ctx: Context, **settings: Any) -> None:
        super().__init__()
        from embedguard import EmbeddingClient, profiles

        profile = profiles.openai(base_url=ctx.base_url, dimensions=ctx.scenario.dimensions)
        self.client = EmbeddingClient(profile, api_key=API_KEY, **settings)
        self._one, self._aone = self.client.embed_query, self.client.aembed_query

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.client.close()
        super().close()


class _GuardedLangChain(QueryRunner):
    def __init__(self, ctx: Context) -> None:
        super().__init__()
        from _adapters import GuardedLangChain

        self.model = GuardedLangChain(ctx).model
        self._one, self._aone = self.model.embed_query, self.model.aembed_query

    def close(self) -> None:
        self.loop.run_until_complete(self.model.aclose())
        self.model.close()
        super().close()


class _GuardedLlamaIndex(QueryRunner):
    def __init__(self, ctx: Context) -> None:
        super().__init__()
        from _adapters import GuardedLlamaIndex

        self.model = GuardedLlamaIndex(ctx).model
        self._one, self._aone = self.model.get_query_embedding, self.model.aget_query_embedding

    def close(self) -> None:
        self.loop.run_until_complete(self.model.aclose())
        self.model.close()
        super().close()


class _LangChain(QueryRunner):
    def __init__(self, ctx: Context) -> None:
        super().__init__()
        from _contenders import _LangChain as Documents

        model = Documents(ctx, None).model
        self._one, self._aone = model.embed_query, model.aembed_query


class _LlamaIndex(QueryRunner):
    def __init__(self, ctx: Context) -> None:
        super().__init__()
        from llama_index.embeddings.openai import OpenAIEmbedding  # type: ignore[import-untyped]

        kwargs: dict[str, Any] = {"model": MODEL, "api_key": API_KEY, "api_base": ctx.base_url}
        if ctx.dims_param is not None:
            kwargs["dimensions"] = ctx.dims_param
        model = OpenAIEmbedding(**kwargs)
        self._one, self._aone = model.get_query_embedding, model.aget_query_embedding


class _OpenAISDK(QueryRunner):
    def __init__(self, ctx: Context) -> None:
        super().__init__()
        from openai import AsyncOpenAI, OpenAI

        self.sync = OpenAI(api_key=API_KEY, base_url=ctx.base_url)
        self.aio = AsyncOpenAI(api_key=API_KEY, base_url=ctx.base_url)
        self.extra: dict[str, Any] = {}
        if ctx.dims_param is not None:
            self.extra["dimensions"] = ctx.dims_param
        self._one, self._aone = self._create, self._acreate

    def _create(self, text: str) -> Any:
        response = self.sync.embeddings.create(model=MODEL, input=[text], **self.extra)
        return response.data[0].embedding

    async def _acreate(self, text: str) -> Any:
        response = await self.aio.embeddings.create(model=MODEL, input=[text], **self.extra)
        return response.data[0].embedding

    def close(self) -> None:
        self.sync.close()
        self.loop.run_until_complete(self.aio.close())
        super().close()


class _Floor(QueryRunner):
    def __init__(self, ctx: Context) -> None:
        super().__init__()
        import httpx
        import orjson

        self.url = ctx.base_url + "/embeddings"
        self.headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
        self.dims = ctx.dims_param
        self.dumps = orjson.dumps
        slots = ctx.scenario.slots
        self.http = httpx.Client(timeout=60.0)
        self.ahttp = httpx.AsyncClient(timeout=60.0, limits=httpx.Limits(max_connections=slots))
        self.gate = asyncio.Semaphore(slots)
        self._one, self._aone = self._post, self._apost

    def _body(self, text: str) -> bytes:
        body: dict[str, Any] = {"model": MODEL, "input": [text], "encoding_format": "base64"}
        if self.dims is not None:
            body["dimensions"] = self.dims
        return bytes(self.dumps(body))

    def _post(self, text: str) -> Any:
        response = self.http.post(self.url, content=self._body(text), headers=self.headers)
        return _decode(response)

    async def _apost(self, text: str) -> Any:
        async with self.gate:
            response = await self.ahttp.post(
                self.url, content=self._body(text), headers=self.headers
            )
        return _decode(response)

    def close(self) -> None:
        self.http.close()
        self.loop.run_until_complete(self.ahttp.aclose())
        super().close()


def _decode(response: Any) -> Any:
    import numpy as np
    import orjson
    import pybase64

    response.raise_for_status()
    item = orjson.loads(response.content)["data"][0]
    return np.frombuffer(pybase64.b64decode(item["embedding"]), dtype=np.float32)


FACTORIES: dict[str, Callable[[Context], QueryRunner]] = {
    sc.EMBEDGUARD: _Embedguard,
    sc.EMBEDGUARD_NO_WINDOW: lambda ctx: _Embedguard(ctx, coalesce_window=0.0),
    sc.EMBEDGUARD_LANGCHAIN: _GuardedLangChain,
    sc.EMBEDGUARD_LLAMAINDEX: _GuardedLlamaIndex,
    sc.LANGCHAIN: _LangChain,
    sc.LLAMAINDEX: _LlamaIndex,
    sc.OPENAI_SDK: _OpenAISDK,
    sc.FLOOR_LOOP: _Floor,
}

NOTES = {
    sc.EMBEDGUARD: "EmbeddingClient(profiles.openai()) defaults: embed_query / aembed_query",
    sc.EMBEDGUARD_NO_WINDOW: "the same with coalesce_window=0 (no merging of small calls)",
    sc.EMBEDGUARD_LANGCHAIN: "GuardedEmbeddings(model=..., base_url=...): embed_query / "
    "aembed_query",
    sc.EMBEDGUARD_LLAMAINDEX: "GuardedEmbedding(model=..., api_base=...): get_query_embedding / "
    "aget_query_embedding",
    sc.LANGCHAIN: "OpenAIEmbeddings defaults: embed_query / aembed_query",
    sc.LLAMAINDEX: "OpenAIEmbedding defaults: get_query_embedding / aget_query_embedding",
    sc.OPENAI_SDK: "OpenAI / AsyncOpenAI: embeddings.create(input=[text])",
    sc.FLOOR_LOOP: "raw httpx Client / AsyncClient POST of one input, orjson + base64 decode; "
    f"the burst keeps {sc.SLOTS} in flight (a semaphore)",
}


def build(name: str, ctx: Context) -> QueryRunner:
    """The query runner of contender ``name``."""
    factory = FACTORIES.get(name)
    if factory is None:
        raise SystemExit(f"contender {name!r} has no query runner")
    return factory(ctx)
