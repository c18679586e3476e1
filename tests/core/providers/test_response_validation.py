"""Validation of 2xx bodies: exactly one finite vector per input, or ResponseValidationError."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pybase64
import pytest

from embedguard.core.config import ProviderProfile
from embedguard.core.errors import (
    ContextLengthError,
    ModelNotFoundError,
    RateLimitError,
    ResponseValidationError,
    ServerError,
)
from embedguard.core.providers import OpenAICodec, decode_openai_data

VECTORS = np.array([[0.25, -0.5, 1.0], [2.0, 0.125, -3.5], [7.0, 8.0, -9.25]], dtype=np.float32)


def b64(values: Any) -> str:
    """Encode values as base64 little-endian float32, as OpenAI does."""
    return pybase64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode()


def codec() -> OpenAICodec:
    """An OpenAI codec with a test key and no environment."""
    profile = ProviderProfile(provider="openai", model="text-embedding-3-small")
    return OpenAICodec(profile, api_key="sk-test-key-123456", environ={})


def body_of(data: Any, **extra: Any) -> bytes:
    """A pretty-printed OpenAI response body around ``data``."""
    doc = {"object": "list", "data": data, "model": "text-embedding-3-small", **extra}
    return json.dumps(doc, indent=2).encode()


def items(embeddings: list[Any], indices: list[Any] | None = None) -> list[dict[str, Any]]:
    """OpenAI data items for the given embeddings (index = position unless given)."""
    indices = list(range(len(embeddings))) if indices is None else indices
    return [
        {"object": "embedding", "index": i, "embedding": e}
        for i, e in zip(indices, embeddings, strict=True)
    ]


def parse(body: bytes, n: int = 3, dimensions: int | None = None, status: int = 200) -> np.ndarray:
    """Parse through the OpenAI codec and return the vectors."""
    result = codec().parse_response(
        status, {"x-request-id": "req_1"}, body, n_inputs=n, dimensions=dimensions
    )
    return result.vectors


# -- success ---------------------------------------------------------------------------------------


def test_base64_vectors_decode_exactly() -> None:
    """Base64 items decode to the exact float32 values, one row per input."""
    out = parse(body_of(items([b64(v) for v in VECTORS])), dimensions=3)
    assert out.dtype == np.float32
    assert out.shape == (3, 3)
    np.testing.assert_array_equal(out, VECTORS)


def test_float_vectors_decode() -> None:
    """Float-list items decode to float32 rows."""
    out = parse(body_of(items(VECTORS.tolist())))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, VECTORS)


def test_shuffled_data_is_placed_by_index() -> None:
    """Items arriving out of order land in the row their index names."""
    data = items([b64(VECTORS[2]), b64(VECTORS[0]), b64(VECTORS[1])], [2, 0, 1])
    np.testing.assert_array_equal(parse(body_of(data)), VECTORS)


def test_mixed_float_and_base64_items_are_accepted() -> None:
    """A server may answer floats even when base64 was asked; both decode the same."""
    data = items([VECTORS[0].tolist(), b64(VECTORS[1]), VECTORS[2].tolist()])
    np.testing.assert_array_equal(parse(body_of(data)), VECTORS)


def test_integer_components_are_numbers() -> None:
    """JSON integers inside a float vector are valid numbers."""
    out = parse(body_of(items([[1, 2, 3], [4, 5, 6], [0, 0, 1]])))
    np.testing.assert_array_equal(out[1], [4.0, 5.0, 6.0])


def test_usage_and_model_are_reported() -> None:
    """prompt_tokens and the echoed model are returned; extra keys are tolerated."""
    body = body_of(
        items([b64(v) for v in VECTORS]),
        usage={"prompt_tokens": 8, "total_tokens": 8, "completion_tokens": 0},
        id="embd-1",
        created=63400,
    )
    result = codec().parse_response(200, {}, body, n_inputs=3, dimensions=None)
    assert result.prompt_tokens == 8
    assert result.model == "text-embedding-3-small"


def test_total_tokens_used_when_prompt_tokens_absent() -> None:
    """usage with only total_tokens (Voyage-like) reports that count."""
    body = body_of(items([b64(v) for v in VECTORS]), usage={"total_tokens": 18})
    result = codec().parse_response(200, {}, body, n_inputs=3, dimensions=None)
    assert result.prompt_tokens == 18


@pytest.mark.parametrize("usage", [None, "x", {"prompt_tokens": None}, {"prompt_tokens": True}])
def test_missing_or_odd_usage_gives_none(usage: Any) -> None:
    """Absent or malformed usage is not an error: prompt_tokens is None."""
    extra = {} if usage is None else {"usage": usage}
    result = codec().parse_response(
        200, {}, body_of(items(VECTORS.tolist()), **extra), n_inputs=3, dimensions=None
    )
    assert result.prompt_tokens is None


def test_zero_inputs_with_empty_data() -> None:
    """An empty request answered with empty data gives an empty (0, d) array."""
    out = decode_openai_data([], n_inputs=0, dimensions=4, provider="p")
    assert out.shape == (0, 4)


# -- malformed 2xx -----------------------------------------------------------------------------

GOOD = [b64(v) for v in VECTORS]
MALFORMED: dict[str, bytes] = {
    "too few items": body_of(items(GOOD[:2])),
    "too many items": body_of(items([*GOOD, GOOD[0]])),
    "missing index": body_of([{"object": "embedding", "embedding": g} for g in GOOD]),
    "duplicate index": body_of(items(GOOD, [0, 1, 1])),
    "index out of range": body_of(items(GOOD, [0, 1, 3])),
    "negative index": body_of(items(GOOD, [0, 1, -1])),
    "string index": body_of(items(GOOD, [0, 1, "2"])),
    "bool index": body_of(items(GOOD, [0, True, 2])),
    "float index": body_of(items(GOOD, [0, 1.0, 2])),
    "NaN in base64": body_of(items([GOOD[0], b64([0.0, math.nan, 1.0]), GOOD[2]])),
    "inf in base64": body_of(items([GOOD[0], GOOD[1], b64([math.inf, 0.0, 1.0])])),
    "float32 overflow": body_of(items([[1e39, 0.0, 0.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])),
    "inconsistent float dims": body_of(items([[1.0, 2.0, 3.0], [1.0, 2.0], [1.0, 2.0, 3.0]])),
    "inconsistent b64 dims": body_of(items([GOOD[0], b64([1.0, 2.0, 3.0, 4.0]), GOOD[2]])),
    "embedding null": body_of(items([GOOD[0], None, GOOD[2]])),
    "embedding number": body_of(items([GOOD[0], 1.5, GOOD[2]])),
    "embedding object": body_of(items([{"a": 1}, GOOD[1], GOOD[2]])),
    "strings in vector": body_of(items([["0.1", "0.2", "0.3"], GOOD[1], GOOD[2]])),
    "null in vector": body_of(items([[0.1, None, 0.3], GOOD[1], GOOD[2]])),
    "nested vector": body_of(items([[[0.1], [0.2], [0.3]], GOOD[1], GOOD[2]])),
    "bool vector": body_of(items([[True, False, True], GOOD[1], GOOD[2]])),
    "empty vector": body_of(items([[], [], []])),
    "bad base64 chars": body_of(items([GOOD[0], "!!!!" * 4, GOOD[2]])),
    "base64 not whole floats": body_of(items(["AAAA", "AAAA", "AAAA"])),
    "base64 bad length": body_of(items([GOOD[0], GOOD[1], GOOD[2][:-4]])),
    "data is an object": body_of({}),
    "data missing": json.dumps({"object": "list", "model": "m"}).encode(),
    "data null": body_of(None),
    "item not an object": body_of([GOOD[0], GOOD[1], GOOD[2]]),
    "top-level list": json.dumps(items(GOOD)).encode(),
    "top-level string": b'"ok"',
    "html page": b"<!DOCTYPE html><html><body>Service Unavailable</body></html>",
    "plain text": b"OK",
    "JSON with trailing garbage": body_of(items(GOOD)) + b"}",
    "NaN literal": b'{"data":[{"index":0,"embedding":[NaN,1,2]}]}',
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_2xx_raises_never_returns(body: bytes) -> None:
    """Every malformed success body raises ResponseValidationError (not truncated)."""
    with pytest.raises(ResponseValidationError) as info:
        parse(body)
    assert info.value.truncated is False
    assert info.value.retryable is False
    assert info.value.status_code == 200
    assert info.value.request_id == "req_1"
    assert info.value.provider == "openai"


def test_wrong_dimensions_against_expected() -> None:
    """Vectors of another size than the expected dimensions are rejected."""
    with pytest.raises(ResponseValidationError, match="3 dimensions, expected 4"):
        parse(body_of(items(GOOD)), dimensions=4)
    with pytest.raises(ResponseValidationError):
        parse(body_of(items(VECTORS.tolist())), dimensions=2)


@pytest.mark.parametrize(
    "body",
    [
        body_of(items(GOOD))[:-40],
        b'{"object": "list", "data": [',
        b'{"data": [{"index": 0, "embedding": "AAAA',
        b"[",
        b"",
        b"  \n",
    ],
)
def test_cut_short_bodies_are_truncated(body: bytes) -> None:
    """A body that starts like JSON but ends early (or is empty) is flagged truncated."""
    with pytest.raises(ResponseValidationError) as info:
        parse(body)
    assert info.value.truncated is True
    assert info.value.retryable is True


def test_error_body_in_200_raises_typed_error() -> None:
    """A 200 carrying an OpenAI-style 429 error body raises RateLimitError."""
    body = b'{"error":{"code":"429","message":"Rate limited. Please retry after 3 seconds."}}'
    with pytest.raises(RateLimitError) as info:
        parse(body)
    assert info.value.retry_after == pytest.approx(3.0)


def test_flat_error_in_200_is_server_error() -> None:
    """A 200 whose body is {"error": "..."} without a status is a retryable ServerError."""
    with pytest.raises(ServerError):
        parse(b'{"error": "something broke"}')


def test_object_error_in_200_with_context_wording() -> None:
    """A 200 carrying Mistral's batch-too-large error raises ContextLengthError."""
    body = (
        b'{"object":"error","message":"Too many tokens in batch. Max is 16384 got 17555",'
        b'"type":"invalid_request_error","param":null,"code":null}'
    )
    with pytest.raises(ContextLengthError):
        parse(body)


def test_non_2xx_status_raises_typed_error() -> None:
    """parse_response on a 404 raises ModelNotFoundError rather than validating."""
    with pytest.raises(ModelNotFoundError):
        parse(b'{"error":{"message":"nope","code":"model_not_found"}}', status=404)


def test_decode_rejects_non_list_data_directly() -> None:
    """decode_openai_data validates its input type itself."""
    with pytest.raises(ResponseValidationError):
        decode_openai_data({"0": []}, n_inputs=1, dimensions=None, provider="p")


def test_large_base64_batch_round_trips() -> None:
    """A realistic 256 x 1536 base64 response decodes bit-exactly."""
    rng = np.random.default_rng(0)
    big = rng.standard_normal((256, 1536)).astype(np.float32)
    data = items([b64(row) for row in big])
    rng.shuffle(data)
    out = parse(body_of(data), n=256, dimensions=1536)
    np.testing.assert_array_equal(out, big)
