"""Retry decisions, backoff and the retry budget (the wait-hint parsers: test_headers.py)."""

from __future__ import annotations

import math
import random
import threading

import pytest

from embedguard.core.config import RetryPolicy
from embedguard.core.errors import (
    AuthenticationError,
    BadRequestError,
    CircuitOpenError,
    ContextLengthError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    QuotaExhaustedError,
    RateLimitError,
    ResponseValidationError,
    ServerError,
)
from embedguard.core.retry import (
    HEALTHY_RETRIES,
    RETRYABLE_STATUSES,
    RetryBudget,
    RetryDecision,
    backoff_delay,
    decide_retry,
    is_retryable_status,
)


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, now: float = 500.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


NO_JITTER = RetryPolicy(jitter=0.0)


# -- statuses -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "expected"),
    [
        *[(status, True) for status in (408, 409, 429, 500, 503, 599)],
        *[(status, False) for status in (200, 400, 401, 403, 404, 422)],
    ],
)
def test_is_retryable_status(status: int, expected: bool) -> None:
    """408, 409, 429 and every 5xx are retryable; other statuses are not."""
    assert is_retryable_status(status) is expected


def test_retryable_statuses_constant() -> None:
    """The constant lists the retryable 4xx statuses."""
    assert frozenset({408, 409, 429}) == RETRYABLE_STATUSES


# -- backoff --------------------------------------------------------------------------------------
def test_backoff_without_jitter_is_capped_exponential() -> None:
    """With no jitter the delay is initial * multiplier**n, capped at max_delay."""
    delays = [backoff_delay(NO_JITTER, n) for n in range(7)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0]


def test_backoff_jitter_only_shortens_and_is_reproducible() -> None:
    """Jitter scales the capped delay by (1 - jitter * U) from the given generator."""
    policy = RetryPolicy(jitter=0.5)
    draws = random.Random(7)
    rng = random.Random(7)
    for n in range(8):
        base = min(2.0**n, 20.0)
        expected = base * (1 - 0.5 * draws.random())
        delay = backoff_delay(policy, n, rng)
        assert delay == pytest.approx(expected)
        assert 0.5 * base <= delay <= base


def test_backoff_huge_multiplier_is_capped() -> None:
    """A growth that overflows a float still yields max_delay."""
    policy = RetryPolicy(multiplier=1e300, jitter=0.0)
    assert backoff_delay(policy, 100) == 20.0


def test_backoff_zero_initial_delay() -> None:
    """initial_delay 0 means retry at once."""
    assert backoff_delay(RetryPolicy(initial_delay=0.0, multiplier=1e300), 100) == 0.0


def test_backoff_rejects_negative_retry_number() -> None:
    """A negative retry number is a programming error."""
    with pytest.raises(ValueError, match="retry_number"):
        backoff_delay(NO_JITTER, -1)


# -- decide_retry ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "error",
    [
        RateLimitError("slow down"),
        ServerError("boom", status_code=503),
        ProviderTimeoutError("read timeout"),
        ProviderConnectionError("reset"),
        ResponseValidationError("cut short", truncated=True),
    ],
)
def test_retryable_errors_are_retried(error: ProviderError) -> None:
    """Rate limits, 5xx, timeouts, connection errors and truncated bodies are retried."""
    decision = decide_retry(NO_JITTER, error, retries_done=0, elapsed=0.0)
    assert decision == RetryDecision(True, 1.0, decision.reason)
    assert error.kind in decision.reason


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (BadRequestError("bad"), "bad_request"),
        (ContextLengthError("too long"), "context_length"),
        (AuthenticationError("no key"), "authentication"),
        (ResponseValidationError("wrong count"), "invalid_response"),
        (CircuitOpenError("open"), "circuit_open"),
        (ValueError("bug"), "ValueError"),
    ],
)
def test_non_retryable_errors_are_not_retried(error: BaseException, kind: str) -> None:
    """Errors that are not retryable provider errors give up, naming the kind."""
    decision = decide_retry(NO_JITTER, error, retries_done=0, elapsed=0.0)
    assert decision == RetryDecision(False, 0.0, f"not retryable: {kind}")


def test_quota_exhaustion_is_never_retried() -> None:
    """Quota exhaustion gives up even if the instance were marked retryable."""
    error = QuotaExhaustedError("insufficient_quota", status_code=429)
    error.retryable = True
    decision = decide_retry(NO_JITTER, error, retries_done=0, elapsed=0.0)
    assert decision.retry is False
    assert decision.reason == "not retryable: quota"


def test_max_retries_stops() -> None:
    """After max_retries retries the next failure gives up."""
    error = ServerError("boom")
    assert decide_retry(NO_JITTER, error, retries_done=2, elapsed=0.0).retry
    decision = decide_retry(NO_JITTER, error, retries_done=3, elapsed=0.0)
    assert decision == RetryDecision(False, 0.0, "max retries reached (3)")


def test_zero_max_retries_never_retries() -> None:
    """max_retries=0 turns retries off."""
    decision = decide_retry(RetryPolicy(max_retries=0), ServerError("x"), retries_done=0, elapsed=0)
    assert decision.retry is False


def test_backoff_grows_with_retries_done() -> None:
    """The n-th retry waits the n-th backoff step."""
    delays = [
        decide_retry(NO_JITTER, ServerError("x"), retries_done=n, elapsed=0.0).delay
        for n in range(3)
    ]
    assert delays == [1.0, 2.0, 4.0]


def test_server_hint_is_used_exactly() -> None:
    """A rate limit with retry_after waits exactly that long (no jitter, no backoff)."""
    error = RateLimitError("slow down", retry_after=2.5)
    decision = decide_retry(RetryPolicy(), error, retries_done=2, elapsed=0.0)
    assert (decision.retry, decision.delay) == (True, 2.5)
    assert "server hint" in decision.reason


def test_server_hint_too_long_gives_up() -> None:
    """A hint above max_retry_after is refused rather than slept through."""
    error = RateLimitError("come back tomorrow", retry_after=86400.0)
    decision = decide_retry(RetryPolicy(), error, retries_done=0, elapsed=0.0)
    assert decision.retry is False
    assert "86400" in decision.reason
    assert "max_retry_after" in decision.reason


def test_server_hint_at_the_cap_is_honoured() -> None:
    """A hint equal to max_retry_after is still honoured."""
    error = RateLimitError("wait", retry_after=60.0)
    assert decide_retry(RetryPolicy(), error, retries_done=0, elapsed=0.0).delay == 60.0


@pytest.mark.parametrize(
    ("hint", "retry", "delay"),
    [
        (math.nan, True, 1.0),  # not a hint: the backoff applies
        (-5.0, True, 0.0),
        (math.inf, False, 0.0),
        (1e300, False, 0.0),
        (1e9, False, 0.0),
    ],
    ids=str,
)
def test_hostile_hints_never_raise_nor_wait_past_max_retry_after(
    hint: float, retry: bool, delay: float
) -> None:
    """NaN, negative, infinite or huge hints give a finite decision within max_retry_after."""
    error = RateLimitError("x", retry_after=hint)
    decision = decide_retry(NO_JITTER, error, retries_done=0, elapsed=0.0)
    assert (decision.retry, decision.delay) == (retry, delay)


def test_an_unbounded_max_retry_after_still_waits_at_most_a_day() -> None:
    """Even with max_retry_after=inf, an infinite hint is refused, never slept through."""
    policy = RetryPolicy(max_retry_after=math.inf, max_elapsed=None)
    error = RateLimitError("x", retry_after=math.inf)
    assert decide_retry(policy, error, retries_done=0, elapsed=0.0).retry is False
    day = RateLimitError("x", retry_after=86_400.0)
    assert decide_retry(policy, day, retries_done=0, elapsed=0.0).delay == 86_400.0


def test_max_elapsed_stops() -> None:
    """A retry that would end past max_elapsed is not made."""
    policy = RetryPolicy(jitter=0.0, max_elapsed=10.0)
    assert decide_retry(policy, ServerError("x"), retries_done=0, elapsed=9.0).retry
    decision = decide_retry(policy, ServerError("x"), retries_done=0, elapsed=9.5)
    assert decision.retry is False
    assert "max_elapsed" in decision.reason


def test_no_max_elapsed() -> None:
    """max_elapsed=None puts no bound on total time."""
    policy = RetryPolicy(max_elapsed=None)
    assert decide_retry(policy, ServerError("x"), retries_done=0, elapsed=1e9).retry


def test_budget_exhausted_stops() -> None:
    """With the budget spent, the decision is no, for that reason."""
    clock = FakeClock()
    budget = RetryBudget(RetryPolicy(budget_min=1, budget_ratio=0.0), clock=clock)
    assert decide_retry(NO_JITTER, ServerError("x"), retries_done=0, elapsed=0, budget=budget).retry
    decision = decide_retry(NO_JITTER, ServerError("x"), retries_done=0, elapsed=0, budget=budget)
    assert decision == RetryDecision(False, 0.0, "retry budget exhausted")


@pytest.mark.parametrize(
    ("error", "retries_done", "elapsed"),
    [
        (BadRequestError("bad"), 0, 0.0),
        (ServerError("x"), 3, 0.0),
        (RateLimitError("x", retry_after=1e6), 0, 0.0),
        (ServerError("x"), 0, 299.9),
    ],
)
def test_budget_spent_only_on_real_retries(
    error: BaseException, retries_done: int, elapsed: float
) -> None:
    """A refusal for any other reason leaves the budget untouched."""
    budget = RetryBudget(RetryPolicy(budget_min=1, budget_ratio=0.0), clock=FakeClock())
    decision = decide_retry(
        NO_JITTER, error, retries_done=retries_done, elapsed=elapsed, budget=budget
    )
    assert decision.retry is False
    assert budget.try_spend()


def test_decisions_are_reproducible_with_a_seed() -> None:
    """The same seed gives the same jittered delays."""
    policy = RetryPolicy()

    def delays(seed: int) -> list[float]:
        rng = random.Random(seed)
        return [
            decide_retry(policy, ServerError("x"), retries_done=n, elapsed=0, rng=rng).delay
            for n in range(3)
        ]

    assert delays(3) == delays(3)
    assert delays(3) != delays(4)


# -- retry budget ---------------------------------------------------------------------------------
def test_budget_under_load_then_recovers() -> None:
    """100 requests allow 10 + 20 retries, then none, until the window has passed."""
    clock = FakeClock()
    budget = RetryBudget(RetryPolicy(), clock=clock)
    for _ in range(100):
        budget.record_request()
    granted = sum(budget.try_spend() for _ in range(50))
    assert granted == 30
    clock.advance(9.0)
    assert not budget.try_spend()
    clock.advance(1.0)
    assert sum(budget.try_spend() for _ in range(50)) == 10  # only budget_min: requests expired


def test_budget_window_slides() -> None:
    """Retries expire one window after they were spent, not all at once."""
    clock = FakeClock(0.0)
    budget = RetryBudget(RetryPolicy(budget_min=4, budget_ratio=0.0), clock=clock)
    assert [budget.try_spend() for _ in range(2)] == [True, True]
    clock.advance(5.0)
    assert [budget.try_spend() for _ in range(3)] == [True, True, False]
    clock.advance(5.0)  # the first two are ten seconds old now
    assert [budget.try_spend() for _ in range(3)] == [True, True, False]


def test_budget_ratio_only() -> None:
    """With budget_min 0, retries are earned only by requests."""
    budget = RetryBudget(RetryPolicy(budget_min=0, budget_ratio=0.5), clock=FakeClock())
    assert not budget.try_spend()
    budget.record_request()
    budget.record_request()
    assert budget.try_spend()
    assert not budget.try_spend()
    assert "retries=1/1" in repr(budget)


def test_budget_memory_is_bounded() -> None:
    """Hours of traffic keep at most one bucket per tenth of a window."""
    clock = FakeClock(0.0)
    budget = RetryBudget(RetryPolicy(), clock=clock)
    for _ in range(20_000):
        budget.record_request()
        budget.try_spend()
        clock.advance(0.37)
    assert len(budget._buckets) <= 10


def test_budget_is_thread_safe() -> None:
    """Threads racing for the budget get exactly the allowance between them."""
    budget = RetryBudget(RetryPolicy(), clock=FakeClock())
    for _ in range(100):
        budget.record_request()
    barrier = threading.Barrier(8)
    granted: list[int] = []

    def worker() -> None:
        barrier.wait()
        granted.append(sum(budget.try_spend() for _ in range(20)))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sum(granted) == 30


def test_a_healthy_endpoint_retries_sooner_and_longer() -> None:
    """With health h (failure rate over the opening rate), the backoff is scaled by max(h, 0.05)
    and a batch may retry up to HEALTHY_RETRIES x max_retries; unknown health changes nothing."""
    policy = RetryPolicy(max_retries=2, initial_delay=1.0, jitter=0.0, max_elapsed=None)
    error = ServerError("boom", status_code=500)
    plain = decide_retry(policy, error, retries_done=0, elapsed=0.0)
    scaled = decide_retry(policy, error, retries_done=0, elapsed=0.0, health=0.25)
    blip = decide_retry(policy, error, retries_done=0, elapsed=0.0, health=0.0)
    assert (plain.delay, scaled.delay, blip.delay) == (1.0, 0.25, 0.05)
    assert not decide_retry(policy, error, retries_done=2, elapsed=0.0).retry
    assert decide_retry(policy, error, retries_done=2, elapsed=0.0, health=0.5).retry
    assert not decide_retry(policy, error, retries_done=2 * HEALTHY_RETRIES, elapsed=0.0,
                            health=0.5).retry  # fmt: skip
    hinted = RateLimitError("slow down", retry_after=0.4)
    assert decide_retry(policy, hinted, retries_done=0, elapsed=0.0, health=0.1).delay == 0.4
