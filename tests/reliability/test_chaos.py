"""Chaos over real HTTP: ~20% mixed faults, and still every text gets its own vector, or a typed
error naming exactly the inputs left without one. Metrics agree with the server's request log."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from embedguard import EmbeddingClient, ProviderError, ProviderProfile, profiles
from embedguard.core.metrics import MetricsSnapshot
from embedguard.testing import EmbeddingServer, RecordedRequest, deterministic_vectors

from .conftest import (
    CHAOS_TIMEOUT,
    CORRECT_FAULTS,
    DIM,
    INVALID,
    KEY,
    KIND,
    RECOVERABLE,
    chaos_client,
    check_against_log,
    corpus,
    fault_counts,
    figure,
    knob,
)

TEXTS = int(knob("EMBEDGUARD_CHAOS_TEXTS", 10_000))
RATE = knob("EMBEDGUARD_CHAOS_RATE", 0.2)
WIRE_TEXTS = max(1, TEXTS // 5)  # per wire format


def _chaos_client(server: EmbeddingServer, *, max_retries: int, max_inputs: int) -> EmbeddingClient:
    return chaos_client(
        server, max_retries=max_retries, batching={"max_inputs": max_inputs}, pool_size=16
    )


def _record(
    name: str, texts: int, requests: Sequence[RecordedRequest], snap: MetricsSnapshot
) -> None:
    faults = fault_counts(requests)
    figure(f"chaos.{name}.texts_checked", texts)
    figure(f"chaos.{name}.requests", len(requests))
    figure(f"chaos.{name}.faults_injected", len(requests) - faults["none"])
    figure(f"chaos.{name}.retries", snap.retried_requests)
    figure("chaos.texts_checked_total", texts, add=True)
    figure("chaos.faults_injected_total", len(requests) - faults["none"], add=True)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_chaos_every_text_gets_its_vector(server: EmbeddingServer, mode: str) -> None:
    """Under ~20% recoverable faults every text gets its own vector, in order; metrics are exact."""
    texts = corpus(TEXTS, max(1, TEXTS * 4 // 5), tag=f"{mode}:")
    server.chaos(RATE, RECOVERABLE, seed=11 if mode == "sync" else 12)
    client = _chaos_client(server, max_retries=8, max_inputs=16)
    if mode == "sync":
        with client:
            vectors = client.embed(texts)
            snap = client.metrics()
    else:

        async def run() -> tuple[np.ndarray, MetricsSnapshot]:
            async with client:
                return await client.aembed(texts), client.metrics()

        vectors, snap = asyncio.run(run())
    requests = server.requests
    np.testing.assert_array_equal(vectors, deterministic_vectors(texts, DIM))
    sent_ok = Counter(t for r in requests if r.fault in CORRECT_FAULTS for t in r.inputs)
    assert set(sent_ok) == set(texts)  # every distinct text was answered...
    assert set(sent_ok.values()) == {1}  # ...exactly once
    faults = fault_counts(requests)
    assert len(requests) - faults["none"] >= 0.1 * len(requests)  # the chaos really happened
    assert {f.name for f in RECOVERABLE} <= set(faults)  # every kind of fault was injected
    check_against_log(snap, requests)
    _record(f"recoverable_{mode}", len(texts), requests, snap)


def _expected_failed(texts: Sequence[str], requests: Sequence[RecordedRequest]) -> list[int]:
    answered = {t for r in requests if r.fault in CORRECT_FAULTS for t in r.inputs}
    return [i for i, text in enumerate(texts) if text not in answered]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_chaos_failures_name_exactly_the_inputs_without_vectors(
    server: EmbeddingServer, mode: str
) -> None:
    """A failed call's failed_indices are exactly the inputs the server never answered right."""
    calls, per_call = max(4, TEXTS // 200), 100
    batches = [corpus(per_call, 80, tag=f"{mode} call {k}:") for k in range(calls)]
    server.chaos(RATE, RECOVERABLE + INVALID, seed=21 if mode == "sync" else 22)
    client = _chaos_client(server, max_retries=1, max_inputs=10)
    outcomes: list[np.ndarray | BaseException] = []
    if mode == "sync":

        def call(texts: list[str]) -> np.ndarray | BaseException:
            try:
                return client.embed(texts)
            except Exception as exc:
                return exc

        with client, ThreadPoolExecutor(8) as callers:
            outcomes = list(callers.map(call, batches))
        snap = client.metrics()
    else:

        async def run() -> tuple[list[np.ndarray | BaseException], MetricsSnapshot]:
            async with client:
                gate = asyncio.Semaphore(8)

                async def call(texts: list[str]) -> np.ndarray | BaseException:
                    async with gate:
                        try:
                            return await client.aembed(texts)
                        except Exception as exc:
                            return exc

                results = await asyncio.gather(*(call(t) for t in batches))
                return list(results), client.metrics()

        outcomes, snap = asyncio.run(run())
    requests = server.requests
    failed_calls = failed_inputs = 0
    for k, (texts, outcome) in enumerate(zip(batches, outcomes, strict=True)):
        tag = f"{mode} call {k}:"
        mine = [r for r in requests if r.inputs and r.inputs[0].startswith(tag)]
        expected = _expected_failed(texts, mine)
        if isinstance(outcome, BaseException):
            assert isinstance(outcome, ProviderError), repr(outcome)
            assert outcome.kind in {
                KIND[r.fault or ""] for r in mine if r.fault not in CORRECT_FAULTS
            }
            assert list(outcome.failed_indices) == expected, f"call {k}"
            failed_calls += 1
            failed_inputs += len(expected)
        else:
            assert expected == [], f"call {k} succeeded although inputs were never answered"
            np.testing.assert_array_equal(outcome, deterministic_vectors(texts, DIM))
    assert 0 < failed_calls < calls  # the run exercised both outcomes
    check_against_log(snap, requests)
    _record(f"failing_{mode}", calls * per_call, requests, snap)
    figure(f"chaos.failing_{mode}.calls", calls)
    figure(f"chaos.failing_{mode}.failed_calls", failed_calls)
    figure(f"chaos.failing_{mode}.inputs_reported_failed", failed_inputs)


def _wire_profile(name: str, server: EmbeddingServer) -> ProviderProfile:
    url = server.url
    built = {
        "azure": lambda: profiles.azure(
            base_url=url, deployment="emb", api_version="2024-10-21", dimensions=DIM
        ),
        "azure-v1": lambda: profiles.azure(base_url=url, dimensions=DIM),
        "mistral": lambda: profiles.mistral(
            "codestral-embed", base_url=server.base_url("mistral"), dimensions=DIM
        ),
        "ollama": lambda: profiles.ollama("all-minilm", base_url=url, dimensions=DIM),
        "compatible": lambda: profiles.openai_compatible(
            "bge-m3", base_url=server.base_url("openai_compatible")
        ),
        "openai-float": lambda: profiles.openai(
            base_url=server.base_url("openai"), dimensions=DIM, encoding_format="float"
        ),
    }[name]()
    return built.evolve(
        timeouts={"request": CHAOS_TIMEOUT, "connect": CHAOS_TIMEOUT},
        retry={"max_retries": 8, "budget_min": 1_000_000, "initial_delay": 0.001,
               "max_delay": 0.01},
        breaker={"enabled": False},
        rate_limit={"requests_per_minute": 10**7, "tokens_per_minute": 10**10},
        batching={"max_inputs": 16},
    )  # fmt: skip


@pytest.mark.parametrize(
    "wire", ["azure", "azure-v1", "mistral", "ollama", "compatible", "openai-float"]
)
def test_chaos_over_every_wire_format(server: EmbeddingServer, wire: str) -> None:
    """Every wire format rides out ~20% recoverable faults with each text's own vector."""
    texts = corpus(WIRE_TEXTS, max(1, WIRE_TEXTS * 4 // 5), tag=f"{wire}:")
    # Ollama's responses carry no index, so a reordered answer cannot be detected by anyone.
    faults = [f for f in RECOVERABLE if not (wire == "ollama" and f.kind == "shuffle")]
    server.chaos(RATE, faults, seed=41)
    key = None if wire in ("ollama", "compatible") else KEY
    with EmbeddingClient(_wire_profile(wire, server), api_key=key, environ={}) as client:
        vectors = client.embed(texts)
        snap = client.metrics()
    requests = server.requests
    np.testing.assert_allclose(vectors, deterministic_vectors(texts, DIM), rtol=1e-6, atol=1e-7)
    assert len(requests) - fault_counts(requests)["none"] >= 0.1 * len(requests)
    check_against_log(snap, requests)
    figure("chaos.texts_checked_total", len(texts), add=True)
    figure("chaos.faults_injected_total", len(requests) - fault_counts(requests)["none"], add=True)
    figure(f"chaos.wire.{wire}.texts_checked", len(texts))
    figure(f"chaos.wire.{wire}.requests", len(requests))
    figure(f"chaos.wire.{wire}.faults_injected", len(requests) - fault_counts(requests)["none"])
