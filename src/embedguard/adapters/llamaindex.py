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

import httpx
from pydantic import Field, PrivateAttr, SecretStr, ValidationError

from embedguard._extras import require
from embedguard.core._frozen import configuration_error
from embedguard.core._lists import as_lists
from embedguard.core.client import EmbeddingClient
from embedguard.core.config import ProviderProfile
from embedguard.core.errors import ConfigurationError
from embedguard.core.usage import calls_on, track_usage

from ._shared import ClientHealth, build

require("llama_index.core", "llamaindex")

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding  # noqa: E402

from ._llama_batches import BatchedEmbedding, EmbeddingUsageEvent  # noqa: E402

__all__ = ["EmbeddingUsageEvent", "GuardedEmbedding"]


_MAX_REQUEST = 2048  # embed_batch_size above this means "let the client batch"


class GuardedEmbedding(BatchedEmbedding, ClientHealth):
    """LlamaIndex ``BaseEmbedding`` backed by an :class:`~embedguard.EmbeddingClient`.

    Batching, bounded concurrency, rate limits, retries, the circuit breaker, validation and
    metrics all happen in the client; this class only converts its float32 arrays to lists.
    There is no provider SDK underneath, so there is no second retry layer: the profile's
    :class:`~embedguard.RetryPolicy` is the only one. LlamaIndex's own machinery still works:
    instrumentation events, callbacks, ``show_progress``, ``embeddings_cache``.

    ``embed_batch_size`` is the texts per request (the profile's ``batching.max_inputs``, which
    is its default); above 2048 it means "let the client batch". ``get_text_embedding_batch``
    (used by ``VectorStoreIndex`` and ``IngestionPipeline``) sends all its batches at once under
    the client's bound, with LlamaIndex's events, callbacks and progress bar per batch.
    Failures raise embedguard's typed errors (:class:`~embedguard.AuthenticationError`, ...).

    Build it from a profile, from a client, or from keywords, those of ``OpenAIEmbedding``,
    ``AzureOpenAIEmbedding``, ``CohereEmbedding``, ``VoyageEmbedding``,
    ``GoogleGenAIEmbedding``, ``GeminiEmbedding``, ``BedrockEmbedding`` and
    ``TextEmbeddingsInference`` included (``api_base``, ``max_retries``, ``timeout``,
    ``additional_kwargs``, ``azure_endpoint``, ``input_type``, ``embedding_config``,
    ``profile_name``, ``query_instruction``... map onto the profile; a peer's key keyword selects
    its provider; see docs/adapters.md)::

        GuardedEmbedding(profiles.mistral())
        GuardedEmbedding(EmbeddingClient(profile, api_key=key))
        GuardedEmbedding(model="text-embedding-3-large", dimensions=1024, api_key="sk-...")

    Empty or whitespace-only texts fail the call by default (``InputValidationError``);
    ``empty="zero"`` gives each a zero vector and ``empty="skip"`` a vector of NaN, one vector
    per text either way, never sent nor billed. ``VectorStoreIndex`` leaves nodes without content
    out by itself; in other uses note that LlamaIndex's in-memory store scores a zero or NaN
    vector NaN, which can rank it first: filter those nodes out before querying.

    ``to_dict()``, ``to_json()`` and pickles never hold the key: rebuild with
    ``GuardedEmbedding.from_dict(data, api_key=key)`` or let unpickling read the environment.
    A copy (``copy.copy``, ``copy.deepcopy``) shares the client: its connections, breaker,
    metrics and usage.

    Args:
        source: A :class:`~embedguard.ProviderProfile` or :class:`~embedguard.EmbeddingClient`.
        client: An :class:`~embedguard.EmbeddingClient` to use (you keep its settings).
        model: The model name (``model_name`` is accepted too); default: the profile's.
        provider: A built-in profile name; default: the one a peer keyword belongs to
            (``azure`` for Azure keywords, ``cohere`` for ``cohere_api_key``...), else
            ``openai``, or the profile's.
        api_key: The key; default: read now from the provider's variable (``OPENAI_API_KEY``,
            ``CO_API_KEY``, ``GOOGLE_API_KEY``...; none for Bedrock with SigV4).
        base_url: The endpoint root; default: the profile's, else the provider's variable.
        dimensions: The output vector size; default: the profile's.
        profile: A profile (keyword form of ``source``); the keywords above override it.
        **kwargs: ``BaseEmbedding`` fields (``embed_batch_size``, ``callback_manager``,
            ``num_workers``, ``embeddings_cache``...), ``token_provider``, ``http_client``,
            ``async_http_client``, ``context_policy``, ``empty``, and the peers' keywords.
    """

    model_name: str = Field(frozen=True, description="The model name sent to the provider.")
    provider: str = Field(frozen=True, description="The profile's provider (wire format).")
    base_url: str | None = Field(None, frozen=True, description="The endpoint root.")
    dimensions: int | None = Field(None, frozen=True, description="The output size.")
    api_key: SecretStr | None = Field(None, frozen=True, exclude=True, repr=False)
    profile: ProviderProfile = Field(frozen=True, description="The client's full profile.")
    embed_batch_size: int = Field(
        _MAX_REQUEST, gt=0, description="Texts per request; above 2048: let the client batch."
    )

    _client: EmbeddingClient = PrivateAttr()
    _owned: tuple[httpx.Client, httpx.AsyncClient] | None = PrivateAttr(None)

    def __init__(
        self,
        source: ProviderProfile | EmbeddingClient | None = None,
        /,
        *,
        client: EmbeddingClient | None = None,
        **kwargs: Any,
    ) -> None:
        if "show_progress_bar" in kwargs:
            raise ConfigurationError(
                "show_progress_bar is not supported: pass show_progress=True to "
                "get_text_embedding_batch",
                field="show_progress_bar",
            )
        size = kwargs.get("embed_batch_size")
        brings_client = client is not None or isinstance(source, EmbeddingClient)
        if isinstance(size, int) and 0 < size <= _MAX_REQUEST and not brings_client:
            kwargs.setdefault("chunk_size", size)  # requests of this size, as the peer sends
        built = build(source, client, kwargs, known=_BASE_FIELDS, owner=type(self).__name__)
        fields = built.fields
        fields["model_name"] = fields.pop("model")
        if kwargs.get("embed_batch_size") is None:
            kwargs["embed_batch_size"] = fields["profile"].batching.max_inputs
        try:
            super().__init__(**fields, **kwargs)
        except ValidationError as exc:
            raise configuration_error(exc) from None
        self._client, self._owned = built.client, built.owned

    @classmethod
    def class_name(cls) -> str:
        """The name LlamaIndex serializes this class under."""
        return "GuardedEmbedding"

    # -- BaseEmbedding's interface ---------------------------------------------------------
    # Each call reports its usage as an EmbeddingUsageEvent (tokens, requests, cost), in the span
    # of LlamaIndex's own EmbeddingStartEvent/EmbeddingEndEvent.
    def _get_query_embedding(self, query: str) -> Embedding:
        with calls_on(self._client), track_usage() as usage:
            vector: Embedding = self._client.embed_query(query).tolist()
        self._report(usage)
        return vector

    async def _aget_query_embedding(self, query: str) -> Embedding:
        with calls_on(self._client), track_usage() as usage:
            vector: Embedding = (await self._client.aembed_query(query)).tolist()
        self._report(usage)
        return vector

    # One text is a document (the provider's document input type), not a query.
    def _get_text_embedding(self, text: str) -> Embedding:
        return self._get_text_embeddings([text])[0]  # a document: the provider's document type

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return (await self._aget_text_embeddings([text]))[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        with calls_on(self._client), track_usage() as usage:
            vectors: list[Embedding] = as_lists(self._client.embed(texts))
        self._report(usage)
        return vectors

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        with calls_on(self._client), track_usage() as usage:
            vectors: list[Embedding] = as_lists(await self._client.aembed(texts))
        self._report(usage)
        return vectors

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


_BASE_FIELDS = frozenset(BaseEmbedding.model_fields) - {"model_name"}
