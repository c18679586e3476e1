"""Regressions for bugs that lived in the seams of the old send path, through the public API."""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import copy
import socket
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pybase64
import pytest

from embedguard import (
    CircuitBreaker,
    CircuitState,
    EmbeddingClient,
    ProviderTimeoutError,
    RateLimitError,
    ResponseValidationError,
    profiles,
)
from embedguard.core.config import BreakerPolicy
from embedguard.testing import EmbeddingServer, Fault

from .conftest import KEY, fast_profile


def _client(server: EmbeddingServer, **kwargs: object) -> EmbeddingClient:
    window = kwargs.pop("coalesce_window", 0.0)
    profile = fast_profile(server, **kwargs)  # type: ignore[arg-type]
    return EmbeddingClient(
        profile,
        api_key=KEY,
        environ={},
        coalesce_window=window,  # type: ignore[arg-type]
    )


def _run_in_thread(fn: object, timeout: float = 10.0) -> object:
    """Run ``fn`` on a thread; fail the test (instead of hanging) if it does not return."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = fn()  # type: ignore[operator]
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the call hung"
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box.get("value")


# -- 1. every caller owns its result --------------------------------------------------------------
@pytest.mark.parametrize("window", [0.0, 0.05])
def test_concurrent_threads_get_arrays_of_their_own(server: EmbeddingServer, window: float) -> None:
    """Threads sharing one request (single-flight or a window) each get an array nobody else has."""
    server.script(Fault.delay(0.2))  # the first request is slow: the others join it
    with _client(server, coalesce_window=window) as client:
        barrier = threading.Barrier(3)
        results: list[np.ndarray] = []

        def ask() -> None:
            barrier.wait()
            results.append(client.embed_query("the same question"))

        threads = [threading.Thread(target=ask) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert len(results) == 3
    expected = results[0].copy()
    results[0][:] = 0.0  # one caller edits its vector in place
    for other in results[1:]:
        assert not np.shares_memory(other, results[0])
        np.testing.assert_array_equal(other, expected)


async def test_concurrent_tasks_get_arrays_of_their_own(server: EmbeddingServer) -> None:
    """Tasks sharing texts (single-flight and micro-batched) each get their own writable array."""
    server.script(Fault.delay(0.2))
    async with _client(server, coalesce_window=0.02) as client:
        calls = [client.aembed(["a", "b"]), client.aembed(["a", "b"]), client.aembed_query("a")]
        first, second, query = await asyncio.gather(*calls)
    before = second.copy()
    first[:] = 1.0
    np.testing.assert_array_equal(second, before)
    np.testing.assert_array_equal(query, before[0])
    assert not np.shares_memory(first, second) and not np.shares_memory(query, second)


# -- 2. Ctrl-C inside the coalescing window --------------------------------------------------------
def test_interrupt_while_queued_behind_a_small_call_leaves_later_calls_working(
    server: EmbeddingServer,
) -> None:
    """A small call interrupted while it waits its turn to share a request does not hang later
    calls (nor the calls queued with it)."""
    server.script(Fault.delay(0.5))  # the request in flight is slow: the next call queues
    with _client(server, coalesce_window=0.05) as client:
        holder = threading.Thread(target=client.embed_query, args=("in flight",))
        holder.start()
        time.sleep(0.15)
        threading.Timer(0.1, _thread.interrupt_main).start()
        with pytest.raises(KeyboardInterrupt):
            client.embed_query("interrupted")
        holder.join(10)
        again = _run_in_thread(lambda: client.embed_query("interrupted"))
        other = _run_in_thread(lambda: client.embed_query("another"))
    assert isinstance(again, np.ndarray) and isinstance(other, np.ndarray)


def test_a_lone_small_call_is_sent_at_once(server: EmbeddingServer) -> None:
    """With nothing else pending, a query does not wait for the coalescing window."""
    with _client(server, coalesce_window=60.0) as client:
        started = time.monotonic()
        client.embed_query("alone")
        asyncio.run(client.aembed_query("alone too"))
        assert time.monotonic() - started < 30.0  # not one 60 s window, let alone two


# -- 3. slots and probe slots survive interrupts and odd exceptions --------------------------------
def test_interrupt_while_waiting_for_a_connection_slot_loses_no_slot(
    server: EmbeddingServer,
) -> None:
    """A caller interrupted while queued for the only connection slot does not keep it."""
    server.script(Fault.delay(0.6))
    with _client(server, pool_size=1) as client:
        holder = threading.Thread(target=client.embed, args=(["holds the slot"],))
        holder.start()
        time.sleep(0.15)  # the holder is in flight; the next call queues for the slot
        threading.Timer(0.1, _thread.interrupt_main).start()
        with pytest.raises(KeyboardInterrupt):
            client.embed(["queued behind it"])
        holder.join(10)
        vectors = _run_in_thread(lambda: client.embed(["after the interrupt"]))
    assert isinstance(vectors, np.ndarray) and vectors.shape[0] == 1


class _RawServer:
    """A one-connection-at-a-time HTTP server writing whatever bytes a test gives it."""

    def __init__(self, reply: object) -> None:
        self._reply = reply
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(
                next(
                    line.split(b":")[1]
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
            )
            while len(body) < length:
                body += conn.recv(65536)
            with contextlib.suppress(OSError):
                self._reply(conn)  # type: ignore[operator]

    def close(self) -> None:
        self._sock.close()


@pytest.fixture
def raw() -> Iterator[list[_RawServer]]:
    servers: list[_RawServer] = []
    yield servers
    for s in servers:
        s.close()


def test_a_huge_claimed_dimension_is_typed_and_frees_the_probe(raw: list[_RawServer]) -> None:
    """A reply whose vectors would not fit in memory is a typed error; the half-open probe slot
    is given back."""
    d = 5_000_001
    item = pybase64.b64encode(np.zeros(d, np.float32).tobytes())
    body = b'{"object":"list","data":[{"object":"embedding","index":0,"embedding":"' + item
    body += b'"}],"model":"m","usage":{"prompt_tokens":1,"total_tokens":1}}'

    replies = iter([b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"])

    def reply(conn: socket.socket) -> None:
        head = next(replies, None)
        if head is not None:  # the first request fails: the breaker opens
            conn.sendall(head)
            return
        conn.sendall(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            + f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
            + body
        )

    raw.append(_RawServer(reply))
    clock = [0.0]
    policy = BreakerPolicy(
        failure_threshold=1, half_open_max_attempts=1, success_threshold=1, open_timeout=10.0
    )
    breaker = CircuitBreaker(policy, clock=lambda: clock[0])
    profile = profiles.openai_compatible(
        "m", base_url=f"http://127.0.0.1:{raw[0].port}/v1", retry={"max_retries": 0},
        batching={"max_inputs": 4096}, pool_size=1,
    )  # fmt: skip
    texts = [f"text {i}" for i in range(4000)]  # 4000 x 5,000,001 float32: about 80 GB
    with EmbeddingClient(
        profile, api_key=KEY, environ={}, breaker=breaker, coalesce_window=0
    ) as client:
        with pytest.raises(Exception):  # noqa: B017 - any failure: it only opens the breaker
            client.embed(["first"])
        assert breaker.state is CircuitState.OPEN
        clock[0] += 11.0  # half-open: the next request is the only probe
        with pytest.raises(ResponseValidationError):
            client.embed(texts)
        assert breaker.stats().probes_in_flight == 0
        assert breaker.state is CircuitState.OPEN  # the probe failed, and said so


def _blocking(client: EmbeddingClient) -> Callable[[list[str]], np.ndarray]:
    return lambda texts: asyncio.run(client.aembed(texts))


# -- 4. one deadline covers the response headers ---------------------------------------------------
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_trickled_response_headers_time_out_on_the_request_deadline(
    raw: list[_RawServer], mode: str
) -> None:
    """A server trickling header bytes is cut at the request timeout, sync and async."""

    def reply(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        for _ in range(60):  # 30 s of one header byte every half second
            conn.sendall(b"x")
            time.sleep(0.5)

    raw.append(_RawServer(reply))
    profile = profiles.openai_compatible(
        "m", base_url=f"http://127.0.0.1:{raw[0].port}/v1", retry={"max_retries": 0},
        timeouts={"request": 1.0, "connect": 1.0},
    )  # fmt: skip
    started = time.monotonic()
    with EmbeddingClient(profile, api_key=KEY, environ={}) as client:
        call = client.embed if mode == "sync" else _blocking(client)
        with pytest.raises(ProviderTimeoutError):
            call(["slow headers"])
    assert time.monotonic() - started < 10  # not the 30 s the server would trickle for


# -- 5. a batch that gave up on 429s does not stall later calls ------------------------------------
def test_after_giving_up_on_429s_the_next_call_is_sent_at_once(server: EmbeddingServer) -> None:
    """Once the first (calibrating) batch gives up on 429s, later calls do not wait a timeout."""
    server.script(*[Fault.rate_limited(0.01)] * 3)
    profile = fast_profile(
        server, retry={"max_retries": 1}, timeouts={"request": 30.0, "connect": 5.0},
        rate_limit={"requests_per_minute": 100_000, "tokens_per_minute": 10_000_000},
    )  # fmt: skip
    with EmbeddingClient(profile, api_key=KEY, environ={}, coalesce_window=0) as client:
        with pytest.raises(RateLimitError):
            client.embed(["refused twice"])
        started = time.monotonic()
        client.embed(["the next call"])
        assert time.monotonic() - started < 10  # far below the 30 s request timeout


# -- 6. foreign exceptions keep their identity -----------------------------------------------------
class _NeedsKeywordError(Exception):
    """Like vcrpy's CannotOverwriteExistingCassetteException: copy.copy() cannot rebuild it."""

    def __init__(self, *, cassette: str) -> None:
        super().__init__(f"cannot overwrite {cassette}")
        self.cassette = cassette


def test_foreign_exceptions_propagate_unchanged(server: EmbeddingServer) -> None:
    """An exception that is not embedguard's reaches the caller as itself, message intact."""
    import httpx

    raised = _NeedsKeywordError(cassette="recording.yaml")
    with pytest.raises(TypeError):
        copy.copy(raised)  # why the old path, copying every error, replaced it with another

    def handler(request: httpx.Request) -> httpx.Response:
        raise raised

    profile = fast_profile(server)
    client = EmbeddingClient(
        profile, api_key=KEY, environ={}, transport=httpx.MockTransport(handler), coalesce_window=0
    )
    with client, pytest.raises(_NeedsKeywordError) as info:
        client.embed(["text"])
    assert info.value is raised and "recording.yaml" in str(info.value)
