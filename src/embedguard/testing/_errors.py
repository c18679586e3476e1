"""Error bodies in each provider's real wire shape (pure)."""

from __future__ import annotations

import http
import math
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ErrorSpec",
    "context_length_error",
    "invalid_input_error",
    "quota_error",
    "rate_limit_error",
    "shape_error",
    "status_error",
]

_DOCS = "Please check the API reference: https://platform.openai.com/docs/api-reference."
_KEYS = "https://platform.openai.com/account/api-keys"
_HELP = "help.openai.com"


@dataclass(frozen=True)
class ErrorSpec:
    """What went wrong, before it is shaped for a provider.

    ``type`` and ``code`` follow OpenAI's vocabulary; ``kind`` lets a provider substitute its
    own wording (``"rate_limit"``, ``"quota"``, ``"context_length"``, ``"auth"``).
    """

    status: int
    message: str
    type: str = "invalid_request_error"
    code: str | None = None
    kind: str = ""
    retry_after: float | None = None


_STATUS_TEXT: dict[int, tuple[str, str, str | None]] = {
    400: ("Bad request.", "invalid_request_error", None),
    401: (
        f"Incorrect API key provided. You can find your API key at {_KEYS}.",
        "invalid_request_error",
        "invalid_api_key",
    ),
    403: ("You are not allowed to sample from this model.", "invalid_request_error", None),
    408: ("Request timed out.", "invalid_request_error", None),
    409: ("The request conflicted with another request.", "invalid_request_error", None),
    500: (
        "The server had an error processing your request. Sorry about that! You can retry your"
        f" request, or contact us through our help center at {_HELP} if you keep seeing this"
        " error.",
        "server_error",
        None,
    ),
    502: ("Bad gateway.", "server_error", None),
    503: (
        "The server is currently overloaded with other requests. Sorry about that! You can"
        f" retry your request, or contact us through our help center at {_HELP} if the error"
        " persists.",
        "server_error",
        None,
    ),
    504: ("Gateway timeout.", "server_error", None),
}


def status_error(status: int, model: str) -> ErrorSpec:
    """The usual error for ``status`` (any 4xx/5xx; other codes get the reason phrase)."""
    if status == 401:
        return ErrorSpec(401, *_STATUS_TEXT[401], kind="auth")
    if status == 404:
        message = f"The model `{model}` does not exist or you do not have access to it."
        return ErrorSpec(404, message, code="model_not_found")
    if status == 429:
        return rate_limit_error(model, unit="requests", limit=3, used=3, requested=1)
    if status in _STATUS_TEXT:
        message, type_, code = _STATUS_TEXT[status]
        return ErrorSpec(status, message, type_, code)
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return ErrorSpec(
        status, f"{phrase}.", "server_error" if status >= 500 else "invalid_request_error"
    )


def _go_hint(seconds: float) -> str:
    if seconds < 1:
        return f"{max(1, math.ceil(seconds * 1000))}ms"
    return f"{round(seconds, 3):g}s"


def rate_limit_error(
    model: str,
    *,
    unit: str,
    limit: int,
    used: int,
    requested: int,
    retry_after: float | None = None,
) -> ErrorSpec:
    """429 ``rate_limit_exceeded`` for ``unit`` ``"requests"`` (RPM) or ``"tokens"`` (TPM)."""
    per = "requests per min (RPM)" if unit == "requests" else "tokens per min (TPM)"
    hint = "" if retry_after is None else f" Please try again in {_go_hint(retry_after)}."
    message = (
        f"Rate limit reached for {model} in organization org-embedguard on {per}: Limit {limit},"
        f" Used {used}, Requested {requested}.{hint} Visit"
        " https://platform.openai.com/account/rate-limits to learn more."
    )
    return ErrorSpec(429, message, unit, "rate_limit_exceeded", "rate_limit", retry_after)


def quota_error() -> ErrorSpec:
    """429 ``insufficient_quota``: the billing quota is exhausted."""
    message = (
        "You exceeded your current quota, please check your plan and billing details. For more"
        " information on this error, read the docs:"
        " https://platform.openai.com/docs/guides/error-codes/api-errors."
    )
    return ErrorSpec(429, message, "insufficient_quota", "insufficient_quota", "quota")


def context_length_error() -> ErrorSpec:
    """400: an input is longer than the model's context (8192 tokens)."""
    message = "Invalid 'input': maximum context length is 8192 tokens."
    return ErrorSpec(400, message, kind="context_length")


def invalid_input_error(message: str | None = None) -> ErrorSpec:
    """400 for an input of the wrong type or an empty string (``'$.input' is invalid``)."""
    return ErrorSpec(400, message or f"'$.input' is invalid. {_DOCS}")


def _azure(spec: ErrorSpec, api_version: str | None) -> dict[str, Any]:
    code = spec.code if spec.kind in {"quota", "context_length"} else str(spec.status)
    message = spec.message
    if spec.kind == "rate_limit":
        wait = 1 if spec.retry_after is None else max(1, math.ceil(spec.retry_after))
        message = (
            "Requests to the Embeddings_Create Operation under Azure OpenAI API version"
            f" {api_version or 'v1'} have exceeded call rate limit of your current OpenAI S0"
            f" pricing tier. Please retry after {wait} seconds. Please go here:"
            " https://aka.ms/oai/quotaincrease if you would like to further increase the"
            " default rate limit."
        )
    elif spec.kind == "auth":
        message = (
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to"
            " provide a valid key for an active subscription and use a correct regional API"
            " endpoint for your resource."
        )
    return {"error": {"code": code, "message": message}}


def _mistral(spec: ErrorSpec) -> dict[str, Any]:
    if spec.kind == "rate_limit":
        return {
            "object": "error",
            "message": "Rate limit exceeded",
            "type": "rate_limited",
            "param": None,
            "code": "1300",
            "raw_status_code": 429,
        }
    type_ = {"auth": "unauthorized", "quota": "insufficient_quota"}.get(spec.kind, spec.type)
    return {"object": "error", "message": spec.message, "type": type_, "param": None, "code": None}


def _ollama(spec: ErrorSpec) -> dict[str, Any]:
    message = {
        "context_length": "the input length exceeds the context length",
        "rate_limit": "rate limit exceeded, please try again later",
        "auth": "unauthorized",
    }.get(spec.kind, spec.message)
    return {"error": message}


def shape_error(
    provider: str, spec: ErrorSpec, *, api_version: str | None = None
) -> dict[str, Any]:
    """The error body ``provider`` sends for ``spec``.

    Args:
        provider: ``"openai"``, ``"azure"``, ``"mistral"`` or ``"ollama"``.
        spec: the error.
        api_version: the Azure ``api-version`` of the request, quoted in Azure's 429 text.
    """
    if provider == "azure":
        return _azure(spec, api_version)
    if provider == "mistral":
        return _mistral(spec)
    if provider == "ollama":
        return _ollama(spec)
    if provider == "cohere":
        from ._wire_cohere import cohere_error_body  # it imports this module

        return cohere_error_body(spec)
    if provider == "voyage":
        from ._wire_voyage import voyage_error_body

        return voyage_error_body(spec)
    if provider == "bedrock":
        return {"message": spec.message}  # the exception name travels in x-amzn-ErrorType
    error = {"message": spec.message, "type": spec.type, "param": None, "code": spec.code}
    return {"error": error}
