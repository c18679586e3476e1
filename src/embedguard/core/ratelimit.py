"""Client-side rate limiting: requests per minute and tokens per minute, adapting to the server.

Each limit is a leaky bucket (GCRA): its capacity is the per-minute limit and it refills
continuously at ``limit / 60`` per second. A request books one request and its estimated tokens
up front; when the response reports the real usage, :meth:`RateLimiter.correct` settles the
difference. Booking is pure arithmetic under a lock; waiting is done by the caller, with
:meth:`RateLimiter.acquire` (threads) or :meth:`RateLimiter.aacquire` (asyncio) as thin wrappers.

The limiter also follows the server: :meth:`RateLimiter.observe` re-syncs the buckets from the
rate-limit headers of each successful response (and adopts a server limit lower than the
configured one), and :meth:`RateLimiter.on_rate_limited` pauses and slows down after a 429
(AIMD), so a long job runs near the rate the server really allows.

Example::

    limiter = RateLimiter(RateLimit(requests_per_minute=3000, tokens_per_minute=1_000_000))
    reservation = await limiter.aacquire(estimated_tokens)
    result = await send()
    limiter.correct(reservation, result.prompt_tokens)
    if result.rate_limit is not None:
        limiter.observe(result.rate_limit)
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .config import RateLimit
from .providers.base import RateLimitInfo

__all__ = ["RateLimiter", "Reservation"]

_DECREASE = 0.8  # multiplicative decrease of the effective rate on a 429
_FLOOR = 0.1  # the effective rate never drops below this share of the ceiling
_RECOVERY = 0.05  # share of the ceiling regained per minute without a 429
_HOLDOFF = 2.0  # seconds: 429s this close to a decrease are echoes of the same overshoot
_UNKNOWN_PAUSE = 1.0  # seconds to pause on a 429 without retry-after when no rate is known
_MAX_PAUSE = 60.0  # a rate-limit window; longer waits are quota-like, not pacing
_LONG_RESET = 61.0  # a reset beyond a minute reveals a bucket slower than limit per minute
_TYPICAL_WEIGHT = 0.1  # EWMA weight of a new booking in the typical request size


@dataclass(frozen=True, slots=True)
class Reservation:
    """Capacity booked by :meth:`RateLimiter.reserve`.

    Attributes:
        tokens: The tokens booked (the estimate given to ``reserve``).
        delay: Seconds the caller must wait before sending.
    """

    tokens: int
    delay: float


class _Bucket:
    """One leaky bucket; ``level`` is the capacity available now and may be negative (debt)."""

    __slots__ = ("capacity", "level", "rate", "updated")

    def __init__(self, capacity: float, rate: float, level: float, now: float) -> None:
        self.capacity = capacity
        self.rate = rate
        self.level = min(capacity, level)
        self.updated = now

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now

    def retune(self, capacity: float, rate: float, now: float) -> None:
        """Switch to a new capacity and rate from ``now`` on (the past refills at the old rate).

        The refill since the last update is capped by the new capacity, not the old one: a
        capacity that grew back while idle is available at once.
        """
        if now > self.updated:
            self.level += (now - self.updated) * self.rate
            self.updated = now
        self.capacity, self.rate = capacity, rate
        self.level = min(capacity, self.level)

    def take(self, amount: float, now: float) -> float:
        """Book ``amount`` and return the wait until the bucket is out of debt."""
        self.refill(now)
        self.level -= amount
        return -self.level / self.rate if self.level < 0 else 0.0

    def give(self, amount: float, now: float) -> None:
        """Return ``amount`` (negative to take more), never above capacity."""
        self.refill(now)
        self.level = min(self.capacity, self.level + amount)

    def lower_to(self, level: float, now: float) -> None:
        """Lower the level to ``level`` if it is above; never raise it."""
        self.refill(now)
        self.level = min(self.level, level)


class _Unit:
    """One limited quantity (requests or tokens): what is configured, what the server said."""

    __slots__ = ("bucket", "configured", "outstanding", "server_limit", "server_window", "typical")

    def __init__(self, configured: int | None) -> None:
        self.configured = configured
        self.server_limit: int | None = None
        self.server_window: float | None = None  # seconds to refill from empty; None = 60
        self.bucket: _Bucket | None = None
        self.outstanding = 0.0  # booked, not yet settled by correct() or cancel()
        self.typical = 0.0  # running mean of the amounts booked

    def ceiling(self) -> tuple[float, float] | None:
        """(capacity, rate per minute) before the AIMD factor; ``None`` when unlimited."""
        limits = [v for v in (self.configured, self.server_limit) if v is not None]
        if not limits:
            return None
        per_minute = float(min(limits))
        if self.server_limit is not None and self.server_window is not None:
            per_minute = min(per_minute, self.server_limit * 60.0 / self.server_window)
        return float(min(limits)), per_minute

    def book(self, amount: float) -> None:
        self.outstanding += amount
        w = _TYPICAL_WEIGHT if self.typical else 1.0
        self.typical += w * (amount - self.typical)

    def settle(self, amount: float) -> None:
        self.outstanding = max(0.0, self.outstanding - amount)

    def learn(self, limit: int | None, remaining: int | None, reset: float | None) -> bool:
        """Record the server's limit and refill window; ``False`` for placeholder headers."""
        if limit is None:
            return True
        if limit <= 0:  # Azure sometimes reports -1/0 for limits it does not enforce
            return False
        self.server_limit = limit
        if remaining is not None and reset is not None and 0 <= remaining < limit:
            # reset = time until full, so the refill rate is (limit - remaining) / reset. A
            # per-minute bucket is full within 60 s; only a longer reset says something new.
            long = reset > _LONG_RESET
            self.server_window = reset * limit / (limit - remaining) if long else None
        return True


class RateLimiter:
    """Two token buckets: requests/min and tokens/min (GCRA / leaky bucket), adapting to the server.

    Capacity is the per-minute limit, refilling continuously at ``limit / 60`` per second, so a
    burst up to the limit passes at once and steady traffic is paced to exactly the limit.
    :meth:`reserve` always succeeds: it books the capacity now (the level may go negative) and
    returns how long to wait, so a request larger than the bucket is never rejected, only
    delayed. Waiting is done by the caller (:meth:`acquire` / :meth:`aacquire` wrap it).
    Thread-safe, and safe from asyncio (the lock is never held across a wait).

    The limits in force (:attr:`effective_limits`) are the configured ones, lowered to the
    server's when its headers report lower ones (:meth:`observe`), times the AIMD factor that
    :meth:`on_rate_limited` cuts and quiet time restores. A limiter configured without limits
    adopts the server's as soon as they are reported and does not pace until then.

    Args:
        limit: The per-minute limits; ``None`` for a limit means unlimited.
        clock: A monotonic clock in seconds (injectable for tests).
        sleep: How :meth:`acquire` waits.
        asleep: How :meth:`aacquire` waits.
    """

    def __init__(
        self,
        limit: RateLimit,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        asleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._limit = limit
        self._clock = clock
        self._sleep = sleep
        self._asleep = asleep
        self._lock = threading.Lock()
        now = clock()
        self._requests = _Unit(limit.requests_per_minute)
        self._tokens = _Unit(limit.tokens_per_minute)
        self._factor = 1.0  # AIMD factor at ``_factor_since``
        self._factor_since = now
        self._last_decrease = -math.inf
        self._paused_until = -math.inf
        self._retune(now)

    @property
    def limit(self) -> RateLimit:
        """The configured limits."""
        return self._limit

    @property
    def enabled(self) -> bool:
        """``False`` while no limit is in force (then reserving costs nothing)."""
        return self._requests.bucket is not None or self._tokens.bucket is not None

    @property
    def effective_limits(self) -> tuple[float | None, float | None]:
        """The (requests, tokens) per minute in force now; ``None`` where unlimited."""
        with self._lock:
            factor = self._factor_now(self._clock())
            ceilings = (self._requests.ceiling(), self._tokens.ceiling())
        requests, tokens = (None if c is None else c[1] * factor for c in ceilings)
        return requests, tokens

    def __repr__(self) -> str:
        with self._lock:
            now = self._clock()
            self._retune(now)
            parts = []
            for label, unit in (("requests", self._requests), ("tokens", self._tokens)):
                bucket = unit.bucket
                if bucket is None:
                    continue
                bucket.refill(now)
                text = f"{label}={bucket.level:.6g}/{_num(bucket.capacity)}"
                per_minute = bucket.rate * 60.0
                if not math.isclose(per_minute, bucket.capacity, rel_tol=1e-9):
                    text += f", refill {_num(per_minute)}"
                parts.append(text + " per min")
        return f"RateLimiter({', '.join(parts)})" if parts else "RateLimiter(unlimited)"

    def reserve(self, tokens: int) -> Reservation:
        """Book one request and ``tokens`` tokens now.

        Args:
            tokens: The estimated tokens the request will use.

        Returns:
            The booking; wait ``delay`` seconds before sending.

        Raises:
            ValueError: ``tokens`` is negative.
        """
        if tokens < 0:
            raise ValueError(f"tokens must be >= 0, got {tokens}")
        with self._lock:
            now = self._clock()
            self._retune(now)
            delay = max(0.0, self._paused_until - now)
            for unit, amount in ((self._requests, 1), (self._tokens, tokens)):
                unit.book(amount)
                if unit.bucket is not None:
                    delay = max(delay, unit.bucket.take(amount, now))
        return Reservation(tokens, delay)

    def correct(self, reservation: Reservation, actual_tokens: int) -> None:
        """Settle a booking with the usage the response reported.

        Fewer tokens than booked are given back; more are taken (delaying later requests).
        Every reservation must be settled once, by this or by :meth:`cancel`.
        """
        with self._lock:
            now = self._clock()
            self._retune(now)
            self._requests.settle(1)
            self._tokens.settle(reservation.tokens)
            if self._tokens.bucket is not None:
                self._tokens.bucket.give(reservation.tokens - actual_tokens, now)

    def cancel(self, reservation: Reservation) -> None:
        """Give a booking back in full: the request was never sent."""
        with self._lock:
            now = self._clock()
            self._retune(now)
            for unit, amount in ((self._requests, 1), (self._tokens, reservation.tokens)):
                unit.settle(amount)
                if unit.bucket is not None:
                    unit.bucket.give(amount, now)

    def observe(self, info: RateLimitInfo) -> None:
        """Re-sync from the rate-limit headers of a successful response.

        Call it after :meth:`correct` for the same response. For each of requests and tokens:

        * ``limit_*`` is recorded as the server's limit; the limit in force becomes the lower
          of it and the configured one (an unlimited limiter adopts it). Non-positive limits
          are placeholders: that quantity's headers are ignored.
        * When ``remaining_*``, ``reset_*`` and ``limit_*`` are all given and the reset is
          longer than a minute, the server's bucket refills slower than ``limit`` per minute
          (a daily limit, say): the rate becomes ``60 * (limit - remaining) / reset`` per
          minute, while the burst stays ``limit``. A reset within a minute keeps the
          per-minute reading.
        * The first limit the server states cancels any slow-down guessed from earlier 429s.
        * ``remaining_*`` lowers the bucket to ``remaining - outstanding`` (``outstanding``:
          what is booked but not yet settled, which the server has not counted yet) when that
          is below what the bucket holds. It never raises the level: others may share the key.

        Missing fields are ignored, so OpenAI (all six), Azure (remaining only) and Mistral
        (per-minute limits, tightest-window remaining) headers are all handled.
        """
        with self._lock:
            now = self._clock()
            pairs = (
                (self._requests, info.limit_requests, info.remaining_requests, info.reset_requests),
                (self._tokens, info.limit_tokens, info.remaining_tokens, info.reset_tokens),
            )
            blind = self._requests.server_limit is None and self._tokens.server_limit is None
            usable = [unit.learn(limit, rem, reset) for unit, limit, rem, reset in pairs]
            if blind and not (self._requests.server_limit is None and self._tokens.server_limit
                              is None):  # fmt: skip
                # The server's own numbers replace any slow-down guessed before we had them.
                self._factor, self._factor_since = 1.0, now
            self._retune(now)
            for ok, (unit, _, remaining, _) in zip(usable, pairs, strict=True):
                if ok and remaining is not None and remaining >= 0 and unit.bucket is not None:
                    unit.bucket.lower_to(remaining - unit.outstanding, now)

    def on_rate_limited(
        self, retry_after: float | None, *, reservation: Reservation | None = None
    ) -> None:
        """Slow down after a 429 that reports a rate limit (not an exhausted quota).

        Policy (AIMD, the factor ``f`` scaling every limit in force, starting at 1):

        * Decrease: ``f <- max(0.1, 0.8 * f)``, at most once per 2 s (the 429s of requests
          already in flight report the same overshoot), only while the server has stated no
          limit in its headers (with ``x-ratelimit-limit-*`` known, its numbers are followed).
        * Recovery: ``f(t) = min(1, f_429 + 0.05 * (t - t_429) / 60)``: 5 % of the limit
          regained per minute without a 429, up to the configured / server limit.
        * Pause: later reservations wait at least ``retry_after`` seconds; each bucket drops to
          ``amount - rate * retry_after - outstanding`` (the server's level when the refused
          request fits after ``retry_after``, minus what is booked) so the queue then drains
          at the new rate. ``amount`` is the refused booking's size when ``reservation`` is
          given, else the typical booking. Without ``retry_after``, the buckets are emptied
          (``-outstanding``), so the next request waits for its own refill; an unlimited
          limiter pauses 1 s. ``retry_after`` counts at most 60 s (one rate-limit window:
          the retry policy gives up on longer hints rather than stall every request).

        Args:
            retry_after: The wait the server asked for, in seconds, if it said.
            reservation: The refused request's booking, when known.
        """
        with self._lock:
            now = self._clock()
            factor = self._factor_now(now)
            # A server that states its limits in headers is followed exactly (observe() and the
            # pause below); guessing lower on top of that would only leave its budget unused.
            blind = self._requests.server_limit is None and self._tokens.server_limit is None
            if blind and now - self._last_decrease >= _HOLDOFF:
                factor = max(_FLOOR, factor * _DECREASE)
                self._last_decrease = now
            self._factor, self._factor_since = factor, now
            self._retune(now)
            if retry_after is not None:
                retry_after = min(max(0.0, retry_after), _MAX_PAUSE)
            pause = retry_after
            if pause is None and not self.enabled:
                pause = _UNKNOWN_PAUSE
            if pause is not None:
                self._paused_until = max(self._paused_until, now + pause)
            booked = None if reservation is None else reservation.tokens
            for unit, amount in ((self._requests, 1), (self._tokens, booked)):
                bucket = unit.bucket
                if bucket is None:
                    continue
                level = 0.0
                if retry_after is not None:
                    size = unit.typical if amount is None else amount
                    level = size - bucket.rate * retry_after
                bucket.lower_to(level - unit.outstanding, now)

    def acquire(self, tokens: int) -> Reservation:
        """Reserve, then block the thread for the reservation's delay.

        If the wait is interrupted, the booking is cancelled before the exception propagates.
        """
        reservation = self.reserve(tokens)
        if reservation.delay > 0:
            try:
                self._sleep(reservation.delay)
            except BaseException:
                self.cancel(reservation)
                raise
        return reservation

    async def aacquire(self, tokens: int) -> Reservation:
        """Reserve, then sleep (asyncio) for the reservation's delay.

        If the task is cancelled while waiting, the booking is cancelled and the
        :class:`asyncio.CancelledError` re-raised.
        """
        reservation = self.reserve(tokens)
        if reservation.delay > 0:
            try:
                await self._asleep(reservation.delay)
            except BaseException:
                self.cancel(reservation)
                raise
        return reservation

    def _factor_now(self, now: float) -> float:
        quiet = max(0.0, now - self._factor_since)
        return min(1.0, self._factor + _RECOVERY * quiet / 60.0)

    def _retune(self, now: float) -> None:
        """Bring both buckets to the limits in force at ``now`` (creating learned ones)."""
        factor = self._factor_now(now)
        for unit in (self._requests, self._tokens):
            ceiling = unit.ceiling()
            if ceiling is None:
                continue
            capacity, rate = ceiling[0] * factor, ceiling[1] * factor / 60.0
            if unit.bucket is None:
                unit.bucket = _Bucket(capacity, rate, capacity - unit.outstanding, now)
            else:
                unit.bucket.retune(capacity, rate, now)


def _num(value: float) -> str:
    """A limit for display: whole numbers from 100 up, three significant digits below."""
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"
