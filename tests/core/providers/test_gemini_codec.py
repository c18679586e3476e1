"""Gemini codec (sans-IO): request bodies, response validation, Google RPC error mapping."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import pytest

from embedguard import profiles
from embedguard.core.config import ProviderProfile
from embedguard.core.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ContextLengthError,
    EndpointNotFoundError,
    InputValidationError,
    ModelNotFoundError,
    ProviderTimeoutError,
    RateLimitError,
    ResponseValidationError,
    ServerError,
)
from embedguard.core.providers import GeminiCodec, make_codec
from embedguard.core.providers._google_rpc import google_rpc_error, rpc_retry_delay

KEY = "AIzaSyPLANTED-gemini-codec-key-0011223344"


def codec(**fields: Any) -> GeminiCodec:
    """A Gemini codec for gemini-embedding-001 (fields override the profile)."""
    profile = ProviderProfile.from_dict({"provider": "gemini", **fields})
    built = make_codec(profile, api_key=KEY, environ={})
    assert isinstance(built, GeminiCodec)
    return built


def envelope(code: int, status: str, message: str, *details: dict[str, Any]) -> bytes:
    """A Google RPC error body."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = list(details)
    return orjson.dumps({"error": error})


def info(reason: str) -> dict[str, Any]:
    """A google.rpc.ErrorInfo detail."""
    return {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
            "domain": "googleapis.com"}  # fmt: skip


def retry(delay: str) -> dict[str, Any]:
    """A google.rpc.RetryInfo detail."""
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}


def parse(body: bytes, n: int = 2, status: int = 200, dims: int | None = None) -> Any:
    """Parse ``body`` as a reply to ``n`` texts."""
    return codec().parse_response(status, {}, body, n_inputs=n, dimensions=dims)


# -- requests ----------------------------------------------------------------------------------
def test_model_prefix_and_dimensions_in_every_entry() -> None:
    """models/x and x give the same URL and body; a smaller size is asked per entry."""
    for model in ("gemini-embedding-001", "models/gemini-embedding-001"):
        request = codec(model=model, dimensions=768).build_request(["a", "b"], "query")
        assert request.url == ("https://generativelanguage.googleapis.com/v1beta/models/"
                               "gemini-embedding-001:batchEmbedContents")  # fmt: skip
        entries = orjson.loads(request.body)["requests"]
        assert [e["content"]["parts"][0]["text"] for e in entries] == ["a", "b"]
        assert {(e["model"], e["taskType"], e["outputDimensionality"]) for e in entries} == {
            ("models/gemini-embedding-001", "RETRIEVAL_QUERY", 768)
        }


def test_prefixes_and_extra_body_reach_each_entry() -> None:
    """Profile prefixes go before each text; extra_body fields go into every entry."""
    built = codec(document_prefix="title: none | text: ", extra_body={"title": "Doc"})
    (entry,) = orjson.loads(built.build_request(["body"]).body)["requests"]
    assert entry["content"]["parts"][0]["text"] == "title: none | text: body"
    assert (entry["title"], entry["taskType"]) == ("Doc", "RETRIEVAL_DOCUMENT")


def test_the_key_stays_out_of_reprs_and_urls() -> None:
    """The key is only in the x-goog-api-key header: not in the URL nor the repr."""
    built = codec()
    request = built.build_request(["a"])
    assert request.headers["x-goog-api-key"] == KEY
    assert KEY not in request.url and KEY not in repr(built) and KEY not in repr(request)


def test_non_strings_and_bad_task_types_are_refused() -> None:
    """Token ids and unknown task types are InputValidationErrors before any request."""
    with pytest.raises(InputValidationError):
        codec().build_request([[1, 2, 3]])  # type: ignore[list-item]
    with pytest.raises(InputValidationError):
        codec().build_request(["a"], "search_document")
    with pytest.raises(ConfigurationError):
        codec(document_input_type="passage")


def test_keys_and_base_url_from_the_environment() -> None:
    """GOOGLE_API_KEY wins over GEMINI_API_KEY; GOOGLE_GEMINI_BASE_URL is the API root."""
    profile = ProviderProfile(provider="gemini", model="gemini-embedding-001")
    base = {"GOOGLE_GEMINI_BASE_URL": "http://proxy.internal:8080/"}
    for env in ({"GOOGLE_API_KEY": KEY, "GEMINI_API_KEY": "other"}, {"GEMINI_API_KEY": KEY}):
        request = make_codec(profile, environ={**base, **env}).build_request(["x"])
        assert request.headers["x-goog-api-key"] == KEY
        assert request.url == (
            "http://proxy.internal:8080/v1beta/models/gemini-embedding-001:batchEmbedContents"
        )


def test_a_versioned_base_url_is_used_as_is() -> None:
    """A base URL ending in /v1 selects that API version instead of v1beta."""
    built = codec(base_url="https://generativelanguage.googleapis.com/v1")
    assert built.url.endswith("/v1/models/gemini-embedding-001:batchEmbedContents")


def test_missing_key_and_bad_settings_are_configuration_errors() -> None:
    """No key names both variables; sizes the model cannot produce and bad ids are refused."""
    with pytest.raises(ConfigurationError, match="GOOGLE_API_KEY or GEMINI_API_KEY") as info:
        make_codec(profiles.gemini(), environ={})
    assert info.value.field == "api_key"
    for bad in (profiles.gemini(dimensions=4096), profiles.gemini("embedding-001", dimensions=256)):
        with pytest.raises(ConfigurationError) as sized:
            make_codec(bad, api_key=KEY, environ={})
        assert sized.value.field == "dimensions"
    with pytest.raises(ConfigurationError):
        profiles.gemini("models/a:b")
    with pytest.raises(ConfigurationError) as model:
        make_codec(ProviderProfile(provider="gemini", model="x/y"), api_key=KEY, environ={})
    assert model.value.field == "model"


def test_profile_defaults() -> None:
    """profiles.gemini: 100 texts per request, 2,048 tokens per text (8,192 for
    gemini-embedding-2), native 3072 d for gemini-embedding-001, tier-1 assumed limits."""
    default = profiles.gemini()
    assert (default.model, default.dimensions, default.batching.max_inputs) == (
        "gemini-embedding-001", 3072, 100
    )  # fmt: skip
    assert default.batching.max_tokens_per_input == 2048
    assert profiles.gemini("models/gemini-embedding-2").batching.max_tokens_per_input == 8192
    assert profiles.gemini("gemini-embedding-2").dimensions is None  # learned from the reply
    limit = profiles.assumed_rate_limit("gemini")
    assert limit is not None and (limit.requests_per_minute, limit.tokens_per_minute) == (
        3000, 1_000_000
    )  # fmt: skip
    assert profiles.get("gemini", dimensions=768) == profiles.gemini(dimensions=768)


# -- responses ---------------------------------------------------------------------------------
def test_values_in_request_order_and_usage() -> None:
    """embeddings[i].values is text i's vector; usageMetadata.promptTokenCount is the usage."""
    doc = {"embeddings": [{"values": [0.5, -0.25]}, {"values": [1e-8, 3.0]}],
           "usageMetadata": {"promptTokenCount": 7}}  # fmt: skip
    result = parse(orjson.dumps(doc))
    np.testing.assert_array_equal(result.vectors, np.array([[0.5, -0.25], [1e-8, 3.0]], "f4"))
    assert (result.prompt_tokens, result.model, result.rate_limit) == (7, None, None)


@pytest.mark.parametrize(
    "usage", [None, {}, {"promptTokenCount": -1}, {"promptTokenCount": True}, "7"]
)
def test_missing_or_odd_usage_reads_as_unknown(usage: Any) -> None:
    """No usage (gemini-embedding-001) or an unusable one: prompt_tokens is None."""
    doc: dict[str, Any] = {"embeddings": [{"values": [1.0]}, {"values": [2.0]}]}
    if usage is not None:
        doc["usageMetadata"] = usage
    assert parse(orjson.dumps(doc)).prompt_tokens is None


@pytest.mark.parametrize(
    "body",
    [
        b'{"embeddings": [{"values": [1.0, 2.0]}]}',  # one vector for two texts
        b'{"embeddings": [{"values": [1.0]}, {"values": [1.0]}, {"values": [1.0]}]}',
        b'{"embeddings": [{"values": [1.0, 2.0]}, {"values": [1.0]}]}',  # ragged
        b'{"embeddings": [{"values": [1.0]}, {"value": [1.0]}]}',
        b'{"embeddings": [{"values": [1.0]}, [1.0]]}',
        b'{"embeddings": [{"values": []}, {"values": []}]}',
        b'{"embeddings": [{"values": [1.0]}, {"values": ["x"]}]}',
        b'{"embeddings": [{"values": [1.0]}, {"values": [1e39]}]}',  # inf as float32
        b'{"embedding": {"values": [1.0]}}',  # the single-text shape
        b'{"embeddings": {"values": [1.0]}}',
        b"<html>502</html>",
        b"",
    ],
)
def test_a_bad_200_raises_and_returns_nothing(body: bytes) -> None:
    """Wrong count, shape, type, size or finiteness: ResponseValidationError, never vectors."""
    with pytest.raises(ResponseValidationError):
        parse(body)


def test_the_expected_size_is_enforced() -> None:
    """Vectors of another size than the profile's are refused."""
    with pytest.raises(ResponseValidationError, match="expected 3"):
        parse(b'{"embeddings": [{"values": [1.0, 2.0]}, {"values": [3.0, 4.0]}]}', dims=3)


# -- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "body", "error", "code"),
    [
        (400, envelope(400, "INVALID_ARGUMENT", "API key not valid.", info("API_KEY_INVALID")),
         AuthenticationError, "API_KEY_INVALID"),
        (403, envelope(403, "PERMISSION_DENIED", "Generative Language API has not been used",
                       info("SERVICE_DISABLED")), AuthenticationError, "SERVICE_DISABLED"),
        (404, envelope(404, "NOT_FOUND", "models/x is not found for API version v1beta"),
         ModelNotFoundError, "NOT_FOUND"),
        (400, envelope(400, "FAILED_PRECONDITION", "User location is not supported"),
         BadRequestError, "FAILED_PRECONDITION"),
        (400, envelope(400, "INVALID_ARGUMENT",
                       "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one "
                       "batch\n"), BadRequestError, "INVALID_ARGUMENT"),
        (400, envelope(400, "INVALID_ARGUMENT", "Request payload size exceeds the limit: 4194304 "
                       "bytes."), ContextLengthError, "INVALID_ARGUMENT"),
        (429, envelope(429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric",
                       info("RATE_LIMIT_EXCEEDED")), RateLimitError, "RATE_LIMIT_EXCEEDED"),
        (500, envelope(500, "INTERNAL", "An internal error has occurred."), ServerError,
         "INTERNAL"),
        (503, envelope(503, "UNAVAILABLE", "The model is overloaded."), ServerError,
         "UNAVAILABLE"),
        (504, envelope(504, "DEADLINE_EXCEEDED", "Deadline expired"), ProviderTimeoutError,
         "DEADLINE_EXCEEDED"),
        (200, envelope(429, "RESOURCE_EXHAUSTED", "in a 200"), RateLimitError,
         "RESOURCE_EXHAUSTED"),
    ],
    ids=["bad-key-400", "403", "404", "precondition", "batch-cap", "payload", "429", "500",
         "503", "504", "error-in-200"],
)  # fmt: skip
def test_rpc_envelopes_map_to_typed_errors(
    status: int, body: bytes, error: type[Exception], code: str
) -> None:
    """Status, RPC status and ErrorInfo reason decide the class; code is reason or status."""
    with pytest.raises(error) as raised:
        parse(body, status=status)
    assert type(raised.value) is error
    assert (raised.value.code, raised.value.status_code) == (code, status)  # type: ignore[attr-defined]


def test_the_item_a_too_long_input_error_names() -> None:
    """A token-limit error naming requests[3] gives index 3."""
    body = envelope(400, "INVALID_ARGUMENT", "* BatchEmbedContentsRequest.requests[3].content: "
                    "The input token count (3121) exceeds the maximum number of tokens allowed "
                    "(2048).")  # fmt: skip
    error = google_rpc_error("gemini", 400, {}, body)
    assert isinstance(error, ContextLengthError) and error.index == 3


@pytest.mark.parametrize(
    ("headers", "details", "message", "expected"),
    [
        ({}, [retry("48s")], "", 48.0),
        ({}, [retry("0.250s")], "", 0.25),
        ({"Retry-After": "3"}, [retry("48s")], "", 3.0),  # a proxy's header first
        ({}, [], "...\nPlease retry in 48.939935699s.", 48.939935699),
        ({}, [retry("soon")], "", None),
        ({}, [], "no hint here", None),
        ({}, [retry("315576000000s")], "", 86_400.0),  # a Duration's maximum, bounded to a day
    ],
)
def test_retry_hints(
    headers: dict[str, str], details: list[dict[str, Any]], message: str, expected: float | None
) -> None:
    """Retry-After, else RetryInfo.retryDelay, else the message's "retry in"; bounded."""
    body = envelope(429, "RESOURCE_EXHAUSTED", message or "Quota exceeded", *details)
    error = google_rpc_error("gemini", 429, headers, body)
    assert isinstance(error, RateLimitError)
    if expected is None:
        assert error.retry_after is None
    else:
        assert error.retry_after is not None and math.isclose(error.retry_after, expected)


def test_retry_delay_reader_ignores_other_details() -> None:
    """Only google.rpc.RetryInfo counts; non-lists and other types read as no delay."""
    assert rpc_retry_delay([info("X"), {"retryDelay": "5s"}, retry("2s")]) == 2.0
    assert rpc_retry_delay("48s") is None and rpc_retry_delay([retry("5ms")]) is None


def test_non_google_bodies_use_the_shared_classifier() -> None:
    """An HTML 404 is a wrong base_url (URL shown, key hidden); a gateway's OpenAI-style 429
    and a plain 502 page are read as for any provider."""
    url = f"https://proxy.example/v1beta/models/m:batchEmbedContents?key={KEY}"
    missing = google_rpc_error("gemini", 404, {}, b"<html>404</html>", secrets=[KEY], url=url)
    assert isinstance(missing, EndpointNotFoundError) and "base_url" in str(missing)
    assert KEY not in str(missing) and missing.url is not None and KEY not in missing.url
    gateway = orjson.dumps({"error": {"message": "slow down", "type": "rate_limit"}})
    assert isinstance(google_rpc_error("gemini", 429, {"retry-after": "2"}, gateway),
                      RateLimitError)  # fmt: skip
    assert isinstance(google_rpc_error("gemini", 502, {}, b"<html>bad</html>"), ServerError)


def test_secrets_are_scrubbed_from_messages() -> None:
    """A key echoed in an error message is replaced before it reaches the error."""
    body = envelope(400, "INVALID_ARGUMENT", f"API key {KEY} not valid", info("API_KEY_INVALID"))
    error = google_rpc_error("gemini", 400, {}, body, secrets=[KEY])
    assert KEY not in str(error) and "***" in str(error)
