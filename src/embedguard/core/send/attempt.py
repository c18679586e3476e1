"""The life of one batch, written once: permit, booking, request, send, classify, retry or settle.

:func:`attempt_flow` is a sans-IO generator, in the manner of httpx's ``Auth.auth_flow``: it never
sleeps and never touches a socket. It *yields effects* and receives their outcomes::

    Gate(future, timeout)  wait for the first reply to calibrate the token estimate
    Wait(seconds)          a rate-limit delay or a retry backoff
    Send(...)              send this attempt; the driver answers with a Reply or the exception

and returns the batch's vectors, or a :class:`Split` when the provider said the batch is too long.
The two drivers in :mod:`~embedguard.core.send.drivers` run it, one with threads and
``time.sleep``, one with ``asyncio``; they differ only in how they wait and send.

One ``try/finally`` settles the breaker permit and the rate-limit booking exactly once, whatever
happens: a reply, a typed failure, a retry, an interrupt while waiting (the driver closes the
generator), or an unexpected exception. What a failure means (retry? the provider's fault? stop the
other batches? fail over?) is read from the error class (see :mod:`embedguard.core.errors`).
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import sys
import threading
import time
from collections.abc import Generator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .. import errors, usage
from ..breaker import CircuitState
from ..events import (
    CallRejected,
    RateLimitObserved,
    RequestFinished,
    RequestStarted,
    RetryScheduled,
    new_request_id,
)
from ..planning import Batch
from ..providers.base import EmbeddingResult, HttpRequest
from ..providers.headers import rate_limit_info
from ..retry import decide_retry

if TYPE_CHECKING:
    from .endpoint import Endpoint

__all__ = ["Abort", "Gate", "Reply", "Send", "Split", "Wait", "attempt_flow"]

logger = logging.getLogger("embedguard")

# One reply is decoded at a time in the process. Decoding holds the GIL (orjson, numpy's
# conversion of Python lists), so threads decoding at once gain nothing, while every one of them
# keeps its reply's JSON tree alive: a float reply of 500 vectors is 25 MB of Python floats. One
# at a time keeps a single tree in memory; the pages it frees are reused by the next instead of
# fresh ones being faulted in, which measured 0.8-0.9x the client CPU of decoding in parallel in
# a bulk float call (bench S2-float). Without a GIL (free-threaded builds) decoding runs in
# parallel.
_DECODING: contextlib.AbstractContextManager[object] = (
    threading.Lock()
    if getattr(sys, "_is_gil_enabled", lambda: True)()
    else contextlib.nullcontext()
)


@dataclass(frozen=True, slots=True)
class Reply:
    """A whole reply: status, headers, body, and the seconds it took once sending began."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    elapsed: float


@dataclass(frozen=True, slots=True)
class Send:
    """Effect: send this attempt (``body`` and ``headers`` may be the gzipped request's)."""

    request: HttpRequest
    body: bytes
    headers: Mapping[str, str]
    texts: tuple[str, ...]
    kind: str = "document"


@dataclass(frozen=True, slots=True)
class Wait:
    """Effect: wait ``seconds`` (interruptible: an interrupt closes the flow, which settles)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Gate:
    """Effect: wait until ``future`` is done, at most ``timeout`` seconds."""

    future: Future[None]
    timeout: float


Effect = Gate | Wait | Send
Outcome = Reply | BaseException | None


@dataclass(frozen=True, slots=True)
class Split:
    """Result: the provider found the batch over its token limit; send these halves instead."""

    halves: tuple[Batch, Batch]


@dataclass(slots=True)
class Abort:
    """Shared by the batches of one send: once one fails with an error that would fail every
    other batch too (``stops_call``: bad key, quota, open breaker), the ones not sent yet skip."""

    error: errors.EmbedGuardError | None = None


def attempt_flow(
    ep: Endpoint, batch: Batch, out: np.ndarray | None, abort: Abort
) -> Generator[Effect, Outcome, np.ndarray | Split]:
    """The attempts of one batch on endpoint ``ep``; see the module docstring.

    ``out``, when given, is the rows of the caller's result array the vectors decode into.
    Raises the batch's final error (typed; a ``stops_call`` error is also left in ``abort``).
    """
    started = time.monotonic()
    hooks = ep.hooks
    request_id = new_request_id() if hooks.active else 0
    ep.budget.started += 1  # counted without a call: see RetryBudget
    retries = attempts = 0
    plain = False  # send this batch uncompressed (the server refused or choked on gzip)
    gate_owner = False
    last_error: errors.ProviderError | None = None
    permit = reservation = None
    try:
        while True:
            if abort.error is not None:
                raise abort.error.copy()
            if not (gate_owner or ep.gate.done()) and ep.limiter.effective_limits[1] is not None:
                # Before the first reply calibrates the token estimate (which errs high), one batch
                # goes alone; the others wait for its usage, so a bulk call does not over-book.
                with ep.lock:
                    gate_owner = not ep.gate_taken
                    ep.gate_taken = True
                if not gate_owner:
                    yield Gate(ep.gate, ep.profile.timeouts.request)
            try:
                permit = ep.breaker.allow_request()
            except errors.CircuitOpenError as refused:
                _rejected(ep)
                if last_error is None:
                    raise
                # The breaker opened while this batch was retrying: its own failure is the
                # answer (the refusal still stops the sibling batches not sent yet).
                if abort.error is None:
                    abort.error = refused
                raise last_error  # noqa: B904 - its own cause, not the refusal
            reservation = ep.limiter.reserve(max(1, round(batch.tokens * ep.token_ratio)))
            if reservation.delay > 0:
                yield Wait(reservation.delay)
            request = ep.codec.build_request(batch.texts, batch.kind)
            body, headers = request.body, request.headers
            gzipped = False
            compression = ep.profile.compression
            if ep.gzip and not plain and len(body) >= compression.threshold_bytes:
                body = gzip.compress(body, compresslevel=compression.level, mtime=0)
                headers = {**headers, "Content-Encoding": "gzip"}
                gzipped = True
            attempts += 1
            if hooks.active:
                hooks.emit(
                    RequestStarted(
                        provider=ep.name, model=ep.profile.model, server_address=ep.server_address,
                        server_port=ep.server_port, inputs=len(batch.texts), attempt=attempts,
                        request_id=request_id, provider_kind=ep.profile.provider,
                    )
                )  # fmt: skip
            reply = yield Send(request, body, headers, batch.texts, batch.kind)
            raw, sent = len(request.body), len(body)
            result: EmbeddingResult | None = None
            if isinstance(reply, Reply):
                try:
                    with _DECODING:
                        result = ep.codec.parse_response(
                            reply.status, reply.headers, reply.body, n_inputs=len(batch.texts),
                            dimensions=ep.dimensions, out=out,
                        )  # fmt: skip
                except errors.ProviderError as exc:
                    error = exc
                except Exception as exc:  # e.g. MemoryError: a reply claiming millions of dims
                    error = errors.ResponseValidationError(
                        f"the response could not be decoded ({type(exc).__name__})",
                        provider=ep.name,
                    )
                    error.__cause__ = exc
            else:
                error = ep.transport_error(reply)
            if result is not None:
                assert isinstance(reply, Reply)
                latency = reply.elapsed
                tokens = batch.tokens if result.prompt_tokens is None else result.prompt_tokens
                if result.prompt_tokens is not None:
                    _learn_usage(ep, batch.tokens, result.prompt_tokens)
                if not ep.gate.done():  # after learning: the batches waiting book with the ratio
                    _open_gate(ep)
                ep.breaker.record_success(permit)
                permit = None
                ep.limiter.correct(reservation, tokens)
                reservation = None
                if ep.dimensions is None:
                    ep.dimensions = int(result.vectors.shape[1])
                if result.rate_limit is not None and ep.paced:
                    _observe(ep, result)
                ep.metrics.record_success(
                    items=len(batch.texts), tokens=tokens, latency=latency, bytes_raw=raw,
                    bytes_sent=sent, retry=attempts > 1, model=ep.profile.model, provider=ep.name,
                )  # fmt: skip
                if usage.owners or usage.tracking.get():
                    usage.record(
                        tokens=tokens, items=len(batch.texts), cost=tokens * ep.price / 1e6,
                        owner=ep.owner() if ep.owner is not None else None,
                    )  # fmt: skip
                if hooks.active:
                    _finished(ep, batch, attempts, request_id, latency, result)
                return result.vectors
            # -- a failed attempt: settle it, then decide what comes next ----------------------
            latency = reply.elapsed if isinstance(reply, Reply) else time.monotonic() - started
            ep.metrics.record_failure(
                kind=error.kind, latency=latency, bytes_raw=raw, bytes_sent=sent,
                retry=attempts > 1,
            )  # fmt: skip
            if error.provider_fault:
                ep.breaker.record_failure(permit, error)
            else:
                ep.breaker.release(permit)
            permit = None
            ep.limiter.correct(reservation, 0)
            if isinstance(error, errors.RateLimitError) and ep.paced:
                stated = None
                if isinstance(reply, Reply):  # what the 429's own headers say, if anything
                    stated = rate_limit_info(ep.profile.provider, reply.headers)
                ep.limiter.on_rate_limited(error.retry_after, info=stated, reservation=reservation)
            elif not ep.gate.done():
                _open_gate(ep)  # a 429 says nothing about usage yet: the others keep waiting
            reservation = None
            if hooks.active:
                _finished(ep, batch, attempts, request_id, latency, error)
            if gzipped and _gzip_suspect(error):
                # Resend this batch uncompressed once, at once; only a clear refusal turns gzip off
                # for the endpoint (a 5xx or an unexplained 400 may have nothing to do with it).
                plain = True
                if _gzip_refused(error) and ep.gzip:
                    ep.gzip = False
                    logger.warning(
                        "provider=%s refused a gzip request body (status %s); sending "
                        "uncompressed from now on", ep.name, error.status_code,
                    )  # fmt: skip
                continue
            if isinstance(error, errors.ContextLengthError) and len(batch.texts) > 1:
                return Split(_halve(batch))  # the batch as a whole is over the provider's limit
            decision = decide_retry(
                ep.profile.retry, error, retries_done=retries,
                elapsed=time.monotonic() - started, budget=ep.budget, rng=ep.rng,
                health=_health(ep) if error.retryable else None,
            )  # fmt: skip
            last_error = error
            if not decision.retry:
                if retries:
                    logger.warning(
                        "provider=%s giving up after %d retries: %s (%s)",
                        ep.name, retries, error.kind, decision.reason,
                    )  # fmt: skip
                raise error
            retries += 1
            if hooks.active:
                hooks.emit(
                    RetryScheduled(provider=ep.name, model=ep.profile.model, attempt=attempts,
                                   delay=decision.delay, reason=error.kind,
                                   status_code=error.status_code, request_id=request_id)
                )  # fmt: skip
            if decision.delay > 0:
                yield Wait(decision.delay)
    except errors.EmbedGuardError as exc:
        if exc.stops_call and abort.error is None:
            abort.error = exc
        raise
    finally:
        # The one place a permit or a booking that was not settled above is given back: the flow
        # was closed while waiting or sending (interrupt, cancellation) or failed unexpectedly.
        if permit is not None:
            ep.breaker.release(permit)
        if reservation is not None:
            ep.limiter.cancel(reservation)
        if gate_owner and not ep.gate.done():
            _open_gate(ep)  # a first batch that gave up (even on 429s) must not hold the others


# -- what an endpoint learns from replies (its state lives on the Endpoint) ---------------------
def _open_gate(ep: Endpoint) -> None:
    with ep.lock:
        if not ep.gate.done():
            ep.gate.set_result(None)


def _learn_usage(ep: Endpoint, estimated: int, billed: int) -> None:
    """Fold reported usage into the token calibration (the first reply decides, then an EWMA).

    The estimate errs high on purpose (it must not under-count a text's length), so without
    calibration the rate limiter would pace a job well below its real budget.
    """
    if estimated > 0 and billed > 0:
        ratio = min(2.0, max(0.05, billed / estimated))
        with ep.lock:
            weight = 0.3 if ep.usage_seen else 1.0
            ep.usage_seen = True
            ep.token_ratio += weight * (ratio - ep.token_ratio)


def _observe(ep: Endpoint, result: EmbeddingResult) -> None:
    info = result.rate_limit
    assert info is not None
    ep.rate_limit_status = info
    ep.limiter.observe(info)
    if ep.hooks.active:
        ep.hooks.emit(
            RateLimitObserved(provider=ep.name, remaining_requests=info.remaining_requests,
                              remaining_tokens=info.remaining_tokens)
        )  # fmt: skip


def _health(ep: Endpoint) -> float | None:
    """The endpoint's recent failure rate over the rate that opens its breaker, in ``[0, 1)``,
    or ``None`` when it does not look healthy (breaker off, not closed, or at the threshold)."""
    policy = ep.profile.breaker
    if not policy.enabled:
        return None
    stats = ep.breaker.stats()
    if stats.state is not CircuitState.CLOSED or stats.window_calls == 0:
        return None
    share = stats.failure_rate / policy.failure_rate_threshold
    return share if share < 1.0 else None


def _rejected(ep: Endpoint) -> None:
    if not ep.gate.done():
        _open_gate(ep)
    ep.metrics.record_rejected()
    if ep.hooks.active:
        profile = ep.profile
        ep.hooks.emit(
            CallRejected(provider=ep.name, model=profile.model, reason="circuit_open",
                         provider_kind=profile.provider)
        )  # fmt: skip


def _finished(
    ep: Endpoint,
    batch: Batch,
    attempt: int,
    request_id: int,
    latency: float,
    outcome: EmbeddingResult | errors.ProviderError,
) -> None:
    profile = ep.profile
    tokens = model = error_type = None
    status = None if profile.provider == "local" else 200
    if isinstance(outcome, errors.ProviderError):
        error_type, status = outcome.kind, outcome.status_code
    else:
        tokens, model = outcome.prompt_tokens, outcome.model
    ep.hooks.emit(
        RequestFinished(
            provider=ep.name, model=profile.model, server_address=ep.server_address,
            server_port=ep.server_port, inputs=len(batch.texts), attempt=attempt,
            request_id=request_id, duration=latency, provider_kind=profile.provider,
            input_tokens=tokens, response_model=model, error_type=error_type, status_code=status,
        )
    )  # fmt: skip


# -- classification ----------------------------------------------------------------------------
def _gzip_suspect(error: errors.ProviderError) -> bool:
    """A failure a gzip body may have caused: resend that batch once uncompressed."""
    status = error.status_code
    return status is not None and (status in (400, 415) or status >= 500)


def _gzip_refused(error: errors.ProviderError) -> bool:
    """A clear refusal of gzip bodies: 415, or a 400 that speaks of the encoding."""
    if error.status_code == 415:
        return True
    text = error.message.lower()
    return error.status_code == 400 and any(w in text for w in ("gzip", "encoding", "compress"))


def _halve(batch: Batch) -> tuple[Batch, Batch]:
    mid = len(batch.units) // 2
    share = batch.tokens // max(1, len(batch.units))
    first = Batch(batch.units[:mid], batch.texts[:mid], share * mid, batch.kind)
    second = Batch(batch.units[mid:], batch.texts[mid:], batch.tokens - share * mid, batch.kind)
    return first, second
