"""The pipeline's shared, I/O-free steps.

One batch's life is a :class:`BatchRun`: ``begin()`` asks the breaker for a permit and builds the
(possibly gzipped) request; the caller sends it (with httpx, sync or async) and hands the outcome to
``settle()``, which validates, records metrics, informs the breaker and the rate limiter, and says
what to do next: done, retry after a delay, resend at once, or split the batch. The sync and async
send loops in :mod:`embedguard.core.client` are the only code that exists twice.
"""

from __future__ import annotations

import copy
import gzip
import logging
import random
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urlsplit

import httpx
import numpy as np

from . import errors, usage
from .breaker import CircuitBreaker, Permit
from .config import ProviderProfile
from .events import (
    CallRejected,
    CircuitChanged,
    Hooks,
    RateLimitObserved,
    RequestFinished,
    RequestStarted,
    RetryScheduled,
    new_request_id,
)
from .metrics import MetricsCollector
from .planning import Batch
from .providers.base import Codec, EmbeddingResult, HttpRequest, RateLimitInfo
from .ratelimit import RateLimiter, Reservation
from .retry import RetryBudget, decide_retry

logger = logging.getLogger("embedguard")

# Errors that say nothing about the provider's health: the breaker neither counts nor clears them.
_NEUTRAL = (
    errors.RateLimitError,
    errors.QuotaExhaustedError,
    errors.AuthenticationError,
    errors.BadRequestError,
)


class Reply(NamedTuple):
    """A whole HTTP response: status, headers and the (decoded) body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Attempt:
    """One HTTP attempt, ready to send."""

    request: HttpRequest
    body: bytes
    headers: dict[str, str]
    permit: Permit
    reservation: Reservation
    gzipped: bool
    started: float


@dataclass(frozen=True, slots=True)
class Done:
    vectors: np.ndarray


@dataclass(frozen=True, slots=True)
class Retry:
    delay: float


@dataclass(frozen=True, slots=True)
class Split:
    halves: tuple[Batch, Batch]
    sizes: tuple[int, int]


Outcome = Done | Retry | Split


class Shared:
    """State shared by every batch of one client: codec, breaker, limiter, metrics, budget."""

    def __init__(
        self,
        profile: ProviderProfile,
        codec: Codec,
        *,
        breaker: CircuitBreaker,
        metrics: MetricsCollector,
        limiter: RateLimiter,
        hooks: Hooks | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.profile = profile
        self.codec = codec
        self.breaker = breaker
        self.metrics = metrics
        self.limiter = limiter
        self.budget = RetryBudget(profile.retry)
        self.rng = rng or random.Random()
        self.dimensions: int | None = profile.dimensions
        self.gzip_enabled = profile.compression.enabled
        self.rate_limit_status: RateLimitInfo | None = None
        self.token_ratio = 1.0  # billed tokens / estimated tokens, learned from responses
        self.price = metrics.prices.get(profile.model, 0.0)  # USD per 1M tokens
        self._calibration: Future[None] = Future()  # done once a first response has come back
        self._probing = False
        self._usage_seen = False
        self.hooks = hooks if hooks is not None else Hooks()
        endpoint = getattr(codec, "url", None)
        url = urlsplit(endpoint) if isinstance(endpoint, str) else None
        self.server_address = url.hostname if url else None
        self.server_port = url.port if url else None
        breaker.add_listener(self._circuit_changed)
        self._lock = threading.Lock()

    def _circuit_changed(self, old: object, new: object) -> None:
        if self.hooks:
            self.hooks.emit(CircuitChanged(provider=self.profile.name, old=str(old), new=str(new)))

    def calibration_gate(self) -> Future[None] | None:
        """A future to wait on before booking tokens, or ``None`` to go ahead.

        The token estimate errs high; before the first response has calibrated it, booking a
        whole bulk call at once would make the rate limiter hold back requests the provider
        would accept. So, under a tokens-per-minute limit, the first batch goes alone and the
        others wait (at most a request timeout) for its reported usage.
        """
        if self._calibration.done() or self.limiter.effective_limits[1] is None:
            return None
        with self._lock:
            if not self._probing:
                self._probing = True
                return None
        return self._calibration

    def calibrated(self) -> None:
        """Open the calibration gate (a first response, or the first batch gave up)."""
        with self._lock:
            if not self._calibration.done():
                self._calibration.set_result(None)

    def expected_tokens(self, batch: Batch) -> int:
        """Tokens to reserve for ``batch``: the estimate, calibrated by the usage seen so far."""
        return max(1, round(batch.tokens * self.token_ratio))

    def learn_usage(self, estimated: int, billed: int) -> None:
        """Fold a response's reported usage into the calibration (an exponential average).

        The estimate errs high on purpose (it must not under-count a text's length), so without
        calibration the rate limiter would pace a job well below its real budget.
        """
        if estimated > 0 and billed > 0:
            ratio = min(2.0, max(0.05, billed / estimated))
            with self._lock:
                weight = 0.3 if self._usage_seen else 1.0  # the first response decides
                self._usage_seen = True
                self.token_ratio += weight * (ratio - self.token_ratio)

    def learn_dimensions(self, d: int) -> None:
        with self._lock:
            if self.dimensions is None:
                self.dimensions = d


class Abort:
    """Shared by the batches of one send: once one fails in a way every other batch would too
    (bad key, quota, open breaker), the batches not sent yet fail with that same error."""

    def __init__(self) -> None:
        self.error: errors.EmbedGuardError | None = None

    def set(self, error: errors.EmbedGuardError) -> None:
        if self.error is None:
            self.error = error

    def check(self) -> None:
        """Raise the recorded error (a copy: each batch reports its own inputs)."""
        if self.error is not None:
            raise copy.copy(self.error)


class BatchRun:
    """The attempts of one batch. Not thread-safe: one run is driven by one loop."""

    def __init__(self, shared: Shared, batch: Batch, out: np.ndarray | None = None) -> None:
        self.shared = shared
        self.batch = batch
        self.out = out  # the rows of the caller's result array this batch decodes into
        self.retries = 0  # retries the retry policy granted
        self.attempts = 0  # attempts settled (a gzip resend is an attempt, not a policy retry)
        self.started = time.monotonic()
        self.request_id = new_request_id()
        shared.budget.record_request()

    def begin(self) -> tuple[Permit, HttpRequest]:
        """Take a breaker permit and build the request; raises CircuitOpenError when open."""
        shared = self.shared
        try:
            permit = shared.breaker.allow_request()
        except errors.CircuitOpenError:
            shared.calibrated()
            shared.metrics.record_rejected()
            if shared.hooks:
                profile = shared.profile
                shared.hooks.emit(
                    CallRejected(provider=profile.name, model=profile.model, reason="circuit_open",
                                 provider_kind=profile.provider)
                )  # fmt: skip
            raise
        try:
            request = shared.codec.build_request(self.batch.texts)
        except BaseException:
            shared.breaker.release(permit)
            raise
        return permit, request

    def prepare(self, permit: Permit, request: HttpRequest, reservation: Reservation) -> Attempt:
        """Compress the body when the profile asks for it and the server has not refused gzip."""
        policy = self.shared.profile.compression
        body = request.body
        headers = dict(request.headers)
        gzipped = False
        if self.shared.gzip_enabled and len(body) >= policy.threshold_bytes:
            body = gzip.compress(body, compresslevel=policy.level, mtime=0)
            headers["Content-Encoding"] = "gzip"
            gzipped = True
        shared = self.shared
        if shared.hooks:
            shared.hooks.emit(
                RequestStarted(
                    provider=shared.profile.name, model=shared.profile.model,
                    server_address=shared.server_address, server_port=shared.server_port,
                    inputs=len(self.batch.texts), attempt=self.attempts + 1,
                    request_id=self.request_id, provider_kind=shared.profile.provider,
                )
            )  # fmt: skip
        return Attempt(request, body, headers, permit, reservation, gzipped, time.perf_counter())

    def settle(self, attempt: Attempt, reply: Reply | None, exc: BaseException | None) -> Outcome:
        """Turn an HTTP response or a transport error into the next step (see :meth:`finish`)."""
        codec = self.shared.codec
        try:
            if reply is None:
                raise _transport_error(codec.name, exc)
            result = codec.parse_response(
                reply.status,
                reply.headers,
                reply.body,
                n_inputs=len(self.batch.texts),
                dimensions=self.shared.dimensions,
                out=self.out,
            )
        except errors.ProviderError as error:
            return self.finish(attempt, error)
        return self.finish(attempt, result)

    def finish(self, attempt: Attempt, outcome: EmbeddingResult | errors.ProviderError) -> Outcome:
        """Record a validated result or a typed failure and say what comes next.

        Returns :class:`Done`, :class:`Retry` or :class:`Split`; raises the error when the batch
        has failed for good.
        """
        shared = self.shared
        latency = time.perf_counter() - attempt.started
        resent = self.attempts > 0
        self.attempts += 1
        raw, sent = len(attempt.request.body), len(attempt.body)
        if shared.hooks:
            self._finished(outcome, latency)
        if isinstance(outcome, errors.ProviderError):
            error = outcome
            shared.metrics.record_failure(
                kind=error.kind, latency=latency, bytes_raw=raw, bytes_sent=sent, retry=resent,
            )  # fmt: skip
            if isinstance(error, _NEUTRAL):
                shared.breaker.release(attempt.permit)
            else:
                shared.breaker.record_failure(attempt.permit)
            shared.limiter.correct(attempt.reservation, 0)
            if not isinstance(error, errors.RateLimitError):
                shared.calibrated()  # a 429 says nothing yet: the waiting batches keep waiting
            if isinstance(error, errors.RateLimitError):
                shared.limiter.on_rate_limited(error.retry_after, reservation=attempt.reservation)
            return self._after_failure(attempt, error)
        return self._after_success(attempt, outcome, latency, raw, sent, resent)

    def _after_success(
        self,
        attempt: Attempt,
        result: EmbeddingResult,
        latency: float,
        raw: int,
        sent: int,
        resent: bool,
    ) -> Done:
        shared = self.shared
        tokens = result.prompt_tokens if result.prompt_tokens is not None else self.batch.tokens
        if result.prompt_tokens is not None:
            shared.learn_usage(self.batch.tokens, result.prompt_tokens)
        shared.calibrated()  # after learning: the batches waiting book with the new ratio
        shared.breaker.record_success(attempt.permit)
        shared.limiter.correct(attempt.reservation, tokens)
        shared.learn_dimensions(int(result.vectors.shape[1]))
        if result.rate_limit is not None:
            shared.rate_limit_status = info = result.rate_limit
            shared.limiter.observe(info)
            if shared.hooks:
                shared.hooks.emit(
                    RateLimitObserved(provider=shared.profile.name,
                                      remaining_requests=info.remaining_requests,
                                      remaining_tokens=info.remaining_tokens)
                )  # fmt: skip
        shared.metrics.record_success(
            items=len(self.batch.texts), tokens=tokens, latency=latency, bytes_raw=raw,
            bytes_sent=sent, retry=resent, model=shared.profile.model,
            provider=shared.profile.name,
        )  # fmt: skip
        usage.record(tokens=tokens, items=len(self.batch.texts), cost=tokens * shared.price / 1e6)
        return Done(result.vectors)

    def _after_failure(self, attempt: Attempt, error: errors.ProviderError) -> Outcome:
        shared = self.shared
        if attempt.gzipped and error.status_code in (400, 415):
            # The server refused a gzip body: send plain from now on, and resend this one at once.
            shared.gzip_enabled = False
            logger.warning(
                "provider=%s refused a gzip request body (status %s); sending uncompressed",
                shared.codec.name, error.status_code,
            )  # fmt: skip
            return Retry(0.0)
        if isinstance(error, errors.ContextLengthError) and len(self.batch.texts) > 1:
            # The batch as a whole is over the provider's limit: split it, do not resend it as is.
            first, second = _halve(self.batch)
            return Split((first, second), (len(first.units), len(second.units)))
        decision = decide_retry(
            shared.profile.retry,
            error,
            retries_done=self.retries,
            elapsed=time.monotonic() - self.started,
            budget=shared.budget,
            rng=shared.rng,
        )
        if not decision.retry:
            if self.retries:
                logger.warning(
                    "provider=%s giving up after %d retries: %s (%s)",
                    shared.codec.name, self.retries, error.kind, decision.reason,
                )  # fmt: skip
            raise error
        self.retries += 1
        if shared.hooks:
            shared.hooks.emit(
                RetryScheduled(provider=shared.profile.name, model=shared.profile.model,
                               attempt=self.attempts, delay=decision.delay, reason=error.kind,
                               status_code=error.status_code, request_id=self.request_id)
            )  # fmt: skip
        return Retry(decision.delay)

    def _finished(self, outcome: EmbeddingResult | errors.ProviderError, latency: float) -> None:
        shared, profile = self.shared, self.shared.profile
        tokens = model = error_type = None
        status = None if profile.provider == "local" else 200
        if isinstance(outcome, errors.ProviderError):
            error_type, status = outcome.kind, outcome.status_code
        else:
            tokens, model = outcome.prompt_tokens, outcome.model
        shared.hooks.emit(
            RequestFinished(
                provider=profile.name, model=profile.model, server_address=shared.server_address,
                server_port=shared.server_port, inputs=len(self.batch.texts),
                attempt=self.attempts, request_id=self.request_id, duration=latency,
                provider_kind=profile.provider, input_tokens=tokens, response_model=model,
                error_type=error_type, status_code=status,
            )
        )  # fmt: skip


def _halve(batch: Batch) -> tuple[Batch, Batch]:
    mid = len(batch.units) // 2
    share = batch.tokens // max(1, len(batch.units))
    first = Batch(batch.units[:mid], batch.texts[:mid], share * mid)
    second = Batch(batch.units[mid:], batch.texts[mid:], batch.tokens - share * mid)
    return first, second


def _transport_error(provider: str, exc: BaseException | None) -> errors.ProviderError:
    """Map an httpx exception to the typed error (never including headers or the key)."""
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return errors.ProviderTimeoutError(
            f"request timed out ({type(exc).__name__})", provider=provider
        )
    if isinstance(exc, httpx.DecodingError):
        return errors.ResponseValidationError(
            "response body could not be decoded", truncated=True, provider=provider
        )
    name = type(exc).__name__ if exc is not None else "no response"
    return errors.ProviderConnectionError(f"connection failed ({name})", provider=provider)
