"""LlamaIndex adapter: :class:`GuardedEmbedding`, a drop-in ``BaseEmbedding``.

Install with ``pip install 'embedguard[llamaindex]'``::

    from embedguard.adapters.llamaindex import GuardedEmbedding
    from llama_index.core import Document, VectorStoreIndex

    embed_model = GuardedEmbedding(model="text-embedding-3-small")   # key from OPENAI_API_KEY
    index = VectorStoreIndex.from_documents([Document(text="...")], embed_model=embed_model)
    index.as_retriever(similarity_top_k=2).retrieve("a question")
    print(embed_model.metrics().format())
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import Field, PrivateAttr, SecretStr

from embedguard._extras import require
from embedguard.core.client import EmbeddingClient
from embedguard.core.config import ProviderProfile
from embedguard.core.errors import ConfigurationError
from embedguard.core.usage import Usage, track_usage

from ._shared import SETTINGS, ClientHealth, resolve, take_source

require("llama_index.core", "llamaindex")

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding  # noqa: E402
from llama_index.core.instrumentation.events import BaseEvent  # noqa: E402
from llama_index_instrumentation import get_dispatcher  # noqa: E402

__all__ = ["EmbeddingUsageEvent", "GuardedEmbedding"]

_dispatcher = get_dispatcher(__name__)


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


_MAX_BATCH = 2048  # BaseEmbedding.embed_batch_size's upper bound


class GuardedEmbedding(BaseEmbedding, ClientHealth):
    """LlamaIndex ``BaseEmbedding`` backed by an :class:`~embedguard.EmbeddingClient`.

    Batching, bounded concurrency, rate limits, retries, the circuit breaker, validation and
    metrics all happen in the client; this class only converts its float32 arrays to lists.
    There is no provider SDK underneath, so there is no second retry layer: the profile's
    :class:`~embedguard.RetryPolicy` is the only one. LlamaIndex's own machinery still works:
    instrumentation events, callbacks, ``show_progress``, ``embeddings_cache``. The batch size
    LlamaIndex hands over defaults to the profile's ``batching.max_inputs`` (at most 2048).
    Failures raise embedguard's typed errors (:class:`~embedguard.AuthenticationError`, ...).

    Build it from a profile, from a client, or from keywords::

        GuardedEmbedding(profiles.mistral())
        GuardedEmbedding(EmbeddingClient(profile, api_key=key))
        GuardedEmbedding(model="text-embedding-3-large", dimensions=1024, api_key="sk-...")

    ``to_dict()``, ``to_json()`` and pickles never hold the key: rebuild with
    ``GuardedEmbedding.from_dict(data, api_key=key)`` or let unpickling read the environment.
    A copy (``copy.copy``, ``copy.deepcopy``) shares the client: its connections, breaker and
    metrics.

    Args:
        source: A :class:`~embedguard.ProviderProfile` or :class:`~embedguard.EmbeddingClient`.
        client: An :class:`~embedguard.EmbeddingClient` to use (you keep its settings).
        model: The model name (``model_name`` is accepted too); default: the profile's.
        provider: A built-in profile name; default ``openai``, or the profile's.
        api_key: The key; default: read now from the provider's variable (``OPENAI_API_KEY``...).
        base_url: The endpoint root; default: the profile's, else the provider's variable.
        dimensions: The output vector size; default: the profile's.
        profile: A profile (keyword form of ``source``); the keywords above override it.
        **kwargs: ``BaseEmbedding`` fields (``embed_batch_size``, ``callback_manager``,
            ``num_workers``, ``embeddings_cache``...).
    """

    model_name: str = Field(frozen=True, description="The model name sent to the provider.")
    provider: str = Field(frozen=True, description="The profile's provider (wire format).")
    base_url: str | None = Field(None, frozen=True, description="The endpoint root.")
    dimensions: int | None = Field(None, frozen=True, description="The output size.")
    api_key: SecretStr | None = Field(None, frozen=True, exclude=True, repr=False)
    profile: ProviderProfile = Field(frozen=True, description="The client's full profile.")

    _client: EmbeddingClient = PrivateAttr()

    def __init__(
        self,
        source: ProviderProfile | EmbeddingClient | None = None,
        /,
        *,
        client: EmbeddingClient | None = None,
        **kwargs: Any,
    ) -> None:
        if "model_name" in kwargs:
            name = kwargs.pop("model_name")
            if kwargs.setdefault("model", name) != name:
                raise ConfigurationError("model and model_name disagree", field="model")
        client = take_source(source, client, kwargs, type(self).model_fields)
        settings = resolve({k: kwargs.pop(k) for k in SETTINGS if k in kwargs}, client)
        settings["model_name"] = settings.pop("model")
        if kwargs.get("embed_batch_size") is None:
            kwargs["embed_batch_size"] = min(settings["profile"].batching.max_inputs, _MAX_BATCH)
        super().__init__(**settings, **kwargs)
        self._client = client or EmbeddingClient(self.profile, api_key=self.api_key)

    @classmethod
    def class_name(cls) -> str:
        """The name LlamaIndex serializes this class under."""
        return "GuardedEmbedding"

    # -- BaseEmbedding's interface ---------------------------------------------------------
    # Each call reports its usage as an EmbeddingUsageEvent (tokens, requests, cost), in the span
    # of LlamaIndex's own EmbeddingStartEvent/EmbeddingEndEvent.
    def _get_query_embedding(self, query: str) -> Embedding:
        with track_usage() as usage:
            vector: Embedding = self._client.embed_query(query).tolist()
        self._report(usage)
        return vector

    async def _aget_query_embedding(self, query: str) -> Embedding:
        with track_usage() as usage:
            vector: Embedding = (await self._client.aembed_query(query)).tolist()
        self._report(usage)
        return vector

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._get_query_embedding(text)

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await self._aget_query_embedding(text)

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        with track_usage() as usage:
            vectors: list[Embedding] = self._client.embed(texts).tolist()
        self._report(usage)
        return vectors

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        with track_usage() as usage:
            vectors: list[Embedding] = (await self._client.aembed(texts)).tolist()
        self._report(usage)
        return vectors

    def _report(self, usage: Usage) -> None:
        _dispatcher.event(
            EmbeddingUsageEvent(
                model_name=self.model_name, tokens=usage.tokens, requests=usage.requests,
                cached=usage.cached, cost=usage.cost,
            )
        )  # fmt: skip

    # -- copies and pickles: never the key, never the client's sockets -----------------------
    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        return self.model_copy()  # the client (sockets, locks, breaker) is a shared resource

    def __getstate__(self) -> dict[str, Any]:
        return {"settings": self.to_dict()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        settings = dict(state["settings"])
        settings.pop("class_name", None)
        # Rebuild through __init__: a fresh client, the key read from the environment again.
        GuardedEmbedding.__init__(self, **settings)
