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

import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

if _TYPE_CHECKING:  # the names below load on first use (PEP 562): `import embedguard` stays cheap
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

_HOMES = {
    **dict.fromkeys(["CircuitBreaker", "CircuitState"], ".core.breaker"),
    "EmbeddingClient": ".core.client",
    **dict.fromkeys(
        ["BatchPolicy", "BreakerPolicy", "CompressionPolicy", "ProviderProfile", "RateLimit",
         "RetryPolicy", "Timeouts"],
        ".core.config",
    ),
    **dict.fromkeys(["MetricsCollector", "MetricsSnapshot"], ".core.metrics"),
}  # fmt: skip


def __getattr__(name: str) -> _Any:
    """Load a public name on first use (errors and the version included)."""
    if name == "__version__":
        from importlib import metadata

        try:
            version = metadata.version("embedguard")
        except metadata.PackageNotFoundError:  # pragma: no cover - a tree without metadata
            version = "0+unknown"
        globals()[name] = version
        return version
    if name == "profiles":
        value: _Any = _importlib.import_module(".core.profiles", __name__)
        globals()[name] = value
        return value
    home = _HOMES.get(name, ".core.errors" if name in __all__ else None)
    if home is None:
        raise AttributeError(f"module 'embedguard' has no attribute {name!r}")
    value = getattr(_importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


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
