"""A fake clock and a limiter factory shared by the rate-limiter tests."""

from __future__ import annotations

from embedguard.core.config import RateLimit
from embedguard.core.ratelimit import RateLimiter


class FakeClock:
    """A monotonic clock that moves only when told to (or when a fake sleep waits)."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


def limiter(
    rpm: int | None = None,
    tpm: int | None = None,
    *,
    assumed: tuple[int | None, int | None] | None = None,
    clock: FakeClock | None = None,
) -> tuple[RateLimiter, FakeClock]:
    """A limiter on a fake clock: caps ``rpm``/``tpm`` (none when both are None), ``assumed``."""
    clock = clock or FakeClock()
    cap = None if rpm is None and tpm is None else RateLimit(requests_per_minute=rpm,
                                                            tokens_per_minute=tpm)  # fmt: skip
    guess = None
    if assumed is not None:
        guess = RateLimit(requests_per_minute=assumed[0], tokens_per_minute=assumed[1])
    return RateLimiter(cap, guess, clock=clock, sleep=clock.sleep, asleep=clock.asleep), clock
