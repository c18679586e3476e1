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

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr

from embedguard._extras import require
from embedguard.core.client import EmbeddingClient
from embedguard.core.config import ProviderProfile

from ._shared import ClientHealth, resolve, take_source

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

    Build it from a profile, from a client, or from LangChain-style keywords::

        GuardedEmbeddings(profiles.mistral())
        GuardedEmbeddings(EmbeddingClient(profile, api_key=key))
        GuardedEmbeddings(model="text-embedding-3-large", dimensions=1024, api_key="sk-...")

    Settings are frozen after construction (the client is built from them once). The key is a
    ``SecretStr`` left out of ``repr``, ``model_dump`` and pickles: unpickling builds a new
    client and reads the key from the environment again. A copy (``copy.copy``,
    ``copy.deepcopy``) shares the client: its connections, breaker and metrics.

    Args:
        source: A :class:`~embedguard.ProviderProfile` or an :class:`~embedguard.EmbeddingClient`
            (positional), or ``None`` to build the profile from the keywords.
        client: An :class:`~embedguard.EmbeddingClient` to use (you keep its settings).
        provider: A built-in profile name (``openai``, ``azure``, ``mistral``, ``ollama``,
            ``openai_compatible``); default ``openai``, or the profile's.
        model: The model name; default: the profile's.
        api_key: The key; default: read now from the provider's variable (``OPENAI_API_KEY``,
            ``AZURE_OPENAI_API_KEY``, ``MISTRAL_API_KEY``, or the profile's ``api_key_env``).
        base_url: The endpoint root; default: the profile's, else the provider's variable.
        dimensions: The output vector size; default: the profile's.
        profile: A profile (keyword form of ``source``); the keywords above override it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    provider: str = Field(description="The profile's provider (wire format).")
    model: str = Field(description="The model name sent to the provider.")
    base_url: str | None = Field(None, description="The endpoint root (None: env or default).")
    dimensions: int | None = Field(None, description="The output size (None: learned).")
    api_key: SecretStr | None = Field(None, exclude=True, repr=False)
    profile: ProviderProfile = Field(description="The full profile the client was built with.")

    _client: EmbeddingClient = PrivateAttr()

    def __init__(
        self,
        source: ProviderProfile | EmbeddingClient | None = None,
        /,
        *,
        client: EmbeddingClient | None = None,
        **settings: Any,
    ) -> None:
        client = take_source(source, client, settings, type(self).model_fields)
        super().__init__(**resolve(settings, client))
        self._client = client or EmbeddingClient(self.profile, api_key=self.api_key)

    # -- LangChain's interface -----------------------------------------------------------
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed ``texts``: one vector per text, in order."""
        vectors: list[list[float]] = self._client.embed(texts).tolist()
        return vectors

    def embed_query(self, text: str) -> list[float]:
        """Embed one query text."""
        vector: list[float] = self._client.embed_query(text).tolist()
        return vector

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Async :meth:`embed_documents` (batches run concurrently, bounded by the profile)."""
        vectors: list[list[float]] = (await self._client.aembed(texts)).tolist()
        return vectors

    async def aembed_query(self, text: str) -> list[float]:
        """Async :meth:`embed_query`."""
        vector: list[float] = (await self._client.aembed_query(text)).tolist()
        return vector

    # -- copies and pickles: never the key, never the client's sockets -------------------------
    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        return self.model_copy()  # every field is immutable; the client is a shared resource

    def __getstate__(self) -> dict[str, Any]:
        return {"settings": self.model_dump()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        GuardedEmbeddings.__init__(self, **state["settings"])
