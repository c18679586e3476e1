"""The send loops: the only code that exists twice (sync with threads, async with tasks).

Everything they decide with (breaker, limits, retries, validation, metrics) lives in the shared,
I/O-free :class:`~embedguard.core._pipeline.BatchRun`; this module only moves bytes and waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from contextvars import copy_context
from dataclasses import replace
from typing import Any

import httpx
import numpy as np

from . import errors
from ._flight import GroupResult
from ._loops import LoopPool, close_at_loop_shutdown
from ._pipeline import Abort, Attempt, BatchRun, Done, Outcome, Reply, Retry, Shared, Split
from ._slots import Slots
from .planning import Batch, split_units
from .providers.local import LocalModel

__all__ = ["Engine"]

Part = tuple[Batch, np.ndarray | BaseException]

# Failures that every other batch of the call would meet too: skip those not sent yet. Other
# failures (a bad input, a provider error after its retries) stay with their own batch.
_FATAL = (
    errors.AuthenticationError,
    errors.QuotaExhaustedError,
    errors.ModelNotFoundError,
    errors.CircuitOpenError,
    errors.ConfigurationError,
)


def group_result(n: int, parts: list[Part], out: np.ndarray | None) -> GroupResult:
    """Put each batch's vectors at its rows; rows of failed batches carry their error.

    Batches that decoded straight into ``out`` (the usual case) need no copy at all.
    """
    if len(parts) == 1 and not isinstance(parts[0][1], BaseException):
        return GroupResult(parts[0][1])  # one batch covering every row
    vectors = out
    failed: dict[int, BaseException] = {}
    for batch, value in parts:
        if isinstance(value, BaseException):
            failed.update(dict.fromkeys(batch.units, value))
            continue
        if vectors is None or vectors.shape[1] != value.shape[1]:
            vectors = np.empty((n, value.shape[1]), dtype=np.float32)
        rows = slice(batch.units[0], batch.units[-1] + 1)  # a batch is a run of rows
        if not np.may_share_memory(vectors[rows], value):
            vectors[rows] = value
    if len(failed) == n:
        vectors = None
    return GroupResult(vectors, failed)


def _buffer(n: int, d: int | None) -> np.ndarray | None:
    """The result array a group's batches decode into, when the vector size is known."""
    return None if d is None else np.empty((n, d), dtype=np.float32)


def _rows(out: np.ndarray | None, batch: Batch) -> np.ndarray | None:
    return None if out is None else out[batch.units[0] : batch.units[-1] + 1]


def _cut(out: np.ndarray | None, sizes: tuple[int, int]) -> tuple[np.ndarray | None, ...]:
    if out is None:
        return (None, None)
    return (out[: sizes[0]], out[sizes[0] :])


class Engine:
    """Sends batches of one client's texts, sync or async, under the client-wide bound."""

    def __init__(
        self,
        shared: Shared,
        *,
        local: LocalModel | None,
        http: httpx.Client,
        async_http: httpx.AsyncClient | None,
        async_options: dict[str, Any],
        timeout: httpx.Timeout,
    ) -> None:
        self.shared = shared
        self.local = local
        self.http = http
        self._user_ahttp = async_http
        self._async_options = async_options
        self._timeout = timeout
        pool_size = shared.profile.pool_size
        self._slots = Slots(pool_size)  # one bound for threads and every event loop
        self._total = shared.profile.timeouts.request
        # Async pools and semaphores belong to one event loop: one of each per loop.
        self._ahttp: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopPool]
        self._ahttp = weakref.WeakKeyDictionary()
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _batches(self, texts: list[str], tokens: list[int]) -> list[Batch]:
        profile = self.shared.profile
        return split_units(texts, tokens, profile.batching, concurrency=profile.pool_size)

    # -- sync ----------------------------------------------------------------------------------
    def send(self, texts: list[str], tokens: list[int]) -> GroupResult:
        """Embed distinct ``texts`` (batches run on a thread pool); failures are per row."""
        batches = self._batches(texts, tokens)
        out = _buffer(len(texts), self.shared.dimensions)
        abort = Abort()
        if len(batches) == 1:
            parts = self._batch_sync(batches[0], abort, _rows(out, batches[0]))
        else:
            pool = self._pool()
            # Each batch runs in a copy of the caller's context, so tracing spans nest under it.
            futures = [
                pool.submit(copy_context().run, self._batch_sync, b, abort, _rows(out, b))
                for b in batches
            ]
            parts = [p for f in futures for p in f.result()]
        return group_result(len(texts), parts, out)

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self.shared.profile.pool_size, thread_name_prefix="embedguard"
                )
            return self._executor

    def _batch_sync(self, batch: Batch, abort: Abort, out: np.ndarray | None) -> list[Part]:
        run = BatchRun(self.shared, batch, out)
        try:
            if self.local is not None and not self.local.loaded:  # not part of any latency
                self.local.executor.submit(self.local.load).result()
            if (gate := self.shared.calibration_gate()) is not None:
                with contextlib.suppress(FutureTimeoutError):
                    gate.result(timeout=self._total)
            while True:
                abort.check()
                permit, request = run.begin()
                reservation = self.shared.limiter.acquire(self.shared.expected_tokens(batch))
                attempt = run.prepare(permit, request, reservation)
                outcome = self._exchange_sync(run, attempt)
                if isinstance(outcome, Done):
                    return [(batch, outcome.vectors)]
                if isinstance(outcome, Split):
                    return [
                        p
                        for half, rows in zip(outcome.halves, _cut(out, outcome.sizes), strict=True)
                        for p in self._batch_sync(half, abort, rows)
                    ]
                if isinstance(outcome, Retry) and outcome.delay > 0:
                    time.sleep(outcome.delay)
        except Exception as exc:
            if isinstance(exc, _FATAL):
                abort.set(exc)
            return [(batch, exc)]

    def _exchange_sync(self, run: BatchRun, attempt: Attempt) -> Outcome:
        if self.local is not None:
            try:
                result = self.local.call(
                    run.batch.texts, dimensions=self.shared.dimensions, timeout=self._timeout.read
                )
            except BaseException:
                self.abandon(attempt)
                raise
            return run.finish(attempt, result)
        self._slots.acquire()
        try:
            attempt = replace(attempt, started=time.perf_counter())  # latency: once sending
            reply = self._post(attempt)
        except httpx.HTTPError as exc:
            return run.settle(attempt, None, exc)
        except BaseException:
            self.abandon(attempt)
            raise
        finally:
            self._slots.release()
        return run.settle(attempt, reply, None)

    def _post(self, attempt: Attempt) -> Reply:
        """POST and read the whole response within the request timeout (not just each read)."""
        deadline = time.monotonic() + self._total
        request = attempt.request
        with self.http.stream(
            "POST", request.url, content=attempt.body, headers=attempt.headers,
            timeout=self._timeout,
        ) as response:  # fmt: skip
            chunks = []
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout("the response took longer than the request timeout")
            return Reply(response.status_code, response.headers, b"".join(chunks))

    # -- async ---------------------------------------------------------------------------------
    async def asend(self, texts: list[str], tokens: list[int]) -> GroupResult:
        """Async :meth:`send`: the batches run as concurrent tasks."""
        batches = self._batches(texts, tokens)
        out = _buffer(len(texts), self.shared.dimensions)
        abort = Abort()
        parts = await asyncio.gather(*(self._batch_async(b, abort, _rows(out, b)) for b in batches))
        return group_result(len(texts), [p for part in parts for p in part], out)

    async def _batch_async(self, batch: Batch, abort: Abort, out: np.ndarray | None) -> list[Part]:
        run = BatchRun(self.shared, batch, out)
        try:
            if self.local is not None and not self.local.loaded:  # not part of any latency
                await asyncio.wrap_future(self.local.executor.submit(self.local.load))
            if (gate := self.shared.calibration_gate()) is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(gate)), self._total)
            while True:
                abort.check()
                permit, request = run.begin()
                try:
                    reservation = await self.shared.limiter.aacquire(
                        self.shared.expected_tokens(batch)
                    )
                except BaseException:
                    self.shared.breaker.release(permit)
                    raise
                attempt = run.prepare(permit, request, reservation)
                outcome = await self._exchange_async(run, attempt)
                if isinstance(outcome, Done):
                    return [(batch, outcome.vectors)]
                if isinstance(outcome, Split):
                    halves = [
                        self._batch_async(half, abort, rows)
                        for half, rows in zip(outcome.halves, _cut(out, outcome.sizes), strict=True)
                    ]
                    return [p for part in await asyncio.gather(*halves) for p in part]
                if isinstance(outcome, Retry) and outcome.delay > 0:
                    await asyncio.sleep(outcome.delay)
        except Exception as exc:
            if isinstance(exc, _FATAL):
                abort.set(exc)
            return [(batch, exc)]

    async def _exchange_async(self, run: BatchRun, attempt: Attempt) -> Outcome:
        try:
            if self.local is not None:
                result = await self.local.acall(
                    run.batch.texts, dimensions=self.shared.dimensions, timeout=self._timeout.read
                )
                return run.finish(attempt, result)
            await self._slots.aacquire()
            try:
                attempt = replace(attempt, started=time.perf_counter())  # latency: once sending
                http = await self._async_http()
                async with asyncio.timeout(self._total):  # the whole response, not each read
                    response = await http.post(
                        attempt.request.url,
                        content=attempt.body,
                        headers=attempt.headers,
                        timeout=self._timeout,
                    )
            finally:
                self._slots.release()
        except (httpx.HTTPError, TimeoutError) as exc:
            return run.settle(attempt, None, exc)
        except BaseException:  # cancelled: give the probe slot and the reservation back
            self.abandon(attempt)
            raise
        reply = Reply(response.status_code, response.headers, response.content)
        return run.settle(attempt, reply, None)

    def abandon(self, attempt: Attempt) -> None:
        """An attempt that will never settle: return its probe slot and rate-limit booking."""
        self.shared.calibrated()
        self.shared.breaker.release(attempt.permit)
        self.shared.limiter.cancel(attempt.reservation)

    async def _async_http(self) -> httpx.AsyncClient:
        if self._user_ahttp is not None:
            return self._user_ahttp
        loop = asyncio.get_running_loop()
        pool = self._ahttp.get(loop)
        if pool is None:
            http = httpx.AsyncClient(**self._async_options)
            closer = close_at_loop_shutdown(http)
            await anext(closer)
            pool = self._ahttp[loop] = LoopPool(http, closer)
        return pool.http

    # -- shutdown ------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the worker threads (the caller closes the HTTP clients it owns)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        if self.local is not None:
            self.local.close()

    async def aclose(self) -> None:
        """Close the running loop's async pool."""
        pool = self._ahttp.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.closer.aclose()
