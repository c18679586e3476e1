"""Cohere codec: the v2 request body, both response shapes, compact types, errors and headers."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import orjson
import pytest

from embedguard.core.config import ProviderProfile
from embedguard.core.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ContextLengthError,
    InputValidationError,
    ModelNotFoundError,
    QuotaExhaustedError,
    RateLimitError,
    ResponseValidationError,
    ServerError,
)
from embedguard.core.providers import CohereCodec, RateLimitInfo, make_codec
from embedguard.core.providers.headers import rate_limit_info

KEY = "cohere-test-key-PLANTED-0123456789"


def make(model: str = "embed-v4.0", **fields: Any) -> CohereCodec:
    """A Cohere codec with the test key and no environment."""
    profile = ProviderProfile.from_dict({"provider": "cohere", "model": model, **fields})
    return CohereCodec(profile, api_key=KEY, environ={})


def body_of(codec: CohereCodec, texts: list[str], kind: str = "document") -> dict[str, Any]:
    """The parsed JSON body the codec builds."""
    parsed: dict[str, Any] = orjson.loads(codec.build_request(texts, kind).body)
    return parsed


def by_type(name: str, rows: list[list[Any]], tokens: int | None = 3, **extra: Any) -> bytes:
    """A v2 by-type response body, keys in Cohere's order."""
    meta: dict[str, Any] = {"api_version": {"version": "2"}}
    if tokens is not None:
        meta["billed_units"] = {"input_tokens": tokens, "image_tokens": 0}
    doc = {"id": "b718ab17-27e0-45d1-8918-fffc235a1b7d", "texts": ["t"] * len(rows),
           "embeddings": {name: rows}, "meta": meta, "response_type": "embeddings_by_type",
           **extra}  # fmt: skip
    return orjson.dumps(doc)


# -- requests ----------------------------------------------------------------------------------
def test_default_request_url_auth_and_body() -> None:
    """embed-v4.0 posts model, texts, search_document, float and truncate NONE to /v2/embed."""
    codec = make()
    request = codec.build_request(["Why is the sky blue?", "What is a vector?"])
    assert (request.method, request.url) == ("POST", "https://api.cohere.com/v2/embed")
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert KEY not in repr(codec) and KEY not in repr(request)
    assert list(orjson.loads(request.body).items()) == [
        ("model", "embed-v4.0"),
        ("texts", ["Why is the sky blue?", "What is a vector?"]),
        ("input_type", "search_document"),
        ("embedding_types", ["float"]),
        ("truncate", "NONE"),
    ]


def test_input_type_follows_kind_profile_and_call() -> None:
    """Queries send search_query, documents search_document; the profile and a per-call native
    type (classification) replace them, and prefixes go before the texts."""
    assert body_of(make(), ["q"], "query")["input_type"] == "search_query"
    assert body_of(make(), ["d"], "document")["input_type"] == "search_document"
    assert body_of(make(), ["c"], "classification")["input_type"] == "classification"
    custom = make(query_input_type="clustering", document_input_type="classification",
                  query_prefix="Q: ", document_prefix="D: ")  # fmt: skip
    query, doc = body_of(custom, ["a"], "query"), body_of(custom, ["b"])
    assert (query["input_type"], query["texts"]) == ("clustering", ["Q: a"])
    assert (doc["input_type"], doc["texts"]) == ("classification", ["D: b"])
    assert body_of(custom, ["c"], "clustering")["texts"] == ["c"]  # no prefix for native types


@pytest.mark.parametrize(
    ("dtype", "name"),
    [("float32", "float"), ("int8", "int8"), ("uint8", "uint8"), ("binary", "binary"),
     ("ubinary", "ubinary")],
)  # fmt: skip
def test_dtype_chooses_the_embedding_type(dtype: str, name: str) -> None:
    """Each dtype asks for Cohere's embedding type of that name, and only that one."""
    assert body_of(make(dtype=dtype), ["a"])["embedding_types"] == [name]


@pytest.mark.parametrize(
    ("model", "dimensions", "sent"),
    [
        ("embed-v4.0", None, None),
        ("embed-v4.0", 1536, None),
        ("embed-v4.0", 256, 256),
        ("embed-v4.0", 1024, 1024),
        ("embed-english-v3.0", 1024, None),
        ("embed-english-light-v3.0", 384, None),
        ("embed-future-model", 768, None),  # unknown models never get output_dimension
    ],
)
def test_output_dimension_only_off_native(model: str, dimensions: int | None, sent: int | None):
    """output_dimension is sent only when embed-v4 is asked for one of its other sizes."""
    body = body_of(make(model, dimensions=dimensions), ["a"])
    assert body.get("output_dimension") == sent and ("output_dimension" in body) is bool(sent)


@pytest.mark.parametrize(
    ("model", "dimensions"),
    [("embed-v4.0", 768), ("embed-v4.0", 2048), ("embed-english-v3.0", 512),
     ("embed-multilingual-light-v3.0", 1024)],
)  # fmt: skip
def test_sizes_a_model_cannot_produce_are_refused(model: str, dimensions: int) -> None:
    """v4 takes 256/512/1024/1536 only; the v3 models are fixed: ConfigurationError."""
    with pytest.raises(ConfigurationError) as info:
        make(model, dimensions=dimensions)
    assert info.value.field == "dimensions"


def test_keys_from_the_environment_in_the_sdk_order() -> None:
    """CO_API_KEY wins over COHERE_API_KEY; api_key_env names another; none names both."""
    profile = ProviderProfile(provider="cohere", model="embed-v4.0")

    def auth(env: dict[str, str], p: ProviderProfile = profile) -> str:
        return CohereCodec(p, environ=env).build_request(["a"]).headers["Authorization"]

    assert auth({"CO_API_KEY": "first", "COHERE_API_KEY": "second"}) == "Bearer first"
    assert auth({"CO_API_KEY": " ", "COHERE_API_KEY": "second"}) == "Bearer second"
    assert auth({"MY_KEY": "mine", "CO_API_KEY": "x"}, profile.evolve(api_key_env="MY_KEY")) == (
        "Bearer mine"
    )
    with pytest.raises(ConfigurationError, match=r"CO_API_KEY.*COHERE_API_KEY") as info:
        CohereCodec(profile, environ={})
    assert info.value.field == "api_key"


@pytest.mark.parametrize(
    ("env_url", "url"),
    [
        ("https://proxy.example/cohere", "https://proxy.example/cohere/v2/embed"),
        ("https://api.cohere.com/v1", "https://api.cohere.com/v2/embed"),
        ("https://api.cohere.ai/v2/", "https://api.cohere.ai/v2/embed"),
    ],
)
def test_base_url_from_co_api_url(env_url: str, url: str) -> None:
    """CO_API_URL is the API root (a trailing /v1 or /v2 is dropped); the profile's wins."""
    profile = ProviderProfile(provider="cohere", model="embed-v4.0")
    env = {"CO_API_KEY": KEY, "CO_API_URL": env_url}
    assert CohereCodec(profile, environ=env).url == url
    pinned = profile.evolve(base_url="https://pinned.example")
    assert CohereCodec(pinned, environ=env).url == "https://pinned.example/v2/embed"
    with pytest.raises(ConfigurationError) as info:
        CohereCodec(profile, environ={"CO_API_KEY": KEY, "CO_API_URL": "ftp://x"})
    assert info.value.field == "base_url"


def test_extra_body_overrides_fields_but_not_texts_or_types() -> None:
    """extra_body can set truncate END or priority; texts and embedding_types are refused."""
    body = body_of(make(extra_body={"truncate": "END", "priority": 1}), ["a"])
    assert (body["truncate"], body["priority"]) == ("END", 1)
    for field in ("texts", "embedding_types"):
        with pytest.raises(ConfigurationError) as info:
            make(extra_body={field: ["x"]})
        assert info.value.field == "extra_body"


def test_token_ids_are_refused_before_any_request() -> None:
    """A non-string item is an InputValidationError naming its index."""
    with pytest.raises(InputValidationError) as info:
        make().build_request(["ok", [1, 2]])  # type: ignore[list-item]
    assert info.value.index == 1


def test_make_codec_builds_it() -> None:
    """The registry builds a CohereCodec for provider "cohere"."""
    profile = ProviderProfile(provider="cohere", model="embed-v4.0")
    assert isinstance(make_codec(profile, api_key=KEY, environ={}), CohereCodec)


# -- responses ---------------------------------------------------------------------------------
def test_by_type_float_response() -> None:
    """embeddings.float rows come back in order, with meta.billed_units.input_tokens."""
    rows = [[0.25, -0.5, 0.125], [1.0, 0.0, -1.0]]
    result = make().parse_response(200, {}, by_type("float", rows, 7), n_inputs=2, dimensions=3)
    assert result.vectors.dtype == np.float32
    np.testing.assert_array_equal(result.vectors, np.array(rows, dtype=np.float32))
    assert (result.prompt_tokens, result.model, result.rate_limit) == (7, None, None)


def test_v1_floats_shape_and_token_fallbacks() -> None:
    """The v1 bare-list shape is read for float; tokens fall back to num_tokens, and 4.0 is 4."""
    body = orjson.dumps({"id": "x", "embeddings": [[0.5, 0.5]], "texts": ["a"],
                         "response_type": "embeddings_floats"})  # fmt: skip
    result = make().parse_response(200, {"Num_Tokens": "2"}, body, n_inputs=1, dimensions=None)
    assert result.vectors.tolist() == [[0.5, 0.5]] and result.prompt_tokens == 2
    floaty = by_type("float", [[1.0]], tokens=None, meta={"billed_units": {"input_tokens": 4.0}})
    assert make().parse_response(200, {}, floaty, n_inputs=1, dimensions=1).prompt_tokens == 4


@pytest.mark.parametrize(
    ("dtype", "rows"),
    [("int8", [[-128, 0, 127], [5, -5, 1]]), ("uint8", [[0, 128, 255], [1, 2, 3]]),
     ("binary", [[-128, 127], [0, -1]]), ("ubinary", [[0, 255], [170, 85]])],
)  # fmt: skip
def test_compact_types_come_back_exactly(dtype: str, rows: list[list[int]]) -> None:
    """int8/uint8/binary/ubinary values come back exactly, as float32 rows, into ``out``."""
    name = dtype
    out = np.zeros((2, len(rows[0])), dtype=np.float32)
    result = make(dtype=dtype).parse_response(
        200, {}, by_type(name, rows), n_inputs=2, dimensions=len(rows[0]), out=out
    )
    assert result.vectors is out
    np.testing.assert_array_equal(out, np.array(rows, dtype=np.float32))


@pytest.mark.parametrize(
    ("dtype", "body", "needle"),
    [
        ("float32", by_type("float", [[0.1, 0.2]]), "got 1 embeddings for 2"),
        ("float32", by_type("float", [[0.1, 0.2], [0.3]]), "equal-length"),
        ("float32", by_type("float", [[0.1, 0.2], [0.3, "0.4"]]), "not all numbers"),
        ("float32", by_type("float", [[0.1, 0.2], [0.3, None]]), "not all numbers"),
        ("float32", by_type("float", [[0.1, 0.2], [0.3, 1e39]]), "NaN or infinite"),
        ("float32", by_type("float", [[0.1, 0.2, 0.3], [0.3, 0.4, 0.5]]), "expected 2"),
        ("float32", by_type("float", [[0.1, 0.2], {"a": 1}]), "not a list"),
        ("float32", by_type("int8", [[1, 2], [3, 4]]), r"no 'float' embeddings \(it has: int8\)"),
        ("int8", orjson.dumps({"embeddings": [[1, 2], [3, 4]]}), "float embeddings, not"),
        ("int8", by_type("int8", [[1, 2], [3, 128]]), "outside -128..127"),
        ("int8", by_type("int8", [[1, 2], [3, 4.5]]), "not all integers"),
        ("uint8", by_type("uint8", [[1, 2], [3, -1]]), "outside 0..255"),
        ("binary", by_type("binary", [[1, 2], [3, 200]]), "outside -128..127"),
        ("float32", orjson.dumps({"id": "x", "meta": {}}), "'embeddings' is NoneType"),
        ("float32", b'{"embeddings": {"float": [[0.1, NaN], [0.3, 0.4]]}}', "non-JSON"),
    ],
)
def test_bad_bodies_are_never_vectors(dtype: str, body: bytes, needle: str) -> None:
    """Wrong count, ragged, non-numbers, nulls, inf, wrong width, wrong type, out-of-range
    integers, missing embeddings and NaN are ResponseValidationErrors."""
    with pytest.raises(ResponseValidationError, match=needle) as info:
        make(dtype=dtype).parse_response(200, {}, body, n_inputs=2, dimensions=2)
    assert info.value.status_code == 200


def test_error_document_in_a_200_is_a_server_error() -> None:
    """{"id", "message"} with status 200 is the server error it names, not vectors."""
    body = b'{"id":"e1","message":"internal server error, this has been reported"}'
    with pytest.raises(ServerError) as info:
        make().parse_response(200, {}, body, n_inputs=1, dimensions=None)
    assert info.value.retryable and info.value.request_id == "e1"


def test_decode_is_as_fast_as_the_openai_float_path() -> None:
    """A 96 x 1536 float response decodes within 2x of OpenAI's float path (min of 7 runs)."""
    vectors = np.random.default_rng(0).standard_normal((96, 1536)).astype(np.float32)
    rows = vectors.tolist()
    cohere_body = by_type("float", rows, 960)
    items = [{"object": "embedding", "index": i, "embedding": r} for i, r in enumerate(rows)]
    openai_body = orjson.dumps({"object": "list", "data": items, "model": "m",
                                "usage": {"prompt_tokens": 960, "total_tokens": 960}})  # fmt: skip
    openai = make_codec(ProviderProfile(provider="openai", model="text-embedding-3-small"),
                        api_key=KEY, environ={})  # fmt: skip
    cohere = make()
    best = {"cohere": 1e9, "openai": 1e9}
    for _ in range(7):  # interleaved, so both see the same machine load
        for name, codec, body in (("cohere", cohere, cohere_body), ("openai", openai, openai_body)):
            start = time.perf_counter()
            result = codec.parse_response(200, {}, body, n_inputs=96, dimensions=1536)
            best[name] = min(best[name], time.perf_counter() - start)
            np.testing.assert_array_equal(result.vectors, vectors)
    print(f"96x1536 floats: cohere {best['cohere'] * 1e3:.1f} ms, "
          f"openai {best['openai'] * 1e3:.1f} ms")  # fmt: skip
    assert best["cohere"] <= 2 * best["openai"]


# -- errors ------------------------------------------------------------------------------------
def error(status: int, doc: dict[str, Any], headers: dict[str, str] | None = None) -> Exception:
    """The exception parse_response raises for this error reply."""
    with pytest.raises(Exception) as info:
        make().parse_response(status, headers or {}, orjson.dumps(doc), n_inputs=1,
                              dimensions=None)  # fmt: skip
    return info.value


TRIAL = "You are using a Trial key, which is limited to {} API calls / {}. You can continue"


@pytest.mark.parametrize(
    ("status", "doc", "expected", "retryable"),
    [
        (400, {"id": "i", "message": "invalid request: texts must not be empty"},
         BadRequestError, False),
        (400, {"error_type": "TOO_MANY_TOKENS", "id": "i",
               "message": "too many tokens: size limit exceeded by 12 tokens."},
         ContextLengthError, False),
        (401, {"id": "i", "message": "invalid api token"}, AuthenticationError, False),
        (403, {"message": "Forbidden"}, AuthenticationError, False),
        (402, {"id": "i", "message": "Please add a payment method"}, QuotaExhaustedError, False),
        (404, {"id": "i", "message": "model 'nope' not found, make sure the correct model ID was "
               "used and that you have access to the model."}, ModelNotFoundError, False),
        (429, {"id": "i", "message": TRIAL.format(100, "minute")}, RateLimitError, True),
        (429, {"id": "i", "message": TRIAL.format(1000, "month")}, QuotaExhaustedError, False),
        (498, {"id": "i", "message": "invalid token"}, AuthenticationError, False),
        (498, {"id": "i", "message": "blocked: unsafe request"}, BadRequestError, False),
        (499, {"id": "i", "message": "request cancelled"}, ServerError, True),
        (500, {"id": "i", "message": "internal server error"}, ServerError, True),
        (503, {"id": "i", "message": "service unavailable"}, ServerError, True),
    ],
)  # fmt: skip
def test_error_statuses_are_typed(status: int, doc: dict[str, Any], expected: type,
                                  retryable: bool) -> None:  # fmt: skip
    """Each status and message becomes its typed error; the body's id is the request id."""
    exc = error(status, doc)
    assert type(exc) is expected
    assert (exc.status_code, exc.retryable) == (status, retryable)  # type: ignore[attr-defined]
    assert exc.request_id == doc.get("id")  # type: ignore[attr-defined]


def test_too_long_wording_names_the_input() -> None:
    """Another too-long wording is a ContextLengthError with the index the message names."""
    exc = error(400, {"id": "i", "message": "the text at index 3 is too long for this model"})
    assert isinstance(exc, ContextLengthError) and exc.index == 3


def test_trace_header_is_the_id_without_a_body_id_and_the_key_is_redacted() -> None:
    """x-debug-trace-id names the request when the body has no id; the key never shows."""
    exc = error(401, {"message": f"bad key {KEY}"}, {"X-Debug-Trace-Id": "abc123"})
    assert exc.request_id == "abc123"  # type: ignore[attr-defined]
    assert KEY not in str(exc) and "***" in str(exc)


# -- headers -----------------------------------------------------------------------------------
def test_trial_headers_are_a_request_limit() -> None:
    """x-trial-endpoint-call-limit/-remaining are the per-minute request limit; the monthly
    cap is not a rate; a production response states nothing."""
    headers = {"X-Trial-Endpoint-Call-Limit": "100", "X-Trial-Endpoint-Call-Remaining": "99",
               "X-Endpoint-Monthly-Call-Limit": "1000", "num_tokens": "7"}  # fmt: skip
    result = make().parse_response(200, headers, by_type("float", [[1.0]]), n_inputs=1,
                                   dimensions=1)  # fmt: skip
    expected = RateLimitInfo(limit_requests=100, remaining_requests=99)
    assert result.rate_limit == expected
    assert rate_limit_info("cohere", headers) == expected  # what a 429's headers say
    assert rate_limit_info("cohere", {"x-endpoint-monthly-call-limit": "1000"}) is None
    garbage = {"x-trial-endpoint-call-limit": "-1", "x-trial-endpoint-call-remaining": "1e300"}
    assert rate_limit_info("cohere", garbage) is None
