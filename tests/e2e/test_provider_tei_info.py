"""TEI's /info: the client plans with the server's limits, fetched once, and survives without."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest

from embedguard import EmbeddingClient, InputValidationError, profiles
from embedguard.testing import EmbeddingServer, RecordedRequest, deterministic_vectors

from .conftest import fast

D = 16
TEXTS = [f"text number {i}" for i in range(40)]
LOGGER = "embedguard.core.send.discover"


def client_for(server: EmbeddingServer, **changes: Any) -> EmbeddingClient:
    """A TEI client aimed at ``server`` (no micro-batching, fast retries)."""
    profile = fast(profiles.tei(base_url=server.base_url("tei")), **changes)
    return EmbeddingClient(profile, environ={}, coalesce_window=0)


def paths(server: EmbeddingServer) -> list[tuple[str, int]]:
    """Each request's path and input count, in arrival order."""
    return [(r.path, len(r.inputs)) for r in server.requests]


def embeds(server: EmbeddingServer) -> list[RecordedRequest]:
    return [r for r in server.requests if r.path == "/tei/embed"]


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.fixture
def small() -> Any:
    """A server whose TEI allows 8 inputs per request (and says so on /info)."""
    with EmbeddingServer(dimensions=D, max_batch_size=8) as srv:
        yield srv


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_servers_batch_size_plans_the_requests(small: EmbeddingServer, mode: str) -> None:
    """/info says 8 inputs per request: 40 texts go as 5 requests of 8, after one GET /info."""
    with client_for(small) as client:
        call = client.embed if mode == "sync" else lambda t: asyncio.run(client.aembed(t))
        vectors = call(TEXTS)
        assert client._primary.profile.batching.max_inputs == 8
        assert client.profile.batching.max_inputs == 32  # the caller's profile is untouched
    np.testing.assert_array_equal(vectors, deterministic_vectors(TEXTS, D))
    assert paths(small) == [("/tei/info", 0)] + [("/tei/embed", 8)] * 5
    assert {r.status for r in small.requests} == {200}


def test_an_explicit_batch_size_wins(small: EmbeddingServer) -> None:
    """A profile that sets max_inputs itself keeps it: 40 texts as 10 requests of 4."""
    with client_for(small, batching={"max_inputs": 4}) as client:
        client.embed(TEXTS)
    assert [n for p, n in paths(small) if p == "/tei/embed"] == [4] * 10


def test_the_servers_input_length_refuses_long_texts_before_sending() -> None:
    """/info's max_input_length is the per-input limit: a longer text is refused unsent, or cut
    to it under context_policy='truncate'."""
    long_text = " ".join(f"w{i}" for i in range(40))
    with EmbeddingServer(dimensions=D, max_input_tokens=12) as srv:
        with client_for(srv) as client, pytest.raises(InputValidationError) as info:
            client.embed(["short", long_text])
        assert info.value.index == 1 and "limit of 12 tokens" in str(info.value)
        assert embeds(srv) == []
        profile = fast(profiles.tei(base_url=srv.base_url("tei")))
        with EmbeddingClient(profile, environ={}, context_policy="truncate") as cutting:
            cutting.embed(["short", long_text])
        [sent] = embeds(srv)
    assert sent.status == 200 and long_text.startswith(sent.inputs[1])


def test_one_fetch_for_concurrent_first_calls(small: EmbeddingServer) -> None:
    """Sixteen threads making their first call at once: exactly one GET /info."""
    with client_for(small) as client, ThreadPoolExecutor(16) as pool:
        results = list(
            pool.map(lambda i: client.embed([f"t{i}-{j}" for j in range(10)]), range(16))
        )
    assert all(r.shape == (10, D) for r in results)
    assert [p for p, _ in paths(small)].count("/tei/info") == 1
    assert max(len(r.inputs) for r in embeds(small)) <= 8


async def test_one_fetch_for_concurrent_tasks(small: EmbeddingServer) -> None:
    """Twenty tasks starting together: one GET /info, and every request within its limit."""
    async with client_for(small) as client:
        results = await asyncio.gather(*(client.aembed([f"a{i}-{j}" for j in range(9)])
                                         for i in range(20)))  # fmt: skip
    assert all(r.shape == (9, D) for r in results)
    assert [p for p, _ in paths(small)].count("/tei/info") == 1
    assert max(len(r.inputs) for r in embeds(small)) <= 8


def test_a_refusal_teaches_the_cap_for_later_calls(small: EmbeddingServer) -> None:
    """An explicit max_inputs above the server's cap: the refused batch is split, and the next
    call sends requests of the cap the refusal named."""
    texts = [f"doc {i}" for i in range(16)]
    with client_for(small, batching={"max_inputs": 16}) as client:
        np.testing.assert_array_equal(client.embed(texts), deterministic_vectors(texts, D))
        first = [(r.status, len(r.inputs)) for r in embeds(small)]
        small.reset()
        client.embed([f"other {i}" for i in range(16)])
    assert first == [(422, 16), (200, 8), (200, 8)]
    assert [(r.status, len(r.inputs)) for r in embeds(small)] == [(200, 8), (200, 8)]


# -- /info unavailable ----------------------------------------------------------------------
Handler = Callable[[httpx.Request], httpx.Response]


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno 111] Connection refused", request=request)


FAILURES: dict[str, Handler] = {
    "404": lambda request: httpx.Response(404),
    "garbage": lambda request: httpx.Response(200, content=b"<html>TEI</html>"),
    "no limits": lambda request: httpx.Response(200, json={"model_id": "x"}),
    "refused": refused,
}


class InfoFails(httpx.BaseTransport):
    """Real HTTP to the server, except GET /info, which ``handler`` answers."""

    def __init__(self, handler: Handler) -> None:
        self._handler, self._real = handler, httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/info"):
            return self._handler(request)
        return self._real.handle_request(request)

    def close(self) -> None:
        self._real.close()


class AsyncInfoFails(httpx.AsyncBaseTransport):
    """The async :class:`InfoFails`; ``handler`` may be a coroutine function."""

    def __init__(self, handler: Callable[[httpx.Request], Any]) -> None:
        self._handler, self._real = handler, httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/info"):
            answer = self._handler(request)
            return await answer if isinstance(answer, Awaitable) else answer  # type: ignore[no-any-return]
        return await self._real.handle_async_request(request)

    async def aclose(self) -> None:
        await self._real.aclose()


@pytest.mark.parametrize("failure", list(FAILURES))
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_info_down_keeps_the_defaults_with_one_warning(
    small: EmbeddingServer, caplog: pytest.LogCaptureFixture, failure: str, mode: str
) -> None:
    """A 404, garbage, an /info without limits or a refused connection: the calls succeed with
    the profile's 32 inputs per request (split further only by the server's refusals), and
    one warning names the failure, once for the client's life."""
    caplog.set_level(logging.WARNING, LOGGER)
    handler = FAILURES[failure]
    profile = fast(profiles.tei(base_url=small.base_url("tei")))
    client = EmbeddingClient(
        profile, environ={}, coalesce_window=0,
        transport=InfoFails(handler), async_transport=AsyncInfoFails(handler),
    )  # fmt: skip

    async def twice() -> list[np.ndarray]:
        async with client:
            return [await client.aembed(TEXTS), await client.aembed(TEXTS[:5])]

    if mode == "sync":
        with client:
            results = [client.embed(TEXTS), client.embed(TEXTS[:5])]
    else:
        results = asyncio.run(twice())
    np.testing.assert_array_equal(results[0], deterministic_vectors(TEXTS, D))
    assert client._primary.profile.batching.max_inputs <= 32
    [message] = warnings(caplog)
    assert "could not read the server's limits" in message and "/tei/info" in message
    assert "sk-" not in message


async def test_a_cancelled_fetch_is_tried_again(small: EmbeddingServer) -> None:
    """A first call cancelled while /info is pending leaves no half state: the next call
    fetches /info again and plans with it."""
    gate, started = asyncio.Event(), asyncio.Event()
    fetches: list[int] = []

    async def slow_then_real(request: httpx.Request) -> httpx.Response:
        fetches.append(1)
        started.set()
        if len(fetches) == 1:
            await gate.wait()  # never set: the call is cancelled here
        async with httpx.AsyncClient() as http:
            return await http.get(str(request.url))

    profile = fast(profiles.tei(base_url=small.base_url("tei")))
    async with EmbeddingClient(
        profile, environ={}, coalesce_window=0, async_transport=AsyncInfoFails(slow_then_real)
    ) as client:
        first = asyncio.ensure_future(client.aembed(TEXTS))
        await asyncio.wait_for(started.wait(), 5)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        vectors = await client.aembed(TEXTS)
    np.testing.assert_array_equal(vectors, deterministic_vectors(TEXTS, D))
    assert len(fetches) == 2
    assert [n for p, n in paths(small) if p == "/tei/embed"] == [8] * 5


def test_a_profile_that_sets_every_limit_fetches_nothing(small: EmbeddingServer) -> None:
    """Every batching limit set explicitly: no GET /info, the profile's values are used."""
    batching = {"max_inputs": 4, "max_tokens_per_request": 1000, "max_tokens_per_input": 100}
    with client_for(small, batching=batching) as client:
        client.embed(TEXTS[:8])
    assert paths(small) == [("/tei/embed", 4), ("/tei/embed", 4)]
