"""OpenAI-compatible codec: vLLM, LM Studio, llama.cpp, TEI /v1 and LocalAI shapes."""

from __future__ import annotations

import numpy as np
import orjson
import pybase64
import pytest

from embedguard.core.config import ProviderProfile
from embedguard.core.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ContextLengthError,
    RateLimitError,
)
from embedguard.core.providers import OpenAICompatibleCodec

VEC = np.array([0.5, -0.25, 0.125, 1.0], dtype=np.float32)
B64 = pybase64.b64encode(VEC.tobytes()).decode()


def make(
    environ: dict[str, str] | None = None, api_key: str | None = None, **fields: object
) -> OpenAICompatibleCodec:
    """A compatible codec for a local vLLM at port 8000 unless overridden."""
    data = {
        "provider": "openai_compatible",
        "model": "intfloat/e5-mistral-7b-instruct",
        "base_url": "http://localhost:8000/v1",
        **fields,
    }
    return OpenAICompatibleCodec(
        ProviderProfile.from_dict(data), api_key=api_key, environ=environ or {}
    )


def test_request_without_key_has_no_authorization() -> None:
    """A keyless server gets no Authorization header; the body is raw text and base64."""
    request = make().build_request(["query: hi"])
    assert request.url == "http://localhost:8000/v1/embeddings"
    assert "Authorization" not in request.headers
    assert orjson.loads(request.body) == {
        "input": ["query: hi"],
        "model": "intfloat/e5-mistral-7b-instruct",
        "encoding_format": "base64",
    }


def test_key_from_argument_or_named_variable() -> None:
    """A key from api_key or from the profile's api_key_env is sent as a bearer token."""
    explicit = make(api_key="local-key-123456")
    from_env = make(api_key_env="VLLM_KEY", environ={"VLLM_KEY": "env-key-123456"})
    ignored = make(environ={"OPENAI_API_KEY": "sk-not-for-local"})
    assert explicit.build_request(["a"]).headers["Authorization"] == "Bearer local-key-123456"
    assert from_env.build_request(["a"]).headers["Authorization"] == "Bearer env-key-123456"
    assert "Authorization" not in ignored.build_request(["a"]).headers


def test_base_url_is_required() -> None:
    """Without profile.base_url the codec refuses (OPENAI_BASE_URL is not used)."""
    profile = ProviderProfile(provider="openai_compatible", model="m")
    with pytest.raises(ConfigurationError) as info:
        OpenAICompatibleCodec(profile, environ={"OPENAI_BASE_URL": "http://x:1/v1"})
    assert info.value.field == "base_url"


def test_base_url_ending_in_embeddings_is_used_as_is() -> None:
    """A base URL that already names the endpoint is not extended."""
    assert make(base_url="http://127.0.0.1:1234/v1/embeddings").url == (
        "http://127.0.0.1:1234/v1/embeddings"
    )


def test_dimensions_never_sent_unless_in_extra_body() -> None:
    """profile.dimensions only validates; extra_body can still send the field explicitly."""
    plain = orjson.loads(make(dimensions=1024).build_request(["a"]).body)
    forced = orjson.loads(make(extra_body={"dimensions": 256}).build_request(["a"]).body)
    assert "dimensions" not in plain
    assert forced["dimensions"] == 256


def test_float_encoding_format_from_profile() -> None:
    """encoding_format float is passed through."""
    body = orjson.loads(make(encoding_format="float").build_request(["a"]).body)
    assert body["encoding_format"] == "float"


def test_vllm_response_with_extras() -> None:
    """vLLM's id/created/completion_tokens extras are tolerated around base64 data."""
    body = orjson.dumps(
        {
            "id": "embd-43f4757619fd4ded8c88addcc5ffd97e",
            "object": "list",
            "created": 63400,
            "model": "intfloat/e5-mistral-7b-instruct",
            "data": [{"index": 0, "object": "embedding", "embedding": B64}],
            "usage": {"prompt_tokens": 11, "total_tokens": 11, "completion_tokens": 0},
        }
    )
    result = make().parse_response(200, {}, body, n_inputs=1, dimensions=4)
    np.testing.assert_array_equal(result.vectors[0], VEC)
    assert result.prompt_tokens == 11
    assert result.model == "intfloat/e5-mistral-7b-instruct"


def test_lm_studio_floats_when_base64_was_asked() -> None:
    """LM Studio ignores encoding_format and answers floats; they are accepted."""
    body = (
        b'{\n  "object": "list",\n  "data": [\n    {\n      "object": "embedding",\n'
        b'      "embedding": [0.5, -0.25, 0.125, 1.0],\n      "index": 0\n    }\n  ],\n'
        b'  "model": "text-embedding-nomic-embed-text-v1.5",\n  "usage": {\n'
        b'    "prompt_tokens": 0,\n    "total_tokens": 0\n  }\n}'
    )
    result = make(base_url="http://localhost:1234/v1").parse_response(
        200, {}, body, n_inputs=1, dimensions=None
    )
    np.testing.assert_array_equal(result.vectors[0], VEC)
    assert result.prompt_tokens == 0


def test_tei_v1_response_without_usage() -> None:
    """A response without usage gives prompt_tokens None."""
    body = b'{"object":"list","data":[{"object":"embedding","embedding":[1,2],"index":0}],"model":"thenlper/gte-base"}'  # noqa: E501
    result = make().parse_response(200, {}, body, n_inputs=1, dimensions=2)
    assert result.prompt_tokens is None
    assert result.rate_limit is None


def test_compatible_error_shapes() -> None:
    """Int-coded errors from vLLM, llama.cpp and TEI map to typed errors."""
    codec = make()
    cases = [
        (400, b'{"error":{"message":"Model \\"BAAI/bge-m3\\" does not support matryoshka '
              b'representation, changing output dimensions will lead to poor results.",'
              b'"type":"BadRequestError","param":null,"code":400}}', BadRequestError),
        (400, b'{"object":"error","message":"This model\'s maximum context length is 512 tokens.",'
              b'"type":"BadRequestError","param":null,"code":400}', ContextLengthError),
        (401, b'{"error":{"code":401,"message":"Invalid API Key","type":"authentication_error"}}',
              AuthenticationError),
        (429, b'{"message":"Model is overloaded","code":429,"type":"Overloaded"}', RateLimitError),
        (422, b'{"message":"Input validation error: `inputs` must have less than 512 tokens. '
              b'Given: 913","code":422,"type":"Validation"}', ContextLengthError),
    ]  # fmt: skip
    for status, body, kind in cases:
        with pytest.raises(kind) as info:
            codec.parse_response(status, {}, body, n_inputs=1, dimensions=None)
        assert type(info.value) is kind


def test_name_and_repr() -> None:
    """name is the profile's name; repr shows the compatible provider and URL."""
    codec = make(name="vllm-local")
    assert codec.name == "vllm-local"
    assert "provider='openai_compatible'" in repr(codec)
    assert "http://localhost:8000/v1/embeddings" in repr(codec)
