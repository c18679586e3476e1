"""The embedding cache: keys, the in-memory LRU, the SQLite store and open_cache."""

from __future__ import annotations

import hashlib
import multiprocessing
import sqlite3
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embedguard.core.cache import (
    CacheNamespace,
    CacheStats,
    EmbeddingCache,
    MemoryCache,
    SqliteCache,
    open_cache,
)
from embedguard.core.config import ProviderProfile
from embedguard.core.errors import ConfigurationError

NS = CacheNamespace("openai", "text-embedding-3-small", 1536)


def vec(key: bytes, d: int = 8) -> np.ndarray:
    """A float32 vector derived from ``key``: arbitrary bit patterns (NaN payloads, -0.0...)."""
    raw = hashlib.shake_256(key).digest(4 * d)
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


def k(i: int) -> bytes:
    return NS.key(f"text {i}")


def same_bits(a: np.ndarray | None, b: np.ndarray) -> bool:
    return a is not None and a.dtype == np.float32 and a.tobytes() == b.tobytes()


# -- CacheNamespace ------------------------------------------------------------------------------
def test_key_is_stable_across_runs() -> None:
    """The key encoding is pinned: a known namespace and text give a known digest."""
    ns = CacheNamespace("openai", "text-embedding-3-small", 256, extra=(("user", "x"),))
    assert ns.key("hello world").hex() == (
        "fce22730f84391b0f1a9a7660d3a00a2a4e8284e1567174259aa0fe8a82a6dc7"
    )
    assert len(ns.key("hello world")) == 32


@pytest.mark.parametrize(
    "other",
    [
        CacheNamespace("azure", "text-embedding-3-small", 1536),
        CacheNamespace("openai", "text-embedding-3-large", 1536),
        CacheNamespace("openai", "text-embedding-3-small", 512),
        CacheNamespace("openai", "text-embedding-3-small", None),
        CacheNamespace("openai", "text-embedding-3-small", 1536, kind="query"),
        CacheNamespace("openai", "text-embedding-3-small", 1536, dtype="float16"),
        CacheNamespace("openai", "text-embedding-3-small", 1536, extra=(("truncate", "END"),)),
    ],
)
def test_namespaces_isolate_the_same_text(other: CacheNamespace) -> None:
    """The same text under another provider/model/dimensions/kind/dtype/extra gets another key."""
    assert other.key("same text") != NS.key("same text")
    assert CacheNamespace("openai", "text-embedding-3-small", 1536).key("same text") == NS.key(
        "same text"
    )


def test_key_encoding_has_no_separator_ambiguity() -> None:
    """Moving characters between fields (or into the text) always changes the key."""
    assert CacheNamespace("a", "bc", 1).key("t") != CacheNamespace("ab", "c", 1).key("t")
    assert CacheNamespace("p", "m", None).key("x") != CacheNamespace("p", "mx", None).key("")
    one = CacheNamespace("p", "m", 1, extra=(("a", "bc"),))
    two = CacheNamespace("p", "m", 1, extra=(("ab", "c"),))
    assert one.key("t") != two.key("t")
    assert NS.key("a") != NS.key("a ") and NS.key("é") != NS.key("e\u0301")


def test_extra_order_does_not_matter() -> None:
    """``extra`` is stored sorted, so the same pairs in any order give the same namespace."""
    a = CacheNamespace("p", "m", 1, extra=(("x", "1"), ("a", "2")))
    b = CacheNamespace("p", "m", 1, extra=(("a", "2"), ("x", "1")))
    assert a == b and a.key("t") == b.key("t") and a.extra == (("a", "2"), ("x", "1"))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kind": ""}, "cache.kind"),
        ({"dimensions": 0}, "cache.dimensions"),
        ({"extra": (("a", 1),)}, "cache.extra"),
        ({"model": None}, "cache.model"),
    ],
)
def test_invalid_namespace_is_rejected(kwargs: dict[str, Any], field: str) -> None:
    """A bad kind, size, extra pair or field type raises ConfigurationError naming it."""
    args: dict[str, Any] = {"provider": "p", "model": "m", "dimensions": 8} | kwargs
    with pytest.raises(ConfigurationError) as info:
        CacheNamespace(**args)
    assert info.value.field == field


def test_for_profile_covers_what_changes_vectors() -> None:
    """Profiles differing in extra_body (typed), deployment, endpoint or size get other keys."""
    base = ProviderProfile(provider="ollama", model="nomic-embed-text")
    keys = {
        CacheNamespace.for_profile(p, endpoint=e).key("t")
        for p, e in [
            (base, None),
            (base, "http://other:11434"),
            (base.model_copy(update={"extra_body": {"truncate": True}}), None),
            (base.model_copy(update={"extra_body": {"truncate": "true"}}), None),
            (base.model_copy(update={"dimensions": 256}), None),
        ]
    }
    assert len(keys) == 5
    query = CacheNamespace.for_profile(base, kind="query")
    assert query.kind == "query" and query.key("t") != CacheNamespace.for_profile(base).key("t")


# -- MemoryCache ---------------------------------------------------------------------------------
def test_memory_round_trip_is_bit_exact_and_read_only() -> None:
    """Stored vectors come back with the same bits, 1-d float32, and cannot be modified."""
    cache = MemoryCache()
    items = [(k(i), vec(k(i), d=16)) for i in range(20)]
    cache.put_many(items)
    got = cache.get_many([key for key, _ in items])
    assert all(same_bits(g, v) for g, (_, v) in zip(got, items, strict=True))
    first = got[0]
    assert first is not None and first.ndim == 1 and not first.flags.writeable
    with pytest.raises(ValueError):
        first[0] = 1.0
    with pytest.raises(ValueError):
        first.setflags(write=True)


def test_memory_stores_a_copy() -> None:
    """Changing the array after put_many does not change the cached vector; float64 -> float32."""
    cache = MemoryCache()
    source = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    cache.put_many([(k(1), source), (k(2), np.array([0.1, 0.2]))])
    source[:] = 0
    one, two = cache.get_many([k(1), k(2)])
    assert one is not None and one.tolist() == [1.0, 2.0, 3.0]
    assert same_bits(two, np.array([0.1, 0.2], dtype=np.float32))


def test_memory_lru_evicts_least_recently_used() -> None:
    """Past max_entries the least recently *used* entry goes, and evictions are counted."""
    cache = MemoryCache(max_entries=3)
    cache.put_many([(k(i), vec(k(i))) for i in (1, 2, 3)])
    cache.get_many([k(1)])  # 2 is now the oldest
    cache.put_many([(k(4), vec(k(4)))])
    assert [v is not None for v in cache.get_many([k(1), k(2), k(3), k(4)])] == [
        True, False, True, True,
    ]  # fmt: skip
    cache.put_many([(k(3), vec(k(3)))])  # replacing refreshes, does not evict
    cache.put_many([(k(5), vec(k(5)))])  # 1 is now the oldest
    assert cache.get_many([k(1)]) == [None]
    assert cache.stats() == CacheStats(hits=4, misses=2, entries=3, evictions=2)


def test_memory_bounds_bytes() -> None:
    """max_bytes bounds keys plus vector bytes; a vector bigger than the bound is not stored."""
    entry = 32 + 4 * 8  # key + 8 floats
    cache = MemoryCache(max_bytes=3 * entry)
    cache.put_many([(k(i), vec(k(i))) for i in range(5)])
    assert cache.stats().entries == 3 and cache.stats().evictions == 2
    assert [v is not None for v in cache.get_many([k(i) for i in range(5)])] == [
        False, False, True, True, True,
    ]  # fmt: skip
    cache.put_many([(k(9), vec(k(9), d=100))])
    assert cache.get_many([k(9)]) == [None] and cache.stats().entries == 3
    cache.put_many([(k(2), vec(k(2), d=16))])  # a bigger replacement pushes out the oldest
    assert cache.stats().entries == 2 and same_bits(cache.get_many([k(2)])[0], vec(k(2), d=16))


def test_memory_is_thread_safe() -> None:
    """32 threads mixing gets and puts: consistent counts, bounds kept, only correct vectors."""
    cache = MemoryCache(max_entries=200)
    rounds, per = 60, 10
    barrier = threading.Barrier(32)
    wrong: list[bytes] = []

    def work(t: int) -> None:
        barrier.wait()
        for r in range(rounds):
            keys = [k((t * 7 + r * 3 + j) % 500) for j in range(per)]
            for key, got in zip(keys, cache.get_many(keys), strict=True):
                if got is not None and not same_bits(got, vec(key)):
                    wrong.append(key)
            cache.put_many([(key, vec(key)) for key in keys[::2]])

    threads = [threading.Thread(target=work, args=(t,)) for t in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = cache.stats()
    assert not wrong
    assert stats.hits + stats.misses == 32 * rounds * per
    assert stats.hits > 0 and stats.entries == 200 and stats.evictions > 0


def test_memory_rejects_bad_input() -> None:
    """Bad bounds raise ConfigurationError; non-1-d vectors and non-bytes keys are refused."""
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigurationError):
            MemoryCache(max_entries=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        MemoryCache(max_bytes=0)
    cache = MemoryCache()
    with pytest.raises(ValueError, match="1-d"):
        cache.put_many([(k(1), np.zeros((2, 2), np.float32))])
    with pytest.raises(ValueError, match="1-d"):
        cache.put_many([(k(1), np.zeros(0, np.float32))])
    with pytest.raises(TypeError):
        cache.get_many(["text"])  # type: ignore[list-item]
    assert cache.stats() == CacheStats(0, 0, 0, 0)


def test_memory_clear_and_close() -> None:
    """clear() empties but keeps counts; after close() every call raises."""
    cache = MemoryCache()
    cache.put_many([(k(1), vec(k(1)))])
    cache.get_many([k(1)])
    cache.clear()
    assert cache.get_many([k(1)]) == [None]
    assert cache.stats() == CacheStats(hits=1, misses=1, entries=0, evictions=0)
    cache.close()
    cache.close()
    with pytest.raises(ConfigurationError, match="closed"):
        cache.get_many([k(1)])
    with pytest.raises(ConfigurationError, match="closed"):
        cache.put_many([(k(1), vec(k(1)))])


# -- SqliteCache ---------------------------------------------------------------------------------
def test_sqlite_persists_across_instances(tmp_path: Path) -> None:
    """Vectors written by one instance are read bit-exact by a later one; dirs are created."""
    path = tmp_path / "deep" / "dir" / "cache.db"
    items = [(k(i), vec(k(i), d=32)) for i in range(50)]
    with SqliteCache(path) as first:
        first.put_many(items)
    second = SqliteCache(path)
    got = second.get_many([key for key, _ in items] + [k(999)])
    assert all(same_bits(g, v) for g, (_, v) in zip(got[:-1], items, strict=True))
    assert got[-1] is None
    assert got[0] is not None and got[0].ndim == 1 and not got[0].flags.writeable
    assert second.stats() == CacheStats(hits=50, misses=1, entries=50, evictions=0)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    second.close()


def test_sqlite_lookup_is_chunked_and_keeps_order(tmp_path: Path) -> None:
    """More keys than one SELECT takes, with duplicates, come back in the order asked."""
    cache = SqliteCache(tmp_path / "c.db")
    cache.put_many([(k(i), vec(k(i))) for i in range(0, 1200, 2)])
    wanted = [k(i) for i in range(1199, -1, -1)] + [k(0), k(0)]
    got = cache.get_many(wanted)
    assert [g is not None for g in got] == [i % 2 == 0 for i in range(1199, -1, -1)] + [True] * 2
    assert all(same_bits(g, vec(key)) for g, key in zip(got, wanted, strict=True) if g is not None)
    assert cache.stats().hits == 602 and cache.stats().misses == 600
    cache.close()


def test_sqlite_prunes_oldest_first(tmp_path: Path) -> None:
    """With max_entries each put removes the oldest rows beyond the bound."""
    now = [1000.0]
    cache = SqliteCache(tmp_path / "c.db", max_entries=3, clock=lambda: now[0])
    for i in range(5):
        now[0] += 1
        cache.put_many([(k(i), vec(k(i)))])
    now[0] += 1
    cache.put_many([(k(2), vec(k(2)))])  # rewritten: now the newest
    cache.put_many([(k(5), vec(k(5)))])
    present = [v is not None for v in cache.get_many([k(i) for i in range(6)])]
    assert present == [False, False, True, False, True, True]
    assert cache.stats().entries == 3 and cache.stats().evictions == 3
    cache.close()


@pytest.mark.parametrize(
    ("dims", "blob"),
    [
        (8, b"\x00" * 31),  # blob too short
        (8, b"\x00" * 36),  # blob too long
        (0, b""),
        (2, "not bytes"),
        ("eight", b"\x00" * 32),  # not a number (INTEGER affinity keeps text)
    ],
)
def test_sqlite_corrupt_row_is_a_miss(tmp_path: Path, dims: object, blob: object) -> None:
    """A row whose blob does not match its dims reads as a miss, and a put repairs it."""
    path = tmp_path / "c.db"
    cache = SqliteCache(path)
    cache.put_many([(k(1), vec(k(1))), (k(2), vec(k(2)))])
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE vectors SET dims = ?, vector = ? WHERE key = ?", (dims, blob, k(1)))
    conn.close()
    one, two = cache.get_many([k(1), k(2)])
    assert one is None and same_bits(two, vec(k(2)))
    assert cache.stats().misses == 1
    cache.put_many([(k(1), vec(k(1)))])
    assert same_bits(cache.get_many([k(1)])[0], vec(k(1)))
    cache.close()


def test_sqlite_threads_share_one_instance(tmp_path: Path) -> None:
    """Threads reading and writing one instance see only correct vectors and exact counts."""
    cache = SqliteCache(tmp_path / "c.db")
    wrong: list[bytes] = []

    def work(t: int) -> None:
        for r in range(10):
            keys = [k(t * 100 + r * 5 + j) for j in range(5)] + [k(r)]
            for key, got in zip(keys, cache.get_many(keys), strict=True):
                if got is not None and not same_bits(got, vec(key)):
                    wrong.append(key)
            cache.put_many([(key, vec(key)) for key in keys])

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = cache.stats()
    assert not wrong and stats.hits + stats.misses == 8 * 10 * 6 and stats.entries == 400
    cache.close()


def _process_worker(path: str, worker: int, barrier: Any, results: Any) -> None:
    """Write this worker's keys in rounds while reading everyone's; report what was wrong."""
    problems: list[str] = []
    try:
        cache = SqliteCache(path, timeout=30.0)
        barrier.wait(timeout=60)
        everyone = [k(w * 1000 + i) for w in range(4) for i in range(100)]
        for r in range(10):
            mine = [k(worker * 1000 + r * 10 + j) for j in range(10)]
            cache.put_many([(key, vec(key)) for key in mine])
            got = cache.get_many(everyone)
            pairs = zip(everyone, got, strict=True)
            bad = [key for key, g in pairs if g is not None and not same_bits(g, vec(key))]
            problems += [f"wrong {key.hex()}" for key in bad]
            pairs = zip(mine, cache.get_many(mine), strict=True)
            problems += [f"lost {key.hex()}" for key, g in pairs if g is None]
        cache.close()
    except Exception as exc:  # reported to the parent, which fails the test
        problems.append(f"{type(exc).__name__}: {exc}")
    results.put((worker, problems))


def test_sqlite_is_safe_across_processes(tmp_path: Path) -> None:
    """Four spawned processes write and read one file at once: no lock errors, all values right."""
    path = str(tmp_path / "shared.db")
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    processes = [
        ctx.Process(target=_process_worker, args=(path, w, barrier, results)) for w in range(4)
    ]
    for process in processes:
        process.start()
    reports = dict(results.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    assert reports == {w: [] for w in range(4)}
    cache = SqliteCache(path)
    keys = [k(w * 1000 + i) for w in range(4) for i in range(100)]
    got = cache.get_many(keys)
    assert all(same_bits(g, vec(key)) for g, key in zip(got, keys, strict=True))
    cache.close()


def test_sqlite_clear_close_and_bad_arguments(tmp_path: Path) -> None:
    """clear() deletes every row; after close() calls raise; bad bounds are refused."""
    cache = SqliteCache(tmp_path / "c.db")
    cache.put_many([(k(1), vec(k(1)))])
    cache.clear()
    assert cache.get_many([k(1)]) == [None] and cache.stats().entries == 0
    cache.close()
    cache.close()
    with pytest.raises(ConfigurationError, match="closed"):
        cache.get_many([k(1)])
    with pytest.raises(ConfigurationError, match="closed"):
        cache.put_many([(k(1), vec(k(1)))])
    with pytest.raises(ConfigurationError):
        SqliteCache(tmp_path / "d.db", max_entries=0)
    with pytest.raises(ConfigurationError):
        SqliteCache(tmp_path / "d.db", timeout=0)


# -- open_cache ----------------------------------------------------------------------------------
def test_open_cache_specs(tmp_path: Path) -> None:
    """None, memory URLs, sqlite URLs, .db/.sqlite paths and instances give the right cache."""
    assert open_cache(None) is None
    memory = open_cache("memory")
    assert isinstance(memory, MemoryCache) and memory.max_entries == 100_000
    small = open_cache("memory://?max_entries=2&max_bytes=4096")
    assert isinstance(small, MemoryCache)
    assert (small.max_entries, small.max_bytes) == (2, 4096)
    url = open_cache(f"sqlite://{tmp_path}/a.db?max_entries=10&timeout=5")
    assert isinstance(url, SqliteCache) and url.path == tmp_path / "a.db"
    assert url.max_entries == 10
    plain = open_cache(str(tmp_path / "b.sqlite"))
    assert isinstance(plain, SqliteCache) and plain.path == tmp_path / "b.sqlite"
    as_path = open_cache(tmp_path / "c.DB")
    assert isinstance(as_path, SqliteCache)
    assert open_cache(small) is small
    assert isinstance(small, EmbeddingCache) and isinstance(url, EmbeddingCache)
    for cache in (url, plain, as_path):
        cache.close()


@pytest.mark.parametrize(
    "spec",
    [
        "redis://localhost",
        "memory://?bogus=1",
        "memory://?max_entries=abc",
        "memory://?max_entries=0",
        "memory://?max_entries=1&max_entries=2",
        "memory://host",
        "sqlite://",
        "sqlite:///x.db?max_entries=-1",
        "cache.txt",
        "",
        42,
        object(),
    ],
)
def test_open_cache_rejects_other_specs(spec: Any) -> None:
    """Anything else raises ConfigurationError with field 'cache'."""
    with pytest.raises(ConfigurationError) as info:
        open_cache(spec)
    assert info.value.field == "cache"


def test_open_cache_reports_a_file_it_cannot_open(tmp_path: Path) -> None:
    """A path that cannot become a database (its parent is a file) is a ConfigurationError."""
    (tmp_path / "plain").write_text("not a directory")
    with pytest.raises(ConfigurationError, match="cannot open") as info:
        open_cache(str(tmp_path / "plain" / "x.db"))
    assert info.value.field == "cache"
