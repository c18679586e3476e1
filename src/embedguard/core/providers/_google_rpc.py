"""Google RPC error bodies (the Gemini API): the typed error each one stands for (pure, no I/O).

Google APIs answer every failure with one envelope, whatever the HTTP status::

    {"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
               "status": "INVALID_ARGUMENT",
               "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "API_KEY_INVALID", "domain": "googleapis.com", ...}]}}

The class follows the RPC ``status`` and the ``google.rpc.ErrorInfo`` reason, never the message
text alone (Google rewords messages: "Call ListModels" vs "Call ModelService.ListModels"):

================================  =========================================================
400 with an API-key reason        :class:`AuthenticationError` (a bad key is a 400, not 401)
401 / 403 (UNAUTHENTICATED,       :class:`AuthenticationError`
PERMISSION_DENIED)
404 NOT_FOUND                     :class:`ModelNotFoundError` (the model is the only resource
                                  in the URL); a 404 that is not Google's envelope (an HTML
                                  page: a wrong ``base_url``) is :class:`EndpointNotFoundError`
429 RESOURCE_EXHAUSTED            :class:`RateLimitError`; ``retry_after`` from ``Retry-After``,
                                  else ``google.rpc.RetryInfo.retryDelay`` (``"48s"``), else
                                  the message's "Please retry in 48.9s"
400 naming too many tokens or     :class:`ContextLengthError` (the send path splits the batch),
too large a payload               with the ``requests[i]`` index when the message names one
other 400 (INVALID_ARGUMENT,      :class:`BadRequestError`
FAILED_PRECONDITION...)
504 DEADLINE_EXCEEDED, 408        :class:`ProviderTimeoutError` (retried)
409 ABORTED, 5xx (INTERNAL,       :class:`ServerError` (retried)
UNAVAILABLE...)
================================  =========================================================

Anything that is not Google's envelope goes to the shared classifier
(:func:`~._errors.error_from_response`), so proxies and load balancers in front of the API are
read as for every other provider. ``code`` on the error is the ErrorInfo reason when there is
one, else the RPC status (``"RESOURCE_EXHAUSTED"``). Messages are the API's own text, with every
secret redacted and cut to 500 characters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import orjson

from embedguard.core.errors import (
    AuthenticationError,
    BadRequestError,
    ContextLengthError,
    EndpointNotFoundError,
    ModelNotFoundError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    ServerError,
    redact,
)

from ._errors import error_from_response, safe_url
from .headers import lower_headers, parse_duration, parse_retry_after, request_id_of

__all__ = ["RpcError", "google_rpc_error", "parse_rpc_error", "rpc_retry_delay"]

_MAX_MESSAGE = 500
_MAX_CODE = 100
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
# google.api.ErrorReason values that mean "these credentials do not work here" (error_reason.proto).
_AUTH_REASONS = frozenset(
    {
        "API_KEY_INVALID",
        "API_KEY_EXPIRED",
        "API_KEY_SERVICE_BLOCKED",
        "API_KEY_HTTP_REFERRER_BLOCKED",
        "API_KEY_IP_ADDRESS_BLOCKED",
        "API_KEY_ANDROID_APP_BLOCKED",
        "API_KEY_IOS_APP_BLOCKED",
        "CREDENTIALS_MISSING",
        "ACCESS_TOKEN_EXPIRED",
        "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
        "ACCESS_TOKEN_TYPE_UNSUPPORTED",
        "CONSUMER_INVALID",
        "SERVICE_DISABLED",
    }
)
_AUTH_STATUSES = frozenset({"UNAUTHENTICATED", "PERMISSION_DENIED"})
# "The input token count (3121) exceeds the maximum number of tokens allowed (2048)." and
# "Request payload size exceeds the limit: 4194304 bytes.": the batch or one input is too big.
_TOO_BIG = re.compile(
    r"input token count|exceeds the maximum number of tokens|payload size exceeds"
    r"|too many tokens|input (?:is )?too long",
    re.IGNORECASE,
)
# Which entry of the batch a message is about: "* BatchEmbedContentsRequest.requests[3].content".
_ITEM = re.compile(r"requests\[(\d{1,9})\]")
_MESSAGE_HINT = re.compile(r"retry in\s+(\d+(?:\.\d+)?(?:ms|s))\b", re.IGNORECASE)


class RpcError(NamedTuple):
    """What a Google RPC error envelope says."""

    code: int | None
    """The ``code`` field (the HTTP status the API meant)."""
    status: str | None
    """The RPC status name (``INVALID_ARGUMENT``, ``RESOURCE_EXHAUSTED``...)."""
    message: str
    reason: str | None
    """The first ``google.rpc.ErrorInfo`` reason (``API_KEY_INVALID``...)."""
    retry_delay: float | None
    """``google.rpc.RetryInfo.retryDelay`` in seconds (bounded), when present."""


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def rpc_retry_delay(details: Any) -> float | None:
    """Seconds from the first ``google.rpc.RetryInfo`` in ``details`` (a protobuf Duration in
    JSON, ``"48s"`` or ``"0.250s"``), bounded like a header; ``None`` when absent or unreadable."""
    if not isinstance(details, list):
        return None
    for item in details:
        if isinstance(item, dict) and item.get("@type") == _RETRY_INFO:
            delay = item.get("retryDelay")
            if isinstance(delay, str) and delay.endswith("s") and not delay.endswith("ms"):
                return parse_duration(delay)
    return None


def _reason(details: Any) -> str | None:
    if not isinstance(details, list):
        return None
    for item in details:
        if isinstance(item, dict) and item.get("@type") == _ERROR_INFO:
            reason = _text(item.get("reason"))
            if reason is not None:
                return reason
    return None


def parse_rpc_error(body: bytes) -> RpcError | None:
    """The envelope ``{"error": {"code", "message", "status", "details"}}``, or ``None`` when
    ``body`` is anything else (never raises)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("error"), dict):
        return None
    error: dict[str, Any] = doc["error"]
    code, status = error.get("code"), _text(error.get("status"))
    if not (type(code) is int or status is not None):
        return None  # an OpenAI-style {"error": {...}} from a gateway: not Google's envelope
    details = error.get("details")
    return RpcError(
        code=code if type(code) is int else None,
        status=status,
        message=_text(error.get("message")) or f"{status or code} (no message)",
        reason=_reason(details),
        retry_delay=rpc_retry_delay(details),
    )


def _retry_after(headers: Mapping[str, str], rpc: RpcError) -> float | None:
    """A ``Retry-After`` header first (a proxy's), then RetryInfo, then the message's hint."""
    hinted = parse_retry_after(headers)
    if hinted is not None:
        return hinted
    if rpc.retry_delay is not None:
        return rpc.retry_delay
    match = _MESSAGE_HINT.search(rpc.message)
    return parse_duration(match.group(1)) if match else None


def _effective(status: int, rpc: RpcError) -> int:
    if 200 <= status < 300:  # an error document sent with a 2xx: its own code decides
        return rpc.code if rpc.code is not None and 400 <= rpc.code <= 599 else 500
    return status


def google_rpc_error(
    provider: str,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    secrets: Sequence[str | None] = (),
    url: str | None = None,
) -> ProviderError:
    """The typed error for a failed Google API response (see the module docstring).

    Args:
        provider: The profile name, recorded on the error.
        status: The HTTP status code.
        headers: The response headers (any case).
        body: The raw (decoded) response body.
        secrets: Values to scrub from the message (the API key).
        url: The URL requested, shown (without query values or secrets) when the endpoint
            itself is missing.

    Returns:
        The error to raise (not raised here).
    """
    lowered = lower_headers(headers)
    scrubbed = body
    for secret in secrets:
        if secret and len(secret) >= 4:
            scrubbed = scrubbed.replace(secret.encode(), b"***")
    rpc = parse_rpc_error(scrubbed)
    if rpc is None:
        if status == 404:
            shown = None if url is None else safe_url(url, secrets)
            return EndpointNotFoundError(
                f"404 Not Found from {shown or 'the server'}: no Gemini embeddings endpoint "
                "there; check base_url (the API root, e.g. "
                "https://generativelanguage.googleapis.com)",
                url=shown, provider=provider, status_code=404,
                request_id=request_id_of(lowered, secrets),
            )  # fmt: skip
        return error_from_response(provider, status, lowered, body, secrets=secrets, url=url)
    message = redact(rpc.message, secrets)
    if len(message) > _MAX_MESSAGE:
        message = message[:_MAX_MESSAGE] + "..."
    code = rpc.reason or rpc.status
    kwargs: dict[str, Any] = {
        "provider": provider,
        "status_code": status,
        "code": redact(code, secrets)[:_MAX_CODE] if code else None,
        "request_id": request_id_of(lowered, secrets),
    }
    effective = _effective(status, rpc)
    if (
        effective in (401, 403)
        or rpc.status in _AUTH_STATUSES
        or (effective == 400 and rpc.reason in _AUTH_REASONS)
    ):
        return AuthenticationError(message, **kwargs)
    if effective == 404 or rpc.status == "NOT_FOUND":
        return ModelNotFoundError(message, **kwargs)
    if effective == 429 or rpc.status == "RESOURCE_EXHAUSTED":
        return RateLimitError(message, retry_after=_retry_after(lowered, rpc), **kwargs)
    if effective in (408, 504) or rpc.status == "DEADLINE_EXCEEDED":
        return ProviderTimeoutError(message, **kwargs)
    if effective == 409 or effective >= 500:
        return ServerError(message, **kwargs)
    if _TOO_BIG.search(message):
        item = _ITEM.search(message)
        return ContextLengthError(message, index=int(item.group(1)) if item else None, **kwargs)
    return BadRequestError(message, **kwargs)
