"""Cohere's embed responses, errors and headers (pure, no I/O); shared by the Cohere codec and any
codec that speaks Cohere's body (e.g. Cohere models hosted elsewhere).

Response bodies come in two shapes, both read by :func:`decode_cohere_body`:

* *by type* (v2 always; v1 when ``embedding_types`` was sent)::

      {"id": "...", "texts": [...], "embeddings": {"float": [[...], ...]},
       "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": 7}},
       "response_type": "embeddings_by_type"}

* *floats* (v1 without ``embedding_types``): ``"embeddings": [[...], ...]``.

Vectors are in input order (no per-item index). The decode is one ``orjson`` parse and one
``numpy`` conversion of the whole list of rows, which C code checks for shape and number types:
decoding 96 x 1536 floats costs about what OpenAI's float path costs (see the test module).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from embedguard.core.errors import (
    AuthenticationError,
    BadRequestError,
    ContextLengthError,
    ProviderError,
    QuotaExhaustedError,
    ResponseValidationError,
    ServerError,
    redact,
)
from embedguard.core.ratelimit import bound_count

from ._decode import load_json_object
from ._errors import error_from_response
from ._json import DecodedBody, _target
from .base import RateLimitInfo
from .headers import int_header, rate_limit_or_none, request_id_of

__all__ = [
    "EMBEDDING_TYPES",
    "cohere_error",
    "cohere_rate_limit",
    "cohere_request_id",
    "decode_cohere_body",
]

EMBEDDING_TYPES: Mapping[str, str] = {
    "float32": "float",
    "int8": "int8",
    "uint8": "uint8",
    "binary": "binary",
    "ubinary": "ubinary",
}
"""Cohere's ``embedding_types`` name for each :data:`~embedguard.core.config.VectorDtype`."""

# The integer range each compact type's values must lie in (binary: packed bits as int8).
_RANGES: Mapping[str, tuple[int, int]] = {
    "int8": (-128, 127),
    "uint8": (0, 255),
    "binary": (-128, 127),
    "ubinary": (0, 255),
}
_MAX_ID = 100
# "You are using a Trial key, which is limited to 1000 API calls / month." is a quota that no
# retry within the month fixes; the per-minute wording is a rate limit.
_PER_MONTH = re.compile(r"calls?\s*(?:/|per)\s*month", re.IGNORECASE)
# Cohere's words for an input over the model's limit with ``truncate: "NONE"`` (the embed
# wording was not recorded; the chat wording is "too many tokens: size limit exceeded by N
# tokens", with error_type TOO_MANY_TOKENS).
_TOO_LONG = re.compile(
    r"too many tokens|too long|exceeds? the (?:model'?s? )?(?:maximum|max|token limit)"
    r"|maximum (?:number of )?tokens|context length",
    re.IGNORECASE,
)
_INDEX = re.compile(r"(?:texts\[|index\s+)(\d{1,9})", re.IGNORECASE)
_TOKEN_WORDS = re.compile(r"invalid (?:api )?token|expired token|api key", re.IGNORECASE)
_Fail = Callable[[str], ResponseValidationError]


# -- responses ---------------------------------------------------------------------------------


def _tokens(doc: Mapping[str, Any], headers: Mapping[str, str]) -> int | None:
    """``meta.billed_units.input_tokens``, else the ``num_tokens`` header, else ``None``."""
    meta = doc.get("meta")
    billed = meta.get("billed_units") if isinstance(meta, dict) else None
    # Cohere's schema types billed units as numbers: 7 and 7.0 are both a count.
    value = bound_count(billed.get("input_tokens")) if isinstance(billed, dict) else None
    return value if value is not None else int_header(headers, "num_tokens")


def _rows(doc: Mapping[str, Any], dtype: str, fail: _Fail) -> Any:
    """The list of rows holding ``dtype``'s vectors, in either response shape."""
    embeddings = doc.get("embeddings")
    wanted = EMBEDDING_TYPES[dtype]
    if isinstance(embeddings, dict):
        if wanted not in embeddings:
            held = ", ".join(sorted(str(k) for k in embeddings)) or "none"
            raise fail(f"response has no '{wanted}' embeddings (it has: {held})")
        return embeddings[wanted]
    if isinstance(embeddings, list):
        if dtype != "float32":  # the floats shape answers a request without embedding_types
            raise fail(f"response holds float embeddings, not the '{wanted}' ones asked for")
        return embeddings
    raise fail(f"'embeddings' is {type(embeddings).__name__}, not an object of lists")


def _matrix(
    rows: Any, dtype: str, n_inputs: int, dimensions: int | None, fail: _Fail
) -> np.ndarray:
    """Rows as one numeric array, checked for count, width, number type, range and finiteness."""
    if not isinstance(rows, list):
        raise fail(f"embeddings are {type(rows).__name__}, not a list")
    if len(rows) != n_inputs:
        raise fail(f"got {len(rows)} embeddings for {n_inputs} inputs")
    if n_inputs and not all(type(row) is list for row in rows):
        raise fail("an embedding is not a list of numbers")
    try:
        # numpy infers the element type in C: a string, null, object or ragged row cannot pass.
        matrix = np.array(rows) if n_inputs else np.empty((0, dimensions or 0))
    except (ValueError, TypeError, OverflowError):
        raise fail("embeddings are not equal-length lists of numbers") from None
    if matrix.ndim != 2:
        raise fail("embeddings are not equal-length lists of numbers")
    kinds = "fiu" if dtype == "float32" else "iu"
    if n_inputs and matrix.dtype.kind not in kinds:
        what = "numbers" if dtype == "float32" else "integers"
        raise fail(f"'{EMBEDDING_TYPES[dtype]}' embeddings are not all {what}")
    width = matrix.shape[1]
    if n_inputs and width == 0:
        raise fail("empty embedding")
    if dimensions is not None and n_inputs and width != dimensions:
        raise fail(f"embedding has {width} dimensions, expected {dimensions}")
    if dtype in _RANGES and matrix.size:
        low, high = _RANGES[dtype]
        if int(matrix.min()) < low or int(matrix.max()) > high:
            raise fail(f"'{EMBEDDING_TYPES[dtype]}' values outside {low}..{high}")
    return matrix


def decode_cohere_body(
    provider: str,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    dtype: str,
    n_inputs: int,
    dimensions: int | None,
    secrets: Sequence[str | None] = (),
    out: np.ndarray | None = None,
) -> DecodedBody:
    """Validate and decode a Cohere 2xx embed body (``headers`` lower-case).

    Returns float32 rows, one per input in input order, holding the ``dtype``'s values exactly
    (``binary``/``ubinary``: one value per packed byte, so rows are ``dimensions`` wide only when
    ``dimensions`` is the packed width). Tokens come from ``meta.billed_units.input_tokens``
    (else the ``num_tokens`` header); Cohere echoes no model.

    Raises:
        ResponseValidationError: Not exactly one finite vector of the right size per input, of
            the type asked for, with integer values in the type's range.
        ProviderError: The body is an error document despite the 2xx status.
    """
    doc = load_json_object(provider, status, headers, body, secrets=secrets)
    if "embeddings" not in doc and isinstance(doc.get("message"), str):
        # Cohere's error document ({"id", "message"}) sent with a 2xx: the error it names.
        raise cohere_error(provider, status, headers, body, secrets=secrets)
    request_id = cohere_request_id(headers, doc, secrets)

    def fail(message: str) -> ResponseValidationError:
        return ResponseValidationError(
            message, provider=provider, status_code=status, request_id=request_id
        )

    matrix = _matrix(_rows(doc, dtype, fail), dtype, n_inputs, dimensions, fail)
    target = _target(out, *matrix.shape)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow shows as inf, refused below
        target[...] = matrix
    if not np.isfinite(target).all():
        bad = int(np.flatnonzero(~np.isfinite(target).all(axis=1))[0])
        raise fail(f"embedding {bad} holds NaN or infinite values")
    return DecodedBody(target, _tokens(doc, headers), None)


# -- headers -----------------------------------------------------------------------------------
def cohere_rate_limit(headers: Mapping[str, str]) -> RateLimitInfo | None:
    """Cohere's per-key statements (lower-case names), or ``None`` when it made none.

    Trial keys get ``x-trial-endpoint-call-limit`` (calls per minute to this endpoint) and
    ``x-trial-endpoint-call-remaining``; they are the request limit and what is left of it.
    ``x-endpoint-monthly-call-limit`` is a monthly quota, not a per-minute rate: not used.
    Production keys get no rate-limit header at all.
    """
    return rate_limit_or_none(
        RateLimitInfo(
            limit_requests=int_header(headers, "x-trial-endpoint-call-limit"),
            remaining_requests=int_header(headers, "x-trial-endpoint-call-remaining"),
        )
    )


def cohere_request_id(
    headers: Mapping[str, str],
    doc: Mapping[str, Any] | None = None,
    secrets: Sequence[str | None] = (),
) -> str | None:
    """The response's id: the body's ``id``, else the ``x-debug-trace-id`` header (bounded)."""
    value = doc.get("id") if doc is not None else None
    if not isinstance(value, str) or not value:
        value = headers.get("x-debug-trace-id") or request_id_of(headers, secrets)
    return redact(value, secrets)[:_MAX_ID] if value else None


# -- errors ------------------------------------------------------------------------------------
def _body_id(body: bytes) -> str | None:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return doc.get("id") if isinstance(doc, dict) and isinstance(doc.get("id"), str) else None


def cohere_error(
    provider: str,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    secrets: Sequence[str | None] = (),
    url: str | None = None,
) -> ProviderError:
    """The typed error for a failed Cohere response (``{"id", "message"}`` bodies).

    The shared classifier decides (401/403 authentication, 404 model not found, 429 rate
    limit, 5xx server error, other 4xx bad request), with Cohere's own cases on top:

    * 400/422 whose message says the input is too long (``too many tokens``..., or
      ``error_type: TOO_MANY_TOKENS``): :class:`ContextLengthError`, with the index it names;
    * 402 (billing limit) and a 429 naming a monthly cap (trial keys: ``1000 API calls /
      month``): :class:`QuotaExhaustedError`, never retried;
    * 498: :class:`AuthenticationError` when the message is about the token or key (the SDK
      calls 498 "invalid token"), else :class:`BadRequestError` (Cohere's docs: a request
      blocked by its usage guidelines);
    * 499 (request cancelled, "try again"): :class:`ServerError`, retried.

    The request id is the body's ``id`` (else ``x-debug-trace-id``); secrets are redacted.
    """
    error = error_from_response(provider, status, headers, body, secrets=secrets, url=url)
    lowered = {name.lower(): value for name, value in headers.items()}
    body_id = _body_id(body)
    kwargs: dict[str, Any] = {
        "provider": error.provider,
        "status_code": error.status_code,
        "code": error.code,
        "request_id": error.request_id
        or cohere_request_id(lowered, {"id": body_id} if body_id else None, secrets),
    }
    message = error.message
    typed: ProviderError = error
    if status == 402 or (status == 429 and _PER_MONTH.search(message)):
        typed = QuotaExhaustedError(message, **kwargs)
    elif status == 498:
        kind = AuthenticationError if _TOKEN_WORDS.search(message) else BadRequestError
        typed = kind(message, **kwargs)
    elif status == 499:
        typed = ServerError(message, **kwargs)
    elif (
        status in (400, 422)
        and type(error) is BadRequestError
        and (error.code == "TOO_MANY_TOKENS" or _TOO_LONG.search(message))
    ):
        match = _INDEX.search(message)
        typed = ContextLengthError(message, index=int(match.group(1)) if match else None, **kwargs)
    else:
        typed.request_id = kwargs["request_id"]
        return typed
    typed.__cause__ = error.__cause__
    return typed
