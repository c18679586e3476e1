"""LangChain adapter: :class:`GuardedEmbeddings`, a drop-in ``langchain_core`` ``Embeddings``.

Install with ``pip install 'embedguard[langchain]'``::

    from embedguard.adapters.langchain import GuardedEmbeddings
    from langchain_core.vectorstores import InMemoryVectorStore

    embeddings = GuardedEmbeddings(model="text-embedding-3-small")   # key from OPENAI_API_KEY
    store = InMemoryVectorStore(embeddings)
    store.add_texts(["Paris is the capital of France.", "Rust has no garbage collector."])
    store.similarity_search("French capital", k=1)
    print(embeddings.metrics().format())
"""

from __future__ import annotations

from typing import Any, Self

import httpx
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr

from embedguard._extras import require
from embedguard.core._lists import as_lists
from embedguard.core.client import EmbeddingClient
from embedguard.core.config import ProviderProfile
from embedguard.core.usage import calls_on

from ._chunks import aembed_chunks, embed_chunks, progress_bar
from ._shared import ClientHealth, build

require("langchain_core", "langchain")

from langchain_core.embeddings import Embeddings  # noqa: E402

__all__ = ["GuardedEmbeddings"]


class GuardedEmbeddings(BaseModel, Embeddings, ClientHealth):
    """LangChain ``Embeddings`` backed by an :class:`~embedguard.EmbeddingClient`.

    Batching, bounded concurrency, rate limits, retries, the circuit breaker, validation and
    metrics all happen in the client; this class only converts its float32 arrays to the
    ``list[float]`` LangChain expects. There is no provider SDK underneath, so there is no
    second retry layer: the profile's :class:`~embedguard.RetryPolicy` is the only one. The
    async methods are truly async (the client's ``aembed``, batches sent concurrently), not the
    base class's thread offload. Failures raise embedguard's typed errors
    (:class:`~embedguard.AuthenticationError`, :class:`~embedguard.CircuitOpenError`, ...).

    Build it from a profile, from a client, or from keywords, those of ``OpenAIEmbeddings``,
    ``AzureOpenAIEmbeddings``, ``CohereEmbeddings``, ``VoyageAIEmbeddings``,
    ``GoogleGenerativeAIEmbeddings``, ``BedrockEmbeddings`` and ``HuggingFaceEndpointEmbeddings``
    included (``chunk_size``, ``max_retries``, ``timeout``, ``azure_endpoint``, ``model_kwargs``,
    ``embedding_types``, ``task_type``, ``region_name``... map onto the profile; a peer's key
    keyword selects its provider; see docs/adapters.md)::

        GuardedEmbeddings(profiles.mistral())
        GuardedEmbeddings(EmbeddingClient(profile, api_key=key))
        GuardedEmbeddings(model="text-embedding-3-large", dimensions=1024, api_key="sk-...")
        GuardedEmbeddings(azure_endpoint=url, azure_deployment="emb", api_version="2024-10-21")
        GuardedEmbeddings(model="embed-english-v3.0", cohere_api_key=key, truncate="END")
        GuardedEmbeddings(model_id="cohere.embed-english-v3", region_name="us-east-1")

    Empty or whitespace-only texts fail the call by default (``InputValidationError`` naming
    the first). ``empty="zero"`` gives each a zero vector and ``empty="skip"`` a vector of NaN:
    either way there is one vector per text, in order, and the text is never sent nor billed.
    LangChain's ``InMemoryVectorStore`` scores both 0, so such documents are stored but never
    ranked by meaning; stores that refuse NaN (or zero vectors, for cosine) need ``"zero"`` (or
    ``"error"`` and filtering the documents first).

    Settings are frozen after construction (the client is built from them once). The key is a
    ``SecretStr`` left out of ``repr``, ``model_dump`` and pickles: unpickling builds a new
    client and reads the key from the environment again (headers, proxy, token provider and
    HTTP clients are not pickled either). A copy (``copy.copy``, ``copy.deepcopy``) shares the
    client: its connections, breaker, metrics and usage.

    Args:
        source: A :class:`~embedguard.ProviderProfile` or an :class:`~embedguard.EmbeddingClient`
            (positional), or ``None`` to build the profile from the keywords.
        client: An :class:`~embedguard.EmbeddingClient` to use (you keep its settings).
        provider: A built-in profile name (``openai``, ``azure``, ``mistral``, ``cohere``,
            ``voyage``, ``gemini``, ``bedrock``, ``tei``, ``ollama``, ``openai_compatible``);
            default: the one a peer keyword belongs to (``azure`` for Azure keywords,
            ``cohere`` for ``cohere_api_key``...), else ``openai``, or the profile's.
        model: The model name; default: the profile's.
        api_key: The key; default: read now from the provider's variable (``OPENAI_API_KEY``,
            ``AZURE_OPENAI_API_KEY``, ``MISTRAL_API_KEY``, ``CO_API_KEY``/``COHERE_API_KEY``,
            ``VOYAGE_API_KEY``, ``GOOGLE_API_KEY``/``GEMINI_API_KEY``,
            ``AWS_BEARER_TOKEN_BEDROCK`` (else SigV4), ``TEI_API_KEY``, or the profile's
            ``api_key_env``).
        base_url: The endpoint root; default: the profile's, else the provider's variable.
        dimensions: The output vector size; default: the profile's.
        profile: A profile (keyword form of ``source``); the keywords above override it.
        show_progress_bar: Draw a tqdm bar advancing per request-sized chunk.
        **settings: ``token_provider``, ``http_client``, ``async_http_client``,
            ``context_policy`` and ``empty`` for the client, and the peers' keywords.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    provider: str = Field(description="The profile's provider (wire format).")
    model: str = Field(description="The model name sent to the provider.")
    base_url: str | None = Field(None, description="The endpoint root (None: env or default).")
    dimensions: int | None = Field(None, description="The output size (None: learned).")
    api_key: SecretStr | None = Field(None, exclude=True, repr=False)
    profile: ProviderProfile = Field(description="The full profile the client was built with.")
    show_progress_bar: bool = Field(False, description="Draw a progress bar per chunk.")

    _client: EmbeddingClient = PrivateAttr()
    _owned: tuple[httpx.Client, httpx.AsyncClient] | None = PrivateAttr(None)

    def __init__(
        self,
        source: ProviderProfile | EmbeddingClient | None = None,
        /,
        *,
        client: EmbeddingClient | None = None,
        **settings: Any,
    ) -> None:
        built = build(source, client, settings, known=(), owner=type(self).__name__)
        super().__init__(**built.fields, show_progress_bar=bool(built.show_progress))
        self._client, self._owned = built.client, built.owned

    # -- LangChain's interface -----------------------------------------------------------
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed ``texts``: one vector per text, in order."""
        with calls_on(self._client):
            if not self.show_progress_bar:
                # Lists made as batches arrive, not all after the last one (the conversion
                # costs about as much as the HTTP calls: bench S12).
                return self._client._embed_lists(texts, "document")
            with progress_bar(True, len(texts), "Embedding") as bar:
                parts = []
                for chunk, part, _ in embed_chunks(self._client, texts, self._chunk):
                    parts.append(part)
                    bar.update(len(chunk))
        return _joined(parts)

    def embed_query(self, text: str) -> list[float]:
        """Embed one query text."""
        with calls_on(self._client):
            vector: list[float] = self._client.embed_query(text).tolist()
        return vector

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Async :meth:`embed_documents` (batches run concurrently, bounded by the profile)."""
        with calls_on(self._client):
            if not self.show_progress_bar:
                return await self._client._aembed_lists(texts, "document")
            with progress_bar(True, len(texts), "Embedding") as bar:
                parts = []
                async for chunk, part, _ in aembed_chunks(self._client, texts, self._chunk):
                    parts.append(part)
                    bar.update(len(chunk))
        return _joined(parts)

    async def aembed_query(self, text: str) -> list[float]:
        """Async :meth:`embed_query`."""
        with calls_on(self._client):
            vector: list[float] = (await self._client.aembed_query(text)).tolist()
        return vector

    @property
    def _chunk(self) -> int:
        return self._client.profile.batching.max_inputs

    # -- copies and pickles: never the key, never the client's sockets -------------------------
    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        return self.model_copy()  # every field is immutable; the client is a shared resource

    def __getstate__(self) -> dict[str, Any]:
        return {"settings": self.model_dump()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        GuardedEmbeddings.__init__(self, **state["settings"])


def _joined(parts: list[np.ndarray]) -> list[list[float]]:
    vectors: list[list[float]] = [row for part in parts for row in as_lists(part)]
    return vectors
