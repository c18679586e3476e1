"""TEI codec: /embed requests, prompt names, bare-array responses, TEI's errors and /info."""
# ruff: noqa: E501  (TEI error bodies are quoted verbatim, on one line each)

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from embedguard import profiles
from embedguard.core.config import BatchPolicy, ProviderProfile
from embedguard.core.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ContextLengthError,
    EndpointNotFoundError,
    ProviderError,
    RateLimitError,
    ResponseValidationError,
    ServerError,
)
from embedguard.core.providers import TEICodec, make_codec

KEY = "tei-PLANTED-codec-key-0123456789"


def make(environ: dict[str, str] | None = None, **fields: Any) -> TEICodec:
    """A TEI codec for the built-in profile with ``fields`` set."""
    codec = make_codec(profiles.tei(**fields), environ=environ or {})
    assert isinstance(codec, TEICodec)
    return codec


def body_of(codec: TEICodec, texts: list[str], kind: str = "document") -> dict[str, Any]:
    """The parsed JSON body ``codec`` sends for ``texts``."""
    parsed: dict[str, Any] = orjson.loads(codec.build_request(texts, kind).body)
    return parsed


def test_default_request() -> None:
    """localhost:8080/embed, no auth, inputs with normalize on and truncate off, nothing else."""
    request = make().build_request(["why is the sky blue?"])
    assert (request.method, request.url) == ("POST", "http://localhost:8080/embed")
    assert "Authorization" not in request.headers
    assert orjson.loads(request.body) == {
        "inputs": ["why is the sky blue?"], "normalize": True, "truncate": False,
    }  # fmt: skip


def test_url_and_key_from_the_environment() -> None:
    """TEI_BASE_URL and TEI_API_KEY are read; a Hugging Face token is never sent implicitly."""
    env = {"TEI_BASE_URL": "https://tei.internal:443/", "TEI_API_KEY": KEY, "HF_TOKEN": "hf_x"}
    codec = make(env)
    request = codec.build_request(["a"])
    assert request.url == "https://tei.internal:443/embed"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert KEY not in repr(codec) and KEY not in repr(request)
    info = codec.info_request()
    assert (info.method, info.url, info.body) == ("GET", "https://tei.internal:443/info", b"")
    assert info.headers["Authorization"] == f"Bearer {KEY}"
    hf_only = make({"HF_TOKEN": "hf_secret_token"}).build_request(["a"])
    assert "Authorization" not in hf_only.headers


def test_a_base_url_ending_in_embed_is_the_route() -> None:
    """base_url may name the /embed route itself; /info is then its sibling."""
    codec = make(base_url="http://gpu:3000/embed")
    assert codec.url == "http://gpu:3000/embed"
    assert codec.info_request().url == "http://gpu:3000/info"


def test_bad_environment_url_is_a_configuration_error() -> None:
    """A TEI_BASE_URL that is not an http(s) URL names the field."""
    with pytest.raises(ConfigurationError) as info:
        make({"TEI_BASE_URL": "gpu-box:8080"})
    assert info.value.field == "base_url"


def test_prompt_names_follow_the_profile_and_the_call() -> None:
    """query/document send the profile's prompt names, a per-call type is sent as is, none by default."""
    plain = make()
    assert "prompt_name" not in body_of(plain, ["q"], "query")
    assert "prompt_name" not in body_of(plain, ["d"])
    typed = make(query_input_type="query", document_input_type="passage")
    assert body_of(typed, ["q"], "query")["prompt_name"] == "query"
    assert body_of(typed, ["d"])["prompt_name"] == "passage"
    assert body_of(typed, ["c"], "classification")["prompt_name"] == "classification"


def test_prefixes_are_the_other_way() -> None:
    """E5-style prefixes go before each text, with no prompt name."""
    codec = make(query_prefix="query: ", document_prefix="passage: ")
    assert body_of(codec, ["q"], "query") == {
        "inputs": ["query: q"], "normalize": True, "truncate": False,
    }  # fmt: skip
    assert body_of(codec, ["d"])["inputs"] == ["passage: d"]


def test_dimensions_are_sent_only_when_set_explicitly() -> None:
    """A Matryoshka size set by the user is sent; a size known from the model name is not."""
    assert "dimensions" not in body_of(make(model="all-MiniLM-L6-v2"), ["a"])
    assert profiles.tei("all-MiniLM-L6-v2").dimensions == 384
    assert body_of(make(dimensions=256), ["a"])["dimensions"] == 256


def test_extra_body_overrides_but_cannot_replace_inputs() -> None:
    """extra_body changes normalize or truncate; setting inputs is refused."""
    assert body_of(make(extra_body={"normalize": False}), ["a"])["normalize"] is False
    with pytest.raises(ConfigurationError) as info:
        make(extra_body={"inputs": ["x"]})
    assert info.value.field == "extra_body"


def test_compact_dtypes_are_refused() -> None:
    """TEI's /embed returns floats only."""
    with pytest.raises(ConfigurationError) as info:
        make(dtype="int8")
    assert info.value.field == "dtype"


# -- responses ---------------------------------------------------------------------------------
def test_bare_array_with_compute_tokens() -> None:
    """A bare [[...], ...] body gives the rows in order; x-compute-tokens is the usage."""
    body = b"[[0.1,0.2,0.3],[0.4,0.5,0.6]]"
    result = make().parse_response(
        200, {"X-Compute-Tokens": "14", "x-compute-type": "gpu+optimized"}, body,
        n_inputs=2, dimensions=None,
    )  # fmt: skip
    np.testing.assert_array_equal(
        result.vectors, np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], dtype=np.float32)
    )
    assert (result.prompt_tokens, result.model, result.rate_limit) == (14, None, None)
    bare = make().parse_response(200, {}, b"[[1.0]]", n_inputs=1, dimensions=1)
    assert bare.prompt_tokens is None


@pytest.mark.parametrize(
    ("body", "truncated"),
    [
        (b"", True),
        (b"[[0.1,0.2],[0.3,", True),
        (b"<html>bad gateway</html>", False),
        (b'{"embeddings": [[0.1, 0.2]]}', False),
        (b"[[0.1,0.2]]", False),  # one vector for two inputs
        (b"[[0.1,0.2],[0.3]]", False),
        (b'[[0.1,0.2],["a","b"]]', False),
        (b"[[0.1,0.2],[1e39,0.0]]", False),  # overflows float32
        (b"[[0.1,0.2],[0.3,0.4],[0.5,0.6]]", False),
    ],
)
def test_invalid_bodies_are_never_vectors(body: bytes, truncated: bool) -> None:
    """Anything but one finite vector per input raises ResponseValidationError."""
    with pytest.raises(ResponseValidationError) as info:
        make().parse_response(200, {}, body, n_inputs=2, dimensions=None)
    assert info.value.truncated is truncated


def test_an_error_document_with_200_is_an_error() -> None:
    """{"error": ...} under 200 is the error it names, not an empty result."""
    with pytest.raises(ServerError):
        make().parse_response(
            200, {}, b'{"error":"Inference failed","error_type":"Backend"}', n_inputs=1,
            dimensions=None,
        )  # fmt: skip


# -- errors ------------------------------------------------------------------------------------
ERRORS = [
    (
        422,
        b'{"error":"Input validation error: `inputs` must have less than 512 tokens. Given: 3002","error_type":"Validation"}',
        ContextLengthError,
        "Validation",
    ),
    (
        413,
        b'{"error":"Input validation error: `inputs` must have less than 512 tokens. Given: 3002","error_type":"Validation"}',
        ContextLengthError,
        "Validation",
    ),
    (
        422,
        b'{"error":"Input validation error: `inputs` must have less than 128000 characters. Given: 200000","error_type":"Validation"}',
        ContextLengthError,
        "Validation",
    ),
    (413, b"Failed to buffer the request body: length limit exceeded", ContextLengthError, None),
    (400, b'{"error":"`inputs` cannot be empty","error_type":"Empty"}', BadRequestError, "Empty"),
    (
        422,
        b'{"error":"Input validation error: `default-prompt-name` is set to `x` but it was not found in the Sentence Transformers prompts. Available prompts: [\\"query\\"]","error_type":"Validation"}',
        BadRequestError,
        "Validation",
    ),
    (422, b'{"error":"Tokenization error","error_type":"Tokenizer"}', BadRequestError, "Tokenizer"),
    (424, b'{"error":"Inference failed","error_type":"Backend"}', ServerError, "Backend"),
    (
        429,
        b'{"error":"Model is overloaded","error_type":"Overloaded"}',
        RateLimitError,
        "Overloaded",
    ),
    (503, b'{"error":"unhealthy","error_type":"Unhealthy"}', ServerError, "Unhealthy"),
    (401, b"", AuthenticationError, None),
]


@pytest.mark.parametrize(("status", "body", "kind", "code"), ERRORS)
def test_tei_errors_are_typed(
    status: int, body: bytes, kind: type[ProviderError], code: str | None
) -> None:
    """Each TEI error reply maps to its typed error, retryable exactly where TEI recovers."""
    with pytest.raises(ProviderError) as info:
        make().parse_response(status, {}, body, n_inputs=2, dimensions=None)
    error = info.value
    assert type(error) is kind
    assert (error.status_code, error.code) == (status, code)
    assert error.retryable is (kind in (ServerError, RateLimitError))


@pytest.mark.parametrize("status", [413, 422])
def test_a_batch_over_the_server_cap_is_split_and_remembered(status: int) -> None:
    """'batch size 40 > maximum allowed batch size 32' is a ContextLengthError (the batch is
    split) and the codec keeps the cap for later calls."""
    codec = make()
    body = b'{"error":"batch size 40 > maximum allowed batch size 32","error_type":"Validation"}'
    with pytest.raises(ContextLengthError):
        codec.parse_response(status, {}, body, n_inputs=40, dimensions=None)
    assert codec.batch_cap == 32


def test_404_points_at_the_base_url() -> None:
    """A bare 404 (no such route) is an EndpointNotFoundError that shows the URL, not the key."""
    codec = make({"TEI_API_KEY": KEY}, base_url="http://tei:8080/v1")
    with pytest.raises(EndpointNotFoundError) as info:
        codec.parse_response(404, {}, b"", n_inputs=1, dimensions=None)
    assert info.value.url == "http://tei:8080/v1/embed"
    assert "TEI /embed route" in str(info.value) and KEY not in str(info.value)


def test_the_key_never_reaches_an_error() -> None:
    """A server echoing the key in its error text gets it redacted."""
    body = orjson.dumps({"error": f"bad token {KEY}", "error_type": "Backend"})
    with pytest.raises(ServerError) as info:
        make({"TEI_API_KEY": KEY}).parse_response(424, {}, body, n_inputs=1, dimensions=None)
    assert KEY not in str(info.value) and "***" in str(info.value)


# -- /info ---------------------------------------------------------------------------------------
INFO = {
    "model_id": "BAAI/bge-small-en-v1.5", "model_sha": None, "model_dtype": "float16",
    "model_type": {"embedding": {"pooling": "cls"}}, "max_concurrent_requests": 512,
    "max_input_length": 512, "max_batch_tokens": 2048, "max_batch_requests": None,
    "max_client_batch_size": 8, "auto_truncate": True, "tokenization_workers": 4,
    "version": "1.9.3", "sha": None, "docker_label": None,
}  # fmt: skip


def learned(profile: ProviderProfile, doc: Any = INFO, status: int = 200) -> BatchPolicy:
    """What the codec makes of an /info reply for ``profile``."""
    codec = make_codec(profile, environ={})
    assert isinstance(codec, TEICodec)
    return codec.batching_from_info(status, {}, orjson.dumps(doc), profile)


def test_info_replaces_the_defaults() -> None:
    """The server's batch size, batch tokens and input length replace the profile's defaults."""
    assert learned(profiles.tei()) == BatchPolicy(
        max_inputs=8, max_tokens_per_request=2048, max_tokens_per_input=512
    )
    bare = ProviderProfile(provider="tei", model="m")  # built field by field: plain defaults
    assert learned(bare).max_inputs == 8


def test_explicit_settings_win_over_info() -> None:
    """Fields the user set stay; an explicit per-input limit raises a learned request limit."""
    policy = learned(profiles.tei(batching={"max_inputs": 4}))
    assert (policy.max_inputs, policy.max_tokens_per_request) == (4, 2048)
    wide = learned(profiles.tei(batching={"max_tokens_per_input": 4096}))
    assert (wide.max_tokens_per_input, wide.max_tokens_per_request) == (4096, 4096)
    long_inputs = {**INFO, "max_input_length": 8192}
    capped = learned(profiles.tei(batching={"max_tokens_per_request": 1000}), long_inputs)
    assert (capped.max_tokens_per_input, capped.max_tokens_per_request) == (1000, 1000)


@pytest.mark.parametrize(
    "doc",
    [
        {"model_id": "x"},
        [1, 2, 3],
        {"max_client_batch_size": 0, "max_batch_tokens": -1, "max_input_length": "512"},
        {"max_client_batch_size": 10**12, "max_batch_tokens": True},
    ],
)
def test_info_without_usable_limits_is_refused(doc: Any) -> None:
    """An /info that states no positive, sane limit is a ResponseValidationError."""
    with pytest.raises(ResponseValidationError):
        learned(profiles.tei(), doc)


def test_info_garbage_and_errors_are_typed() -> None:
    """A non-JSON /info and an error status raise typed errors (the client then warns)."""
    codec = make()
    with pytest.raises(ResponseValidationError):
        codec.batching_from_info(200, {}, b"<html>", profiles.tei())
    with pytest.raises(EndpointNotFoundError):
        codec.batching_from_info(404, {}, b"", profiles.tei())
    with pytest.raises(AuthenticationError):
        codec.batching_from_info(401, {}, b"", profiles.tei())
