"""Azure OpenAI, both URL forms, replayed from cassettes through the public API."""

import numpy as np
import pytest

from embedguard import AuthenticationError, CircuitState, RateLimitError, profiles

from .conftest import AZURE_KEY, Recording, assert_metrics, fast, run_client

ENDPOINT = "https://embedguard-ci-swc.openai.azure.com"
DEPLOYMENT = profiles.azure(
    "text-embedding-3-small",
    base_url=ENDPOINT,
    deployment="emb-3-small",
    api_version="2024-10-21",
    dimensions=256,
)


async def test_deployment_url_with_api_version(replay, mode):
    """The deployment URL form (api-key auth, api-version query) returns the recorded vectors."""
    name = "azure/deployment_ok.yaml"
    rec = Recording.of(name)
    assert "model" not in rec.request_body()
    with replay(name) as cassette:
        out = await run_client(fast(DEPLOYMENT), rec.inputs(), mode, api_key=AZURE_KEY)
    assert out.error is None and out.vectors is not None
    assert np.array_equal(out.vectors, rec.vectors(0))
    assert cassette.play_count == 1 and cassette.all_played
    assert_metrics(out, attempts=1, failures={}, items=2, tokens=rec.prompt_tokens(0))
    assert out.circuit is CircuitState.CLOSED


async def test_permission_denied_401(replay, mode):
    """Azure's 401 (reason 'PermissionDenied', string code "401") is not retried."""
    name = "azure/deployment_401.yaml"
    rec = Recording.of(name)
    with replay(name) as cassette:
        out = await run_client(fast(DEPLOYMENT), rec.inputs(), mode, api_key=AZURE_KEY)
    error = out.error
    assert isinstance(error, AuthenticationError)
    assert error.status_code == 401 and error.code == "401"
    assert error.request_id == rec.header(0, "apim-request-id")
    assert error.message.startswith("Access denied due to invalid subscription key")
    assert AZURE_KEY not in str(error)
    assert cassette.play_count == 1 and cassette.all_played
    assert_metrics(out, attempts=1, failures={"authentication": 1}, items=0, tokens=0)
    assert out.circuit is CircuitState.CLOSED


async def test_throttled_429_waits_retry_after_ms(replay, mode):
    """A 429 with retry-after: 1 and retry-after-ms: 15 is retried after 15 ms, not 1 s."""
    name = "azure/deployment_429_then_ok.yaml"
    rec = Recording.of(name)
    assert (rec.header(0, "retry-after"), rec.header(0, "retry-after-ms")) == ("1", "15")
    with replay(name) as cassette:
        out = await run_client(
            fast(DEPLOYMENT, initial_delay=0.0), rec.inputs(), mode, api_key=AZURE_KEY
        )
    assert out.vectors is not None and np.array_equal(out.vectors, rec.vectors(1))
    assert cassette.play_count == 2 and cassette.all_played
    assert 0.015 - 0.002 <= out.elapsed < 1.0  # 15 ms, not the 1 s of retry-after
    assert_metrics(
        out, attempts=2, failures={"rate_limit": 1}, items=1, tokens=rec.prompt_tokens(1)
    )


async def test_throttled_429_error_attributes(replay, mode):
    """Without retries the 429 is a RateLimitError with retry_after from retry-after-ms."""
    name = "azure/deployment_429_then_ok.yaml"
    rec = Recording.of(name)
    with replay(name) as cassette:
        out = await run_client(
            fast(DEPLOYMENT, max_retries=0), rec.inputs(), mode, api_key=AZURE_KEY
        )
    error = out.error
    assert isinstance(error, RateLimitError)
    assert error.status_code == 429 and error.code == "429"
    assert error.retry_after == pytest.approx(0.015)
    assert error.request_id == rec.header(0, "apim-request-id")
    assert cassette.play_count == 1 and not cassette.all_played
    assert_metrics(out, attempts=1, failures={"rate_limit": 1}, items=0, tokens=0)


async def test_v1_url_with_deployment_as_model(replay, mode):
    """The /openai/v1/embeddings form (no api-version, model = deployment name) works too."""
    name = "azure/v1_ok.yaml"
    rec = Recording.of(name)
    assert rec.request_body()["model"] == "text-embedding-3-small"
    profile = profiles.azure(
        "text-embedding-3-small", base_url=ENDPOINT, dimensions=256, encoding_format="float"
    )
    with replay(name) as cassette:
        out = await run_client(fast(profile), rec.inputs(), mode, api_key=AZURE_KEY)
    assert out.error is None and out.vectors is not None
    assert np.array_equal(out.vectors, rec.vectors(0))
    assert cassette.play_count == 1 and cassette.all_played
    assert_metrics(out, attempts=1, failures={}, items=2, tokens=rec.prompt_tokens(0))
