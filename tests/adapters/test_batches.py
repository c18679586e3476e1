"""Batches through the adapters: sent at once, with the frameworks' per-batch events (issue 16)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.embedding import (
    EmbeddingEndEvent,
    EmbeddingStartEvent,
)

from embedguard import BadRequestError
from embedguard.adapters.langchain import GuardedEmbeddings
from embedguard.adapters.llamaindex import EmbeddingUsageEvent, GuardedEmbedding
from embedguard.testing import EmbeddingServer, Fault, deterministic_vectors

from .conftest import KEY, fast_profile

TEXTS = [f"text number {i}" for i in range(90)]
SIZE = 20  # texts per request and per LlamaIndex batch


@pytest.fixture
def slow_server() -> Iterator[EmbeddingServer]:
    """A server whose requests take a moment, so that concurrent ones overlap."""
    with EmbeddingServer(dimensions=16, latency=0.05) as srv:
        yield srv


class _Events(BaseEventHandler):
    events: list[Any]

    @classmethod
    def class_name(cls) -> str:
        return "Events"

    def handle(self, event: Any, **kwargs: Any) -> None:
        self.events.append(event)


@pytest.fixture
def events() -> Iterator[list[Any]]:
    """LlamaIndex instrumentation events seen during the test."""
    handler = _Events(events=[])
    root = get_dispatcher()
    root.add_event_handler(handler)
    yield handler.events
    root.event_handlers = [h for h in root.event_handlers if h is not handler]


def _model(server: EmbeddingServer) -> tuple[GuardedEmbedding, LlamaDebugHandler]:
    debug = LlamaDebugHandler()
    model = GuardedEmbedding(
        fast_profile(server), api_key=KEY, embed_batch_size=SIZE,
        callback_manager=CallbackManager([debug]),
    )  # fmt: skip
    return model, debug


def _check(server: EmbeddingServer, vectors: list[Any], events: list[Any], debug: Any) -> None:
    np.testing.assert_allclose(vectors, deterministic_vectors(TEXTS, 16), atol=1e-6)
    assert server.max_in_flight > 1  # batches overlapped instead of going one after another
    sizes = [len(r.inputs) for r in server.requests]
    assert max(sizes) <= SIZE and sum(sizes) == len(TEXTS)
    starts = [e for e in events if isinstance(e, EmbeddingStartEvent)]
    ends = [e for e in events if isinstance(e, EmbeddingEndEvent)]
    assert len(starts) == len(ends) == 5
    assert [len(e.chunks) for e in ends] == [20, 20, 20, 20, 10]
    assert [t for e in ends for t in e.chunks] == TEXTS  # per batch, in input order
    [usage] = [e for e in events if isinstance(e, EmbeddingUsageEvent)]  # one client call
    assert usage.requests == len(sizes)
    assert usage.tokens == sum(server.count_tokens(t) for t in TEXTS)
    pairs = debug.get_event_pairs(CBEventType.EMBEDDING)
    assert len(pairs) == 5 and all(len(pair) == 2 for pair in pairs)


def test_llamaindex_batches_go_at_once_with_events_per_batch(
    slow_server: EmbeddingServer, events: list[Any]
) -> None:
    """get_text_embedding_batch hands the list to the client; events and callbacks per batch."""
    model, debug = _model(slow_server)
    try:
        vectors = model.get_text_embedding_batch(TEXTS)
    finally:
        model.close()
    _check(slow_server, vectors, events, debug)


async def test_llamaindex_async_batches_too(
    slow_server: EmbeddingServer, events: list[Any]
) -> None:
    """aget_text_embedding_batch does the same on the async client."""
    model, debug = _model(slow_server)
    vectors = await model.aget_text_embedding_batch(TEXTS)
    await model.aclose()
    _check(slow_server, vectors, events, debug)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_progress_bar_advances_per_batch(
    server: EmbeddingServer, capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    """LlamaIndex's show_progress and LangChain's show_progress_bar count every text."""
    li = GuardedEmbedding(fast_profile(server), api_key=KEY, embed_batch_size=SIZE)
    lc = GuardedEmbeddings(fast_profile(server, batching={"max_inputs": SIZE}), api_key=KEY,
                           show_progress_bar=True)  # fmt: skip
    if mode == "sync":
        li.get_text_embedding_batch(TEXTS, show_progress=True)
        got = lc.embed_documents(TEXTS)
    else:
        await li.aget_text_embedding_batch(TEXTS, show_progress=True)
        got = await lc.aembed_documents(TEXTS)
    await li.aclose()
    await lc.aclose()
    err = capsys.readouterr().err
    assert "Generating embeddings" in err and "Embedding" in err and "90/90" in err
    np.testing.assert_allclose(got, deterministic_vectors(TEXTS, server.dimensions), atol=1e-6)


def test_a_failed_batch_names_positions_in_the_whole_list(server: EmbeddingServer) -> None:
    """A batch that fails raises with failed_indices counted in the caller's list."""
    lc = GuardedEmbeddings(fast_profile(server, batching={"max_inputs": SIZE}), api_key=KEY,
                           show_progress_bar=True)  # fmt: skip
    server.script(Fault.status(400))
    with pytest.raises(BadRequestError) as info:
        lc.embed_documents(TEXTS)
    lc.close()
    failed = info.value.failed_indices
    assert failed and len(failed) in (10, SIZE)
    start = min(failed)
    assert start % SIZE == 0 and list(failed) == list(range(start, start + len(failed)))


# -- lists made as batches arrive ---------------------------------------------------------------
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_lists_are_the_clients_vectors_in_every_case(server: EmbeddingServer, mode: str) -> None:
    """embed_documents gives exactly embed().tolist(): distinct texts over many batches,
    duplicates, texts partly cached, and a batch retried after a 500."""
    from embedguard import EmbeddingClient

    profile = fast_profile(server, batching={"max_inputs": SIZE})
    lc = GuardedEmbeddings(EmbeddingClient(profile, api_key=KEY, environ={}, cache="memory"))
    run = lc.embed_documents if mode == "sync" else (lambda t: asyncio.run(lc.aembed_documents(t)))
    expected = deterministic_vectors(TEXTS, server.dimensions)
    plain = run(TEXTS)
    assert plain == expected.tolist() and all(type(v) is list for v in plain)
    dupes = TEXTS[:30] + TEXTS[:30]
    assert run(dupes) == deterministic_vectors(dupes, server.dimensions).tolist()
    fresh = [f"fresh {i}" for i in range(50)]
    mixed = fresh[:25] + TEXTS[:40] + fresh[25:]  # 40 cached, 50 sent
    server.script(Fault.status(500))
    assert run(mixed) == deterministic_vectors(mixed, server.dimensions).tolist()
    lc.close()


def test_each_batch_converts_its_own_rows(server: EmbeddingServer) -> None:
    """run_batches puts each successful batch's rows, as lists, at its rows; a failed batch's
    rows stay empty (the caller takes them from the array, or raises)."""
    from embedguard import EmbeddingClient
    from embedguard.core.planning import split_units
    from embedguard.core.send.drivers import run_batches

    profile = fast_profile(server, batching={"max_inputs": SIZE}, retry={"max_retries": 0})
    with EmbeddingClient(profile, api_key=KEY, environ={}) as client:
        ep = client._primary
        batches = split_units(TEXTS[:60], [3] * 60, ep.profile.batching, concurrency=1)
        lists: list[Any] = [None] * 60
        server.script(Fault.status(400))  # the first request to arrive fails for good
        result = run_batches(ep, batches, 60, lists)
    failed = sorted(result.failed)
    assert len(failed) == SIZE and all(lists[i] is None for i in failed)
    ok = [i for i in range(60) if i not in result.failed]
    assert result.vectors is not None
    assert [lists[i] for i in ok] == result.vectors[ok].tolist()
