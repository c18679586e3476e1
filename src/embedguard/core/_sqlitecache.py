"""SQLite backend of the per-text cache (see :mod:`embedguard.core.cache`)."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Self

import numpy as np

from ._cachecodec import CHUNK, CacheStats, check_key, decode, encode, positive
from .errors import ConfigurationError

__all__ = ["SqliteCache"]


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
        positive(max_entries, "max_entries", optional=True)
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
        keys = [check_key(k) for k in keys]
        rows: dict[bytes, tuple[object, object]] = {}
        distinct = list(dict.fromkeys(keys))
        with self._lock:
            conn = self._open()
            for start in range(0, len(distinct), CHUNK):
                chunk = distinct[start : start + CHUNK]
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
        encoded = [encode(k, v) for k, v in items]
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
    return decode(blob)
