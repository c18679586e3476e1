"""Retry decisions: which failures are retried, and how long to wait (pure, no I/O).

:func:`decide_retry` turns a failure into a :class:`RetryDecision` (retry or not, how long to wait,
and why). The wait follows the formula documented on :class:`~embedguard.core.config.RetryPolicy`:
the server's ``retry-after-ms`` / ``Retry-After`` hint when a rate-limit response carried one
(refused when above ``max_retry_after``; a NaN hint is ignored and a negative one is 0, so no
wait is longer than ``max_retry_after``, nor than a day), otherwise capped exponential backoff
with jitter (:func:`backoff_delay`). The headers are parsed by
:mod:`embedguard.core.providers.headers`. A shared :class:`RetryBudget` caps the retries made in
any sliding window, so a failing provider is not hammered. Nothing here sleeps: the caller
waits, with ``time.sleep`` or ``asyncio.sleep``.

Example::

    budget = RetryBudget(policy)
    budget.record_request()
    decision = decide_retry(policy, error, retries_done=0, elapsed=0.4, budget=budget)
    if decision.retry:
        time.sleep(decision.delay)
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .config import RetryPolicy
from .errors import EmbedGuardError, ProviderError, QuotaExhaustedError, RateLimitError
from .ratelimit import MAX_HINT_SECONDS, bound_seconds

__all__ = [
    "HEALTHY_RETRIES",
    "RETRYABLE_STATUSES",
    "RetryBudget",
    "RetryDecision",
    "backoff_delay",
    "decide_retry",
    "is_retryable_status",
]

# -- which failures -------------------------------------------------------------------------------
RETRYABLE_STATUSES: frozenset[int] = frozenset({408, 409, 429})
"""Retryable 4xx statuses; every status of 500 and above is retryable too."""


def is_retryable_status(status: int) -> bool:
    """Whether an HTTP status is worth retrying: 408, 409, 429 or any 5xx.

    A 429 that means quota exhaustion is told apart by the error mapping
    (:class:`~embedguard.QuotaExhaustedError`), not by the status.
    """
    return status in RETRYABLE_STATUSES or status >= 500


# -- how long ---------------------------------------------------------------------------------
def backoff_delay(
    policy: RetryPolicy, retry_number: int, rng: random.Random | None = None
) -> float:
    """The backoff before retry ``retry_number`` (0-based), without a server hint.

    ``min(initial_delay * multiplier**retry_number, max_delay) * (1 - jitter * U[0, 1))``, so
    jitter only ever shortens the wait and never pushes it above ``max_delay``.

    Args:
        policy: The retry policy.
        retry_number: 0 for the first retry.
        rng: Source of the jitter (seed one for reproducible tests); default the global one.

    Raises:
        ValueError: ``retry_number`` is negative.
    """
    if retry_number < 0:
        raise ValueError(f"retry_number must be >= 0, got {retry_number}")
    if policy.initial_delay == 0 or policy.max_delay == 0:
        return 0.0
    try:
        raw = policy.initial_delay * policy.multiplier**retry_number
    except OverflowError:  # a huge multiplier: the cap applies anyway
        raw = math.inf
    base = min(raw, policy.max_delay)
    draw = (rng or random).random()
    return base * (1.0 - policy.jitter * draw)


# -- retry budget -------------------------------------------------------------------------------
_BUCKETS_PER_WINDOW = 10


class RetryBudget:
    """Caps retries: in any ``budget_window`` seconds, ``budget_min + budget_ratio * requests``.

    ``requests`` counts the first attempts recorded in the window. The window slides in tenths
    (counts are kept per bucket, so memory stays bounded whatever the traffic): a retry or a
    request stops counting between 0.9 and 1.0 windows after it happened. Thread-safe; share one
    budget per provider.

    The send path counts first attempts by adding to :attr:`started` (a plain integer, no call on
    the hot path); the budget folds them into its current bucket whenever it is consulted, so a
    request counts from the first retry decision after it, which is when it matters.

    Args:
        policy: Supplies ``budget_min``, ``budget_ratio`` and ``budget_window``.
        clock: A monotonic clock in seconds (injectable for tests).
    """

    def __init__(self, policy: RetryPolicy, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._min = policy.budget_min
        self._ratio = policy.budget_ratio
        self._width = policy.budget_window / _BUCKETS_PER_WINDOW
        self._clock = clock
        self._lock = threading.Lock()
        # [bucket index, requests, retries], oldest first; at most _BUCKETS_PER_WINDOW entries.
        self._buckets: deque[list[int]] = deque()
        self._requests = 0
        self._retries = 0
        self.started = 0
        """First attempts counted by the send path (folded in when the budget is consulted)."""
        self._folded = 0

    def __repr__(self) -> str:
        with self._lock:
            self._slide(self._clock())
            return (
                f"RetryBudget(retries={self._retries}/{self._allowance():g}, "
                f"requests={self._requests})"
            )

    def record_request(self) -> None:
        """Count a first attempt (retries are not requests)."""
        with self._lock:
            self._bucket(self._clock())[1] += 1
            self._requests += 1

    def try_spend(self) -> bool:
        """Take one retry from the budget; ``False`` (and nothing taken) when it is spent."""
        with self._lock:
            bucket = self._bucket(self._clock())
            if (new := self.started - self._folded) > 0:
                self._folded += new
                bucket[1] += new
                self._requests += new
            # A tiny tolerance so that e.g. 0.2 * 150 = 30.000000000000004 does not lose a retry.
            if self._retries + 1 > self._allowance() + 1e-9:
                return False
            bucket[2] += 1
            self._retries += 1
            return True

    def _allowance(self) -> float:
        return self._min + self._ratio * self._requests

    def _slide(self, now: float) -> int:
        index = math.floor(now / self._width)
        oldest_kept = index - _BUCKETS_PER_WINDOW + 1
        while self._buckets and self._buckets[0][0] < oldest_kept:
            _, requests, retries = self._buckets.popleft()
            self._requests -= requests
            self._retries -= retries
        return index

    def _bucket(self, now: float) -> list[int]:
        index = self._slide(now)
        if not self._buckets or self._buckets[-1][0] < index:
            self._buckets.append([index, 0, 0])
        return self._buckets[-1]


# -- the decision ---------------------------------------------------------------------------------
HEALTHY_RETRIES = 3
"""How many times ``max_retries`` a batch may retry while its endpoint is healthy."""
_LEAST_SCALE = 0.05  # a healthy endpoint's backoff is never scaled below this share


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """Whether to retry a failed request.

    Attributes:
        retry: Try again.
        delay: Seconds to wait first (0 when not retrying).
        reason: Why, in a few words (for logs and metrics).
    """

    retry: bool
    delay: float
    reason: str


def decide_retry(
    policy: RetryPolicy,
    error: BaseException,
    *,
    retries_done: int,
    elapsed: float,
    budget: RetryBudget | None = None,
    rng: random.Random | None = None,
    health: float | None = None,
) -> RetryDecision:
    """Decide whether, and after how long, to retry a request that failed with ``error``.

    Rules, in order: the error must be a retryable :class:`~embedguard.ProviderError` (rate limit,
    5xx, timeout, connection, truncated body; never quota exhaustion); fewer than
    ``max_retries`` retries done (``HEALTHY_RETRIES`` times that while the endpoint is healthy);
    the server's wait hint, if any, at most ``max_retry_after``; ``elapsed + delay`` within
    ``max_elapsed``; and a retry left in the ``budget``. The budget is consulted last, so it is
    spent only on retries that happen.

    ``health`` is how unhealthy the endpoint looks, when it looks healthy: its recent failure rate
    divided by the rate that opens its breaker (in ``[0, 1)``; ``None``: unknown or failing).
    A healthy endpoint meeting random faults is a flaky provider, not an outage, so: the backoff
    (not a server hint) is scaled by ``max(health, 0.05)`` (a blip is retried at once, a
    degrading provider gets more room as its failure rate climbs), and a batch may retry up to
    ``HEALTHY_RETRIES`` times ``max_retries`` rather than fail a working call. The budget,
    ``max_elapsed`` and the breaker still bound those retries.

    Args:
        policy: The retry policy.
        error: The failure.
        retries_done: Retries already made for this request (0 after the first attempt).
        elapsed: Seconds spent on this request so far, all attempts and waits included.
        budget: The provider's shared retry budget, if any.
        rng: Source of the backoff jitter.

    Returns:
        The decision; ``delay`` is the wait before the next attempt.
    """
    if isinstance(error, QuotaExhaustedError) or not (
        isinstance(error, ProviderError) and error.retryable
    ):
        kind = error.kind if isinstance(error, EmbedGuardError) else type(error).__name__
        return RetryDecision(False, 0.0, f"not retryable: {kind}")
    allowed = policy.max_retries * (1 if health is None else HEALTHY_RETRIES)
    if retries_done >= allowed:
        return RetryDecision(False, 0.0, f"max retries reached ({allowed})")
    raw = error.retry_after if isinstance(error, RateLimitError) else None
    hint = bound_seconds(raw, math.inf)  # NaN: no hint; negative: 0
    if hint is not None:
        if hint > min(policy.max_retry_after, MAX_HINT_SECONDS):
            reason = f"server asked to wait {hint:g}s, over max_retry_after"
            return RetryDecision(False, 0.0, f"{reason} ({policy.max_retry_after:g}s)")
        delay = hint
    else:
        delay = backoff_delay(policy, retries_done, rng)
        if health is not None:
            delay *= max(health, _LEAST_SCALE)
    if policy.max_elapsed is not None and elapsed + delay > policy.max_elapsed:
        return RetryDecision(False, 0.0, f"max_elapsed ({policy.max_elapsed:g}s) would be exceeded")
    if budget is not None and not budget.try_spend():
        return RetryDecision(False, 0.0, "retry budget exhausted")
    source = "server hint" if hint is not None else "backoff"
    return RetryDecision(
        True,
        delay,
        f"retry {retries_done + 1}/{allowed} after {error.kind} ({source})",
    )
