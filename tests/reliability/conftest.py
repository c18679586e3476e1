"""Shared pieces of the reliability suite: servers, fast profiles, request-log accounting, figures.

Every run prints the figures the tests established (texts checked, faults injected, probes seen,
fail-fast latency...) at the end of the session; set ``EMBEDGUARD_RELIABILITY_FIGURES=path.json``
to also write them to a file (``docs/reliability.md`` is built from such a run).

Knobs for bigger runs (defaults keep the whole folder well under a minute and a half):

- ``EMBEDGUARD_CHAOS_TEXTS``: texts per chaos run (default 10,000).
- ``EMBEDGUARD_CHAOS_RATE``: share of requests given a fault (default 0.2).
- ``EMBEDGUARD_CONCURRENCY_TASKS``: asyncio tasks sharing one client (default 1,000).
- ``EMBEDGUARD_FUZZ_EXAMPLES``: hypothesis examples per fuzz property (default 300).
- ``EMBEDGUARD_FAILFAST_CALLS``: calls timed while the breaker is open (default 1,000).
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from embedguard import EmbeddingClient, ProviderProfile, profiles
from embedguard.core.metrics import MetricsSnapshot
from embedguard.testing import EmbeddingServer, Fault, RecordedRequest

KEY = "sk-test-PLANTED-SECRET-reliability-0123456789abcdef"
DIM = 32

# Faults that leave a request answered with correct vectors (a shuffle keeps every index right).
CORRECT_FAULTS = frozenset({None, "shuffle"})
CHAOS_TIMEOUT = 1.5  # the client's request timeout under chaos; Fault.delay waits twice as long

# Faults the retry policy recovers from, plus a shuffle (a correct answer in another order).
RECOVERABLE = [
    Fault.status(500),
    Fault.status(502),
    Fault.status(503),
    Fault.rate_limited(retry_after=0.01),
    Fault.rate_limited(),
    Fault.rate_limited(retry_after=0.01, ms=True),
    Fault.delay(2 * CHAOS_TIMEOUT),
    Fault.drop(),
    Fault.truncate(),
    Fault.error_body_200(),
    Fault.shuffle(),
]
# 2xx bodies that are wrong: never retried (only a truncated body is), never returned.
INVALID = [
    Fault.malformed(),
    Fault.wrong_count(),
    Fault.bad_index(),
    Fault.nan(),
    Fault.wrong_dimensions(),
]
# The error kind the client must record for each injected fault.
KIND = {
    "status_500": "server",
    "status_502": "server",
    "status_503": "server",
    "error_body_200": "server",
    "rate_limited": "rate_limit",
    "delay": "timeout",
    "drop": "connection",
    "truncate": "invalid_response",
    "malformed": "invalid_response",
    "wrong_count": "invalid_response",
    "bad_index": "invalid_response",
    "nan": "invalid_response",
    "wrong_dimensions": "invalid_response",
}

_FIGURES: dict[str, Any] = {}
_FIGURES_LOCK = threading.Lock()


def knob(name: str, default: float) -> float:
    """An ``EMBEDGUARD_*`` environment knob, or ``default``."""
    raw = os.environ.get(name)
    return float(raw) if raw else default


def figure(name: str, value: Any, *, add: bool = False) -> None:
    """Record a figure for the session summary; ``add`` sums it with earlier values."""
    with _FIGURES_LOCK:
        if add and name in _FIGURES:
            _FIGURES[name] = _FIGURES[name] + value
        else:
            _FIGURES[name] = value


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the figures the reliability tests established, and write them when asked."""
    if not _FIGURES:
        return
    terminalreporter.section("embedguard reliability figures")
    for name in sorted(_FIGURES):
        terminalreporter.write_line(f"{name}: {_FIGURES[name]}")
    target = os.environ.get("EMBEDGUARD_RELIABILITY_FIGURES")
    if target:
        Path(target).write_text(json.dumps(_FIGURES, indent=2, sort_keys=True) + "\n", "utf-8")


@pytest.fixture
def server() -> Iterator[EmbeddingServer]:
    """A loopback embedding server with small vectors."""
    with EmbeddingServer(dimensions=DIM) as srv:
        yield srv


def fast_profile(server: EmbeddingServer, **changes: Any) -> ProviderProfile:
    """An OpenAI profile aimed at ``server``: millisecond backoff, no client-side rate limit.

    ``retry``, ``breaker``... given as dicts are merged into the profile's own policy.
    """
    profile = profiles.openai(base_url=server.base_url("openai"), dimensions=DIM)
    retry = {**profile.retry.to_dict(), "initial_delay": 0.001, "max_delay": 0.01}
    retry.update(changes.pop("retry", {}))
    limits = {"enabled": False}
    limits.update(changes.pop("rate_limit", {}))
    return profile.evolve(retry=retry, rate_limit=limits, **changes)


def make_client(
    server: EmbeddingServer, *, options: dict[str, Any] | None = None, **changes: Any
) -> EmbeddingClient:
    """A client for ``server`` built from :func:`fast_profile`, holding the planted key.

    ``options`` are extra keyword arguments for the client (e.g. ``coalesce_window``).
    """
    profile = fast_profile(server, **changes)
    return EmbeddingClient(profile, api_key=KEY, environ={}, **(options or {}))


def corpus(n: int, unique: int, tag: str = "") -> list[str]:
    """``n`` texts with ``unique`` distinct ones, in several scripts, duplicates interleaved."""
    scripts = ("plain ascii", "ünïcödé", "日本語のテキスト", "кириллица", "emoji 🚀✨", "עברית")
    return [f"{tag}text {i % unique} {scripts[(i % unique) % len(scripts)]}" for i in range(n)]


def identities(snap: MetricsSnapshot) -> None:
    """The metrics identities that must hold exactly at every snapshot."""
    assert snap.total_requests == snap.successful_requests + snap.failed_requests
    assert sum(snap.errors_by_kind.values()) == snap.failed_requests
    assert snap.retried_requests <= snap.total_requests


def first_attempts(requests: Sequence[RecordedRequest]) -> int:
    """How many distinct batches the requests carried (each batch's first attempt).

    Within one call every unit is sent in exactly one batch, so a batch is known by its inputs;
    every further request with the same inputs is a retry.
    """
    return len({r.inputs for r in requests})


def check_against_log(snap: MetricsSnapshot, requests: Sequence[RecordedRequest]) -> None:
    """Every request the server saw is counted once, as the outcome the server gave it; the
    retries counted equal the requests seen minus each batch's first attempt."""
    identities(snap)
    correct = sum(r.fault in CORRECT_FAULTS for r in requests)
    expected_errors = Counter(
        KIND[r.fault or ""] for r in requests if r.fault not in CORRECT_FAULTS
    )
    assert snap.total_requests == len(requests)
    assert snap.successful_requests == correct
    assert dict(snap.errors_by_kind) == dict(expected_errors)
    assert snap.retried_requests == len(requests) - first_attempts(requests)


def chaos_client(server: EmbeddingServer, *, max_retries: int, **changes: Any) -> EmbeddingClient:
    """A client that rides out chaos: short timeouts, a generous retry budget, no breaker.

    Its own rate limits are set (far above what the tests send) rather than left unlimited: an
    unlimited limiter pauses every send for a second after a 429 without a wait hint, which
    would make the chaos runs slow without testing anything more.
    """
    return make_client(
        server,
        timeouts={"request": CHAOS_TIMEOUT, "connect": CHAOS_TIMEOUT},
        retry={"max_retries": max_retries, "budget_min": 1_000_000},
        breaker={"enabled": False},
        rate_limit={"requests_per_minute": 10**7, "tokens_per_minute": 10**10},
        **changes,
    )


def fault_counts(requests: Sequence[RecordedRequest]) -> Counter[str]:
    """Requests per injected fault name (``"none"`` for the clean ones)."""
    return Counter(r.fault or "none" for r in requests)
