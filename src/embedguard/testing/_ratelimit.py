"""Server-side rate limiting (token buckets) and the rate-limit headers each provider sends."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ._wire_cohere import cohere_rate_headers

__all__ = ["RateDecision", "TokenBuckets", "go_duration", "rate_headers", "retry_headers"]


def go_duration(seconds: float) -> str:
    """Seconds as a Go duration, as in OpenAI's reset headers (``6ms``, ``1.5s``, ``6m0s``)."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(1, math.ceil(seconds * 1000))}ms"
    whole_ms = math.ceil(seconds * 1000)
    hours, rest = divmod(whole_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{secs}"
    if minutes:
        return f"{minutes}m{secs}"
    return secs


def _seconds_text(seconds: float) -> str:
    # Decimal seconds rounded up to the millisecond, so a client never retries too early.
    return f"{math.ceil(seconds * 1000) / 1000:.3f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class RateDecision:
    """The outcome of one admission check, with what the rate-limit headers report."""

    allowed: bool
    retry_after: float
    unit: str  # the limit that refused: "requests" or "tokens" ("" when allowed)
    requested: int
    limit_requests: int | None
    remaining_requests: int
    reset_requests: float
    limit_tokens: int | None
    remaining_tokens: int
    reset_tokens: float


class _Bucket:
    def __init__(self, capacity: int) -> None:
        self.capacity = float(capacity)
        self.rate = capacity / 60.0  # refilled continuously: the whole capacity per minute
        self.level = self.capacity

    def refill(self, elapsed: float) -> None:
        self.level = min(self.capacity, self.level + elapsed * self.rate)

    def wait_for(self, amount: float) -> float:
        return max(0.0, (amount - self.level) / self.rate)

    def reset_in(self) -> float:
        return (self.capacity - self.level) / self.rate


class TokenBuckets:
    """Requests-per-minute and tokens-per-minute buckets, refilled continuously.

    A request is admitted only when both buckets hold enough; otherwise nothing is consumed and
    ``retry_after`` is the time until both will. Thread-safe.
    """

    def __init__(
        self,
        rpm: int | None,
        tpm: int | None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value in (("rate_limit_rpm", rpm), ("rate_limit_tpm", tpm)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        self._rpm, self._tpm, self._clock = rpm, tpm, clock
        self._lock = threading.Lock()
        self.reset()

    @property
    def enabled(self) -> bool:
        """Whether any limit is configured."""
        return self._rpm is not None or self._tpm is not None

    def reset(self) -> None:
        """Refill both buckets."""
        with self._lock:
            self._requests = None if self._rpm is None else _Bucket(self._rpm)
            self._tokens = None if self._tpm is None else _Bucket(self._tpm)
            self._last = self._clock()

    def acquire(self, tokens: int) -> RateDecision:
        """Admit one request of ``tokens`` tokens, or refuse it and say for how long."""
        with self._lock:
            now = self._clock()
            elapsed, self._last = max(0.0, now - self._last), now
            waits = {}
            for unit, bucket, amount in (
                ("requests", self._requests, 1),
                ("tokens", self._tokens, tokens),
            ):
                if bucket is not None:
                    bucket.refill(elapsed)
                    waits[unit] = bucket.wait_for(amount)
            refused = {unit: wait for unit, wait in waits.items() if wait > 0}
            if not refused:
                if self._requests is not None:
                    self._requests.level -= 1
                if self._tokens is not None:
                    self._tokens.level -= tokens
            unit = max(refused, key=refused.__getitem__) if refused else ""
            return self._decision(not refused, max(refused.values(), default=0.0), unit, tokens)

    def _decision(self, allowed: bool, wait: float, unit: str, tokens: int) -> RateDecision:
        req, tok = self._requests, self._tokens
        return RateDecision(
            allowed=allowed,
            retry_after=wait,
            unit=unit,
            requested=1 if unit == "requests" else tokens,
            limit_requests=self._rpm,
            remaining_requests=0 if req is None else max(0, math.floor(req.level)),
            reset_requests=0.0 if req is None else req.reset_in(),
            limit_tokens=self._tpm,
            remaining_tokens=0 if tok is None else max(0, math.floor(tok.level)),
            reset_tokens=0.0 if tok is None else tok.reset_in(),
        )


def rate_headers(provider: str, decision: RateDecision) -> list[tuple[str, str]]:
    """The ``x-ratelimit-*`` headers ``provider`` sends with every response under a limit."""
    if provider == "voyage":
        from ._wire_voyage import voyage_rate_headers  # none: a free-tier warning instead

        return voyage_rate_headers(decision)
    out: list[tuple[str, str]] = []
    units = (
        ("requests", decision.limit_requests, decision.remaining_requests, decision.reset_requests),
        ("tokens", decision.limit_tokens, decision.remaining_tokens, decision.reset_tokens),
    )
    for unit, limit, remaining, reset in units:
        if limit is None:
            continue
        if provider == "openai":
            out += [
                (f"x-ratelimit-limit-{unit}", str(limit)),
                (f"x-ratelimit-remaining-{unit}", str(remaining)),
                (f"x-ratelimit-reset-{unit}", go_duration(reset)),
            ]
        elif provider == "azure":
            out.append((f"x-ratelimit-remaining-{unit}", str(remaining)))
        elif provider == "cohere" and unit == "requests":
            out += cohere_rate_headers(limit, remaining)
        elif provider == "mistral":
            short = "req" if unit == "requests" else "tokens"
            out += [
                (f"x-ratelimit-limit-{short}-minute", str(limit)),
                (f"x-ratelimit-remaining-{short}-minute", str(remaining)),
            ]
    return out


def retry_headers(provider: str, seconds: float, *, ms: bool = False) -> list[tuple[str, str]]:
    """The headers advertising a wait of ``seconds``.

    Azure sends both ``retry-after`` (whole seconds, rounded up) and ``retry-after-ms``; other
    providers send ``retry-after`` in decimal seconds, or ``retry-after-ms`` when ``ms`` is set.
    """
    millis = str(math.ceil(seconds * 1000))
    if provider == "gemini":
        return []  # the wait is in the body (google.rpc.RetryInfo), never in a header
    if provider == "bedrock":
        return []  # a ThrottlingException states no wait
    if provider == "azure":
        return [("retry-after", str(math.ceil(seconds))), ("retry-after-ms", millis)]
    if ms:
        return [("retry-after-ms", millis)]
    return [("retry-after", _seconds_text(seconds))]
