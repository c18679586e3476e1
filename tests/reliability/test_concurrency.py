"""One client shared by many threads and tasks, under chaos: no deadlock, no crossed results,
exact metrics.

Callers share "hot" texts, so identical texts requested at the same time are sent once and
their vectors fan out to every caller; every caller also has texts of its own, so a crossed
result would show.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable

import numpy as np
import pytest

from embedguard.testing import EmbeddingServer, deterministic_vectors

from .conftest import (
    DIM,
    RECOVERABLE,
    chaos_client,
    check_against_log,
    figure,
    knob,
    make_client,
)

THREADS = 32
TASKS = int(knob("EMBEDGUARD_CONCURRENCY_TASKS", 1_000))
HOT = [f"hot text {i}" for i in range(40)]
RATE = 0.1
JOIN = 60.0  # seconds; a join that takes longer is a deadlock


def _texts(rng: random.Random, owner: str, own: int, hot: int) -> list[str]:
    """``own`` texts only this caller asks for, with ``hot`` shared ones interleaved, and a
    duplicate of its first text at the end."""
    mine = [f"{owner} own {j}" for j in range(own)]
    for text in rng.sample(HOT, hot):
        mine.insert(rng.randrange(1, len(mine) + 1), text)
    return [*mine, mine[0]]


def _run_threads(n: int, work: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=JOIN)
    assert not [t for t in threads if t.is_alive()], "deadlock: a caller never returned"
    assert not errors, errors[:3]


def _record_faults(server: EmbeddingServer) -> None:
    requests = server.requests
    figure("concurrency.requests_total", len(requests), add=True)
    figure(
        "concurrency.faults_injected_total", sum(r.fault is not None for r in requests), add=True
    )


def test_32_threads_share_one_client_under_chaos(server: EmbeddingServer) -> None:
    """32 threads sharing one client under faults get their own vectors; metrics are exact."""
    server.chaos(RATE, RECOVERABLE, seed=31)
    client = chaos_client(server, max_retries=8)
    calls = [0]
    lock = threading.Lock()

    def work(i: int) -> None:
        rng = random.Random(i)
        for k in range(6):
            texts = _texts(rng, f"thread {i} call {k}", own=30, hot=10)
            np.testing.assert_array_equal(client.embed(texts), deterministic_vectors(texts, DIM))
            with lock:
                calls[0] += 1

    with client:
        _run_threads(THREADS, work)
        snap = client.metrics()
    assert calls[0] == THREADS * 6
    check_against_log(snap, server.requests)
    _record_faults(server)
    figure("concurrency.threads", THREADS)
    figure("concurrency.thread_calls_checked", calls[0])


@pytest.mark.parametrize("window", [None, 0.0], ids=["coalesced", "300-one-request-per-task"])
def test_1000_tasks_share_one_client_under_chaos(
    server: EmbeddingServer, window: float | None
) -> None:
    """1,000 asyncio tasks sharing one client under faults get their own vectors; metrics exact."""
    server.chaos(RATE, RECOVERABLE, seed=32)
    options = {} if window is None else {"coalesce_window": window}
    client = chaos_client(server, max_retries=8, options=options)
    rng = random.Random(7)
    tasks = TASKS if window is None else max(1, TASKS * 3 // 10)  # one request each: fewer
    jobs = [_texts(rng, f"task {i}", own=1, hot=rng.randrange(0, 4)) for i in range(tasks)]

    async def run() -> list[np.ndarray]:
        async with client:
            calls = asyncio.gather(*(client.aembed(texts) for texts in jobs))
            return list(await asyncio.wait_for(calls, timeout=JOIN))

    results = asyncio.run(run())
    for texts, vectors in zip(jobs, results, strict=True):
        np.testing.assert_array_equal(vectors, deterministic_vectors(texts, DIM))
    check_against_log(client.metrics(), server.requests)
    _record_faults(server)
    label = "coalesced" if window is None else "uncoalesced"
    figure(f"concurrency.tasks.{label}", tasks)
    figure(f"concurrency.task_requests.{label}", len(server.requests))


def test_threads_and_event_loops_share_one_client(server: EmbeddingServer) -> None:
    """Threads and two event loops share one client and hot texts without deadlock or mix-ups."""
    server.chaos(RATE, RECOVERABLE, seed=33)
    client = chaos_client(server, max_retries=8)

    def sync_caller(i: int) -> None:
        rng = random.Random(100 + i)
        for k in range(5):
            texts = _texts(rng, f"sync {i} call {k}", own=20, hot=8)
            np.testing.assert_array_equal(client.embed(texts), deterministic_vectors(texts, DIM))

    def loop_caller(i: int) -> None:
        rng = random.Random(200 + i)
        jobs = [_texts(rng, f"loop {i} task {k}", own=2, hot=2) for k in range(100)]

        async def run() -> list[np.ndarray]:
            calls = asyncio.gather(*(client.aembed(texts) for texts in jobs))
            return list(await asyncio.wait_for(calls, timeout=JOIN))

        for texts, vectors in zip(jobs, asyncio.run(run()), strict=True):
            np.testing.assert_array_equal(vectors, deterministic_vectors(texts, DIM))

    def either(i: int) -> None:
        (sync_caller if i < 8 else loop_caller)(i)

    _run_threads(10, either)
    snap = client.metrics()
    client.close()
    check_against_log(snap, server.requests)
    _record_faults(server)


def test_pool_size_bounds_requests_in_flight_across_sync_and_async_callers() -> None:
    """Requests in flight never exceed pool_size, even across threads and event loops."""
    with EmbeddingServer(dimensions=DIM, latency=0.1) as srv:
        client = make_client(srv, pool_size=4, batching={"max_inputs": 8})

        def sync_caller(i: int) -> None:
            client.embed([f"sync {i} text {j}" for j in range(64)])

        def loop_caller(i: int) -> None:
            async def run() -> None:
                await client.aembed([f"loop {i} text {j}" for j in range(64)])

            asyncio.run(run())

        _run_threads(3, lambda i: (sync_caller if i == 0 else loop_caller)(i))
        client.close()
        assert srv.max_in_flight <= 4
