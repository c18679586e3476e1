"""Fuzzing every codec's response parsing: anything a server (or a proxy in front of it) may send
ends as a valid finite float32 array of the right shape, or as a typed ProviderError.

Complements ``tests/core/providers/test_codec_fuzz.py`` (OpenAI and Ollama bodies under status
200/4xx/5xx) with: every codec and wire variant, every status from 100 to 599, each provider's
error-body shapes under any status (a 200 carrying an error included), HTML pages, gzip and BOM
prefixed bodies, overflowing numbers, deep nesting, and junk in every header the codecs read.
The bulk scanner (``providers/_json.py``) is held to the full parser on all of these bodies.
"""

from __future__ import annotations

import gzip
import json
import math
from typing import Any

import numpy as np
import orjson
import pybase64
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedguard import EmbedGuardError, ProviderError, RateLimitError
from embedguard.core.providers import Codec, make_codec
from embedguard.core.providers._decode import (
    decode_openai_data,
    echoed_model,
    load_json_object,
    usage_tokens,
)
from embedguard.core.providers._errors import lower_headers, request_id_of
from embedguard.core.providers._json import decode_openai_body, scan_openai_base64

from .conftest import KEY, figure, knob

EXAMPLES = int(knob("EMBEDGUARD_FUZZ_EXAMPLES", 300))
_URL = "http://127.0.0.1:9"
_PROFILES: dict[str, dict[str, Any]] = {
    "openai-base64": {"provider": "openai"},
    "openai-float": {"provider": "openai", "encoding_format": "float"},
    "azure-deployment": {"provider": "azure", "deployment": "emb", "api_version": "2024-10-21"},
    "azure-v1": {"provider": "azure"},
    "mistral": {"provider": "mistral"},
    "ollama": {"provider": "ollama"},
    "compatible": {"provider": "openai_compatible"},
}


def _codec(name: str) -> Codec:
    from embedguard import ProviderProfile

    fields = {"model": "m", "base_url": _URL, **_PROFILES[name]}
    return make_codec(ProviderProfile(**fields), api_key=KEY, environ={})


CODECS = {name: _codec(name) for name in _PROFILES}

# -- building blocks -------------------------------------------------------------------------------
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e39, -1e39, 3.5e38, 1e-46, 0.0, -0.0]),  # beyond float32: inf / denormal
    st.text(max_size=12),
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=16,
)
_floats = st.floats(width=32, allow_nan=False, allow_infinity=False)
_vector = st.one_of(
    st.lists(st.one_of(_floats, st.sampled_from([1e39, -1e39])), min_size=1, max_size=4),
    st.lists(_floats, min_size=1, max_size=4).map(
        lambda v: pybase64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode()
    ),
    st.binary(min_size=1, max_size=17).map(lambda b: pybase64.b64encode(b).decode()),
    st.text(max_size=10),
    _json,
)
_item = st.fixed_dictionaries(
    {"index": st.one_of(st.integers(-1, 4), _json), "embedding": _vector},
    optional={"object": st.just("embedding")},
)
_openai_body = st.fixed_dictionaries(
    {"object": st.just("list"), "data": st.one_of(st.lists(_item, max_size=4), _json)},
    optional={"model": _json, "usage": _json},
)
_ollama_body = st.fixed_dictionaries(
    {"embeddings": st.one_of(st.lists(_vector, max_size=4), _json)},
    optional={"model": _json, "prompt_eval_count": _json},
)
_message = st.one_of(st.text(max_size=40), _json)
_error_body = st.one_of(
    st.fixed_dictionaries(  # OpenAI / Azure / vLLM / llama.cpp
        {
            "error": st.fixed_dictionaries(
                {"message": _message}, optional={"type": _json, "code": _json}
            )
        }
    ),
    st.fixed_dictionaries(  # Mistral
        {"object": st.just("error"), "message": _message},
        optional={"type": _json, "code": _json, "raw_status_code": _json},
    ),
    st.fixed_dictionaries({"error": _message}, optional={"error_type": _json}),  # Ollama, TEI
    st.fixed_dictionaries({"detail": st.one_of(_message, st.lists(_json, max_size=3))}),  # FastAPI
    st.sampled_from(
        [
            {
                "error": {
                    "code": "429",
                    "message": "Requests to the Embeddings_Create Operation "
                    "have exceeded call rate limit. Please retry after 2 seconds.",
                }
            },
            {
                "error": {
                    "message": "This model's maximum context length is 8192 tokens",
                    "type": "invalid_request_error",
                    "code": "context_length_exceeded",
                }
            },
            {"error": {"message": "You exceeded your current quota", "code": "insufficient_quota"}},
            {"object": "error", "message": "Too many tokens in batch", "raw_status_code": 400},
            {"error": "model 'x' not found, try pulling it first"},
        ]
    ),
)
_html = st.builds(
    lambda title, text: (
        f"<html><head><title>{title}</title><style>p {{}}</style></head>"
        f"<body><h1>{title}</h1><p>{text}</p><script>var x = '<p>';</script></body></html>"
    ).encode(),
    st.sampled_from(["502 Bad Gateway", "504 Gateway Time-out", "Just a moment...", "403"]),
    st.text(max_size=60),
)


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc).encode()  # stdlib: integers beyond 64 bits are written as they are


_json_bodies = st.one_of(_openai_body, _ollama_body, _error_body, _json).map(_dumps)
_bodies = st.one_of(
    _json_bodies,
    _json_bodies.map(lambda b: b[: len(b) // 2]),  # cut short
    _json_bodies.map(lambda b: b"\xef\xbb\xbf" + b),  # UTF-8 BOM
    _json_bodies.map(gzip.compress),  # a compressed body nobody decompressed
    _html,
    st.binary(max_size=80),
    st.sampled_from([b"", b" ", b"null", b"[]", b"{}", b'"x"', b"NaN", b"[1e999]", b"{" * 5000]),
    st.integers(1, 3).map(lambda d: b'{"data": ' + b"[" * (400 * d) + b"]" * (400 * d) + b"}"),
)
_header_values = st.one_of(
    st.sampled_from(["nan", "inf", "-1", "1e309", "0", "0.05", "6ms", "1m30s", "", " ", "abc",
                     "Wed, 21 Oct 2015 07:28:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT"]),
    st.text(st.characters(codec="latin-1"), max_size=12),
)  # fmt: skip
_HEADER_NAMES = [
    "retry-after", "retry-after-ms", "Retry-After", "x-request-id", "apim-request-id",
    "mistral-correlation-id", "content-type", "x-rate-limit-reset-tokens",
    "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens",
    "X-RateLimit-Remaining-Tokens",
]  # fmt: skip
_header_names = st.sampled_from(_HEADER_NAMES)
_headers = st.dictionaries(_header_names, _header_values, max_size=5)
_statuses = st.one_of(
    st.sampled_from([200, 200, 200, 201, 204, 400, 401, 403, 404, 408, 409, 413, 415, 422, 429,
                     500, 502, 503, 504]),
    st.integers(100, 599),
)  # fmt: skip

_seen = {"responses": 0, "typed_errors": 0, "valid_arrays": 0}


def _check_error(error: EmbedGuardError, status: int) -> None:
    _seen["typed_errors"] += 1
    assert isinstance(error, ProviderError)
    assert error.status_code == status
    assert str(error) and repr(error)  # rendering an error never fails
    if isinstance(error, RateLimitError) and error.retry_after is not None:
        assert not math.isnan(error.retry_after) and error.retry_after >= 0


def _check(
    codec: Codec, status: int, headers: dict[str, str], body: bytes, n: int, dims: int | None
) -> None:
    """A valid array or a typed ProviderError, never anything else, and never a non-2xx result."""
    _seen["responses"] += 1
    error: EmbedGuardError | None = None
    try:
        result = codec.parse_response(status, headers, body, n_inputs=n, dimensions=dims)
    except EmbedGuardError as exc:
        error = exc
    if error is not None:
        _check_error(error, status)
        return
    _seen["valid_arrays"] += 1
    assert 200 <= status < 300, f"status {status} returned vectors"
    vectors = result.vectors
    assert isinstance(vectors, np.ndarray) and vectors.dtype == np.float32
    assert vectors.ndim == 2 and vectors.shape[0] == n
    assert dims is None or vectors.shape[1] == dims
    assert n == 0 or vectors.shape[1] > 0
    assert np.isfinite(vectors).all()
    assert result.prompt_tokens is None or result.prompt_tokens >= 0
    if result.rate_limit is not None:
        for value in (
            result.rate_limit.limit_requests,
            result.rate_limit.remaining_requests,
            result.rate_limit.reset_requests,
            result.rate_limit.limit_tokens,
            result.rate_limit.remaining_tokens,
            result.rate_limit.reset_tokens,
        ):
            assert value is None or value >= 0


def _record() -> None:
    figure("fuzz.codec_responses", _seen["responses"])
    figure("fuzz.codec_typed_errors", _seen["typed_errors"])
    figure("fuzz.codec_valid_arrays", _seen["valid_arrays"])


_SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@_SETTINGS
@given(
    name=st.sampled_from(sorted(CODECS)),
    status=_statuses,
    headers=_headers,
    body=_bodies,
    n=st.integers(0, 4),
    dims=st.none() | st.integers(1, 4),
)
def test_any_response_gives_a_valid_array_or_a_typed_error(
    name: str, status: int, headers: dict[str, str], body: bytes, n: int, dims: int | None
) -> None:
    """Any status, headers and body give a valid float32 array or a typed ProviderError."""
    _check(CODECS[name], status, headers, body, n, dims)
    _record()


@settings(
    max_examples=max(1, EXAMPLES // 3), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    name=st.sampled_from(sorted(CODECS)),
    status=st.sampled_from([200, 201, 202]),
    headers=_headers,
    body=_error_body.map(_dumps),
    n=st.integers(1, 4),
)
def test_a_2xx_carrying_an_error_body_is_never_vectors(
    name: str, status: int, headers: dict[str, str], body: bytes, n: int
) -> None:
    """A success status whose body is any provider's error document raises a ProviderError."""
    _seen["responses"] += 1
    with pytest.raises(ProviderError) as info:
        CODECS[name].parse_response(status, headers, body, n_inputs=n, dimensions=None)
    _check_error(info.value, status)
    _record()


@st.composite
def _valid_then_damaged(
    draw: st.DrawFn, names: tuple[str, ...] = tuple(sorted(CODECS))
) -> tuple[str, bytes, int, int, str | None]:
    """A valid response in the wire shape of one of ``names``, possibly damaged in one way."""
    name = draw(st.sampled_from(names))
    n, d = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    rows = draw(st.lists(st.lists(_floats, min_size=d, max_size=d), min_size=n, max_size=n))
    damage = draw(
        st.sampled_from([None, "inf", "nan-text", "short", "extra", "dims", "type", "error"])
    )
    if damage == "inf":
        rows[draw(st.integers(0, n - 1))][0] = 1e39  # overflows float32
    if name == "ollama":
        doc: dict[str, Any] = {"model": "m", "embeddings": rows}
        listed: list[Any] = doc["embeddings"]
    else:
        b64 = name == "openai-base64"
        with np.errstate(over="ignore"):  # 1e39 becomes float32 inf, as a server would send it
            items = [
                {"object": "embedding", "index": i,
                 "embedding": pybase64.b64encode(np.asarray(r, "<f4").tobytes()).decode() if b64
                 else r}
                for i, r in enumerate(rows)
            ]  # fmt: skip
        doc = {"object": "list", "data": draw(st.permutations(items)), "model": "m"}
        listed = doc["data"]
    if damage == "short":
        listed.pop()
    elif damage == "extra":
        listed.append(listed[0])
    elif damage == "dims":
        return name, _dumps(doc), n, d + 1, damage
    elif damage == "type":
        listed[0] = "not a vector"
    elif damage == "error":  # a 200 that also says it failed
        doc["error"] = {"message": "The server had an error", "type": "server_error"}
    body = _dumps(doc)
    if damage == "nan-text":
        body = body.replace(b"]", b",NaN]", 1)
    return name, body, n, d, damage


@_SETTINGS
@given(case=_valid_then_damaged())
def test_valid_responses_decode_exactly_and_damage_is_always_caught(
    case: tuple[str, bytes, int, int, str | None],
) -> None:
    """Intact responses decode exactly in any item order; any single damage is caught."""
    name, body, n, d, damage = case
    codec = CODECS[name]
    _seen["responses"] += 1
    if damage is None:
        result = codec.parse_response(200, {}, body, n_inputs=n, dimensions=d)
        doc = orjson.loads(body)
        if name == "ollama":
            expected = np.asarray(doc["embeddings"], dtype=np.float32)
        else:
            by_index = {item["index"]: item["embedding"] for item in doc["data"]}
            expected = np.stack([_decode(by_index[i]) for i in range(n)])
        np.testing.assert_array_equal(result.vectors, expected)
        _seen["valid_arrays"] += 1
    else:
        with pytest.raises(ProviderError):
            codec.parse_response(200, {}, body, n_inputs=n, dimensions=d)
        _seen["typed_errors"] += 1
    _record()


def _decode(embedding: Any) -> np.ndarray:
    if isinstance(embedding, str):
        return np.frombuffer(pybase64.b64decode(embedding), dtype="<f4").astype(np.float32)
    return np.asarray(embedding, dtype=np.float32)


# -- the bulk scanner against the full parser ------------------------------------------------------


def _parsed_fully(
    status: int, headers: dict[str, str], body: bytes, n: int, dims: int | None
) -> tuple[Any, ...]:
    """The full parser's outcome (load, decode, usage, model), or its error's type and state."""
    lowered = lower_headers(headers)
    try:
        doc = load_json_object("openai", status, lowered, body, secrets=(KEY,))
        vectors = decode_openai_data(
            doc.get("data"),
            n_inputs=n,
            dimensions=dims,
            provider="openai",
            status_code=status,
            request_id=request_id_of(lowered, (KEY,)),
        )
    except Exception as exc:
        return _error_state(exc)
    return _vector_state(vectors, usage_tokens(doc), echoed_model(doc))


def _scanned(
    status: int, headers: dict[str, str], body: bytes, n: int, dims: int | None
) -> tuple[Any, ...]:
    """decode_openai_body's outcome, in the same form."""
    try:
        decoded = decode_openai_body(
            "openai", status, lower_headers(headers), body, n_inputs=n, dimensions=dims,
            secrets=(KEY,),
        )  # fmt: skip
    except Exception as exc:
        return _error_state(exc)
    return _vector_state(*decoded)


def _vector_state(vectors: np.ndarray, tokens: int | None, model: str | None) -> tuple[Any, ...]:
    return ("vectors", vectors.dtype.str, vectors.shape, vectors.tobytes(), tokens, model)


def _error_state(exc: Exception) -> tuple[Any, ...]:
    return ("error", type(exc), exc.args, str(exc), sorted(vars(exc).items()))


_openai_b64_cases = _valid_then_damaged(("openai-base64",))
# Any body with any expected count and size, or a (damaged) base64 response with its own.
_scanner_cases = st.one_of(
    st.tuples(_bodies, st.integers(0, 4), st.none() | st.integers(1, 4)),
    _openai_b64_cases.map(lambda case: (case[1], case[2], case[3])),
)


@_SETTINGS
@given(status=st.sampled_from([200, 201]), headers=_headers, case=_scanner_cases)
def test_the_bulk_scanner_ends_every_body_as_the_full_parser(
    status: int, headers: dict[str, str], case: tuple[bytes, int, int | None]
) -> None:
    """Any 2xx body and headers: the scanner with its fallback gives the full parser's exact
    array, tokens and model, or its exact error (type, message, attributes)."""
    body, n, dims = case
    _seen["responses"] += 1
    assert _scanned(status, headers, body, n, dims) == _parsed_fully(status, headers, body, n, dims)
    _record()


@_SETTINGS
@given(case=_openai_b64_cases)
def test_the_bulk_scanner_decodes_intact_base64_responses_itself(
    case: tuple[str, bytes, int, int, str | None],
) -> None:
    """Intact base64 responses in any item order never need the full parser."""
    _, body, n, d, damage = case
    scanned = scan_openai_base64(body, n_inputs=n, dimensions=d)
    if damage is None:
        assert scanned is not None
        assert _vector_state(*scanned) == _parsed_fully(200, {}, body, n, d)
        _seen["valid_arrays"] += 1
    _record()
