"""Real processes sharing one budget and one breaker through a real redis-server.

Four "spawn" worker processes drive the shared classes and send real HTTP requests to a
loopback EmbeddingServer, whose request log is the ground truth: how many requests arrived,
how fast, and which were half-open probes of which episode.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from embedguard.core.config import RateLimit
from embedguard.core.providers.base import RateLimitInfo
from embedguard.core.shared_state import RedisRateLimiter, connect
from embedguard.testing import EmbeddingServer

from . import _fleet
from .conftest import RedisProcess

WORKERS = 4
SPAWN = multiprocessing.get_context("spawn")
START_TIMEOUT = 45.0  # spawning and importing four interpreters on a loaded 2-core machine


@dataclass
class Fleet:
    """Worker processes waiting for tasks, and what they share with the test."""

    redis_url: str
    tasks: list[Any]
    barrier: Any
    stop: Any
    out: Any

    def run(self, name: str, **kwargs: Any) -> None:
        """Give every worker the task ``name``; they start together at the barrier."""
        self.stop.clear()
        for tasks in self.tasks:
            tasks.put((name, kwargs | {"redis_url": self.redis_url}))

    def collect(self, kind: str, timeout: float) -> list[tuple[Any, ...]]:
        """One message of ``kind`` from each worker (others are dropped; errors fail)."""
        got: list[tuple[Any, ...]] = []
        deadline = time.monotonic() + timeout
        while len(got) < WORKERS:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"only {len(got)}/{WORKERS} workers reported {kind!r}"
            try:
                message = self.out.get(timeout=remaining)
            except queue.Empty:
                continue
            assert message[0] != "error", f"worker {message[1]} failed: {message[2]}"
            if message[0] == kind:
                got.append(message)
        return got


@pytest.fixture(scope="module")
def fleet(redis_server: RedisProcess) -> Iterator[Fleet]:
    """Four worker processes for the module (spawned once: that is the slow part)."""
    barrier = SPAWN.Barrier(WORKERS + 1, timeout=START_TIMEOUT)
    stop, out = SPAWN.Event(), SPAWN.Queue()
    tasks = [SPAWN.Queue() for _ in range(WORKERS)]
    processes = [
        SPAWN.Process(target=_fleet.serve, args=(i, tasks[i], barrier, stop, out), daemon=True)
        for i in range(WORKERS)
    ]
    for process in processes:
        process.start()
    fleet = Fleet(redis_server.url, tasks, barrier, stop, out)
    try:
        fleet.collect("up", START_TIMEOUT)
        yield fleet
    finally:
        stop.set()
        for q in tasks:
            q.put(None)
        for process in processes:
            process.join(20)
            if process.is_alive():
                process.kill()
                process.join(5)
            process.close()
        for q in [*tasks, out]:
            q.close()
            q.join_thread()


@pytest.fixture
def server() -> Iterator[EmbeddingServer]:
    with EmbeddingServer(dimensions=8) as srv:
        yield srv


def test_workers_together_stay_within_the_shared_limit(
    fleet: Fleet, server: EmbeddingServer, figures: dict[str, str]
) -> None:
    """Four processes sending flat out achieve at most the shared rate, not four times it."""
    rpm, duration = 600, 4.0  # 10 requests/s for the whole fleet
    prefix = f"fleet-{uuid.uuid4().hex[:8]}"
    url = server.base_url("openai") + "/embeddings"
    fleet.run("rate", prefix=prefix, url=url, rpm=rpm, duration=duration)
    client = connect(fleet.redis_url)
    try:
        # Empty the shared bucket (its burst is a minute of traffic) once every worker is
        # ready, just before they start, so the run measures the sustained rate.
        drain = RedisRateLimiter(RateLimit(requests_per_minute=rpm, tokens_per_minute=None),
                                 client, name="fleet", key_prefix=prefix)  # fmt: skip
        fleet.barrier.wait()
        started = time.monotonic()
        drain.observe(RateLimitInfo(remaining_requests=0))
        fleet.barrier.wait()
        reports = fleet.collect("sent", duration + 30)
    finally:
        client.close()
    arrived = [r.received_at for r in server.requests if r.received_at >= started]
    span = max(arrived) - started
    allowed = rpm / 60.0 * span
    rate = len(arrived) / span
    figures["fleet rate limit"] = (
        f"{WORKERS} processes, limit {rpm / 60:.1f} req/s: {len(arrived)} requests in "
        f"{span:.2f}s = {rate:.2f} req/s ({rate / (rpm / 60):.0%} of the limit); per worker "
        f"{sorted(r[1] for r in reports)}"
    )
    assert sum(r[1] for r in reports) == len(arrived)
    assert not any(r[2] for r in reports), "a worker fell back to local state"
    assert len(arrived) <= allowed + 2  # the limit holds for the fleet
    assert len(arrived) >= 0.6 * allowed  # ...and the workers did use it
    assert min(r[1] for r in reports) >= 1  # every worker got a share


def test_one_breaker_for_the_fleet(
    fleet: Fleet, server: EmbeddingServer, figures: dict[str, str]
) -> None:
    """Failures open the breaker for all; probes stay bounded fleet-wide; recovery closes it."""
    policy = {"failure_threshold": 3, "open_timeout": 1.0, "half_open_max_attempts": 2,
              "success_threshold": 2, "half_open_timeout": 10.0}  # fmt: skip
    prefix = f"fleet-{uuid.uuid4().hex[:8]}"
    url = server.base_url("openai") + "/embeddings"
    server.set_down(True)
    fleet.run("breaker", prefix=prefix, url=url, policy=policy)
    try:
        fleet.barrier.wait()
        fleet.collect("open", 30)  # every worker was refused: open for all
        time.sleep(2.2)  # still down: two or three rounds of probes, all failing
        server.set_down(False)
        recovered_at = time.monotonic()
        fleet.collect("ok", 30)  # every worker got through again
        recovery = time.monotonic() - recovered_at
    finally:
        fleet.stop.set()
    done = fleet.collect("done", 30)
    log = server.requests
    probes = Counter(r.headers["x-gen"] for r in log if r.headers.get("x-probe") == "1")
    failed_plain = [r for r in log if r.headers.get("x-probe") == "0" and r.fault == "outage"]
    figures["fleet breaker"] = (
        f"{WORKERS} processes, half_open_max_attempts={policy['half_open_max_attempts']}: "
        f"{len(failed_plain)} failed requests before opening (threshold "
        f"{policy['failure_threshold']}), {len(probes)} half-open episodes, probes per episode "
        f"{[probes[g] for g in sorted(probes, key=int)]} (the last one closing it), "
        f"closed {recovery:.2f}s after the server came back"
    )
    assert not any(d[2] for d in done), "a worker fell back to local state"
    # Opening: the threshold, plus at most one request already in flight per other worker.
    assert policy["failure_threshold"] <= len(failed_plain) <= policy["failure_threshold"] + 3
    assert len(probes) >= 2  # at least one failed episode while down, and the recovering one
    assert max(probes.values()) <= policy["half_open_max_attempts"]
    # The episode that closed it: success_threshold probes, all answered.
    closing = [r for r in log if r.headers.get("x-gen") == max(probes, key=int)]
    assert len(closing) == policy["success_threshold"]
    assert all(r.status == 200 for r in closing)
    # While not closed, no ordinary request reached the server: they all came before the
    # opening or after the closing.
    probe_times = [r.received_at for r in log if r.headers.get("x-probe") == "1"]
    between = [r for r in log if r.headers.get("x-probe") == "0"
               and min(probe_times) < r.received_at < max(probe_times)]  # fmt: skip
    assert between == []
