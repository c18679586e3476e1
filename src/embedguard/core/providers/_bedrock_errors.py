"""Bedrock's failed responses as typed errors (pure, no I/O).

Bedrock names the exception in the ``x-amzn-ErrorType`` header (``ThrottlingException:http://
internal.amazon.com/coral/com.amazon.bedrock/``) and puts the text in ``{"message": ...}``
(``{"Message": ...}`` for some AWS front ends). The status alone is ambiguous (two kinds of 429,
a 400 that means "quota"), so the name decides:

==================================  ======  =============================================
x-amzn-ErrorType                    status  error
==================================  ======  =============================================
ThrottlingException                 429     RateLimitError (retried)
ModelNotReadyException              429     ServerError (retried; not a rate limit)
ServiceQuotaExceededException       400     QuotaExhaustedError (not retried)
ValidationException                 400     ModelNotFoundError ("model identifier is
                                            invalid"), ContextLengthError (too many input
                                            tokens, input too long), else BadRequestError
ResourceNotFoundException           404     ModelNotFoundError
AccessDenied, UnrecognizedClient,   403     AuthenticationError
ExpiredToken, InvalidSignature...
ModelTimeoutException               408     ProviderTimeoutError (retried)
InternalServer, ServiceUnavailable  5xx     ServerError (retried)
ModelErrorException                 424     ProviderError (the model failed on this input)
==================================  ======  =============================================

Without the header (a proxy, a load balancer) the generic, status-based mapping applies.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from embedguard.core.errors import (
    AuthenticationError,
    BadRequestError,
    ContextLengthError,
    ModelNotFoundError,
    ProviderError,
    ProviderTimeoutError,
    QuotaExhaustedError,
    RateLimitError,
    ServerError,
    redact,
)

from ._errors import error_from_response
from .headers import lower_headers, parse_retry_after, request_id_of

__all__ = ["bedrock_error", "error_type_of"]

_MAX_MESSAGE = 500
_MAX_TYPE = 100
_AUTH_TYPES = frozenset(
    {
        "AccessDeniedException",
        "UnrecognizedClientException",
        "ExpiredTokenException",
        "InvalidSignatureException",
        "IncompleteSignatureException",
        "MissingAuthenticationTokenException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
    }
)
_SIMPLE: Mapping[str, type[ProviderError]] = {
    "ModelNotReadyException": ServerError,
    "ServiceQuotaExceededException": QuotaExhaustedError,
    "ResourceNotFoundException": ModelNotFoundError,
    "ModelTimeoutException": ProviderTimeoutError,
    "InternalServerException": ServerError,
    "ServiceUnavailableException": ServerError,
    "ModelErrorException": ProviderError,
}
# Titan: "400 Bad Request: Too many input tokens. Max input tokens: 8192, request input token
# count: 9875"; Nova and others: "Input Tokens Exceeded"; length caps: "expected maxLength:
# 2048, actual: 3000" (a text, not the request, is too long).
_CONTEXT_TEXT = re.compile(
    r"too many input tokens|input tokens exceeded|expected maxLength|too long"
    r"|exceeds? the (?:maximum|max) (?:input )?(?:length|tokens)",
    re.IGNORECASE,
)
_MODEL_ID_TEXT = re.compile(r"model identifier is invalid", re.IGNORECASE)


def error_type_of(headers: Mapping[str, str]) -> str | None:
    """The exception name of ``x-amzn-ErrorType`` (lower-cased header names), or ``None``."""
    raw = headers.get("x-amzn-errortype", "")
    name = raw.split(":", 1)[0].strip()
    return name[:_MAX_TYPE] if name else None


def _message(body: bytes, secrets: Sequence[str | None]) -> str | None:
    """The ``message`` (or ``Message``) of a JSON error body, secrets redacted and bounded."""
    try:
        doc: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    for key in ("message", "Message"):
        value = doc.get(key)
        if isinstance(value, str) and value:
            text = redact(value, secrets)
            return text[:_MAX_MESSAGE] + ("..." if len(text) > _MAX_MESSAGE else "")
    return None


def bedrock_error(
    provider: str,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    secrets: Sequence[str | None] = (),
    url: str | None = None,
) -> ProviderError:
    """The typed error for a failed Bedrock response (see the module's table).

    Args:
        provider: The profile name, recorded on the error.
        status: The HTTP status.
        headers: The response headers (any case).
        body: The response body.
        secrets: Values to scrub from the message (key, secret key, session token).
        url: The URL requested (shown, sanitised, when a 404 names no model).

    Returns:
        The error to raise (not raised here); ``code`` is the exception name.
    """
    lowered = lower_headers(headers)
    name = error_type_of(lowered)
    if name is None:
        return error_from_response(provider, status, lowered, body, secrets=secrets, url=url)
    message = _message(body, secrets) or f"{name} (no message)"
    kwargs: dict[str, Any] = {
        "provider": provider,
        "status_code": status,
        "code": name,
        "request_id": request_id_of(lowered, secrets),
    }
    if name in ("ThrottlingException", "TooManyRequestsException"):
        return RateLimitError(message, retry_after=parse_retry_after(lowered), **kwargs)
    if name in _AUTH_TYPES:
        return AuthenticationError(message, **kwargs)
    if name == "ValidationException":
        if _MODEL_ID_TEXT.search(message):
            return ModelNotFoundError(message, **kwargs)
        if _CONTEXT_TEXT.search(message):
            return ContextLengthError(message, **kwargs)
        return BadRequestError(message, **kwargs)
    kind = _SIMPLE.get(name)
    if kind is not None:
        return kind(message, **kwargs)
    error = error_from_response(provider, status, lowered, body, secrets=secrets, url=url)
    error.code = name
    return error
