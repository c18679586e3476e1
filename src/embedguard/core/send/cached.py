"""The client's use of a per-text cache: look up a call's texts, store what was fetched.

Vectors are stored under the namespace of the endpoint that produced them: rows a fallback of
another model embedded never land under the primary's key.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import numpy as np

from .. import usage
from ..cache import CacheNamespace, EmbeddingCache
from ..config import ProviderProfile
from ..metrics import MetricsCollector
from .groups import Group, GroupResult, Ref

logger = logging.getLogger("embedguard")

# A cache that fails (disk full, locked file) must never fail an embedding call.
_CACHE_ERRORS = (sqlite3.Error, OSError)


class CacheView:
    """Cache lookups and stores for one client, with hits and misses counted in its metrics."""

    def __init__(
        self,
        store: EmbeddingCache,
        chain: Sequence[tuple[ProviderProfile, str]],
        metrics: MetricsCollector,
        *,
        owned: bool,
    ) -> None:
        self._store = store
        self._owned = owned
        self._metrics = metrics
        # One namespace per endpoint of the chain (primary first) and kind of text.
        self._chain = list(chain)
        self._spaces = [
            {kind: _namespace(profile, url, kind) for kind in ("document", "query")}
            for profile, url in chain
        ]
        self._dimensions = chain[0][0].dimensions
        self.owner: Callable[[], object] | None = None  # the client, for usage blocks on it

    def lookup(self, texts: Sequence[str], tokens: Sequence[int], kind: str) -> dict[int, Ref]:
        """Refs for the texts found in the cache, keyed by their position in ``texts``."""
        try:
            found = self._store.get_many(self._space(0, kind).keys(texts))
        except _CACHE_ERRORS as exc:
            logger.warning("cache lookup failed, sending every text: %s", exc)
            found = [None] * len(texts)
        hits = [
            i
            for i, v in enumerate(found)
            if v is not None and (self._dimensions is None or v.shape == (self._dimensions,))
        ]
        saved = sum(tokens[i] for i in hits)
        self._metrics.record_cache(
            hits=len(hits), misses=len(texts) - len(hits), tokens_saved=saved
        )
        if usage.owners or usage.tracking.get():
            usage.record(cached=len(hits), owner=self.owner() if self.owner else None)
        if not hits:
            return {}
        future: Future[GroupResult] = Future()
        future.set_result(GroupResult(np.stack([found[i] for i in hits])))  # type: ignore[misc]
        return {i: (future, row) for row, i in enumerate(hits)}

    def store(self, group: Group, result: GroupResult) -> None:
        """Keep every vector the group fetched (rows that failed are skipped), each under the
        namespace of the endpoint that embedded it."""
        vectors = result.vectors
        if vectors is None:
            return
        items = []
        for i, text in enumerate(group.texts):
            if i not in result.failed:
                space = self._space(result.served.get(i, 0), group.kind)
                items.append((space.key(text), vectors[i]))
        try:
            self._store.put_many(items)
        except _CACHE_ERRORS as exc:
            logger.warning("cache store failed: %s", exc)

    def _space(self, endpoint: int, kind: str) -> CacheNamespace:
        spaces = self._spaces[endpoint]
        space = spaces.get(kind)
        if space is None:  # a provider's input type given per call
            profile, url = self._chain[endpoint]
            space = spaces[kind] = _namespace(profile, url, kind)
        return space

    def close(self) -> None:
        """Close the store when the client opened it."""
        if self._owned:
            self._store.close()


def _namespace(profile: ProviderProfile, url: str, kind: str) -> CacheNamespace:
    # Servers that host any weights under a name get their URL in the key as well.
    endpoint = url if profile.provider in ("ollama", "openai_compatible") else None
    return CacheNamespace.for_profile(profile, kind=kind, endpoint=endpoint)
