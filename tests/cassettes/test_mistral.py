"""Mistral's /v1/embeddings, replayed from cassettes through the public API."""

import numpy as np

from embedguard import AuthenticationError, CircuitState, RateLimitError, profiles

from .conftest import MISTRAL_KEY, Recording, assert_metrics, fast, run_client


async def test_float_vectors_from_a_gzip_body(replay, mode):
    """A gzip 200 of compact JSON (id, null usage extras) yields the recorded 1024-d vectors."""
    name = "mistral/embed_gzip.yaml"
    rec = Recording.of(name)
    assert rec.header(0, "Content-Encoding") == "gzip"
    assert rec.doc(0)["usage"]["request_count"] is None
    with replay(name) as cassette:
        out = await run_client(fast(profiles.mistral()), rec.inputs(), mode, api_key=MISTRAL_KEY)
    assert out.error is None and out.vectors is not None
    assert out.vectors.shape == (2, 1024)
    assert np.array_equal(out.vectors, rec.vectors(0))
    assert cassette.play_count == 1 and cassette.all_played
    assert_metrics(out, attempts=1, failures={}, items=2, tokens=rec.prompt_tokens(0))
    assert out.circuit is CircuitState.CLOSED


async def test_unauthorized_401_uses_the_body_request_id(replay, mode):
    """The gateway's 401 {"message": "Unauthorized", "request_id": ...} is not retried."""
    name = "mistral/unauthorized_401.yaml"
    rec = Recording.of(name)
    with replay(name) as cassette:
        out = await run_client(fast(profiles.mistral()), rec.inputs(), mode, api_key=MISTRAL_KEY)
    error = out.error
    assert isinstance(error, AuthenticationError)
    assert error.status_code == 401 and error.code is None
    assert error.message == "Unauthorized"
    assert error.request_id == rec.doc(0)["request_id"]
    assert cassette.play_count == 1 and cassette.all_played
    assert_metrics(out, attempts=1, failures={"authentication": 1}, items=0, tokens=0)
    assert out.circuit is CircuitState.CLOSED


async def test_rate_limit_then_ok(replay, mode):
    """A 429 "rate_limited" (code "1300", no retry-after) is retried with backoff."""
    name = "mistral/rate_limited_then_ok.yaml"
    rec = Recording.of(name)
    assert rec.header(0, "x-ratelimit-remaining-req-minute") == "0"
    with replay(name) as cassette:
        out = await run_client(
            fast(profiles.mistral()), rec.inputs(), mode, api_key=MISTRAL_KEY, query=True
        )
    assert out.vectors is not None and np.array_equal(out.vectors, rec.vectors(1)[0])
    assert cassette.play_count == 2 and cassette.all_played
    assert_metrics(
        out, attempts=2, failures={"rate_limit": 1}, items=1, tokens=rec.prompt_tokens(1)
    )


async def test_rate_limit_error_attributes(replay, mode):
    """Without retries the 429 is a RateLimitError with Mistral's code and correlation id."""
    name = "mistral/rate_limited_then_ok.yaml"
    rec = Recording.of(name)
    profile = fast(profiles.mistral(), max_retries=0)
    with replay(name) as cassette:
        out = await run_client(profile, rec.inputs(), mode, api_key=MISTRAL_KEY)
    error = out.error
    assert isinstance(error, RateLimitError)
    assert error.status_code == 429 and error.code == "1300"
    assert error.retry_after is None
    assert error.request_id == rec.header(0, "mistral-correlation-id")
    assert cassette.play_count == 1 and not cassette.all_played
    assert_metrics(out, attempts=1, failures={"rate_limit": 1}, items=0, tokens=0)
