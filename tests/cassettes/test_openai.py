"""OpenAI's /v1/embeddings, replayed from cassettes through the public API (sync and async)."""

import numpy as np
import pytest

from embedguard import (
    AuthenticationError,
    CircuitState,
    ContextLengthError,
    ModelNotFoundError,
    QuotaExhaustedError,
    RateLimitError,
    ServerError,
    profiles,
)

from .conftest import OPENAI_KEY, Recording, assert_metrics, fast, run_client

DIMS256 = profiles.openai("text-embedding-3-small", dimensions=256, encoding_format="float")


async def test_float_vectors_with_shortened_dimensions(replay, mode):
    """A float 200 for dimensions=256 yields exactly the recorded vectors, in input order."""
    name = "openai/embed_float_dims256.yaml"
    rec = Recording.of(name)
    with replay(name) as cassette:
        out = await run_client(fast(DIMS256), rec.inputs(), mode, api_key=OPENAI_KEY)
    assert out.error is None and out.vectors is not None
    assert out.vectors.dtype == np.float32 and out.vectors.shape == (2, 256)
    assert np.array_equal(out.vectors, rec.vectors(0))
    assert cassette.play_count == 1 and cassette.all_played
    assert_metrics(out, attempts=1, failures={}, items=2, tokens=rec.prompt_tokens(0))
    assert out.circuit is CircuitState.CLOSED


async def test_base64_vectors_from_a_gzip_body(replay, mode):
    """A gzip-compressed base64 200 decodes to the recorded little-endian float32 vectors."""
    name = "openai/embed_base64_gzip.yaml"
    rec = Recording.of(name)
    assert rec.header(0, "Content-Encoding") == "gzip"
    with replay(name) as cassette:
        out = await run_client(
            fast(profiles.openai("text-embedding-3-small")), rec.inputs(), mode, api_key=OPENAI_KEY
        )
    assert out.vectors is not None and out.vectors.shape == (2, 1536)
    assert np.array_equal(out.vectors, rec.vectors(0))
    np.testing.assert_allclose(np.linalg.norm(out.vectors, axis=1), 1.0, rtol=1e-5)
    assert cassette.play_count == 1 and cassette.all_played
    assert_metrics(out, attempts=1, failures={}, items=2, tokens=rec.prompt_tokens(0))


async def test_rate_limit_waits_for_each_hint_then_succeeds(replay, mode):
    """Two 429s are retried after the server's hints (20 ms in the text, then retry-after-ms)."""
    name = "openai/rate_limited_then_ok.yaml"
    rec = Recording.of(name)
    assert rec.header(0, "retry-after") is None and rec.header(1, "retry-after-ms") == "10"
    # No backoff of its own: any time waited comes from the hints.
    profile = fast(DIMS256, initial_delay=0.0)
    with replay(name) as cassette:
        out = await run_client(profile, rec.inputs(), mode, api_key=OPENAI_KEY, query=True)
    assert out.vectors is not None and np.array_equal(out.vectors, rec.vectors(2)[0])
    assert cassette.play_count == 3 and cassette.all_played
    assert out.elapsed >= 0.020 + 0.010 - 0.002
    assert_metrics(
        out, attempts=3, failures={"rate_limit": 2}, items=1, tokens=rec.prompt_tokens(2)
    )
    assert out.circuit is CircuitState.CLOSED


@pytest.mark.parametrize(
    ("max_retries", "played", "retry_after"),
    [(0, 1, 0.020), (1, 2, 0.010)],
    ids=["hint-in-message", "retry-after-ms-header"],
)
async def test_rate_limit_error_carries_the_hint(replay, mode, max_retries, played, retry_after):
    """When retries run out, the RateLimitError carries the last 429's hint, code and request id."""
    name = "openai/rate_limited_then_ok.yaml"
    rec = Recording.of(name)
    profile = fast(DIMS256, max_retries=max_retries, initial_delay=0.0)
    with replay(name) as cassette:
        out = await run_client(profile, rec.inputs(), mode, api_key=OPENAI_KEY)
    error = out.error
    assert isinstance(error, RateLimitError)
    assert error.status_code == 429 and error.code == "rate_limit_exceeded"
    assert error.retry_after == pytest.approx(retry_after)
    assert error.request_id == rec.header(played - 1, "x-request-id")
    assert error.failed_indices == (0,)
    assert cassette.play_count == played and not cassette.all_played
    assert_metrics(out, attempts=played, failures={"rate_limit": played}, items=0, tokens=0)


async def test_context_length_400_is_not_retried(replay, mode):
    """A 400 'maximum context length' for one input is a ContextLengthError, sent once."""
    name = "openai/context_length_400.yaml"
    rec = Recording.of(name)
    with replay(name) as cassette:
        out = await run_client(fast(DIMS256), rec.inputs(), mode, api_key=OPENAI_KEY)
    error = out.error
    assert isinstance(error, ContextLengthError)
    assert error.status_code == 400 and error.code == "invalid_request_error"
    assert error.request_id == rec.header(0, "x-request-id")
    assert "maximum context length is 8192 tokens" in error.message
    assert cassette.play_count == 1 and cassette.all_played
    assert_metrics(out, attempts=1, failures={"context_length": 1}, items=0, tokens=0)
    assert out.circuit is CircuitState.CLOSED


async def test_invalid_key_401_is_not_retried(replay, mode):
    """A 401 invalid_api_key (4-space indented body) raises AuthenticationError after one send."""
    name = "openai/invalid_api_key_401.yaml"
    rec = Recording.of(name)
    assert rec.body(0).startswith(b'{\n    "error"')
    with replay(name) as cassette:
        out = await run_client(fast(DIMS256), rec.inputs(), mode, api_key=OPENAI_KEY)
    error = out.error
    assert isinstance(error, AuthenticationError)
    assert error.status_code == 401 and error.code == "invalid_api_key"
    assert error.request_id == rec.header(0, "x-request-id")
    assert OPENAI_KEY not in str(error)
    assert cassette.play_count == 1 and cassette.all_played
    assert_metrics(out, attempts=1, failures={"authentication": 1}, items=0, tokens=0)
    assert out.circuit is CircuitState.CLOSED


async def test_unknown_model_404(replay, mode):
    """A 404 model_not_found raises ModelNotFoundError naming the model, without a retry."""
    name = "openai/model_not_found_404.yaml"
    rec = Recording.of(name)
    profile = fast(profiles.openai("text-embedding-3-smal"))
    with replay(name) as cassette:
        out = await run_client(profile, rec.inputs(), mode, api_key=OPENAI_KEY)
    error = out.error
    assert isinstance(error, ModelNotFoundError)
    assert error.status_code == 404 and error.code == "model_not_found"
    assert error.request_id == rec.header(0, "x-request-id")
    assert "`text-embedding-3-smal`" in error.message
    assert cassette.play_count == 1 and cassette.all_played
    assert_metrics(out, attempts=1, failures={"model_not_found": 1}, items=0, tokens=0)


async def test_server_error_is_retried(replay, mode):
    """A 500 server_error is retried with backoff; the second attempt's vectors are returned."""
    name = "openai/server_error_then_ok.yaml"
    rec = Recording.of(name)
    with replay(name) as cassette:
        out = await run_client(fast(DIMS256), rec.inputs(), mode, api_key=OPENAI_KEY)
    assert out.error is None and out.vectors is not None
    assert np.array_equal(out.vectors, rec.vectors(1))
    assert cassette.play_count == 2 and cassette.all_played
    assert_metrics(out, attempts=2, failures={"server": 1}, items=1, tokens=rec.prompt_tokens(1))
    assert out.circuit is CircuitState.CLOSED


async def test_server_error_without_retries_left(replay, mode):
    """With retries off, the 500 surfaces as a ServerError carrying the recorded request id."""
    name = "openai/server_error_then_ok.yaml"
    rec = Recording.of(name)
    with replay(name) as cassette:
        out = await run_client(fast(DIMS256, max_retries=0), rec.inputs(), mode, api_key=OPENAI_KEY)
    error = out.error
    assert isinstance(error, ServerError)
    assert error.status_code == 500 and error.code == "server_error"
    assert error.request_id == rec.header(0, "x-request-id")
    assert error.request_id is not None and error.request_id in error.message
    assert cassette.play_count == 1
    assert_metrics(out, attempts=1, failures={"server": 1}, items=0, tokens=0)


async def test_insufficient_quota_is_not_retried(replay, mode):
    """A 429 insufficient_quota raises QuotaExhaustedError at once, unlike a rate limit."""
    name = "openai/insufficient_quota_429.yaml"
    rec = Recording.of(name)
    with replay(name) as cassette:
        out = await run_client(fast(DIMS256), rec.inputs(), mode, api_key=OPENAI_KEY)
    error = out.error
    assert isinstance(error, QuotaExhaustedError)
    assert not isinstance(error, RateLimitError)
    assert error.status_code == 429 and error.code == "insufficient_quota"
    assert error.request_id == rec.header(0, "x-request-id")
    assert cassette.play_count == 1 and cassette.all_played
    assert_metrics(out, attempts=1, failures={"quota": 1}, items=0, tokens=0)
    assert out.circuit is CircuitState.CLOSED
