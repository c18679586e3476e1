"""The parts of the rate limiter: bounded hint readers, the bookings and the buckets (pure).

:mod:`embedguard.core.ratelimit` re-exports the public names; import them from there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = [
    "ASSUMED",
    "CONFIGURED",
    "MAX_COUNT",
    "MAX_HINT_SECONDS",
    "MAX_PAUSE",
    "SERVER",
    "UNLIMITED",
    "Bucket",
    "RateLimitInfo",
    "Reservation",
    "Unit",
    "bound_count",
    "bound_seconds",
]

MAX_HINT_SECONDS = 86_400.0
"""The longest wait a header can express here (a day); longer values read as a day."""
MAX_PAUSE = 60.0
"""The longest pause a 429 imposes on later bookings (one rate-limit window)."""
MAX_COUNT = 10**12
"""The largest limit or remaining count taken from a header; larger ones are ignored."""


SERVER, CONFIGURED, ASSUMED, UNLIMITED = "server", "configured", "assumed", "unlimited"
"""Where a limit in force comes from."""


def bound_seconds(value: object, maximum: float = MAX_HINT_SECONDS) -> float | None:
    """A wait hint made safe: ``None`` if absent, NaN or not a number; else in ``[0, maximum]``.

    ``inf`` and ``1e400`` read as ``maximum``, ``-5`` as 0.
    """
    if value is None or isinstance(value, bool):
        return None
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), maximum)


def bound_count(value: object, *, minimum: int = 0) -> int | None:
    """A count from a header made safe: a whole number in ``[minimum, MAX_COUNT]``, else ``None``.

    ``100.0`` reads as 100; ``1.5``, ``-1``, NaN, ``inf`` and ``1e300`` read as ``None``.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not value.is_integer():  # NaN, inf and fractions are not counts
            return None
        value = int(value)
    if not isinstance(value, int) or not minimum <= value <= MAX_COUNT:
        return None
    return value


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    """What the provider's rate-limit headers said; ``None`` where a value was absent.

    Counts are per the provider's window (per minute where the provider has several);
    ``reset_*`` are seconds until that bucket is full again.
    """

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens: float | None = None


@dataclass(frozen=True, slots=True)
class Reservation:
    """Capacity booked by :meth:`RateLimiter.reserve`.

    Attributes:
        tokens: The tokens booked (the estimate given to ``reserve``).
        delay: Seconds the caller must wait before sending.
        booked_at: When it was booked, on the limiter's clock (tells a 429's echoes apart).
    """

    tokens: int
    delay: float
    booked_at: float = field(default=-math.inf, compare=False, repr=False)


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
