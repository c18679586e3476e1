"""Ollama codec: /api/embed requests, host resolution, Ollama responses and errors."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from embedguard.core.config import ProviderProfile
from embedguard.core.errors import (
    ConfigurationError,
    ContextLengthError,
    ModelNotFoundError,
    ResponseValidationError,
    ServerError,
)
from embedguard.core.providers import OllamaCodec

DOCS_EXAMPLE = b"""{
  "model": "all-minilm",
  "embeddings": [[
    0.010071029, -0.0017594862, 0.05007221, 0.04692972, 0.054916814,
    0.008599704, 0.105441414, -0.025878139, 0.12958129, 0.031952348
  ]],
  "total_duration": 14143917,
  "load_duration": 1019500,
  "prompt_eval_count": 8
}"""


def make(
    model: str = "all-minilm", environ: dict[str, str] | None = None, **fields: object
) -> OllamaCodec:
    """An Ollama codec for ``model`` with the given environment."""
    profile = ProviderProfile.from_dict({"provider": "ollama", "model": model, **fields})
    return OllamaCodec(profile, environ=environ or {})


def test_default_request() -> None:
    """The default request goes to localhost:11434/api/embed without auth."""
    request = make().build_request(["why is the sky blue?"])
    assert request.url == "http://localhost:11434/api/embed"
    assert "Authorization" not in request.headers
    assert orjson.loads(request.body) == {"input": ["why is the sky blue?"], "model": "all-minilm"}


def test_extra_body_carries_ollama_options() -> None:
    """extra_body fields such as truncate and keep_alive are sent."""
    codec = make(extra_body={"truncate": False, "keep_alive": "5m"})
    body = orjson.loads(codec.build_request(["a"]).body)
    assert body["truncate"] is False
    assert body["keep_alive"] == "5m"


@pytest.mark.parametrize(
    ("model", "dimensions", "sent"),
    [
        ("nomic-embed-text", 256, 256),
        ("nomic-embed-text", 768, None),
        ("nomic-embed-text:latest", 768, None),
        ("nomic-embed-text:v1.5", 768, 768),
        ("qwen3-embedding", 1024, 1024),
        ("qwen3-embedding", None, None),
    ],
)
def test_dimensions_sent_when_set_unless_known_native(
    model: str, dimensions: int | None, sent: int | None
) -> None:
    """dimensions is sent whenever set, except for a known model's native size."""
    body = orjson.loads(make(model, dimensions=dimensions).build_request(["a"]).body)
    assert body.get("dimensions") == sent
    assert ("dimensions" in body) is (sent is not None)


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("0.0.0.0:11434", "http://0.0.0.0:11434/api/embed"),
        ("gpu-box", "http://gpu-box:11434/api/embed"),
        ("gpu-box:8080", "http://gpu-box:8080/api/embed"),
        ("https://ollama.example.com", "https://ollama.example.com/api/embed"),
        ("http://127.0.0.1:11435/", "http://127.0.0.1:11435/api/embed"),
    ],
)
def test_ollama_host_forms(host: str, url: str) -> None:
    """OLLAMA_HOST may lack a scheme (http) and then a port (11434)."""
    assert make(environ={"OLLAMA_HOST": host}).url == url


def test_profile_base_url_beats_ollama_host() -> None:
    """profile.base_url wins over OLLAMA_HOST."""
    codec = make(base_url="http://10.0.0.5:11434", environ={"OLLAMA_HOST": "other:1"})
    assert codec.url == "http://10.0.0.5:11434/api/embed"


def test_unusable_ollama_host() -> None:
    """An OLLAMA_HOST with a bad port is a ConfigurationError on base_url."""
    with pytest.raises(ConfigurationError) as info:
        make(environ={"OLLAMA_HOST": "box:notaport"})
    assert info.value.field == "base_url"


def test_optional_bearer_key_from_named_variable() -> None:
    """A key from the profile's api_key_env is sent as a bearer token."""
    codec = make(api_key_env="OLLAMA_API_KEY", environ={"OLLAMA_API_KEY": "ollama-key-123456"})
    assert codec.build_request(["a"]).headers["Authorization"] == "Bearer ollama-key-123456"


def test_docs_example_response() -> None:
    """The documented /api/embed response parses; prompt_eval_count is the token count."""
    result = make().parse_response(200, {}, DOCS_EXAMPLE, n_inputs=1, dimensions=10)
    assert result.vectors.shape == (1, 10)
    assert result.vectors.dtype == np.float32
    assert result.vectors[0, 0] == np.float32(0.010071029)
    assert result.prompt_tokens == 8
    assert result.model == "all-minilm"
    assert result.rate_limit is None


def test_extra_response_keys_tolerated_and_missing_count_is_none() -> None:
    """created_at/done keys are fine; no prompt_eval_count means prompt_tokens None."""
    body = b'{"model":"m","embeddings":[[1,2],[3,4]],"created_at":"2025","done":true}'
    result = make().parse_response(200, {}, body, n_inputs=2, dimensions=None)
    np.testing.assert_array_equal(result.vectors, [[1, 2], [3, 4]])
    assert result.prompt_tokens is None


@pytest.mark.parametrize(
    "body",
    [
        b'{"embeddings":[[1,2]]}',
        b'{"embeddings":[[1,2],[3]]}',
        b'{"embeddings":[[1,2],null]}',
        b'{"embeddings":[[1,2],[1e39,0]]}',
        b'{"embeddings":[[1,2],["a","b"]]}',
        b'{"embeddings":[]}',
        b'{"embeddings":{}}',
        b'{"embedding":[1,2]}',
        b'{"embeddings":[null,[1,2]]}',
        b'{"embeddings":[[],[]]}',
    ],
)
def test_malformed_ollama_bodies(body: bytes) -> None:
    """Wrong count, ragged, null, non-finite or mistyped vectors are rejected."""
    with pytest.raises(ResponseValidationError):
        make().parse_response(200, {}, body, n_inputs=2, dimensions=None)


def test_wrong_dimension_rejected() -> None:
    """Vectors of another size than expected are rejected."""
    with pytest.raises(ResponseValidationError):
        make().parse_response(200, {}, DOCS_EXAMPLE, n_inputs=1, dimensions=384)


def test_ollama_errors() -> None:
    """Ollama's flat error bodies map to typed errors, including one in a 200."""
    codec = make()
    not_found = b'{"error":"model \\"xyz\\" not found, try pulling it first"}'
    too_long = b'{"error":"the input length exceeds the context length"}'
    with pytest.raises(ModelNotFoundError):
        codec.parse_response(404, {}, not_found, n_inputs=1, dimensions=None)
    with pytest.raises(ContextLengthError):
        codec.parse_response(400, {}, too_long, n_inputs=1, dimensions=None)
    with pytest.raises(ServerError):
        codec.parse_response(
            200, {}, b'{"error":"llama runner exited"}', n_inputs=1, dimensions=None
        )
