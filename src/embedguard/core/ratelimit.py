"""Client-side rate limiting: requests per minute and tokens per minute.

Each limit is a leaky bucket (GCRA): its capacity is the per-minute limit and it refills
continuously at ``limit / 60`` per second. A request books one request and its estimated tokens
up front; when the response reports the real usage, :meth:`RateLimiter.correct` settles the
difference. Booking is pure arithmetic under a lock; waiting is done by the caller, with
:meth:`RateLimiter.acquire` (threads) or :meth:`RateLimiter.aacquire` (asyncio) as thin wrappers.

Example::

    limiter = RateLimiter(RateLimit(requests_per_minute=3000, tokens_per_minute=1_000_000))
    reservation = await limiter.aacquire(estimated_tokens)
    response = await send()
    limiter.correct(reservation, response.usage.prompt_tokens)
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .config import RateLimit

__all__ = ["RateLimiter", "Reservation"]


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

    def __init__(self, per_minute: int, now: float) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.level = self.capacity
        self.updated = now

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now

    def take(self, amount: float, now: float) -> float:
        """Book ``amount`` and return the wait until the bucket is out of debt."""
        self.refill(now)
        self.level -= amount
        return -self.level / self.rate if self.level < 0 else 0.0

    def give(self, amount: float, now: float) -> None:
        """Return ``amount`` (negative to take more), never above capacity."""
        self.refill(now)
        self.level = min(self.capacity, self.level + amount)


class RateLimiter:
    """Two token buckets: requests/min and tokens/min (GCRA / leaky bucket).

    Capacity is the per-minute limit, refilling continuously at ``limit / 60`` per second, so a
    burst up to the limit passes at once and steady traffic is paced to exactly the limit.
    :meth:`reserve` always succeeds: it books the capacity now (the level may go negative) and
    returns how long to wait, so a request larger than the bucket is never rejected, only
    delayed. Waiting is done by the caller (:meth:`acquire` / :meth:`aacquire` wrap it).
    Thread-safe, and safe from asyncio (the lock is never held across a wait).

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
        rpm, tpm = limit.requests_per_minute, limit.tokens_per_minute
        self._requests = _Bucket(rpm, now) if rpm is not None else None
        self._tokens = _Bucket(tpm, now) if tpm is not None else None

    @property
    def limit(self) -> RateLimit:
        """The configured limits."""
        return self._limit

    @property
    def enabled(self) -> bool:
        """``False`` when both limits are ``None`` (then reserving costs nothing)."""
        return self._requests is not None or self._tokens is not None

    def __repr__(self) -> str:
        if not self.enabled:
            return "RateLimiter(unlimited)"
        parts = []
        with self._lock:
            now = self._clock()
            for label, bucket in (("requests", self._requests), ("tokens", self._tokens)):
                if bucket is not None:
                    bucket.refill(now)
                    parts.append(f"{label}={bucket.level:.6g}/{bucket.capacity:.0f} per min")
        return f"RateLimiter({', '.join(parts)})"

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
        if not self.enabled:
            return Reservation(tokens, 0.0)
        delay = 0.0
        with self._lock:
            now = self._clock()
            if self._requests is not None:
                delay = self._requests.take(1, now)
            if self._tokens is not None:
                delay = max(delay, self._tokens.take(tokens, now))
        return Reservation(tokens, delay)

    def correct(self, reservation: Reservation, actual_tokens: int) -> None:
        """Settle a booking with the usage the response reported.

        Fewer tokens than booked are given back; more are taken (delaying later requests).
        """
        if self._tokens is None:
            return
        with self._lock:
            self._tokens.give(reservation.tokens - actual_tokens, self._clock())

    def cancel(self, reservation: Reservation) -> None:
        """Give a booking back in full: the request was never sent."""
        if not self.enabled:
            return
        with self._lock:
            now = self._clock()
            if self._requests is not None:
                self._requests.give(1, now)
            if self._tokens is not None:
                self._tokens.give(reservation.tokens, now)

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
