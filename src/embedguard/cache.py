"""Per-text embedding caches (a stable public module).

Pass ``cache="memory"``, ``cache="sqlite:///path.db"`` or one of these objects to
``EmbeddingClient``; cached texts are neither sent nor billed.
"""

from .core.cache import (
    CacheNamespace,
    CacheStats,
    EmbeddingCache,
    MemoryCache,
    SqliteCache,
    open_cache,
)

__all__ = [
    "CacheNamespace",
    "CacheStats",
    "EmbeddingCache",
    "MemoryCache",
    "SqliteCache",
    "open_cache",
]
