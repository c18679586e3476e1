"""LlamaIndex's batch methods over one client call, and the usage event (see ``llamaindex``).

Imported by :mod:`embedguard.adapters.llamaindex` only, after it checked that LlamaIndex is
installed.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.embedding import (
    EmbeddingEndEvent,
    EmbeddingStartEvent,
)
from llama_index.core.schema import BaseNode, MetadataMode
from llama_index_instrumentation import get_dispatcher

from embedguard.core._lists import as_lists
from embedguard.core.usage import Usage, calls_on, track_usage

from ._chunks import Rows, aembed_chunks, embed_chunks, progress_bar, sliced

if TYPE_CHECKING:
    from embedguard.core.client import EmbeddingClient

__all__ = ["BatchedEmbedding", "EmbeddingUsageEvent"]

_dispatcher = get_dispatcher("embedguard.adapters.llamaindex")


class EmbeddingUsageEvent(BaseEvent):
    """What one embedding call of :class:`GuardedEmbedding` used: tokens billed (as the
    provider reported them), requests sent, texts served from the cache, and estimated cost."""

    model_name: str
    tokens: int
    requests: int
    cached: int
    cost: float

    @classmethod
    def class_name(cls) -> str:
        """The event's name in LlamaIndex's instrumentation."""
        return "EmbeddingUsageEvent"


class BatchedEmbedding(BaseEmbedding):
    """A ``BaseEmbedding`` whose batch methods hand the whole list to ``_client``."""

    if TYPE_CHECKING:
        _client: EmbeddingClient

    # -- batches: the whole list to the client, LlamaIndex's events and progress per batch ----
    @_dispatcher.span
    def get_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[Embedding]:
        """Embed ``texts``: one client call (its batching and concurrency), events per batch.

        With ``show_progress`` the batches of ``embed_batch_size`` are separate calls, all in
        flight at once, so that the bar advances as each is done.
        """
        if self.embeddings_cache is not None or self.rate_limiter is not None:
            return super().get_text_embedding_batch(texts, show_progress, **kwargs)
        with (
            calls_on(self._client),
            progress_bar(show_progress, len(texts), "Generating embeddings") as bar,
        ):
            ids = self._start(texts)
            if bar is None:
                with track_usage() as usage:  # lists made as batches arrive (bench S12)
                    vectors = self._client._embed_lists(texts, "document")
                chunks = sliced(texts, vectors, usage, self._size)
            else:
                chunks = embed_chunks(self._client, texts, self._size)
            return [v for i, c in zip(ids, chunks, strict=True) for v in self._end(i, c, bar)]

    @_dispatcher.span
    async def aget_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[Embedding]:
        """Async :meth:`get_text_embedding_batch`."""
        if self.embeddings_cache is not None or self.rate_limiter is not None:
            return await super().aget_text_embedding_batch(texts, show_progress, **kwargs)
        out: list[Embedding] = []
        with (
            calls_on(self._client),
            progress_bar(show_progress, len(texts), "Generating embeddings") as bar,
        ):
            ids = iter(self._start(texts))
            if bar is None:
                with track_usage() as usage:
                    vectors = await self._client._aembed_lists(texts, "document")
                for chunk in sliced(texts, vectors, usage, self._size):
                    out += self._end(next(ids), chunk, bar)
                return out
            async with aclosing(aembed_chunks(self._client, texts, self._size)) as chunks:
                async for chunk in chunks:
                    out += self._end(next(ids), chunk, bar)
        return out

    # -- transformations (IngestionPipeline): as LlamaIndex's, without re-validating vectors ----
    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        """Embed each node's content and set its ``embedding`` (as ``BaseEmbedding`` does)."""
        texts = [node.get_content(metadata_mode=MetadataMode.EMBED) for node in nodes]
        _attach(nodes, self.get_text_embedding_batch(texts, **kwargs))
        return nodes

    async def acall(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        """Async :meth:`__call__`."""
        texts = [node.get_content(metadata_mode=MetadataMode.EMBED) for node in nodes]
        _attach(nodes, await self.aget_text_embedding_batch(texts, **kwargs))
        return nodes

    @property
    def _size(self) -> int:
        return self.embed_batch_size

    def _start(self, texts: list[str]) -> list[str]:
        model_dict = self.to_payload()
        ids = []
        for _ in range(0, len(texts), self._size):
            _dispatcher.event(EmbeddingStartEvent(model_dict=model_dict))
            ids.append(
                self.callback_manager.on_event_start(
                    CBEventType.EMBEDDING, payload={EventPayload.SERIALIZED: model_dict}
                )
            )
        return ids

    def _end(self, event_id: str, chunk: Rows, bar: Any) -> list[Embedding]:
        texts, vectors, usage = chunk
        embeddings: list[Embedding] = vectors if isinstance(vectors, list) else as_lists(vectors)
        if usage is not None:
            self._report(usage)
        # Built without validation: the lists are the client's validated float32 rows, and
        # pydantic checking 1,536 floats per row cost as much as the HTTP calls (S12).
        _dispatcher.event(
            EmbeddingEndEvent.model_construct(chunks=list(texts), embeddings=embeddings)
        )
        self.callback_manager.on_event_end(
            CBEventType.EMBEDDING,
            payload={EventPayload.CHUNKS: list(texts), EventPayload.EMBEDDINGS: embeddings},
            event_id=event_id,
        )
        if bar is not None:
            bar.update(len(texts))
        return embeddings

    def _report(self, usage: Usage) -> None:
        _dispatcher.event(
            EmbeddingUsageEvent(
                model_name=self.model_name, tokens=usage.tokens, requests=usage.requests,
                cached=usage.cached, cost=usage.cost,
            )
        )  # fmt: skip


def _attach(nodes: Sequence[BaseNode], embeddings: list[Embedding]) -> None:
    """Set each node's ``embedding``. Nodes validate every assignment, which for a list of 1,536
    floats cost a third of an IngestionPipeline run (S12); these lists are the client's checked
    float32 rows, so a node class that keeps LlamaIndex's field (same type, no validators) takes
    them as they are. Any other node class is assigned to normally."""
    for node, embedding in zip(nodes, embeddings, strict=True):
        if _plain(type(node)):
            node.__dict__["embedding"] = embedding
            node.__pydantic_fields_set__.add("embedding")
        else:
            node.embedding = embedding


@functools.cache
def _plain(cls: type[BaseNode]) -> bool:
    field = cls.model_fields.get("embedding")
    decorators = cls.__pydantic_decorators__
    return (
        field is not None
        and field.annotation == _EMBEDDING
        and not decorators.model_validators
        and not any("embedding" in d.info.fields for d in decorators.field_validators.values())
    )


_EMBEDDING = BaseNode.model_fields["embedding"].annotation
