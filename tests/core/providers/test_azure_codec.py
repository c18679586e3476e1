"""Azure OpenAI codec: deployment and v1 URLs, key or Entra token auth, Azure responses."""

from __future__ import annotations

import numpy as np
import orjson
import pybase64
import pytest

from embedguard.core.config import ProviderProfile
from embedguard.core.errors import AuthenticationError, ConfigurationError, RateLimitError
from embedguard.core.providers import AzureOpenAICodec, RateLimitInfo

KEY = "azure-test-key-00112233445566778899"
ENDPOINT = "https://test-resource.openai.azure.com"


def profile(**fields: object) -> ProviderProfile:
    """An Azure profile for text-embedding-3-large at the test endpoint."""
    base = {"provider": "azure", "model": "text-embedding-3-large", "base_url": ENDPOINT}
    return ProviderProfile.from_dict({**base, **fields})


def test_deployment_url_with_api_version_and_key_header() -> None:
    """A deployment gives the classic URL with api-version and the api-key header."""
    codec = AzureOpenAICodec(
        profile(deployment="test-deployment", api_version="2023-07-01-preview"),
        api_key=KEY,
        environ={},
    )
    request = codec.build_request(["Tell me a joke about opentelemetry"])
    assert request.url == (
        "https://test-resource.openai.azure.com/openai/deployments/test-deployment"
        "/embeddings?api-version=2023-07-01-preview"
    )
    assert request.headers["api-key"] == KEY
    assert "Authorization" not in request.headers
    body = orjson.loads(request.body)
    assert body == {"input": ["Tell me a joke about opentelemetry"], "encoding_format": "base64"}


def test_v1_url_puts_model_in_body() -> None:
    """Without a deployment the GA /openai/v1 form is used with model in the body."""
    codec = AzureOpenAICodec(profile(dimensions=1024), api_key=KEY, environ={})
    request = codec.build_request(["a"])
    assert request.url == "https://test-resource.openai.azure.com/openai/v1/embeddings"
    body = orjson.loads(request.body)
    assert body == {
        "input": ["a"],
        "model": "text-embedding-3-large",
        "encoding_format": "base64",
        "dimensions": 1024,
    }


@pytest.mark.parametrize("suffix", ["/openai/v1", "/openai/v1/", "/openai"])
def test_endpoint_with_openai_suffix_is_accepted(suffix: str) -> None:
    """An endpoint already ending in /openai/v1 (or /openai) is not doubled."""
    codec = AzureOpenAICodec(profile(base_url=ENDPOINT + suffix), api_key=KEY, environ={})
    assert codec.url == "https://test-resource.openai.azure.com/openai/v1/embeddings"


def test_v1_with_explicit_api_version_adds_query() -> None:
    """An api_version on the v1 form (e.g. preview) is passed as a query parameter."""
    codec = AzureOpenAICodec(profile(api_version="preview"), api_key=KEY, environ={})
    assert codec.url.endswith("/openai/v1/embeddings?api-version=preview")


def test_everything_from_environment() -> None:
    """Endpoint, deployment, api-version and key may all come from the environment."""
    env = {
        "AZURE_OPENAI_ENDPOINT": "https://env-res.openai.azure.com/",
        "AZURE_OPENAI_DEPLOYMENT": "emb",
        "OPENAI_API_VERSION": "2024-10-21",
        "AZURE_OPENAI_API_KEY": KEY,
    }
    codec = AzureOpenAICodec(
        ProviderProfile(provider="azure", model="text-embedding-3-small"), environ=env
    )
    request = codec.build_request(["a"])
    assert request.url == (
        "https://env-res.openai.azure.com/openai/deployments/emb/embeddings?api-version=2024-10-21"
    )
    assert request.headers["api-key"] == KEY


def test_missing_endpoint_is_configuration_error() -> None:
    """No base_url and no AZURE_OPENAI_ENDPOINT raises on field base_url."""
    with pytest.raises(ConfigurationError) as info:
        AzureOpenAICodec(ProviderProfile(provider="azure", model="m"), api_key=KEY, environ={})
    assert info.value.field == "base_url"
    assert "AZURE_OPENAI_ENDPOINT" in str(info.value)


def test_deployment_without_version_is_configuration_error() -> None:
    """A deployment URL without any api-version raises on field api_version."""
    with pytest.raises(ConfigurationError) as info:
        AzureOpenAICodec(profile(deployment="emb"), api_key=KEY, environ={})
    assert info.value.field == "api_version"
    assert "OPENAI_API_VERSION" in str(info.value)


def test_missing_key_names_azure_variable() -> None:
    """No key and no token provider raises on api_key naming AZURE_OPENAI_API_KEY."""
    with pytest.raises(ConfigurationError) as info:
        AzureOpenAICodec(profile(), environ={"OPENAI_API_KEY": "sk-not-azure"})
    assert info.value.field == "api_key"
    assert "AZURE_OPENAI_API_KEY" in str(info.value)


def test_token_provider_called_per_request_and_never_with_key() -> None:
    """With a token provider each request gets a fresh bearer token and no api-key."""
    tokens = iter(["tok-1-abcdef", "tok-2-abcdef"])
    codec = AzureOpenAICodec(
        profile(), api_key=KEY, token_provider=lambda: next(tokens), environ={}
    )
    first = codec.build_request(["a"]).headers
    second = codec.build_request(["a"]).headers
    assert first["Authorization"] == "Bearer tok-1-abcdef"
    assert second["Authorization"] == "Bearer tok-2-abcdef"
    assert "api-key" not in first
    assert "api-key" not in second


def test_token_provider_needs_no_key() -> None:
    """A token provider alone is enough credentials."""
    codec = AzureOpenAICodec(profile(), token_provider=lambda: "tok-abcdef", environ={})
    assert codec.build_request(["a"]).headers["Authorization"] == "Bearer tok-abcdef"


def test_failing_token_provider_is_authentication_error() -> None:
    """A token provider that raises or returns nothing gives AuthenticationError."""

    def broken() -> str:
        raise RuntimeError("no credential")

    with pytest.raises(AuthenticationError, match="RuntimeError"):
        AzureOpenAICodec(profile(), token_provider=broken, environ={}).build_request(["a"])
    with pytest.raises(AuthenticationError):
        AzureOpenAICodec(profile(), token_provider=lambda: "", environ={}).build_request(["a"])


def test_azure_success_with_remaining_headers() -> None:
    """An Azure 200 parses; only remaining-* (and reset-tokens seconds) rate limits are read."""
    vec = np.linspace(-1, 1, 8, dtype=np.float32)
    body = orjson.dumps(
        {
            "object": "list",
            "data": [
                {
                    "object": "embedding",
                    "index": 0,
                    "embedding": pybase64.b64encode(vec.tobytes()).decode(),
                }
            ],
            "model": "text-embedding-3-large",
            "usage": {"prompt_tokens": 7, "total_tokens": 7},
        },
        option=orjson.OPT_INDENT_2,
    )
    headers = {
        "apim-request-id": "7d1f",
        "x-ms-region": "East US 2",
        "x-ratelimit-remaining-requests": "119",
        "x-ratelimit-remaining-tokens": "119991",
        "x-rate-limit-reset-tokens": "55",
        "x-request-id": "0f3a-uuid",
    }
    codec = AzureOpenAICodec(profile(), api_key=KEY, environ={})
    result = codec.parse_response(200, headers, body, n_inputs=1, dimensions=8)
    np.testing.assert_array_equal(result.vectors[0], vec)
    assert result.prompt_tokens == 7
    assert result.rate_limit == RateLimitInfo(
        remaining_requests=119, remaining_tokens=119991, reset_tokens=55.0
    )


def test_azure_401_and_429_bodies() -> None:
    """Azure's string-coded 401 and 429 bodies map to typed errors with apim ids."""
    codec = AzureOpenAICodec(profile(), api_key=KEY, environ={})
    body_401 = (
        b'{"error":{"code":"401","message":"Access denied due to invalid subscription key or '
        b'wrong API endpoint."}}'
    )
    body_429 = (
        b'{"error":{"code":"429","message":"Requests to the Embeddings_Create Operation have '
        b'exceeded call rate limit. Please retry after 86400 seconds."}}'
    )
    with pytest.raises(AuthenticationError) as auth:
        codec.parse_response(
            401, {"apim-request-id": "ap-1"}, body_401, n_inputs=1, dimensions=None
        )
    with pytest.raises(RateLimitError) as rate:
        codec.parse_response(
            429, {"retry-after": "12", "retry-after-ms": "11500"}, body_429, n_inputs=1,
            dimensions=None,
        )  # fmt: skip
    assert auth.value.code == "401"
    assert auth.value.request_id == "ap-1"
    assert rate.value.retry_after == pytest.approx(11.5)


def test_azure_repr() -> None:
    """repr shows provider azure, the model and the full URL."""
    codec = AzureOpenAICodec(profile(), api_key=KEY, environ={})
    assert repr(codec) == (
        "AzureOpenAICodec(provider='azure', model='text-embedding-3-large', "
        "url='https://test-resource.openai.azure.com/openai/v1/embeddings')"
    )
