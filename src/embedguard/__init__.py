"""embedguard: a resilient, observable embeddings client.

One pipeline (batching, bounded concurrency, retries, a circuit breaker, rate limits, gzip,
deduplication, validation and metrics) for OpenAI, Azure OpenAI, Mistral, Ollama, any
OpenAI-compatible server and in-process models, with drop-in LangChain and LlamaIndex adapters
in :mod:`embedguard.adapters`.

Example::

    from embedguard import EmbeddingClient, profiles

    client = EmbeddingClient(profiles.openai("text-embedding-3-small"))
    vectors = client.embed(["first text", "second text"])   # float32, one row per text, in order
    print(client.metrics().format())
"""

from importlib import metadata as _metadata

from .core import profiles
from .core.breaker import CircuitBreaker, CircuitState
from .core.client import EmbeddingClient
from .core.config import (
    BatchPolicy,
    BreakerPolicy,
    CompressionPolicy,
    ProviderProfile,
    RateLimit,
    RetryPolicy,
    Timeouts,
)
from .core.errors import (
    AuthenticationError,
    BadRequestError,
    CircuitOpenError,
    ConfigurationError,
    ContextLengthError,
    EmbedGuardError,
    EndpointNotFoundError,
    InputValidationError,
    ModelNotFoundError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    QuotaExhaustedError,
    RateLimitError,
    ResponseValidationError,
    ServerError,
)
from .core.metrics import MetricsCollector, MetricsSnapshot

try:
    __version__ = _metadata.version("embedguard")
except _metadata.PackageNotFoundError:  # pragma: no cover - a source tree without metadata
    __version__ = "0+unknown"

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "BatchPolicy",
    "BreakerPolicy",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "CompressionPolicy",
    "ConfigurationError",
    "ContextLengthError",
    "EmbedGuardError",
    "EmbeddingClient",
    "EndpointNotFoundError",
    "InputValidationError",
    "MetricsCollector",
    "MetricsSnapshot",
    "ModelNotFoundError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderProfile",
    "ProviderTimeoutError",
    "QuotaExhaustedError",
    "RateLimit",
    "RateLimitError",
    "ResponseValidationError",
    "RetryPolicy",
    "ServerError",
    "Timeouts",
    "profiles",
]
