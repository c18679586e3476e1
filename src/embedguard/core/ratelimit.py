"""Client-side rate limiting: requests/min and tokens/min, following what the server states.

Which limit is in force, per quantity (requests, tokens):

* the server's stated limit (``x-ratelimit-limit-*``), replacing the guess upward as well as
  downward, but never above the configured cap;
* else the configured cap (``ProviderProfile.rate_limit``: set by the user, a hard cap);
* else the provider's assumed limit (``profiles.assumed_rate_limit``: a guess);
* else none.

:attr:`RateLimiter.limits_in_force` names the source of each (``"server"``, ``"configured"``,
``"assumed"`` or ``"unlimited"``); the ``repr`` shows it too.

Each limit is a leaky bucket (GCRA): capacity the per-minute limit, refilled at ``limit / 60``
per second. A request books one request and its estimated tokens up front (:meth:`reserve`);
the response's usage settles the difference (:meth:`correct`). Every call is O(1) arithmetic
under a lock; waiting is the caller's (:meth:`acquire` / :meth:`aacquire` wrap it).

Rules for a 429 (:meth:`RateLimiter.on_rate_limited`):

* It costs what it asks. With ``Retry-After: r``, bookings made from now on wait until
  ``now + r`` (the refused request itself waits ``r`` in the retry policy); nothing already
  booked is charged and no bucket is lowered. Without a wait hint, rate-limit headers on the
  429 (``info``) re-sync the buckets as :meth:`observe` does; with neither, the buckets are
  emptied (lowered to 0, never below: what is already booked is not charged twice), so the
  next request waits for its own refill; an unlimited limiter pauses 1 s instead.
* Blind slow-down (AIMD), only while the server has stated no limit (no ``x-ratelimit-limit-*``
  on this 429 nor on any earlier response): a 429 is an *echo*, and ignored, when its request
  was booked before the previous counted 429 (without the booking: within 2 s of it), since
  it was sent before anything could change. A non-echo 429 is counted; it is a *repeat* when
  it comes within 10 s of the previous counted one or while the limiter is still slowed, and
  a repeat halves the factor ``f`` that scales every limit in force (never below 0.1). A
  single 429 never slows anything down. ``f`` recovers 10 s after the last 429, linearly, by
  1/20 per second: from one halving back to full in 20 s, from the floor in 28 s. The first
  limit the server states resets ``f`` to 1.

Every hint is bounded (:func:`bound_seconds`, :func:`bound_count`): a wait hint that is NaN or
not a number is ignored, a negative one is 0, and the limiter pauses for at most
:data:`MAX_PAUSE` (60 s) whatever the hint; a stated count must be an integer from 1 (limits) or
0 (remaining) to :data:`MAX_COUNT`, else it is ignored, so a header can never remove, zero or
blow up a limit. Reset times (``x-ratelimit-reset-*``) are not used for pacing: the limit and
the remaining count say what the next request needs, and a reset longer than a minute (a daily
window) shows up as a 429 whose long ``Retry-After`` the retry policy refuses.

Example::

    limiter = RateLimiter(profile.rate_limit, assumed_rate_limit(profile.provider))
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

from ._ratebuckets import (
    ASSUMED,
    CONFIGURED,
    MAX_COUNT,
    MAX_HINT_SECONDS,
    MAX_PAUSE,
    SERVER,
    UNLIMITED,
    RateLimitInfo,
    Reservation,
    bound_count,
    bound_seconds,
)
from .config import RateLimit

__all__ = [
    "MAX_COUNT",
    "MAX_HINT_SECONDS",
    "MAX_PAUSE",
    "RateLimitInfo",
    "RateLimiter",
    "Reservation",
    "bound_count",
    "bound_seconds",
]

_DECREASE = 0.5  # multiplicative decrease of the factor on a repeated blind 429
_FLOOR = 0.1  # the factor never drops below this
_REPEAT = 10.0  # seconds: a counted blind 429 this close to the previous one is a repeat
_QUIET = 10.0  # seconds without a 429 before the factor starts to recover
_RECOVERY = 20.0  # seconds for the factor to regain 1 (linearly), once recovering
_ECHO = 2.0  # seconds: without the refused booking, 429s this close to a counted one are echoes
_UNKNOWN_PAUSE = 1.0  # seconds an unlimited limiter pauses on a 429 without a wait hint


class Bucket:
    """One leaky bucket; ``level`` is the capacity available now and may be negative (debt)."""

    __slots__ = ("capacity", "level", "rate", "updated")

    def __init__(self, capacity: float, level: float, now: float) -> None:
        self.capacity = capacity
        self.rate = capacity / 60.0
        self.level = min(capacity, level)
        self.updated = now

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now

    def retune(self, capacity: float, now: float, *, keep_used: bool) -> None:
        """Switch to a new capacity (and rate) from ``now`` on.

        ``keep_used``: what was used from the old capacity stays used, so the level moves by
        the change (a limit found to be higher frees its headroom at once). Otherwise the level
        is only capped by the new capacity.
        """
        if keep_used:
            self.refill(now)
            self.level += capacity - self.capacity
        elif now > self.updated:
            # Refilled at the old rate but capped by the new capacity: a capacity that grew
            # back while idle is available at once.
            self.level += (now - self.updated) * self.rate
            self.updated = now
        self.capacity, self.rate = capacity, capacity / 60.0
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


class Unit:
    """One limited quantity (requests or tokens): its cap, assumption and stated limit."""

    __slots__ = ("assumed", "bucket", "cap", "outstanding", "stated")

    def __init__(self, cap: int | None, assumed: int | None) -> None:
        self.cap = cap
        self.assumed = assumed
        self.stated: int | None = None
        self.bucket: Bucket | None = None
        self.outstanding = 0.0  # booked, not yet settled by correct() or cancel()

    def ceiling(self) -> tuple[float, str] | None:
        """The per-minute limit before the slow-down factor, and its source; ``None``: none."""
        if self.stated is not None:
            if self.cap is not None and self.cap < self.stated:
                return float(self.cap), CONFIGURED
            return float(self.stated), SERVER
        if self.cap is not None:
            return float(self.cap), CONFIGURED
        if self.assumed is not None:
            return float(self.assumed), ASSUMED
        return None

    def learn(self, limit: object) -> bool:
        """Record a stated limit; ``False`` when it is a placeholder or out of bounds."""
        if limit is None:
            return True
        value = bound_count(limit, minimum=1)  # Azure sends -1/0 for limits it does not enforce
        if value is None:
            return False
        self.stated = value
        return True


class RateLimiter:
    """Two token buckets: requests/min and tokens/min (GCRA), following the server's statements.

    A full bucket lets a burst up to the limit through at once; steady traffic is paced to the
    limit. :meth:`reserve` always succeeds: it books now (the level may go negative) and says
    how long to wait, so a request larger than the bucket is delayed, never rejected.
    Thread-safe, and safe from asyncio (the lock is never held across a wait). See the module
    docstring for which limit is in force and what a 429 does.

    Args:
        cap: The configured limits, hard caps (``None``, or a ``None`` field: no cap).
        assumed: The provider's assumed limits, used where neither the server nor the cap says
            (``None``, or a ``None`` field: unlimited until the server states a limit).
        clock: A monotonic clock in seconds (injectable for tests).
        sleep: How :meth:`acquire` waits.
        asleep: How :meth:`aacquire` waits.
    """

    def __init__(
        self,
        cap: RateLimit | None = None,
        assumed: RateLimit | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        asleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._cap = cap
        self._assumed = assumed
        self._clock = clock
        self._sleep = sleep
        self._asleep = asleep
        self._lock = threading.Lock()
        now = clock()
        self._requests = Unit(_field(cap, "requests"), _field(assumed, "requests"))
        self._tokens = Unit(_field(cap, "tokens"), _field(assumed, "tokens"))
        self._factor = 1.0  # slow-down factor at ``_factor_since``
        self._factor_since = now
        self._last_counted = -math.inf  # the last counted blind 429
        self._paused_until = -math.inf
        self._retune(now)

    @property
    def cap(self) -> RateLimit | None:
        """The configured caps."""
        return self._cap

    @property
    def assumed(self) -> RateLimit | None:
        """The provider's assumed limits."""
        return self._assumed

    @property
    def enabled(self) -> bool:
        """``False`` while no limit is in force (then reserving costs nothing)."""
        return self._requests.bucket is not None or self._tokens.bucket is not None

    @property
    def effective_limits(self) -> tuple[float | None, float | None]:
        """The (requests, tokens) per minute in force now, slow-down included; ``None``: none."""
        limits = self.limits_in_force
        return limits["requests"][0], limits["tokens"][0]

    @property
    def limits_in_force(self) -> dict[str, tuple[float | None, str]]:
        """Per quantity, the limit per minute in force now (slow-down included) and its source.

        Example: ``{"requests": (10000.0, "server"), "tokens": (1000000.0, "assumed")}``;
        sources are ``"server"``, ``"configured"``, ``"assumed"`` and ``"unlimited"``.
        """
        with self._lock:
            factor = self._factor_now(self._clock())
            ceilings = {"requests": self._requests.ceiling(), "tokens": self._tokens.ceiling()}
        return {
            name: (None, UNLIMITED) if c is None else (c[0] * factor, c[1])
            for name, c in ceilings.items()
        }

    @property
    def slowdown(self) -> float:
        """The blind slow-down factor now: 1.0 when none, down to 0.1."""
        with self._lock:
            return self._factor_now(self._clock())

    def __repr__(self) -> str:
        with self._lock:
            now = self._clock()
            self._retune(now)
            factor = self._factor_now(now)
            parts = []
            for label, unit in (("requests", self._requests), ("tokens", self._tokens)):
                bucket, ceiling = unit.bucket, unit.ceiling()
                if bucket is None or ceiling is None:
                    continue
                bucket.refill(now)
                parts.append(
                    f"{label}={bucket.level:.6g}/{_num(bucket.capacity)} per min ({ceiling[1]})"
                )
        if not parts:
            return "RateLimiter(unlimited)"
        if factor < 1.0:
            parts.append(f"slowed x{factor:.2f}")
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
        with self._lock:
            now = self._clock()
            self._retune(now)
            delay = max(0.0, self._paused_until - now)
            for unit, amount in ((self._requests, 1), (self._tokens, tokens)):
                unit.outstanding += amount
                if unit.bucket is not None:
                    delay = max(delay, unit.bucket.take(amount, now))
        return Reservation(tokens, delay, now)

    def correct(self, reservation: Reservation, actual_tokens: int) -> None:
        """Settle a booking with the usage the response reported.

        Fewer tokens than booked are given back; more are taken (delaying later requests).
        Every reservation must be settled once, by this or by :meth:`cancel`.
        """
        with self._lock:
            now = self._clock()
            self._retune(now)
            self._requests.outstanding = max(0.0, self._requests.outstanding - 1)
            self._tokens.outstanding = max(0.0, self._tokens.outstanding - reservation.tokens)
            if self._tokens.bucket is not None:
                self._tokens.bucket.give(reservation.tokens - actual_tokens, now)

    def cancel(self, reservation: Reservation) -> None:
        """Give a booking back in full: the request was never sent."""
        with self._lock:
            now = self._clock()
            self._retune(now)
            for unit, amount in ((self._requests, 1), (self._tokens, reservation.tokens)):
                unit.outstanding = max(0.0, unit.outstanding - amount)
                if unit.bucket is not None:
                    unit.bucket.give(amount, now)

    def observe(self, info: RateLimitInfo) -> None:
        """Follow the rate-limit headers of a response.

        Call it after :meth:`correct` for the same response. For each of requests and tokens:

        * ``limit_*`` becomes the server's stated limit, and the limit in force (up to the
          cap). What was used from the old limit stays used: a higher limit frees its extra
          headroom at once, a lower one takes it away. Limits outside ``[1, MAX_COUNT]``
          (Azure's ``-1``/``0`` placeholders, garbage) make that quantity's headers ignored.
        * ``remaining_*`` lowers the bucket to ``remaining - outstanding`` (``outstanding``:
          booked but not yet settled, which the server has not counted) when that is below
          what the bucket holds. It never raises the level: others may share the key.
        * The first limit the server states cancels any blind slow-down.

        Missing fields are ignored, so OpenAI (all six), Azure (remaining only) and Mistral
        (per-minute limits, tightest-window remaining) headers are all handled.
        """
        with self._lock:
            self._observe(info, self._clock())

    def on_rate_limited(
        self,
        retry_after: float | None,
        *,
        info: RateLimitInfo | None = None,
        reservation: Reservation | None = None,
    ) -> None:
        """Take a 429 into account (one that reports a rate limit, not an exhausted quota).

        The rules (pause, re-sync or emptying, blind slow-down) are in the module docstring.
        Call it after settling the refused booking (``correct(reservation, 0)``).

        Args:
            retry_after: The wait the server asked for, in seconds, if it said (bounded: NaN
                is ignored, at most :data:`MAX_PAUSE` counts).
            info: The rate-limit headers of the 429, if any.
            reservation: The refused request's booking: tells its echoes apart exactly (when
                it was booked); without it, 429s within 2 s of a counted one are echoes.
        """
        pause = bound_seconds(retry_after, MAX_PAUSE)
        with self._lock:
            now = self._clock()
            synced = False
            if info is not None:
                synced = self._observe(info, now)
            factor = self._factor_now(now)
            if reservation is not None:
                echo = reservation.booked_at < self._last_counted
            else:
                echo = now - self._last_counted < _ECHO
            if self._blind() and not echo:
                if now - self._last_counted <= _REPEAT or factor < 1.0:
                    factor = max(_FLOOR, factor * _DECREASE)
                self._last_counted = now
            self._factor, self._factor_since = factor, now
            self._retune(now)
            if pause is None and not self.enabled:
                pause = _UNKNOWN_PAUSE
            if pause is not None:
                self._paused_until = max(self._paused_until, now + pause)
            elif not synced:
                for unit in (self._requests, self._tokens):
                    if unit.bucket is not None:
                        unit.bucket.lower_to(0.0, now)

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

    # -- internals (called with the lock held) --------------------------------------------------
    def _blind(self) -> bool:
        return self._requests.stated is None and self._tokens.stated is None

    def _observe(self, info: RateLimitInfo, now: float) -> bool:
        """Apply ``info``; return whether it lowered any bucket to a stated remaining count."""
        self._retune(now)
        blind = self._blind()
        pairs = (
            (self._requests, info.limit_requests, info.remaining_requests),
            (self._tokens, info.limit_tokens, info.remaining_tokens),
        )
        usable = [unit.learn(limit) for unit, limit, _ in pairs]
        if blind and not self._blind():
            # The server's own numbers replace any slow-down guessed before we had them.
            self._factor, self._factor_since = 1.0, now
        self._retune(now, keep_used=True)
        synced = False
        for ok, (unit, _, raw) in zip(usable, pairs, strict=True):
            remaining = bound_count(raw)
            if ok and remaining is not None and unit.bucket is not None:
                unit.bucket.lower_to(remaining - unit.outstanding, now)
                synced = True
        return synced

    def _factor_now(self, now: float) -> float:
        if self._factor >= 1.0:
            return 1.0
        quiet = max(0.0, now - self._factor_since - _QUIET)
        return min(1.0, self._factor + quiet / _RECOVERY)

    def _retune(self, now: float, *, keep_used: bool = False) -> None:
        """Bring both buckets to the limits in force at ``now`` (creating new ones)."""
        factor = self._factor_now(now)
        for unit in (self._requests, self._tokens):
            ceiling = unit.ceiling()
            if ceiling is None:
                continue
            capacity = ceiling[0] * factor
            if unit.bucket is None:
                unit.bucket = Bucket(capacity, capacity - unit.outstanding, now)
            elif capacity != unit.bucket.capacity:
                unit.bucket.retune(capacity, now, keep_used=keep_used)


def _field(limit: RateLimit | None, unit: str) -> int | None:
    if limit is None:
        return None
    return limit.requests_per_minute if unit == "requests" else limit.tokens_per_minute


def _num(value: float) -> str:
    """A limit for display: whole numbers from 100 up, three significant digits below."""
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"
