"""Mistral codec: request fields per model, Mistral responses and rate-limit headers."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from embedguard.core.config import ProviderProfile
from embedguard.core.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ContextLengthError,
    RateLimitError,
)
from embedguard.core.providers import MistralCodec, RateLimitInfo

KEY = "mistral-test-key-ABCDEFGHIJ"


def make(model: str = "mistral-embed", **fields: object) -> MistralCodec:
    """A Mistral codec with the test key."""
    data = {"provider": "mistral", "model": model, **fields}
    return MistralCodec(ProviderProfile.from_dict(data), api_key=KEY, environ={})


def test_mistral_embed_request() -> None:
    """mistral-embed gets model, input list and encoding_format float, nothing more."""
    request = make().build_request(["Why is the sky blue?", "What is your age?"])
    assert request.url == "https://api.mistral.ai/v1/embeddings"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert orjson.loads(request.body) == {
        "input": ["Why is the sky blue?", "What is your age?"],
        "model": "mistral-embed",
        "encoding_format": "float",
    }


def test_mistral_embed_native_size_sends_nothing_and_other_size_fails() -> None:
    """mistral-embed at 1024 sends no output_dimension; another size is a config error."""
    body = orjson.loads(make(dimensions=1024).build_request(["a"]).body)
    assert "output_dimension" not in body
    with pytest.raises(ConfigurationError) as info:
        make(dimensions=512)
    assert info.value.field == "dimensions"


@pytest.mark.parametrize(
    ("dimensions", "sent"), [(None, None), (1536, None), (512, 512), (3072, 3072)]
)
def test_codestral_output_dimension_and_dtype(dimensions: int | None, sent: int | None) -> None:
    """codestral-embed-2505 sends output_dtype float and output_dimension only off-native."""
    body = orjson.loads(
        make("codestral-embed-2505", dimensions=dimensions).build_request(["a"]).body
    )
    assert body["output_dtype"] == "float"
    assert body.get("output_dimension") == sent
    assert ("output_dimension" in body) is (sent is not None)


def test_key_and_base_url_from_environment() -> None:
    """MISTRAL_API_KEY and MISTRAL_BASE_URL are read; a missing key names the variable."""
    profile = ProviderProfile(provider="mistral", model="mistral-embed")
    codec = MistralCodec(
        profile, environ={"MISTRAL_API_KEY": KEY, "MISTRAL_BASE_URL": "https://eu.example/v1"}
    )
    assert codec.url == "https://eu.example/v1/embeddings"
    assert codec.build_request(["a"]).headers["Authorization"] == f"Bearer {KEY}"
    with pytest.raises(ConfigurationError, match="MISTRAL_API_KEY"):
        MistralCodec(profile, environ={})


def test_realistic_response_with_null_usage_extras() -> None:
    """A compact Mistral body with null usage fields and object/embedding/index order parses."""
    body = (
        b'{"id":"cc93a06d10244e07a4b2604c20855c61","object":"list","data":[{"object":"embedding",'
        b'"embedding":[-0.02264404296875,0.00868988037109375,0.5],"index":0},{"object":"embedding",'
        b'"embedding":[0.25,0.125,-1.0],"index":1}],"model":"mistral-embed","usage":'
        b'{"prompt_audio_seconds":null,"prompt_tokens":10,"total_tokens":10,"completion_tokens":0,'
        b'"request_count":null,"prompt_token_details":null,"prompt_tokens_details":null,'
        b'"completion_tokens_details":null,"service_tier":null}}'
    )
    headers = {
        "mistral-correlation-id": "0199-corr",
        "x-ratelimit-limit-req-10-second": "60",
        "x-ratelimit-remaining-req-10-second": "50",
        "x-ratelimit-limit-tokens-minute": "20000000",
        "x-ratelimit-remaining-tokens-minute": "19999990",
        "x-ratelimit-limit-tokens-month": "200000000000",
        "x-ratelimit-remaining-tokens-month": "199999990",
        "x-ratelimit-tokens-query-cost": "10",
    }
    result = make().parse_response(200, headers, body, n_inputs=2, dimensions=3)
    np.testing.assert_array_equal(
        result.vectors,
        np.array([[-0.02264404296875, 0.00868988037109375, 0.5], [0.25, 0.125, -1.0]], np.float32),
    )
    assert result.prompt_tokens == 10
    assert result.model == "mistral-embed"
    assert result.rate_limit == RateLimitInfo(
        limit_requests=None,
        remaining_requests=50,
        limit_tokens=20_000_000,
        remaining_tokens=19_999_990,  # the tighter (minute) window
    )


def test_per_minute_request_headers() -> None:
    """req-minute headers fill the request fields; remaining is the tightest window's."""
    headers = {
        "X-RateLimit-Limit-Req-Minute": "60",
        "x-ratelimit-remaining-req-minute": "59",
        "x-ratelimit-remaining-tokens-minute": "1000",
        "x-ratelimit-remaining-tokens-month": "5",
    }
    body = b'{"data":[{"embedding":[1.0],"index":0}]}'
    info = make().parse_response(200, headers, body, n_inputs=1, dimensions=None).rate_limit
    assert info == RateLimitInfo(limit_requests=60, remaining_requests=59, remaining_tokens=5)


def test_no_rate_limit_headers_gives_none() -> None:
    """Without rate-limit headers, rate_limit is None."""
    body = b'{"data":[{"embedding":[1.0],"index":0}]}'
    assert make().parse_response(200, {}, body, n_inputs=1, dimensions=None).rate_limit is None


def test_mistral_error_shapes() -> None:
    """Mistral's 400 batch cap, 401, 422 and 429 bodies give the matching typed errors."""
    codec = make()
    cases = [
        (400, b'{"object":"error","message":"Too many tokens in batch. Max is 16384 got 17555",'
              b'"type":"invalid_request_error","param":null,"code":null}', ContextLengthError),
        (401, b'{"message":"Unauthorized","request_id":"933f2339"}', AuthenticationError),
        (422, b'{"detail":[{"loc":["body","model"],"msg":"bad","type":"value_error"}]}',
              BadRequestError),
        (429, b'{"message":"Requests rate limit exceeded"}', RateLimitError),
    ]  # fmt: skip
    for status, body, kind in cases:
        with pytest.raises(kind) as info:
            codec.parse_response(
                status, {"mistral-correlation-id": "c-1"}, body, n_inputs=1, dimensions=None
            )
        assert type(info.value) is kind
        assert info.value.request_id == "c-1"
        assert info.value.provider == "mistral"
