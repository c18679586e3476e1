"""An optional per-text embedding cache: in memory (bounded LRU) or on disk (SQLite).

Off by default. A cache maps a 32-byte key to one float32 vector. The key is a BLAKE2b hash of
everything that changes a vector (a :class:`CacheNamespace`: provider, model, dimensions, dtype,
kind, extra request fields) plus the text, so the same text under another model, size or kind never
hits. Vectors come back bit-exact and read-only::

    cache = open_cache("memory://?max_entries=50000")     # or "sqlite:///var/cache/emb.db"
    ns = CacheNamespace("openai", "text-embedding-3-small", 1536)
    cache.put_many([(ns.key("hello"), vector)])
    [hit] = cache.get_many([ns.key("hello")])           # the same float32 values, or None

How the client uses it (partial hits are the normal case):

1. It plans the call as usual (validate, dedupe, truncate or chunk) and looks up the plan's
   *units*, the texts actually sent: a truncated input is cached under its prefix, a chunked one
   under its pieces, and averaging happens after the lookup exactly as without a cache.
2. ``keys = CacheNamespace.for_profile(profile, kind=...).keys(plan.units)``, then one
   ``get_many(keys)``. A cached vector whose length differs from the client's known dimensions
   counts as a miss.
3. Only the misses are batched and sent. Tokens, cost, items and rate-limit reservations are
   recorded for the misses only; when everything hits, no request is made and the breaker is not
   consulted.
4. Each cached vector is placed at its own unit's position and each fresh vector at its own, then
   :meth:`~embedguard.core.planning.Plan.assemble` fans units out to inputs, so a partial hit can
   never shift vectors between inputs.
5. Fresh vectors are stored with ``put_many`` as each batch succeeds (validated vectors only), so
   repeating a call that failed part-way re-sends only what failed.
6. A cache opened by the client from a spec string is closed with the client; an instance passed in
   stays the caller's to close (it may be shared between clients).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qsl

import numpy as np

from ._cachecodec import CacheStats, check_key, decode, encode, positive
from ._sqlitecache import SqliteCache
from .config import ProviderProfile
from .errors import ConfigurationError

__all__ = [
    "CacheNamespace",
    "CacheStats",
    "EmbeddingCache",
    "MemoryCache",
    "SqliteCache",
    "open_cache",
]

_KINDS = ("document", "query")
_KEY_FORMAT = b"embedguard.cache/1"  # bump when the key encoding changes
CHUNK = 500  # keys per SELECT, well under SQLite's bound-parameter limit
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(8, "big") + data


@dataclass(frozen=True, slots=True)
class CacheNamespace:
    """Everything that changes a vector except the text.

    Attributes:
        provider: The wire format or runtime (``openai``, ``azure``...).
        model: The model name.
        dimensions: The requested output size; ``None`` for the model's native size.
        dtype: The stored element type.
        kind: ``"document"``, ``"query"`` (some models embed them differently) or a provider's
            input type given per call.
        extra: Other request fields that change vectors, as ``(key, value)`` strings; stored
            sorted, so the order given does not matter.
    """

    provider: str
    model: str
    dimensions: int | None
    dtype: str = "float32"
    kind: str = "document"
    extra: tuple[tuple[str, str], ...] = ()
    _prefix: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("provider", "model", "dtype"):
            if not isinstance(getattr(self, name), str):
                raise ConfigurationError("must be a str", field=f"cache.{name}")
        if not isinstance(self.kind, str) or not self.kind:
            raise ConfigurationError(
                f"must be {_KINDS[0]!r}, {_KINDS[1]!r} or a provider's input type, got "
                f"{self.kind!r}",
                field="cache.kind",
            )
        dims = self.dimensions
        if dims is not None and (type(dims) is not int or dims < 1):
            raise ConfigurationError(
                f"must be None or >= 1, got {dims!r}", field="cache.dimensions"
            )
        pairs = tuple(self.extra)
        if not all(
            isinstance(p, tuple) and len(p) == 2 and all(isinstance(s, str) for s in p)
            for p in pairs
        ):
            raise ConfigurationError("must be (str, str) pairs", field="cache.extra")
        object.__setattr__(self, "extra", tuple(sorted(pairs)))
        # Every field is length-prefixed, so no choice of strings can make two namespaces (or a
        # namespace and a text) run into each other.
        parts = [_KEY_FORMAT, *(s.encode() for s in (self.provider, self.model, self.dtype))]
        parts += [b"-" if dims is None else str(dims).encode(), self.kind.encode()]
        parts.append(len(self.extra).to_bytes(8, "big"))
        parts += [s.encode() for pair in self.extra for s in pair]
        object.__setattr__(self, "_prefix", b"".join(_field(p) for p in parts))

    @classmethod
    def for_profile(
        cls, profile: ProviderProfile, *, kind: str = "document", endpoint: str | None = None
    ) -> CacheNamespace:
        """The namespace of a profile's vectors.

        ``extra_body`` fields are included with JSON-typed values (``1``, ``"1"`` and ``true``
        differ; nested keys in any order are equal), as are the Azure deployment, the input
        type and prefix the profile sets for ``kind``, and, when given, the resolved
        ``endpoint``: two servers may serve different weights under one model name. The
        profile's ``dtype`` is the namespace's.
        """
        extra = [
            (f"body.{k}", json.dumps(v, sort_keys=True)) for k, v in profile.extra_body.items()
        ]
        if chosen := profile.input_type_for(kind):
            extra.append(("input_type", chosen))
        if prefix := profile.prefix_for(kind):
            extra.append(("prefix", prefix))
        if profile.deployment:
            extra.append(("deployment", profile.deployment))
        if endpoint:
            extra.append(("endpoint", endpoint))
        return cls(
            profile.provider,
            profile.model,
            profile.dimensions,
            dtype=profile.dtype,
            kind=kind,
            extra=tuple(extra),
        )

    def key(self, text: str) -> bytes:
        """The 32-byte cache key of ``text`` in this namespace."""
        return hashlib.blake2b(self._prefix + _field(text.encode()), digest_size=32).digest()

    def keys(self, texts: Sequence[str]) -> list[bytes]:
        """The keys of ``texts``, in order."""
        return [self.key(t) for t in texts]


@runtime_checkable
class EmbeddingCache(Protocol):
    """What the client needs from a cache; implement it to plug in any store."""

    def get_many(self, keys: Sequence[bytes]) -> list[np.ndarray | None]:
        """One read-only float32 1-d vector, or ``None``, per key, in order."""
        ...

    def put_many(self, items: Sequence[tuple[bytes, np.ndarray]]) -> None:
        """Store (or replace) a vector per key."""
        ...

    def stats(self) -> CacheStats:
        """Hits, misses, entries and evictions."""
        ...

    def clear(self) -> None:
        """Remove every entry (counters are kept)."""
        ...

    def close(self) -> None:
        """Release resources; later calls raise. Idempotent."""
        ...


class MemoryCache:
    """A thread-safe, bounded LRU cache in this process.

    The least recently used entry goes first when ``max_entries`` or ``max_bytes`` (keys plus
    vector bytes, not Python overhead) would be exceeded; a vector bigger than ``max_bytes`` on
    its own is not stored. Each operation takes one lock, O(1) per key.
    """

    def __init__(self, max_entries: int = 100_000, *, max_bytes: int | None = None) -> None:
        positive(max_entries, "max_entries")
        positive(max_bytes, "max_bytes", optional=True)
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._data: OrderedDict[bytes, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._bytes = self._hits = self._misses = self._evictions = 0
        self._closed = False

    @property
    def max_entries(self) -> int:
        """The entry bound."""
        return self._max_entries

    @property
    def max_bytes(self) -> int | None:
        """The byte bound, if any."""
        return self._max_bytes

    def get_many(self, keys: Sequence[bytes]) -> list[np.ndarray | None]:
        """The vector of each key (marked most recently used), or ``None``."""
        keys = [check_key(k) for k in keys]
        with self._lock:
            self._check_open()
            blobs = [self._data.get(k) for k in keys]
            for key, blob in zip(keys, blobs, strict=True):
                if blob is not None:
                    self._data.move_to_end(key)
            hits = sum(b is not None for b in blobs)
            self._hits += hits
            self._misses += len(blobs) - hits
        return [None if b is None else decode(b) for b in blobs]

    def put_many(self, items: Sequence[tuple[bytes, np.ndarray]]) -> None:
        """Store float32 copies, evicting least recently used entries past the bounds."""
        encoded = [encode(k, v) for k, v in items]
        with self._lock:
            self._check_open()
            data = self._data
            for key, _, blob in encoded:
                size = len(key) + len(blob)
                old = data.pop(key, None)
                if old is not None:
                    self._bytes -= len(key) + len(old)
                if self._max_bytes is not None and size > self._max_bytes:
                    continue
                data[key] = blob
                self._bytes += size
                while len(data) > self._max_entries or (
                    self._max_bytes is not None and self._bytes > self._max_bytes
                ):
                    gone, gone_blob = data.popitem(last=False)
                    self._bytes -= len(gone) + len(gone_blob)
                    self._evictions += 1

    def stats(self) -> CacheStats:
        """Counts taken atomically."""
        with self._lock:
            return CacheStats(self._hits, self._misses, len(self._data), self._evictions)

    def clear(self) -> None:
        """Remove every entry."""
        with self._lock:
            self._data.clear()
            self._bytes = 0

    def close(self) -> None:
        """Drop the entries; later use raises :class:`~embedguard.ConfigurationError`."""
        with self._lock:
            self._closed = True
            self._data.clear()
            self._bytes = 0

    def _check_open(self) -> None:
        if self._closed:
            raise ConfigurationError("the cache is closed", field="cache")

    def __repr__(self) -> str:
        s = self.stats()
        return (
            f"MemoryCache(entries={s.entries}/{self._max_entries}, bytes={self._bytes}, "
            f"hits={s.hits}, misses={s.misses}, evictions={s.evictions})"
        )


def open_cache(spec: str | os.PathLike[str] | EmbeddingCache | None) -> EmbeddingCache | None:
    """Build a cache from a spec.

    ``None`` -> no cache; ``"memory"`` or ``"memory://?max_entries=1000&max_bytes=..."`` ->
    :class:`MemoryCache`; ``"sqlite:///abs/path.db?max_entries=...&timeout=..."`` (three slashes
    for an absolute path, two for a relative one) or a path ending ``.db``, ``.sqlite`` or
    ``.sqlite3`` -> :class:`SqliteCache`; an :class:`EmbeddingCache` -> itself.

    Raises:
        ConfigurationError: Any other value, or a file that cannot be opened (``field="cache"``).
    """
    if spec is None:
        return None
    if isinstance(spec, EmbeddingCache):
        return spec
    try:
        cache = _from_text(os.fspath(spec) if isinstance(spec, os.PathLike) else spec)
    except ConfigurationError as exc:
        reason = exc.reason if exc.field in (None, "cache") else f"{exc.field}: {exc.reason}"
        raise ConfigurationError(reason, field="cache") from None
    except (OSError, sqlite3.Error) as exc:
        raise ConfigurationError(f"cannot open {spec!r}: {exc}", field="cache") from exc
    if cache is None:
        shown = repr(spec) if len(repr(spec)) <= 80 else repr(spec)[:77] + "..."
        raise ConfigurationError(
            "expected None, 'memory', 'memory://?max_entries=N', 'sqlite:///path.db', a path "
            f"ending .db/.sqlite/.sqlite3, or an EmbeddingCache; got {shown}",
            field="cache",
        )
    return cache


def _from_text(spec: object) -> EmbeddingCache | None:
    if not isinstance(spec, str):
        return None
    if spec in ("memory", "memory://") or spec.startswith("memory://?"):
        options = _options(spec.partition("?")[2], {"max_entries", "max_bytes"})
        return MemoryCache(options.get("max_entries", 100_000), max_bytes=options.get("max_bytes"))
    if spec.startswith("sqlite://"):
        path, _, query = spec.removeprefix("sqlite://").partition("?")
        if not path:
            raise ConfigurationError(f"no file path in {spec!r}", field="cache")
        options = _options(query, {"max_entries", "timeout"})
        return SqliteCache(path, **options)
    if spec.lower().endswith(_SQLITE_SUFFIXES):
        return SqliteCache(spec)
    return None


def _options(query: str, allowed: set[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ConfigurationError(f"malformed options {query!r}", field="cache") from None
    for name, value in pairs:
        if name not in allowed or name in options:
            raise ConfigurationError(
                f"unknown or repeated option {name!r} (allowed: {sorted(allowed)})", field="cache"
            )
        try:
            options[name] = float(value) if name == "timeout" else int(value)
        except ValueError:
            raise ConfigurationError(
                f"{name} must be a number, got {value!r}", field="cache"
            ) from None
    return options
