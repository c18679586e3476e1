"""Turn a provider's error response into the typed error it stands for (pure, no I/O).

One classifier serves every wire format: it reads each error body shape the supported servers
send (OpenAI, Azure, Mistral, Ollama, vLLM, llama.cpp, TEI, plain proxy pages) and picks the
:mod:`embedguard.core.errors` class from the status, the error code and the message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

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
    redact,
)

from .headers import lower_headers, parse_duration, parse_retry_after, request_id_of

__all__ = ["error_from_response", "lower_headers", "request_id_of", "safe_url"]

_MAX_MESSAGE = 500
_MAX_EXCERPT = 200
_MAX_CODE = 100

_QUOTA_CODES = frozenset(
    {
        "insufficient_quota",
        "credit_balance_exhausted",
        "organization_spend_limit_exceeded",
        "project_spend_limit_exceeded",
        "organization_usage_limit_exceeded",
    }
)
_CONTEXT_CODES = frozenset({"context_length_exceeded", "max_tokens_per_request"})
_CONTEXT_STATUSES = frozenset({400, 413, 422})
# Wordings of "this input (or this batch) holds too many tokens" across providers and servers;
# the remedy (split the batch or shorten the input) differs from other 400s, so they get a type.
_CONTEXT_TEXT = re.compile(
    r"maximum context length|max_tokens_per_request|too many tokens in batch"
    r"|input length exceeds the context length|context length exceeded"
    r"|exceeds? the (?:maximum|max) (?:input )?(?:length|tokens)|input is too large"
    r"|must have less than \d+ tokens|request entity too large|payload too large"
    # OpenAI, for one item of an input *list* (what embedguard always sends):
    # "Invalid 'input[3]': maximum input length is 8192 tokens."
    r"|maximum input length is \d+",
    re.IGNORECASE,
)
# Which item of the input list an error is about: OpenAI's ``param`` or its message.
_ITEM_PARAM = re.compile(r"input\[(\d{1,9})\]")
# A 404 about a model or deployment (OpenAI model_not_found, Azure DeploymentNotFound, Ollama
# 'model "x" not found', vLLM "The model `x` does not exist"); any other 404 is the URL's fault.
_MODEL_WORDS = re.compile(r"\b(?:model|deployment)", re.IGNORECASE)
_URL_KEPT_QUERY = frozenset({"api-version"})
_TRY_AGAIN = re.compile(r"try again in\s+((?:\d+(?:\.\d+)?(?:ms|h|m|s))+)", re.IGNORECASE)
_RETRY_AFTER_SECONDS = re.compile(r"retry after\s+(\d+(?:\.\d+)?)\s*second", re.IGNORECASE)
_TAGS = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]*>", re.IGNORECASE | re.DOTALL)
_SPACES = re.compile(r"\s+")


def _scrub(body: bytes, secrets: Sequence[str | None]) -> bytes:
    """The body with every secret replaced, before any of it is parsed or cut."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            body = body.replace(secret.encode(), b"***")
    return body


def _excerpt(body: bytes) -> str:
    text = body[: _MAX_EXCERPT * 20].decode("utf-8", errors="replace")
    text = _SPACES.sub(" ", _TAGS.sub(" ", text)).strip()
    return text[:_MAX_EXCERPT] + ("..." if len(text) > _MAX_EXCERPT else "")


def _as_code(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str | int):
        return str(value) or None
    return None


def _detail_text(detail: Any) -> str:
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for item in detail[:5]:
            if isinstance(item, Mapping):
                loc = item.get("loc")
                where = ".".join(str(p) for p in loc) if isinstance(loc, list) else ""
                msg = str(item.get("msg", ""))
                parts.append(f"{where}: {msg}" if where else msg)
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(detail)


class _Parsed:
    """What an error body says: message, code, type, an embedded status and a request id."""

    __slots__ = ("code", "embedded_status", "json", "message", "param", "request_id", "type")

    def __init__(self) -> None:
        self.message = ""
        self.code: str | None = None
        self.type: str | None = None
        self.param: str | None = None
        self.embedded_status: int | None = None
        self.request_id: str | None = None
        self.json = False  # the body was a JSON object (a server's own error document)


def _status_like(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599:
        return value
    if isinstance(value, str) and value.isdigit() and 400 <= int(value) <= 599:
        return int(value)
    return None


def parse_error_body(body: bytes) -> _Parsed:
    """Read message, code and type out of any known error body shape (never raises)."""
    parsed = _Parsed()
    if not body.strip():
        parsed.message = "empty error body"
        return parsed
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed.message = f"non-JSON error body: {_excerpt(body)}"
        return parsed
    if not isinstance(doc, dict):
        parsed.message = f"unrecognised error body: {_excerpt(body)}"
        return parsed
    parsed.json = True
    error = doc.get("error")
    # Nested {"error": {...}}: OpenAI, Azure, newer vLLM, llama.cpp; flat forms otherwise.
    source: Mapping[str, Any] = error if isinstance(error, dict) else doc
    message = source.get("message")
    if isinstance(error, str) and error:
        message = error  # Ollama, TEI /embed: {"error": "...", "error_type": "..."}
    if not isinstance(message, str) or not message:
        detail = doc.get("detail")
        message = _detail_text(detail) if detail else None
    parsed.message = message or f"unrecognised error body: {_excerpt(body)}"
    raw_code = source.get("code")
    raw_type = source.get("type", doc.get("error_type"))
    parsed.type = raw_type if isinstance(raw_type, str) and raw_type else None
    raw_param = source.get("param")
    parsed.param = raw_param if isinstance(raw_param, str) and raw_param else None
    parsed.code = _as_code(raw_code)
    if isinstance(raw_code, int) and parsed.type:
        parsed.code = None  # vLLM / llama.cpp repeat the status as an int code: the type says more
    parsed.embedded_status = _status_like(doc.get("raw_status_code")) or _status_like(raw_code)
    rid = doc.get("request_id")
    parsed.request_id = rid if isinstance(rid, str) and rid else None
    return parsed


def _retry_hint(headers: Mapping[str, str], message: str) -> float | None:
    from_headers = parse_retry_after(headers)
    if from_headers is not None:
        return from_headers
    match = _TRY_AGAIN.search(message)
    if match:
        seconds = parse_duration(match.group(1))
        if seconds is not None:
            return seconds
    match = _RETRY_AFTER_SECONDS.search(message)
    return float(match.group(1)) if match else None


def _is_context_error(parsed: _Parsed) -> bool:
    codes = {parsed.code, parsed.type}
    return bool(codes & _CONTEXT_CODES) or bool(_CONTEXT_TEXT.search(parsed.message))


def _item_index(parsed: _Parsed) -> int | None:
    """The input-list position the error names (``param: "input[3]"``), else ``None``."""
    for text in (parsed.param, parsed.message):
        match = _ITEM_PARAM.search(text or "")
        if match:
            return int(match.group(1))
    return None


def _is_model_not_found(parsed: _Parsed) -> bool:
    """Whether a 404's body says the model or deployment is missing (else: a wrong URL)."""
    if not parsed.json:
        return False  # HTML pages, "404 page not found", empty bodies: not the provider's API
    words = " ".join(t for t in (parsed.code, parsed.type, parsed.message) if t)
    return bool(_MODEL_WORDS.search(words))


def safe_url(url: str, secrets: Sequence[str | None] = ()) -> str:
    """``url`` fit to show: no user info, query values hidden (``api-version`` kept), no secret.

    Example:
        ``https://u:p@h/v1/embeddings?key=s&api-version=1`` ->
        ``https://h/v1/embeddings?key=***&api-version=1``
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(unparseable URL)"
    if ":" in host:
        host = f"[{host}]"  # IPv6
    shown = f"{parts.scheme}://{host}{f':{port}' if port is not None else ''}{parts.path}"
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        shown += "?" + "&".join(
            f"{name}={value if name.lower() in _URL_KEPT_QUERY else '***'}" for name, value in pairs
        )
    return redact(shown, secrets)


def _endpoint_hint(message: str, url: str | None) -> str:
    where = f" from {url}" if url else ""
    return (
        f"404 Not Found{where}: no embeddings endpoint there; check base_url (OpenAI-style "
        f"servers usually need it to end in /v1). The server said: {message}"
    )


def error_from_response(
    provider: str,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    secrets: Sequence[str | None] = (),
    url: str | None = None,
) -> ProviderError:
    """Build the typed error for a failed provider response.

    The class follows the status: 401/403 authentication, 404 model not found when the body
    says a model or deployment is missing and endpoint not found otherwise (a wrong
    ``base_url``: the message says so and shows ``url``), 408 timeout, 409 and >= 500 server
    error, 429 rate limit (or quota exhaustion for the ``insufficient_quota`` family),
    400/413/422 context length when the message says the input or batch is too long (with the
    input-list ``index`` the provider named, if any), other statuses bad request. A 2xx whose
    body is an error uses the status the body names (else it counts as a server error). The
    message is the provider's own text with ``secrets`` redacted; request headers are never
    included.

    Args:
        provider: The profile name, recorded on the error.
        status: The HTTP status code.
        headers: The response headers (any case).
        body: The raw (decoded) response body.
        secrets: Values to scrub from the message, e.g. the API key.
        url: The URL requested, shown in an endpoint-not-found error without its user info,
            query values (``api-version`` excepted) or ``secrets``.

    Returns:
        The error to raise (not raised here).
    """
    lowered = lower_headers(headers)
    parsed = parse_error_body(_scrub(body, secrets))
    message = redact(parsed.message, secrets)
    if len(message) > _MAX_MESSAGE:
        message = message[:_MAX_MESSAGE] + "..."
    code = parsed.code or parsed.type
    kwargs: dict[str, Any] = {
        "provider": provider,
        "status_code": status,
        "code": redact(code, secrets)[:_MAX_CODE] if code else None,
        "request_id": request_id_of(lowered, secrets) or parsed.request_id,
    }
    effective = status
    if 200 <= status < 300:
        effective = parsed.embedded_status or 500
    if effective in (401, 403):
        return AuthenticationError(message, **kwargs)
    if effective == 404:
        if _is_model_not_found(parsed):
            return ModelNotFoundError(message, **kwargs)
        shown = None if url is None else safe_url(url, secrets)
        return EndpointNotFoundError(_endpoint_hint(message, shown), url=shown, **kwargs)
    if effective == 408:
        return ProviderTimeoutError(message, **kwargs)
    if effective == 429:
        if {parsed.code, parsed.type} & _QUOTA_CODES:
            return QuotaExhaustedError(message, **kwargs)
        return RateLimitError(message, retry_after=_retry_hint(lowered, message), **kwargs)
    if (effective in _CONTEXT_STATUSES or 200 <= status < 300) and _is_context_error(parsed):
        return ContextLengthError(message, index=_item_index(parsed), **kwargs)
    if effective == 409 or effective >= 500:
        return ServerError(message, **kwargs)
    return BadRequestError(message, **kwargs)
