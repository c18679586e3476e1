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
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Self, runtime_checkable
from urllib.parse import parse_qsl

import numpy as np

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
_LE_F4 = np.dtype("<f4")
_CHUNK = 500  # keys per SELECT, well under SQLite's bound-parameter limit
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
        kind: ``"document"`` or ``"query"`` (some models embed them differently).
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
        if self.kind not in _KINDS:
            raise ConfigurationError(
                f"must be one of {_KINDS}, got {self.kind!r}", field="cache.kind"
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
        differ), as are the Azure deployment and, when given, the resolved ``endpoint``: two
        servers may serve different weights under one model name.
        """
        extra = [(f"body.{k}", json.dumps(v)) for k, v in profile.extra_body.items()]
        if profile.deployment:
            extra.append(("deployment", profile.deployment))
        if endpoint:
            extra.append(("endpoint", endpoint))
        return cls(
            profile.provider, profile.model, profile.dimensions, kind=kind, extra=tuple(extra)
        )

    def key(self, text: str) -> bytes:
        """The 32-byte cache key of ``text`` in this namespace."""
        return hashlib.blake2b(self._prefix + _field(text.encode()), digest_size=32).digest()

    def keys(self, texts: Sequence[str]) -> list[bytes]:
        """The keys of ``texts``, in order."""
        return [self.key(t) for t in texts]


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counts since the cache object was created (``entries`` is the size now).

    Attributes:
        hits: Keys found by ``get_many``.
        misses: Keys not found (or found unreadable).
        entries: Vectors stored now.
        evictions: Vectors removed to respect the bounds.
    """

    hits: int
    misses: int
    entries: int
    evictions: int

    @property
    def hit_rate(self) -> float:
        """``hits / (hits + misses)``, or 0.0 before any lookup."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


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


def _check_key(key: object) -> bytes:
    if not isinstance(key, bytes):
        raise TypeError(f"cache keys are bytes, got {type(key).__name__}")
    return key


def _encode(key: object, vector: object) -> tuple[bytes, int, bytes]:
    """``(key, dims, little-endian float32 bytes)`` of one item; raises on a non-1-d vector."""
    array = np.asarray(vector)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"cache vectors are non-empty and 1-d, got shape {array.shape}")
    blob = np.ascontiguousarray(array, dtype=_LE_F4).tobytes()
    return _check_key(key), array.size, blob


def _decode(blob: bytes) -> np.ndarray:
    # A vector backed by immutable bytes: read-only, and it cannot be made writeable again.
    vector = np.frombuffer(blob, dtype=_LE_F4)
    if vector.dtype != np.float32:  # big-endian host: a native copy
        vector = vector.astype(np.float32)
        vector.setflags(write=False)
    return vector


def _positive(value: object, name: str, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if type(value) is not int or value < 1:
        raise ConfigurationError(f"must be a positive int, got {value!r}", field=name)


class MemoryCache:
    """A thread-safe, bounded LRU cache in this process.

    The least recently used entry goes first when ``max_entries`` or ``max_bytes`` (keys plus
    vector bytes, not Python overhead) would be exceeded; a vector bigger than ``max_bytes`` on
    its own is not stored. Each operation takes one lock, O(1) per key.
    """

    def __init__(self, max_entries: int = 100_000, *, max_bytes: int | None = None) -> None:
        _positive(max_entries, "max_entries")
        _positive(max_bytes, "max_bytes", optional=True)
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
        keys = [_check_key(k) for k in keys]
        with self._lock:
            self._check_open()
            blobs = [self._data.get(k) for k in keys]
            for key, blob in zip(keys, blobs, strict=True):
                if blob is not None:
                    self._data.move_to_end(key)
            hits = sum(b is not None for b in blobs)
            self._hits += hits
            self._misses += len(blobs) - hits
        return [None if b is None else _decode(b) for b in blobs]

    def put_many(self, items: Sequence[tuple[bytes, np.ndarray]]) -> None:
        """Store float32 copies, evicting least recently used entries past the bounds."""
        encoded = [_encode(k, v) for k, v in items]
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


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS vectors "
    "(key BLOB PRIMARY KEY, dims INTEGER NOT NULL, vector BLOB NOT NULL, created REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS vectors_created ON vectors (created)",
)


class SqliteCache:
    """A cache in one SQLite file, shared safely by the threads and processes of one machine.

    The file uses WAL mode (readers never block the writer) and waits up to ``timeout`` seconds
    for another writer's lock. Vectors are stored as little-endian float32 blobs; a row whose blob
    does not match its ``dims`` is read as a miss (and replaced by the next put). With
    ``max_entries``, each put removes the oldest rows (by insertion time) beyond the bound.
    Network file systems are not supported (SQLite's locking needs a local disk).

    Args:
        path: The database file; missing parent directories are created.
        max_entries: Keep at most this many rows; ``None`` for no bound.
        timeout: Seconds to wait for a lock held by another connection.
        clock: Wall-clock time source for the ``created`` column.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_entries: int | None = None,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        _positive(max_entries, "max_entries", optional=True)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ConfigurationError(f"must be a positive number, got {timeout!r}", field="timeout")
        self._path = Path(path).expanduser()
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()  # one connection, used by one thread at a time
        self._hits = self._misses = self._evictions = 0
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            self._path, timeout=timeout, isolation_level=None, check_same_thread=False
        )
        try:
            self._setup(self._conn, timeout)
        except BaseException:
            self._conn.close()
            raise

    @staticmethod
    def _setup(conn: sqlite3.Connection, timeout: float) -> None:
        # Switching to WAL needs a moment of exclusive access that the busy handler does not
        # always cover when several processes open a new file together: retry until `timeout`.
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL").fetchone()
                conn.execute("PRAGMA synchronous=NORMAL")
                for statement in _SCHEMA:
                    conn.execute(statement)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.2)

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @property
    def max_entries(self) -> int | None:
        """The row bound, if any."""
        return self._max_entries

    def get_many(self, keys: Sequence[bytes]) -> list[np.ndarray | None]:
        """The vector of each key, or ``None``; one ``SELECT`` per 500 distinct keys."""
        keys = [_check_key(k) for k in keys]
        rows: dict[bytes, tuple[object, object]] = {}
        distinct = list(dict.fromkeys(keys))
        with self._lock:
            conn = self._open()
            for start in range(0, len(distinct), _CHUNK):
                chunk = distinct[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                query = f"SELECT key, dims, vector FROM vectors WHERE key IN ({marks})"
                rows.update((k, (d, v)) for k, d, v in conn.execute(query, chunk))
            out = [_row_vector(*rows[k]) if k in rows else None for k in keys]
            hits = sum(v is not None for v in out)
            self._hits += hits
            self._misses += len(out) - hits
        return out

    def put_many(self, items: Sequence[tuple[bytes, np.ndarray]]) -> None:
        """Insert or replace every item in one transaction, then prune past ``max_entries``."""
        encoded = [_encode(k, v) for k, v in items]
        if not encoded:
            return
        now = self._clock()
        with self._write() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO vectors (key, dims, vector, created) VALUES (?, ?, ?, ?)",
                [(key, dims, blob, now) for key, dims, blob in encoded],
            )
            if self._max_entries is not None:
                (count,) = conn.execute("SELECT COUNT(*) FROM vectors").fetchone()
                excess = count - self._max_entries
                if excess > 0:
                    conn.execute(
                        "DELETE FROM vectors WHERE rowid IN (SELECT rowid FROM vectors "
                        "ORDER BY created, rowid LIMIT ?)",
                        (excess,),
                    )
                    self._evictions += excess

    def stats(self) -> CacheStats:
        """This object's hits, misses and evictions, and the rows in the file now."""
        with self._lock:
            (entries,) = self._open().execute("SELECT COUNT(*) FROM vectors").fetchone()
            return CacheStats(self._hits, self._misses, int(entries), self._evictions)

    def clear(self) -> None:
        """Delete every row (for every process using the file)."""
        with self._write() as conn:
            conn.execute("DELETE FROM vectors")

    def close(self) -> None:
        """Close the connection; later use raises :class:`~embedguard.ConfigurationError`."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else f"max_entries={self._max_entries}"
        return (
            f"SqliteCache({str(self._path)!r}, {state}, hits={self._hits}, misses={self._misses})"
        )

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ConfigurationError("the cache is closed", field="cache")
        return self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock up front, so the busy timeout applies (a read
        # transaction upgraded to a write one would fail at once with "database is locked").
        with self._lock:
            conn = self._open()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")


def _row_vector(dims: object, blob: object) -> np.ndarray | None:
    if type(dims) is not int or dims < 1 or not isinstance(blob, bytes) or len(blob) != 4 * dims:
        return None  # corrupt or written by something else: a miss, never a wrong vector
    return _decode(blob)


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
