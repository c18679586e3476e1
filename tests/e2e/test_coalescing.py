"""Coalescing across concurrent calls, micro-batching, and streaming results."""

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest

from embedguard import ContextLengthError, EmbeddingClient, InputValidationError, profiles
from embedguard.testing import EmbeddingServer, deterministic_vectors

from .conftest import KEY, fast


def _client(server: EmbeddingServer, **kwargs: object) -> EmbeddingClient:
    profile = fast(profiles.openai(base_url=server.base_url("openai"), dimensions=64))
    return EmbeddingClient(profile, api_key=KEY, **kwargs)  # type: ignore[arg-type]


async def test_identical_texts_in_flight_are_sent_once() -> None:
    """Concurrent calls with the same texts share one request."""
    with EmbeddingServer(dimensions=64, latency=0.1) as server:
        async with _client(server, coalesce_window=0) as client:
            texts = [f"shared {i}" for i in range(100)]
            results = await asyncio.gather(*(client.aembed(texts) for _ in range(5)))
        sent = [t for r in server.requests for t in r.inputs]
    assert sorted(sent) == sorted(texts)  # each text once, though five calls asked for it
    for vectors in results:
        np.testing.assert_array_equal(vectors, deterministic_vectors(texts, 64))


def test_identical_texts_shared_between_threads() -> None:
    """Threads asking for the same texts at once share the request."""
    with EmbeddingServer(dimensions=64, latency=0.1) as server:
        with _client(server, coalesce_window=0) as client:
            texts = [f"t{i}" for i in range(50)]
            out: list[np.ndarray] = []
            threads = [
                threading.Thread(target=lambda: out.append(client.embed(texts))) for _ in range(4)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(10)
        assert len(out) == 4
        assert len([t for r in server.requests for t in r.inputs]) == 50


async def test_failure_reaches_every_waiter() -> None:
    """When the shared request fails, every caller waiting on it gets the typed error."""
    with EmbeddingServer(dimensions=64, latency=0.05) as server:
        server.set_down(True, status=400)
        async with _client(server, coalesce_window=0) as client:
            results = await asyncio.gather(
                *(client.aembed(["same", "text"]) for _ in range(3)), return_exceptions=True
            )
        assert len(server.requests) == 1
    assert all(isinstance(r, Exception) for r in results)
    assert all(r.failed_indices == (0, 1) for r in results)  # type: ignore[union-attr]


async def test_cancelled_waiter_does_not_cancel_the_others() -> None:
    """Cancelling the caller that sent a shared request leaves the others their result."""
    with EmbeddingServer(dimensions=64, latency=0.2) as server:
        async with _client(server, coalesce_window=0) as client:
            first = asyncio.ensure_future(client.aembed(["x", "y"]))
            await asyncio.sleep(0.02)
            second = asyncio.ensure_future(client.aembed(["x", "y"]))
            await asyncio.sleep(0.02)
            first.cancel()
            vectors = await second
            with pytest.raises(asyncio.CancelledError):
                await first
        assert len(server.requests) == 1
    np.testing.assert_array_equal(vectors, deterministic_vectors(["x", "y"], 64))


async def test_concurrent_queries_are_micro_batched() -> None:
    """Single-text calls within the window share one request, each caller its own vector."""
    with EmbeddingServer(dimensions=64) as server:
        async with _client(server, coalesce_window=0.05) as client:
            texts = [f"query {i}" for i in range(40)]
            vectors = await asyncio.gather(*(client.aembed_query(t) for t in texts))
        assert len(server.requests) <= 2  # one merged group, spread over at most 2 batches
        assert sum(len(r.inputs) for r in server.requests) == 40
    np.testing.assert_array_equal(np.stack(vectors), deterministic_vectors(texts, 64))


def test_micro_batching_threads_and_window_zero() -> None:
    """Threads' queries merge within the window; a zero window sends each at once."""
    with EmbeddingServer(dimensions=64) as server:
        for window, most in ((0.1, 2), (0.0, 8)):
            server.reset()
            with _client(server, coalesce_window=window) as client:
                barrier = threading.Barrier(8)

                def ask(
                    i: int, c: EmbeddingClient = client, b: threading.Barrier = barrier
                ) -> None:
                    b.wait()
                    assert np.array_equal(
                        c.embed_query(f"q{i}"), deterministic_vectors([f"q{i}"], 64)[0]
                    )

                threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(10)
            assert 1 <= len(server.requests) <= most
        assert len(server.requests) == 8


def test_embed_iter_streams_in_order(server: EmbeddingServer) -> None:
    """embed_iter consumes lazily and yields chunks in input order."""
    consumed = []

    def source() -> Iterator[str]:
        for i in range(1_000):
            consumed.append(i)
            yield f"stream {i % 700}"

    with _client(server) as client:
        stream = client.embed_iter(source(), chunk_size=100, window=2)
        first = next(stream)
        assert len(consumed) <= 300  # lazily: at most window + 1 chunks read
        chunks = [first, *stream]
    texts = [f"stream {i % 700}" for i in range(1_000)]
    assert [len(c) for c in chunks] == [100] * 10
    np.testing.assert_array_equal(np.concatenate(chunks), deterministic_vectors(texts, 64))


async def test_aembed_iter_accepts_async_iterables(server: EmbeddingServer) -> None:
    """aembed_iter streams from an async iterable, in order."""

    async def source() -> AsyncIterator[str]:
        for i in range(250):
            yield f"a{i}"

    async with _client(server) as client:
        chunks = [c async for c in client.aembed_iter(source(), chunk_size=64)]
    assert [len(c) for c in chunks] == [64, 64, 64, 58]
    texts = [f"a{i}" for i in range(250)]
    np.testing.assert_array_equal(np.concatenate(chunks), deterministic_vectors(texts, 64))


def test_embed_iter_errors_name_stream_positions(server: EmbeddingServer) -> None:
    """A bad text deep in the stream is reported at its position in the whole stream."""
    texts = [f"t{i}" for i in range(250)]
    texts[230] = "   "
    with _client(server) as client, pytest.raises(InputValidationError) as info:
        list(client.embed_iter(texts, chunk_size=100))
    assert info.value.index == 230
    server.set_down(True, status=400)
    with _client(server) as client, pytest.raises(Exception) as failed:
        list(client.embed_iter([f"u{i}" for i in range(250)], chunk_size=100, window=1))
    assert failed.value.failed_indices == tuple(range(100))  # type: ignore[attr-defined]


def test_partial_failure_names_exactly_the_failed_inputs() -> None:
    """One input the provider refuses fails alone; every other input still gets its vector."""
    with EmbeddingServer(dimensions=64, max_input_tokens=20) as server:
        texts = [f"p{i}" for i in range(64)]
        texts[10] = " ".join(["long"] * 30)  # over the server's limit, not the client's estimate
        with _client(server, coalesce_window=0) as client:
            with pytest.raises(ContextLengthError) as info:
                client.embed(texts)
            assert info.value.failed_indices == (10,)
            ok = [t for i, t in enumerate(texts) if i != 10]
            sent = {t for r in server.requests if r.status == 200 for t in r.inputs}
            assert sent == set(ok)  # the rest were embedded (and billed) despite the failure
