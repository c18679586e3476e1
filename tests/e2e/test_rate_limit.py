"""The rate limiter over real HTTP, against the loopback server's limits, 429s and headers.

Where a test needs the limiter the send path builds for a profile without a cap (the cap
``None`` plus the provider's assumed limits), it installs one on the client, as
tests/reliability/test_cancellation.py installs its frozen limiter, and records every
booking's delay: the assertions are on the limiter, never on elapsed time.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from embedguard import EmbeddingClient, RateLimit, RateLimitError, profiles
from embedguard.core.ratelimit import MAX_HINT_SECONDS, MAX_PAUSE, RateLimiter, Reservation
from embedguard.testing import EmbeddingServer, Fault

from .conftest import KEY, fast

SERVER_TPM = 60_000  # 1,000 tokens/s, a bucket of 60,000
STATED = {"requests": (10_000.0, "server"), "tokens": (10_000_000.0, "server")}


class RecordingLimiter(RateLimiter):
    """A limiter that keeps the delay of every booking it hands out."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.delays: list[float] = []

    def reserve(self, tokens: int) -> Reservation:
        booking = super().reserve(tokens)
        self.delays.append(booking.delay)
        return booking


def _client(server: EmbeddingServer, **changes: Any) -> EmbeddingClient:
    profile = fast(profiles.openai(base_url=server.base_url("openai"), dimensions=16), **changes)
    return EmbeddingClient(profile, api_key=KEY, coalesce_window=0)


def _install(client: EmbeddingClient, assumed: RateLimit) -> RecordingLimiter:
    """Give ``client`` the limiter the send path builds: its profile's cap, plus ``assumed``."""
    limiter = RecordingLimiter(client.profile.rate_limit, assumed)
    client._primary.limiter = limiter
    return limiter


def _limiter(client: EmbeddingClient) -> RateLimiter:
    return client._primary.limiter


def _texts(n: int, words: int = 10) -> list[str]:
    return [" ".join(f"w{i}x{j}" for j in range(words)) for i in range(n)]


def test_the_limiter_rises_to_limits_the_server_states_above_the_assumed_ones() -> None:
    """A server stating 10k RPM / 10M TPM replaces a far lower guess after its first reply:
    the job (3x the guessed burst) is never held back, and the limits in force say "server"."""
    guess = RateLimit(requests_per_minute=60, tokens_per_minute=8_000)
    texts = _texts(2_400)  # 24,000 tokens in 240 requests
    with EmbeddingServer(dimensions=16, rate_limit_rpm=10_000, rate_limit_tpm=10_000_000) as srv:
        with _client(srv, batching={"max_inputs": 10}) as client:
            limiter = _install(client, guess)
            assert limiter.limits_in_force["tokens"] == (8_000.0, "assumed")
            client.embed(texts)
            assert limiter.limits_in_force == STATED
        statuses = {r.status for r in srv.requests}
    assert len(limiter.delays) == 240
    assert max(limiter.delays) == 0.0  # at the guess, the last ones would wait ~2.5 minutes
    assert statuses == {200}


def test_a_configured_cap_stays_in_force_below_the_stated_limits() -> None:
    """A cap the user sets is never raised by a more generous server; unset fields learn."""
    with (
        EmbeddingServer(dimensions=16, rate_limit_rpm=10_000, rate_limit_tpm=10_000_000) as srv,
        _client(srv, rate_limit={"tokens_per_minute": 500_000}) as client,
    ):
        client.embed(_texts(50))
        assert _limiter(client).limits_in_force == {
            "requests": (10_000.0, "server"),
            "tokens": (500_000.0, "configured"),
        }


def test_one_429_with_retry_after_costs_about_what_it_asks() -> None:
    """The first batch gets 429 Retry-After 0.05 without rate-limit headers: it is retried,
    nobody waits longer than 0.05 s for the limiter, and nothing is slowed down."""
    guess = profiles.assumed_rate_limit("openai")
    assert guess is not None
    with EmbeddingServer(dimensions=16) as srv:
        srv.script(Fault.rate_limited(retry_after=0.05))
        with _client(srv, batching={"max_inputs": 100}) as client:
            limiter = _install(client, guess)
            client.embed(_texts(2_000))
            assert limiter.slowdown == 1.0
            assert limiter.limits_in_force["tokens"] == (1_000_000.0, "assumed")
        statuses = [r.status for r in srv.requests]
    assert statuses.count(429) == 1 and statuses.count(200) == 20
    assert max(limiter.delays) <= 0.05


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after": "1e400"},
        {"retry-after": "inf", "x-ratelimit-reset-tokens": "1000000000s"},
        {"retry-after-ms": "1e300", "x-ratelimit-limit-tokens": "1e300"},
        {"retry-after": "1000000000", "x-ratelimit-limit-requests": "-5"},
    ],
    ids=["1e400", "inf", "1e300ms", "1e9"],
)
def test_a_huge_hint_fails_fast_with_a_typed_error(headers: dict[str, str]) -> None:
    """Hints of inf, 1e400, 1e300 or 10^9 s: the call fails at once with RateLimitError
    (retry_after bounded to a day), the limits stay, and the pause is at most a minute."""
    with EmbeddingServer(dimensions=16) as srv:
        srv.script(Fault.status(429, headers=headers))
        with _client(srv) as client:
            limiter = _install(client, RateLimit(requests_per_minute=3000))
            with pytest.raises(RateLimitError) as info:
                client.embed(["one text"])
            assert info.value.retry_after == MAX_HINT_SECONDS
            assert limiter.limits_in_force["requests"] == (3000.0, "assumed")
            booking = limiter.reserve(1)
            limiter.cancel(booking)
    assert 0.0 <= booking.delay <= MAX_PAUSE
    assert len(srv.requests) == 1


@pytest.mark.parametrize("value", ["-5", "nan", "garbage"])
def test_a_negative_or_unreadable_hint_is_retried_at_once(value: str) -> None:
    """Retry-After of -5, NaN or garbage: the request is retried (backoff) and succeeds."""
    with EmbeddingServer(dimensions=16) as srv:
        srv.script(Fault.status(429, headers={"retry-after": value}))
        with _client(srv) as client:
            vectors = client.embed(["one text"])
    assert vectors.shape == (1, 16) and math.isfinite(float(vectors.sum()))
    assert [r.status for r in srv.requests] == [429, 200]


def test_job_runs_near_a_stated_limit_with_few_429s() -> None:
    """A server enforcing (and stating) 60,000 TPM: the client follows it, with few 429s."""
    texts = _texts(6_600)  # 10 tokens each
    with (
        EmbeddingServer(dimensions=16, rate_limit_tpm=SERVER_TPM) as server,
        _client(server, retry={"max_retries": 10, "budget_min": 100}) as client,
    ):
        start = time.monotonic()
        for _ in client.embed_iter(texts, chunk_size=100, window=1):
            pass
        elapsed = time.monotonic() - start
        snap = client.metrics()
        in_force = _limiter(client).limits_in_force["tokens"]
    served = sum(server.count_tokens(t) for r in server.requests if r.status == 200
                 for t in r.inputs)  # fmt: skip
    rejected = sum(1 for r in server.requests if r.status == 429)
    steady = (served - SERVER_TPM) / (elapsed * SERVER_TPM / 60)  # after the initial full bucket
    print(f"achieved {steady:.1%} of the limit over {elapsed:.1f} s; "
          f"429s: {rejected} of {len(server.requests)} requests")  # fmt: skip
    assert served == 66_000
    assert in_force == (float(SERVER_TPM), "server")
    assert rejected <= 0.1 * len(server.requests)
    assert snap.errors_by_kind.get("rate_limit", 0) == rejected
