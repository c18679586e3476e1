"""The client's use of a per-text cache: look up a plan's units, store what was fetched."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from concurrent.futures import Future

import numpy as np

from . import usage
from ._flight import Group, GroupResult, Ref
from .cache import CacheNamespace, EmbeddingCache
from .config import ProviderProfile
from .metrics import MetricsCollector
from .providers.base import Codec

logger = logging.getLogger("embedguard")

# A cache that fails (disk full, locked file) must never fail an embedding call.
_CACHE_ERRORS = (sqlite3.Error, OSError)


class CacheView:
    """Cache lookups and stores for one client, with hits and misses counted in its metrics."""

    def __init__(
        self,
        store: EmbeddingCache,
        profile: ProviderProfile,
        codec: Codec,
        metrics: MetricsCollector,
        *,
        owned: bool,
    ) -> None:
        # Servers that host any weights under a name get their URL in the key as well.
        endpoint = getattr(codec, "url", None)
        if profile.provider not in ("ollama", "openai_compatible"):
            endpoint = None
        self._store = store
        self._owned = owned
        self._metrics = metrics
        self._spaces = {
            kind: CacheNamespace.for_profile(profile, kind=kind, endpoint=endpoint)
            for kind in ("document", "query")
        }
        self._dimensions = profile.dimensions

    def lookup(self, texts: Sequence[str], tokens: Sequence[int], kind: str) -> dict[int, Ref]:
        """Refs for the texts found in the cache, keyed by their position in ``texts``."""
        try:
            found = self._store.get_many(self._spaces[kind].keys(texts))
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
        usage.record(cached=len(hits))
        if not hits:
            return {}
        future: Future[GroupResult] = Future()
        future.set_result(GroupResult(np.stack([found[i] for i in hits])))  # type: ignore[misc]
        return {i: (future, row) for row, i in enumerate(hits)}

    def store(self, group: Group, result: GroupResult) -> None:
        """Keep every vector the group fetched (rows that failed are skipped)."""
        if result.vectors is None:
            return
        rows = [i for i in range(len(group.texts)) if i not in result.failed]
        keys = self._spaces[group.kind].keys([group.texts[i] for i in rows])
        try:
            self._store.put_many(list(zip(keys, result.vectors[rows], strict=True)))
        except _CACHE_ERRORS as exc:
            logger.warning("cache store failed: %s", exc)

    def close(self) -> None:
        """Close the store when the client opened it."""
        if self._owned:
            self._store.close()
