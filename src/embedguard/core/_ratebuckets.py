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
    "RateLimitInfo",
    "Reservation",
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
