"""OpenAI codec: request building, environment resolution, realistic responses."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pybase64
import pytest

from embedguard.core.config import ProviderProfile
from embedguard.core.errors import ConfigurationError, InputValidationError
from embedguard.core.providers import OpenAICodec, RateLimitInfo

KEY = "sk-test-openai-0123456789"


def make(
    model: str = "text-embedding-3-small", environ: dict[str, str] | None = None, **fields: object
) -> OpenAICodec:
    """An OpenAI codec with the test key and the given (default empty) environment."""
    profile = ProviderProfile.from_dict({"provider": "openai", "model": model, **fields})
    return OpenAICodec(profile, api_key=KEY, environ=environ or {})


def test_request_url_method_headers() -> None:
    """The request is a JSON POST to /v1/embeddings with bearer auth and a user agent."""
    request = make().build_request(["hello world", "hello again"])
    assert request.method == "POST"
    assert request.url == "https://api.openai.com/v1/embeddings"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["User-Agent"].startswith("embedguard/")
    assert "OpenAI-Organization" not in request.headers


def test_request_body_exact_keys() -> None:
    """The body holds input (always a list), model and encoding_format, nothing else."""
    body = orjson.loads(make().build_request(["only one"]).body)
    assert body == {
        "input": ["only one"],
        "model": "text-embedding-3-small",
        "encoding_format": "base64",
    }


def test_encoding_format_follows_profile_and_extra_body_is_merged() -> None:
    """encoding_format comes from the profile; extra_body fields are added."""
    codec = make(encoding_format="float", extra_body={"user": "u-1"})
    body = orjson.loads(codec.build_request(["a"]).body)
    assert body["encoding_format"] == "float"
    assert body["user"] == "u-1"


@pytest.mark.parametrize(
    ("model", "dimensions", "sent"),
    [
        ("text-embedding-3-small", 512, 512),
        ("text-embedding-3-small", 1536, None),
        ("text-embedding-3-large", 256, 256),
        ("text-embedding-3-large", 3072, None),
        ("text-embedding-ada-002", 1536, None),
        ("my-fine-tuned-model", 512, None),
        ("text-embedding-3-small", None, None),
    ],
)
def test_dimensions_sent_only_when_differing_from_native(
    model: str, dimensions: int | None, sent: int | None
) -> None:
    """dimensions is sent only for a known model asked for a non-native size."""
    body = orjson.loads(make(model, dimensions=dimensions).build_request(["a"]).body)
    assert body.get("dimensions") == sent
    assert ("dimensions" in body) is (sent is not None)


@pytest.mark.parametrize(
    ("model", "dimensions"),
    [("text-embedding-ada-002", 512), ("text-embedding-3-small", 2000)],
)
def test_impossible_dimensions_are_configuration_errors(model: str, dimensions: int) -> None:
    """ada-002 with a non-native size, or more dims than a model has, fail at construction."""
    with pytest.raises(ConfigurationError) as info:
        make(model, dimensions=dimensions)
    assert info.value.field == "dimensions"


def test_non_string_input_is_rejected() -> None:
    """Token ids or other non-strings are never sent."""
    with pytest.raises(InputValidationError) as info:
        make().build_request(["ok", [1, 2, 3]])  # type: ignore[list-item]
    assert info.value.index == 1


def test_key_from_environment_and_custom_variable() -> None:
    """The key comes from OPENAI_API_KEY, or from the variable the profile names."""
    profile = ProviderProfile(provider="openai", model="m")
    default = OpenAICodec(profile, environ={"OPENAI_API_KEY": "sk-env-default"})
    custom = OpenAICodec(
        profile.evolve(api_key_env="MY_KEY"),
        environ={"MY_KEY": "sk-env-custom", "OPENAI_API_KEY": "sk-env-default"},
    )
    explicit = OpenAICodec(profile, api_key="sk-explicit", environ={"OPENAI_API_KEY": "sk-env"})
    assert default.build_request(["a"]).headers["Authorization"] == "Bearer sk-env-default"
    assert custom.build_request(["a"]).headers["Authorization"] == "Bearer sk-env-custom"
    assert explicit.build_request(["a"]).headers["Authorization"] == "Bearer sk-explicit"


@pytest.mark.parametrize("env", [{}, {"OPENAI_API_KEY": "   "}])
def test_missing_key_names_the_variable(env: dict[str, str]) -> None:
    """No key anywhere raises ConfigurationError(field="api_key") naming OPENAI_API_KEY."""
    with pytest.raises(ConfigurationError) as info:
        OpenAICodec(ProviderProfile(provider="openai", model="m"), environ=env)
    assert info.value.field == "api_key"
    assert "OPENAI_API_KEY" in str(info.value)


def test_missing_custom_key_names_the_custom_variable() -> None:
    """With api_key_env set, the error names that variable."""
    profile = ProviderProfile(provider="openai", model="m", api_key_env="TEAM_KEY")
    with pytest.raises(ConfigurationError, match="TEAM_KEY"):
        OpenAICodec(profile, environ={"OPENAI_API_KEY": "sk-unused"})


def test_base_url_precedence() -> None:
    """profile.base_url beats OPENAI_BASE_URL, which beats the public default."""
    env = {"OPENAI_BASE_URL": "https://proxy.example/v1/"}
    from_env = make(environ=env)
    from_profile = make(base_url="https://other.example/v1", environ=env)
    assert from_env.url == "https://proxy.example/v1/embeddings"
    assert from_profile.url == "https://other.example/v1/embeddings"


def test_bad_base_url_in_environment() -> None:
    """A non-URL OPENAI_BASE_URL is a ConfigurationError on base_url."""
    with pytest.raises(ConfigurationError) as info:
        make(environ={"OPENAI_BASE_URL": "api.openai.com"})
    assert info.value.field == "base_url"


def test_organization_and_project_headers() -> None:
    """OPENAI_ORG_ID / OPENAI_PROJECT_ID become OpenAI-Organization / OpenAI-Project."""
    codec = make(environ={"OPENAI_ORG_ID": "org-1", "OPENAI_PROJECT_ID": "proj_2"})
    headers = codec.build_request(["a"]).headers
    assert headers["OpenAI-Organization"] == "org-1"
    assert headers["OpenAI-Project"] == "proj_2"


def test_request_body_is_compact_json_of_raw_text() -> None:
    """Unicode text is sent as UTF-8 JSON, unchanged."""
    request = make().build_request(["héllo 👋", ""])
    assert orjson.loads(request.body)["input"] == ["héllo 👋", ""]
    assert b"\n" not in request.body


# -- responses ---------------------------------------------------------------------------------

HEADERS = {
    "Content-Type": "application/json",
    "openai-model": "text-embedding-ada-002-v2",
    "openai-processing-ms": "68",
    "x-ratelimit-limit-requests": "10000",
    "x-ratelimit-limit-tokens": "10000000",
    "x-ratelimit-remaining-requests": "9999",
    "x-ratelimit-remaining-tokens": "9999992",
    "x-ratelimit-reset-requests": "6ms",
    "x-ratelimit-reset-tokens": "0s",
    "x-request-id": "req_8bacfc34be6440c5acdc4b8214ba8cc9",
}


def _b64(values: list[float]) -> str:
    return pybase64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode()


def test_realistic_base64_response_with_rate_limits() -> None:
    """A pretty-printed base64 response parses with usage, model echo and rate limits."""
    vectors = [[0.1, 0.2, 0.3, 0.4], [-0.5, 0.25, 0.0, 1.0]]
    body = json.dumps(
        {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": _b64(v)}
                for i, v in enumerate(vectors)
            ],
            "model": "text-embedding-ada-002-v2",
            "usage": {"prompt_tokens": 8, "total_tokens": 8},
        },
        indent=2,
    ).encode()
    result = make().parse_response(200, HEADERS, body, n_inputs=2, dimensions=4)
    np.testing.assert_array_equal(result.vectors, np.array(vectors, dtype=np.float32))
    assert result.prompt_tokens == 8
    assert result.model == "text-embedding-ada-002-v2"
    assert result.rate_limit == RateLimitInfo(
        limit_requests=10000,
        remaining_requests=9999,
        reset_requests=pytest.approx(0.006),  # type: ignore[arg-type]
        limit_tokens=10_000_000,
        remaining_tokens=9_999_992,
        reset_tokens=0.0,
    )


def test_realistic_float_response_without_rate_limit_headers() -> None:
    """A float response with no rate-limit headers has rate_limit None."""
    body = (
        b'{\n  "object": "list",\n  "data": [\n    {\n      "object": "embedding",\n'
        b'      "index": 0,\n      "embedding": [\n        0.009219426,\n        -0.06619997\n'
        b'      ]\n    }\n  ],\n  "model": "text-embedding-3-small",\n  "usage": {\n'
        b'    "prompt_tokens": 8,\n    "total_tokens": 8\n  }\n}'
    )
    result = make().parse_response(200, {}, body, n_inputs=1, dimensions=None)
    assert result.vectors.shape == (1, 2)
    assert result.vectors[0, 0] == np.float32(0.009219426)
    assert result.rate_limit is None


def test_rate_limit_header_oddities() -> None:
    """-1 values read as None, durations like 1m30s parse, usage-based variants are ignored."""
    headers = {
        "X-RateLimit-Limit-Requests": "-1",
        "x-ratelimit-remaining-requests": "junk",
        "x-ratelimit-reset-tokens": "1m30s",
        "x-ratelimit-limit-tokens_usage_based": "5",
        "x-ratelimit-remaining-tokens_usage_based": "4",
    }
    body = b'{"data":[{"index":0,"embedding":[1.0]}]}'
    info = make().parse_response(200, headers, body, n_inputs=1, dimensions=None).rate_limit
    assert info == RateLimitInfo(reset_tokens=90.0)


def test_repr_shows_provider_model_url() -> None:
    """repr names the provider, model and URL."""
    text = repr(make())
    assert "provider='openai'" in text
    assert "model='text-embedding-3-small'" in text
    assert "url='https://api.openai.com/v1/embeddings'" in text
    assert make().name == "openai"
