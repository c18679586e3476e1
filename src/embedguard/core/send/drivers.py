"""The two drivers of the attempt flow, the HTTP transport they send with, and the batch fan-out.

A driver runs :func:`~embedguard.core.send.attempt.attempt_flow` for one batch: it performs each
effect the flow yields (wait, send) and hands the outcome back. :func:`drive` does it on this
thread (``time.sleep``, ``httpx.Client``), :func:`adrive` as a coroutine (``asyncio.sleep``,
``httpx.AsyncClient``); that is all that differs. If the driver itself is interrupted
(``KeyboardInterrupt``, cancellation), it closes the flow, whose ``finally`` settles the batch.

:func:`run_batches` / :func:`arun_batches` run one group's batches at once, on the endpoint's
thread pool or as tasks, each batch decoding straight into its rows of one result array.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
import weakref
from collections import deque
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from contextvars import ContextVar, copy_context
from typing import TYPE_CHECKING, Any, TypeVar

import httpcore
import httpx
import numpy as np

from .._lists import as_lists
from ..config import ProviderProfile
from ..planning import Batch
from .attempt import Abort, Gate, Outcome, Reply, Send, Split, Wait, attempt_flow
from .groups import GroupResult, Part, combine
from .pools import LoopPool, bound_reads, close_at_loop_shutdown

if TYPE_CHECKING:
    from .endpoint import Endpoint

__all__ = ["HttpTransport", "Slots", "adrive", "arun_batches", "drive", "run_batches"]

Flow = Generator[Gate | Wait | Send, Outcome, np.ndarray | Split]


def drive(flow: Flow, ep: Endpoint) -> np.ndarray | Split:
    """Run ``flow`` on this thread."""
    outcome: Outcome = None
    try:
        while True:
            effect = flow.send(outcome)
            outcome = None
            if type(effect) is Send:
                try:
                    outcome = ep.transport.send(effect)
                except Exception as exc:  # the flow classifies it
                    outcome = exc
            elif type(effect) is Wait:
                time.sleep(effect.seconds)
            elif type(effect) is Gate:
                with contextlib.suppress(FutureTimeoutError):
                    effect.future.result(effect.timeout)
    except StopIteration as done:
        value: np.ndarray | Split = done.value
        return value
    finally:
        flow.close()


async def adrive(flow: Flow, ep: Endpoint) -> np.ndarray | Split:
    """Run ``flow`` as a coroutine."""
    outcome: Outcome = None
    try:
        while True:
            effect = flow.send(outcome)
            outcome = None
            if type(effect) is Send:
                try:
                    outcome = await ep.transport.asend(effect)
                except Exception as exc:
                    outcome = exc
            elif type(effect) is Wait:
                await asyncio.sleep(effect.seconds)
            elif type(effect) is Gate:
                waiter = asyncio.shield(asyncio.wrap_future(effect.future))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter, effect.timeout)
    except StopIteration as done:
        value: np.ndarray | Split = done.value
        return value
    finally:
        flow.close()


# -- fan-out: one group's batches at once ------------------------------------------------------
Lists = list[Any]
"""Rows as Python lists, filled by each batch as it arrives (see :func:`run_batches`)."""


def run_batches(
    ep: Endpoint, batches: list[Batch], n: int, lists: Lists | None = None
) -> GroupResult:
    """Send ``batches`` (covering rows ``0..n-1``) at once on the endpoint's thread pool.

    With ``lists`` (``n`` items), each batch that succeeds also puts its rows there as Python
    lists (``ndarray.tolist()``) on its own thread, while the others are still on the wire: a
    caller that needs lists (the LangChain and LlamaIndex adapters) then pays little after the
    last reply. Rows of failed batches stay as they were.
    """
    out = None if ep.dimensions is None else np.empty((n, ep.dimensions), np.float32)
    abort = Abort()
    if len(batches) == 1:
        parts = _run(ep, batches[0], abort, _rows(out, batches[0]), lists)
    else:
        pool = _pool(ep)
        # Each batch runs in a copy of the caller's context, so tracing spans nest under it.
        futures = [
            pool.submit(copy_context().run, _run, ep, b, abort, _rows(out, b), lists)
            for b in batches
        ]
        parts = [p for f in futures for p in f.result()]
    if len(parts) == 1 and isinstance(parts[0][1], np.ndarray):
        return GroupResult(parts[0][1])  # one batch covering every row, decoded in place
    return combine(n, parts, out)


def _run(
    ep: Endpoint, batch: Batch, abort: Abort, out: np.ndarray | None, lists: Lists | None
) -> list[Part]:
    try:
        value = drive(attempt_flow(ep, batch, out, abort), ep)
    except Exception as exc:
        return [(batch, exc)]
    if isinstance(value, Split):
        return [
            p for half in value.halves for p in _run(ep, half, abort, _sub(out, batch, half), lists)
        ]
    if lists is not None:
        lists[batch.units[0] : batch.units[-1] + 1] = as_lists(value)
    return [(batch, value)]


async def arun_batches(
    ep: Endpoint, batches: list[Batch], n: int, lists: Lists | None = None
) -> GroupResult:
    """Async :func:`run_batches`: the batches run as concurrent tasks."""
    out = None if ep.dimensions is None else np.empty((n, ep.dimensions), np.float32)
    abort = Abort()
    if len(batches) == 1:  # no task to make: this one runs in the caller's
        parts = await _arun(ep, batches[0], abort, _rows(out, batches[0]), lists)
    else:
        done = await asyncio.gather(*(_arun(ep, b, abort, _rows(out, b), lists) for b in batches))
        parts = [p for part in done for p in part]
    if len(parts) == 1 and isinstance(parts[0][1], np.ndarray):
        return GroupResult(parts[0][1])
    return combine(n, parts, out)


async def _arun(
    ep: Endpoint, batch: Batch, abort: Abort, out: np.ndarray | None, lists: Lists | None
) -> list[Part]:
    try:
        value = await adrive(attempt_flow(ep, batch, out, abort), ep)
    except Exception as exc:
        return [(batch, exc)]
    if isinstance(value, Split):
        halves = [_arun(ep, h, abort, _sub(out, batch, h), lists) for h in value.halves]
        return [p for part in await asyncio.gather(*halves) for p in part]
    if lists is not None:
        lists[batch.units[0] : batch.units[-1] + 1] = as_lists(value)
    return [(batch, value)]


def _pool(ep: Endpoint) -> ThreadPoolExecutor:
    with ep.lock:
        if ep.executor is None:
            ep.executor = ThreadPoolExecutor(ep.profile.pool_size, thread_name_prefix="embedguard")
        return ep.executor


def _rows(out: np.ndarray | None, batch: Batch) -> np.ndarray | None:
    return None if out is None else out[batch.units[0] : batch.units[-1] + 1]


def _sub(out: np.ndarray | None, batch: Batch, half: Batch) -> np.ndarray | None:
    """The rows of ``out`` (a batch's rows) that belong to ``half`` of that batch."""
    if out is None:
        return None
    start = half.units[0] - batch.units[0]
    return out[start : start + len(half.units)]


# -- HTTP ---------------------------------------------------------------------------------------
_deadline: ContextVar[float] = ContextVar("embedguard_deadline", default=math.inf)


class _Deadline(dict[str, float | None]):
    """httpx's per-request timeout extension: each phase's timeout is at most the time left."""

    def __init__(self, timeout: httpx.Timeout, at: float) -> None:
        super().__init__(timeout.as_dict())
        self.at = at

    def get(self, key: str, default: Any = None) -> Any:
        left = max(1e-3, self.at - time.monotonic())
        value = super().get(key, default)
        return left if value is None else min(value, left)


class _DeadlineStream:
    """A socket stream whose every read and write ends at the attempt's deadline.

    httpcore reads the read timeout once per response phase and applies it to each ``recv``, so
    a server trickling header bytes could hold a sync request forever; here each ``recv`` gets
    at most the time left before the deadline of the request this thread is sending.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def _bound(self, timeout: float | None) -> float:
        left = _deadline.get() - time.monotonic()
        if left <= 0:
            raise httpcore.ReadTimeout("the response took longer than the request timeout")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data: bytes = self._stream.read(max_bytes, self._bound(timeout))
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._bound(timeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> _DeadlineStream:  # fmt: skip
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _Cookies(httpx.Cookies):
    """httpx's cookie store, without its cost on the replies that set no cookie.

    httpx hands every reply to the standard library's cookie jar, which copies the headers into
    two ``email.message.Message`` objects: a tenth of a small call's CPU, while embedding APIs
    seldom set cookies. Replies that do are stored as before.
    """

    def extract_cookies(self, response: httpx.Response) -> None:
        if any(key.lower() in _SET_COOKIE for key, _ in response.headers.raw):
            super().extract_cookies(response)


_SET_COOKIE = (b"set-cookie", b"set-cookie2")
_Client = TypeVar("_Client", httpx.Client, httpx.AsyncClient)


def _lean(client: _Client) -> _Client:
    """``client`` (one embedguard created) with the lighter cookie store."""
    if isinstance(getattr(client, "_cookies", None), httpx.Cookies):
        client._cookies = _Cookies(client.cookies)
    return client


def _lowered(headers: httpx.Headers) -> dict[str, str]:
    """A reply's headers as a plain dict with lower-case names (repeated ones joined by ", ",
    as httpx does), built once from the raw bytes: every later lookup is a dict lookup, where
    ``httpx.Headers`` decodes every header again on each ``items()`` or ``get``."""
    out: dict[str, str] = {}
    for key, value in headers.raw:
        name = key.decode("latin-1").lower()
        try:
            text = value.decode("ascii")
        except UnicodeDecodeError:
            text = value.decode(headers.encoding)
        out[name] = f"{out[name]}, {text}" if name in out else text
    return out


class HttpTransport:
    """Sends attempts over HTTP, sync or async, under one bound shared by threads and loops.

    Each attempt has one deadline, the profile's request timeout, covering the wait for a
    connection, sending, the response headers and the whole body.
    """

    def __init__(
        self,
        profile: ProviderProfile,
        *,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._timeout = httpx.Timeout(profile.timeouts.request, connect=profile.timeouts.connect)
        self._total = profile.timeouts.request
        limits = httpx.Limits(
            max_connections=profile.pool_size, max_keepalive_connections=profile.pool_size
        )
        options: dict[str, Any] = {
            "timeout": self._timeout, "limits": limits, "follow_redirects": False
        }  # fmt: skip
        self.owns_http = http_client is None
        self.http = http_client or _lean(httpx.Client(transport=transport, **options))
        if http_client is None and transport is None:
            bound_reads(self.http._transport, _DeadlineStream)
        self._urls: dict[str, httpx.URL] = {}
        self._async_options = {**options, "transport": async_transport}
        self._user_ahttp = async_http_client
        # An httpx.AsyncClient belongs to one event loop: one pool per loop.
        self._ahttp: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopPool]
        self._ahttp = weakref.WeakKeyDictionary()
        self._slots = Slots(profile.pool_size)  # one bound for threads and every event loop

    def send(self, attempt: Send) -> Reply:
        """POST and read the whole reply within the request timeout."""
        self._slots.acquire()
        at = time.monotonic() + self._total
        token = _deadline.set(at)
        try:
            started = time.perf_counter()  # latency: once sending
            response = self.http.post(
                self._url(attempt.request.url), content=attempt.body, headers=attempt.headers,
                extensions={"timeout": _Deadline(self._timeout, at)},
            )  # fmt: skip
            return Reply(
                response.status_code, _lowered(response.headers), response.content,
                time.perf_counter() - started,
            )  # fmt: skip
        finally:
            _deadline.reset(token)
            self._slots.release()

    async def asend(self, attempt: Send) -> Reply:
        """Async :meth:`send`."""
        await self._slots.aacquire()
        try:
            started = time.perf_counter()
            http = self._user_ahttp or await self._loop_http()
            at = time.monotonic() + self._total
            async with asyncio.timeout(self._total):  # the whole attempt, headers and body
                response = await http.post(
                    self._url(attempt.request.url), content=attempt.body, headers=attempt.headers,
                    extensions={"timeout": _Deadline(self._timeout, at)},
                )  # fmt: skip
            return Reply(
                response.status_code, _lowered(response.headers), response.content,
                time.perf_counter() - started,
            )  # fmt: skip
        finally:
            self._slots.release()

    def _url(self, url: str) -> httpx.URL:
        """``url`` parsed once: an endpoint posts to one URL (or one per model), and httpx
        would parse the string again on every request."""
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = httpx.URL(url)
            if len(self._urls) < 64:
                self._urls[url] = parsed
        return parsed

    async def _loop_http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        pool = self._ahttp.get(loop)
        if pool is None:
            http = _lean(httpx.AsyncClient(**self._async_options))
            closer = close_at_loop_shutdown(http)
            await anext(closer)
            pool = self._ahttp[loop] = LoopPool(http, closer)
        return pool.http

    def close(self) -> None:
        """Close the sync pool, if this transport created it."""
        if self.owns_http:
            self.http.close()

    async def aclose(self) -> None:
        """Close the running loop's async pool."""
        pool = self._ahttp.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.closer.aclose()


# -- the in-flight bound and per-loop pools ------------------------------------------------------
_Waiter = tuple[asyncio.AbstractEventLoop | None, "asyncio.Future[None] | threading.Event"]


class Slots:
    """A counting semaphore that sync callers and coroutines of any loop wait on together.

    Waiters are served in arrival order; a freed slot is handed straight to the next waiter, so
    the bound holds across threads and loops (``asyncio.Semaphore`` belongs to one loop, and a
    ``threading.Semaphore`` would block an event loop). A waiter interrupted while waiting
    (``KeyboardInterrupt``, cancellation) leaves the queue, or passes on a slot it was handed.
    """

    def __init__(self, size: int) -> None:
        self._lock = threading.Lock()
        self._free = size
        self._waiters: deque[_Waiter] = deque()

    def __repr__(self) -> str:
        return f"Slots(free={self._free}, waiting={len(self._waiters)})"

    def acquire(self) -> None:
        """Take a slot, blocking this thread until one is free."""
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return
            event = threading.Event()
            waiter: _Waiter = (None, event)
            self._waiters.append(waiter)
        try:
            event.wait()
        except BaseException:
            with self._lock:
                queued = waiter in self._waiters
                if queued:
                    self._waiters.remove(waiter)
            if not queued:  # the slot was handed to us as we were interrupted: pass it on
                self.release()
            raise

    async def aacquire(self) -> None:
        """Take a slot without blocking the event loop."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return
            future: asyncio.Future[None] = loop.create_future()
            waiter: _Waiter = (loop, future)
            self._waiters.append(waiter)
        try:
            await future
        except BaseException:
            with self._lock:
                queued = waiter in self._waiters
                if queued:
                    self._waiters.remove(waiter)
            if not queued and future.done() and not future.cancelled():
                self.release()  # handed a slot just before the cancellation landed
            # Otherwise the slot is on its way; _hand() sees the cancelled future and frees it.
            raise

    def release(self) -> None:
        """Give a slot back: to the longest waiter, else to the pool."""
        with self._lock:
            while self._waiters:
                loop, waiter = self._waiters.popleft()
                if isinstance(waiter, threading.Event):
                    waiter.set()
                    return
                if loop is not None and not loop.is_closed():
                    loop.call_soon_threadsafe(self._hand, waiter)
                    return
            self._free += 1

    def _hand(self, future: asyncio.Future[None]) -> None:
        if future.done():  # cancelled meanwhile: pass the slot on
            self.release()
        else:
            future.set_result(None)
