"""error_from_response: every error body shape maps to the right typed error."""
# ruff: noqa: E501  (provider error bodies are quoted verbatim, on one line each)

from __future__ import annotations

import pytest

from embedguard.core.errors import (
    AuthenticationError,
    BadRequestError,
    ContextLengthError,
    EndpointNotFoundError,
    ModelNotFoundError,
    ProviderError,
    ProviderTimeoutError,
    QuotaExhaustedError,
    RateLimitError,
    ServerError,
)
from embedguard.core.providers import error_from_response

OPENAI_401 = b"""{
    "error": {
        "message": "Incorrect API key provided: sk-wrong****-key. You can find your API key at https://platform.openai.com/account/api-keys.",
        "type": "invalid_request_error",
        "param": null,
        "code": "invalid_api_key"
    }
}
"""
OPENAI_404 = b"""{
  "error": {
    "message": "The model `non-existent-embedding-model` does not exist or you do not have access to it.",
    "type": "invalid_request_error",
    "param": null,
    "code": "model_not_found"
  }
}"""
OPENAI_TPM = (
    b'{"error":{"message":"Rate limit reached for text-embedding-3-small in organization org-XXXX'
    b" on tokens per min (TPM): Limit 1000000, Used 976163, Requested 70716. Please try again in"
    b' 2.812s. Visit https://platform.openai.com/account/rate-limits to learn more.","type":"tokens"'
    b',"param":null,"code":"rate_limit_exceeded"}}'
)
AZURE_429 = (
    b'{"error":{"code":"429","message":"Your requests to emb for text-embedding-3-small in eastus'
    b" have exceeded the token rate limit for your current AIServices S0 pricing tier. Please retry"
    b' after 45 seconds."}}'
)
HTML_502 = b"""<html>
<head><title>502 Bad Gateway</title></head>
<body>
<center><h1>502 Bad Gateway</h1></center>
<hr><center>nginx</center>
</body>
</html>
"""


def _openai_error(message: str, type_: str, code: str | None) -> bytes:
    code_json = "null" if code is None else f'"{code}"'
    return (
        f'{{"error":{{"message":"{message}","type":"{type_}","param":null,"code":{code_json}}}}}'
    ).encode()


def test_openai_401_is_authentication_with_code_and_request_id() -> None:
    """A pretty-printed OpenAI 401 becomes AuthenticationError carrying code and request id."""
    err = error_from_response("openai", 401, {"x-request-id": "req_abc"}, OPENAI_401)
    assert type(err) is AuthenticationError
    assert err.code == "invalid_api_key"
    assert err.request_id == "req_abc"
    assert err.status_code == 401
    assert "Incorrect API key provided" in err.message
    assert not err.retryable


def test_403_is_authentication() -> None:
    """A 403 is treated like a 401."""
    err = error_from_response("x", 403, {}, b'{"error":"forbidden"}')
    assert type(err) is AuthenticationError


def test_openai_404_is_model_not_found() -> None:
    """OpenAI's 404 model_not_found becomes ModelNotFoundError (a BadRequestError)."""
    err = error_from_response("openai", 404, {"X-Request-ID": "req_1"}, OPENAI_404)
    assert type(err) is ModelNotFoundError
    assert isinstance(err, BadRequestError)
    assert err.code == "model_not_found"
    assert err.request_id == "req_1"


def test_408_is_timeout_and_409_is_retryable_server_error() -> None:
    """408 maps to ProviderTimeoutError and 409 to a retryable ServerError."""
    timeout = error_from_response("x", 408, {}, b"")
    conflict = error_from_response("x", 409, {}, b'{"error":{"message":"conflict"}}')
    assert type(timeout) is ProviderTimeoutError
    assert type(conflict) is ServerError
    assert conflict.retryable


@pytest.mark.parametrize(
    ("hint", "seconds"),
    [("2.812s", 2.812), ("20s", 20.0), ("1m30s", 90.0), ("6ms", 0.006)],
)
def test_rate_limit_reads_try_again_hint(hint: str, seconds: float) -> None:
    """The "Please try again in ..." hint in OpenAI's message becomes retry_after."""
    body = _openai_error(f"Rate limit reached. Please try again in {hint}. Visit", "tokens", None)
    err = error_from_response("openai", 429, {}, body)
    assert type(err) is RateLimitError
    assert err.retry_after == pytest.approx(seconds)


def test_rate_limit_realistic_tpm_body() -> None:
    """The full OpenAI TPM body gives retry_after 2.812 and code rate_limit_exceeded."""
    err = error_from_response("openai", 429, {}, OPENAI_TPM)
    assert isinstance(err, RateLimitError)
    assert err.retry_after == pytest.approx(2.812)
    assert err.code == "rate_limit_exceeded"
    assert err.retryable


def test_retry_after_headers_beat_the_message() -> None:
    """retry-after-ms wins over Retry-After, and both win over the message hint."""
    ms = error_from_response(
        "openai", 429, {"retry-after-ms": "1500", "Retry-After": "9"}, OPENAI_TPM
    )
    sec = error_from_response("openai", 429, {"Retry-After": "7"}, OPENAI_TPM)
    assert isinstance(ms, RateLimitError)
    assert isinstance(sec, RateLimitError)
    assert ms.retry_after == pytest.approx(1.5)
    assert sec.retry_after == pytest.approx(7.0)


def test_azure_429_reads_retry_after_seconds_hint_and_apim_id() -> None:
    """Azure's "Please retry after 45 seconds" and apim-request-id are picked up."""
    err = error_from_response("azure", 429, {"apim-request-id": "a-1"}, AZURE_429)
    assert isinstance(err, RateLimitError)
    assert err.retry_after == pytest.approx(45.0)
    assert err.code == "429"
    assert err.request_id == "a-1"


def test_rate_limit_without_any_hint_has_no_retry_after() -> None:
    """Mistral's bare rate-limit message gives a RateLimitError with retry_after None."""
    err = error_from_response("mistral", 429, {}, b'{"message":"Requests rate limit exceeded"}')
    assert isinstance(err, RateLimitError)
    assert err.retry_after is None
    assert err.message == "Requests rate limit exceeded"


@pytest.mark.parametrize(
    "code",
    [
        "insufficient_quota",
        "credit_balance_exhausted",
        "organization_spend_limit_exceeded",
        "project_spend_limit_exceeded",
        "organization_usage_limit_exceeded",
    ],
)
def test_quota_family_is_quota_exhausted(code: str) -> None:
    """Every insufficient_quota-family 429 is QuotaExhaustedError, never retried."""
    body = _openai_error("You exceeded your current quota.", "insufficient_quota", code)
    err = error_from_response("openai", 429, {"retry-after": "1"}, body)
    assert type(err) is QuotaExhaustedError
    assert not err.retryable
    assert err.code == code


def test_quota_detected_by_code_alone() -> None:
    """A quota code is recognised even when the type says something else."""
    body = _openai_error("Budget reached.", "requests", "project_spend_limit_exceeded")
    assert type(error_from_response("openai", 429, {}, body)) is QuotaExhaustedError


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (
            400,
            _openai_error(
                "Invalid 'input': maximum context length is 8192 tokens.",
                "invalid_request_error",
                None,
            ),
        ),
        (
            400,
            _openai_error(
                "This model's maximum context length is 8192 tokens, however you requested 8610 tokens (8610 in your prompt; 0 for the completion).",
                "invalid_request_error",
                None,
            ),
        ),
        (
            400,
            _openai_error(
                "Requested 453357 tokens, max 300000 tokens per request",
                "max_tokens_per_request",
                "max_tokens_per_request",
            ),
        ),
        (
            400,
            b'{"object":"error","message":"Too many tokens in batch. Max is 16384 got 17555","type":"invalid_request_error","param":null,"code":null}',
        ),
        (
            400,
            b'{"error":{"code":"context_length_exceeded","message":"The input is too long for this model."}}',
        ),
        (400, b'{"error":"the input length exceeds the context length"}'),
        (
            400,
            b'{"error":{"message":"This model\'s maximum context length is 512 tokens. However, you requested 600 tokens in the input for embedding generation.","type":"BadRequestError","param":null,"code":400}}',
        ),
        (
            413,
            b'{"error":"Input validation error: `inputs` must have less than 512 tokens. Given: 600","error_type":"Validation"}',
        ),
        (
            422,
            b'{"message":"Input validation error: `inputs` must have less than 512 tokens. Given: 600","code":422,"type":"Validation"}',
        ),
        (413, b"<html><body><h1>413 Request Entity Too Large</h1></body></html>"),
    ],
)
def test_too_long_inputs_are_context_length_errors(status: int, body: bytes) -> None:
    """Each provider's "input or batch too long" wording becomes ContextLengthError."""
    err = error_from_response("p", status, {}, body)
    assert type(err) is ContextLengthError
    assert err.status_code == status


def test_other_400_is_plain_bad_request() -> None:
    """A 400 that is not about length stays a BadRequestError."""
    body = _openai_error(
        "This model does not support specifying dimensions.", "invalid_request_error", None
    )
    err = error_from_response("openai", 400, {}, body)
    assert type(err) is BadRequestError
    assert err.code == "invalid_request_error"


def test_context_wording_on_500_is_still_server_error() -> None:
    """Length wording only reclassifies 400/413/422, not a server failure."""
    err = error_from_response("p", 500, {}, b'{"error":"maximum context length exceeded"}')
    assert type(err) is ServerError


def test_server_errors_are_retryable() -> None:
    """A 500 with OpenAI's server_error body is a retryable ServerError."""
    body = _openai_error("The server had an error processing your request.", "server_error", None)
    err = error_from_response("openai", 500, {}, body)
    assert type(err) is ServerError
    assert err.retryable
    assert err.code == "server_error"


def test_html_proxy_page_gives_short_stripped_excerpt() -> None:
    """A non-JSON body yields "non-JSON error body" with a tag-free excerpt."""
    err = error_from_response("openai", 502, {}, HTML_502)
    assert type(err) is ServerError
    assert err.message.startswith("non-JSON error body")
    assert "502 Bad Gateway" in err.message
    assert "<" not in err.message
    assert "\n" not in err.message


def test_long_non_json_body_excerpt_is_bounded() -> None:
    """A huge text body is cut to a short excerpt."""
    err = error_from_response("p", 503, {}, b"x" * 100_000)
    assert len(err.message) < 300


def test_empty_body_is_described() -> None:
    """An empty 503 body still gives a ServerError with a readable message."""
    err = error_from_response("p", 503, {}, b"")
    assert type(err) is ServerError
    assert err.message == "empty error body"


def test_vllm_flat_error_with_int_code() -> None:
    """vLLM's older flat object-error with an int code keeps the type as code."""
    body = (
        b'{"object":"error","message":"The model `foo` does not exist.",'
        b'"type":"NotFoundError","param":null,"code":404}'
    )
    err = error_from_response("vllm", 404, {}, body)
    assert type(err) is ModelNotFoundError
    assert err.code == "NotFoundError"
    assert "does not exist" in err.message


def test_llama_cpp_error_with_int_code() -> None:
    """llama.cpp's nested error with an int code and no param is an AuthenticationError."""
    body = b'{"error":{"code":401,"message":"Invalid API Key","type":"authentication_error"}}'
    err = error_from_response("llama", 401, {}, body)
    assert type(err) is AuthenticationError
    assert err.code == "authentication_error"
    assert err.message == "Invalid API Key"


def test_ollama_flat_model_not_found() -> None:
    """Ollama's flat {"error": "..."} 404 becomes ModelNotFoundError with its text."""
    body = b'{"error":"model \\"xyz\\" not found, try pulling it first"}'
    err = error_from_response("ollama", 404, {}, body)
    assert type(err) is ModelNotFoundError
    assert err.message == 'model "xyz" not found, try pulling it first'


def test_mistral_validation_detail_list() -> None:
    """Mistral's 422 {"detail": [...]} lists the location and message of each problem."""
    body = b'{"detail":[{"loc":["body","input"],"msg":"Field required","type":"missing"}]}'
    err = error_from_response("mistral", 422, {}, body)
    assert type(err) is BadRequestError
    assert "body.input: Field required" in err.message


def test_detail_string_and_body_request_id() -> None:
    """{"detail": "..."} and {"message", "request_id"} bodies are read; headers win for ids."""
    detail = error_from_response("voyage", 401, {}, b'{"detail":"Unauthorized"}')
    body = b'{"message":"Unauthorized","request_id":"933f2339"}'
    from_body = error_from_response("mistral", 401, {}, body)
    from_header = error_from_response("mistral", 401, {"mistral-correlation-id": "0198-c"}, body)
    assert detail.message == "Unauthorized"
    assert type(from_body) is AuthenticationError
    assert from_body.request_id == "933f2339"
    assert from_header.request_id == "0198-c"


def test_mistral_2026_object_error_rate_limit() -> None:
    """Mistral's object-error with string code "1300" is a RateLimitError with that code."""
    body = (
        b'{"object":"error","message":"Rate limit exceeded","type":"rate_limited",'
        b'"param":null,"code":"1300","raw_status_code":429}'
    )
    err = error_from_response("mistral", 429, {}, body)
    assert type(err) is RateLimitError
    assert err.code == "1300"


def test_tei_overloaded_is_rate_limit() -> None:
    """TEI's {"message","code":429,"type":"Overloaded"} is a RateLimitError coded Overloaded."""
    body = b'{"message":"Model is overloaded","code":429,"type":"Overloaded"}'
    err = error_from_response("tei", 429, {}, body)
    assert type(err) is RateLimitError
    assert err.code == "Overloaded"


def test_unrecognised_json_shapes_do_not_crash() -> None:
    """JSON that is not a known error shape still yields an error with an excerpt."""
    for body in (b"[1, 2]", b'{"foo": "bar"}', b'"oops"', b"null", b'{"error": 5}'):
        err = error_from_response("p", 400, {}, body)
        assert type(err) is BadRequestError
        assert err.message


def test_redirect_is_a_bad_request() -> None:
    """A 3xx that reached the codec (redirects not followed) is not retried."""
    err = error_from_response("p", 307, {}, b"")
    assert type(err) is BadRequestError
    assert not err.retryable


def test_secrets_are_redacted_from_message_and_code() -> None:
    """A key echoed in the error text never appears in the error."""
    key = "sk-proj-PLANTEDsecret0123456789"
    body = _openai_error(f"Incorrect API key provided: {key}.", "invalid_request_error", key)
    err = error_from_response("openai", 401, {}, body, secrets=[None, key])
    assert key not in str(err)
    assert key not in repr(err)
    assert key not in (err.code or "")
    assert "***" in err.message


def test_long_message_is_capped() -> None:
    """A very long provider message is cut to a bounded length."""
    err = error_from_response("p", 400, {}, _openai_error("a" * 5000, "t", None))
    assert len(err.message) <= 503


def test_every_result_is_a_provider_error_with_provider_name() -> None:
    """All statuses produce a ProviderError naming the provider."""
    for status in (300, 400, 401, 404, 408, 409, 418, 429, 500, 599):
        err = error_from_response("named", status, {}, b"{}")
        assert isinstance(err, ProviderError)
        assert err.provider == "named"
        assert err.status_code == status


# -- issue 15.5: list-input over-length and 404s that are not about the model -----------------
OPENAI_LIST_TOO_LONG = b"""{
  "error": {
    "message": "Invalid 'input[3]': maximum input length is 8192 tokens.",
    "type": "invalid_request_error",
    "param": "input[3]",
    "code": "invalid_value"
  }
}"""


def test_openai_list_input_over_length_is_context_length_with_index() -> None:
    """OpenAI's wording for an over-long item of an input *list* is a ContextLengthError at it."""
    err = error_from_response("openai", 400, {}, OPENAI_LIST_TOO_LONG)
    assert type(err) is ContextLengthError
    assert err.index == 3
    assert err.code == "invalid_value"
    assert "input[3]" in err.message


def test_list_index_is_read_from_the_message_without_param() -> None:
    """Without ``param``, the item index is read from the message's 'input[N]'."""
    body = _openai_error(
        "Invalid 'input[12]': maximum input length is 8192 tokens.", "invalid_request_error", None
    )
    err = error_from_response("openai", 400, {}, body)
    assert type(err) is ContextLengthError
    assert err.index == 12


def test_context_length_without_an_item_has_no_index() -> None:
    """A whole-batch or single-input length error names no index."""
    body = _openai_error(
        "Invalid 'input': maximum context length is 8192 tokens.", "invalid_request_error", None
    )
    err = error_from_response("openai", 400, {}, body)
    assert type(err) is ContextLengthError
    assert err.index is None


def test_other_list_item_errors_stay_bad_requests() -> None:
    """An 'input[N]' error that is not about length is not a ContextLengthError."""
    body = b"""{"error":{"message":"Invalid 'input[1]': string must not be empty.","type":"invalid_request_error","param":"input[1]","code":"invalid_value"}}"""
    err = error_from_response("openai", 400, {}, body)
    assert type(err) is BadRequestError


OPENAI_INVALID_URL = b"""{
  "error": {
    "message": "Invalid URL (POST /embeddings)",
    "type": "invalid_request_error",
    "param": null,
    "code": null
  }
}"""
HTML_404 = b"<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>"


@pytest.mark.parametrize(
    "body",
    [
        OPENAI_INVALID_URL,
        HTML_404,
        b"404 page not found",
        b'{"detail":"Not Found"}',
        b"",
    ],
    ids=["openai-invalid-url", "html", "go-plain-text", "fastapi", "empty"],
)
def test_404_not_about_a_model_points_at_base_url(body: bytes) -> None:
    """A 404 whose body is not a model-not-found error says 'check base_url' and shows the URL."""
    url = "https://api.example.com/embeddings"
    err = error_from_response("openai", 404, {}, body, url=url)
    assert type(err) is EndpointNotFoundError
    assert isinstance(err, BadRequestError) and not err.retryable
    assert err.url == url
    assert "check base_url" in str(err) and url in str(err)
    assert "/v1" in str(err)  # the usual mistake, named


@pytest.mark.parametrize(
    "body",
    [
        OPENAI_404,
        b'{"error":"model \\"xyz\\" not found, try pulling it first"}',
        b'{"error":{"code":"DeploymentNotFound","message":"The API deployment for this resource does not exist."}}',
        b'{"object":"error","message":"The model `m` does not exist.","type":"NotFoundError","param":null,"code":404}',
    ],
    ids=["openai", "ollama", "azure", "vllm"],
)
def test_model_not_found_404s_stay_model_not_found(body: bytes) -> None:
    """A 404 that names a missing model or deployment stays a ModelNotFoundError."""
    err = error_from_response("p", 404, {}, body, url="http://h/v1/embeddings")
    assert type(err) is ModelNotFoundError
    assert "check base_url" not in str(err)


def test_endpoint_hint_never_shows_a_secret_from_the_url() -> None:
    """User info, query values (but api-version) and the key are hidden from the URL shown."""
    key = "sk-PLANTED-url-secret-0011"
    url = (
        f"https://user:hunter2pass@gw.example.com/{key}/embeddings"
        "?api-version=2024-10-21&token=querysecret99&sig=abc123xyz"
    )
    err = error_from_response("azure", 404, {}, HTML_404, url=url, secrets=[key])
    shown = str(err) + repr(err) + (err.url or "")
    for secret in (key, "hunter2pass", "user:", "querysecret99", "abc123xyz"):
        assert secret not in shown
    assert (
        err.url == "https://gw.example.com/***/embeddings?api-version=2024-10-21&token=***&sig=***"
    )


def test_404_without_a_url_still_points_at_base_url() -> None:
    """With no URL known, the hint still says to check base_url."""
    err = error_from_response("openai", 404, {}, HTML_404)
    assert type(err) is EndpointNotFoundError
    assert err.url is None
    assert "check base_url" in str(err)
