"""The Gemini API's wire format on the test server (pure): route, request, reply, error shapes.

``POST /gemini/v1beta/models/{model}:batchEmbedContents`` with ``x-goog-api-key``::

    {"requests": [{"model": "models/{model}", "content": {"parts": [{"text": "..."}]},
                   "taskType": "RETRIEVAL_QUERY", "outputDimensionality": 768}, ...]}
    -> {"embeddings": [{"values": [...]}, ...]}

As the real API: at most 100 entries, each naming the URL's model; task types checked against
the ``TaskType`` enum; no index in the reply (order is the only link to the inputs); usage
(``usageMetadata``) only for gemini-embedding-2 models; errors in the Google RPC envelope
(``{"error": {"code", "message", "status", "details"}}``); a bad key is **400**
``INVALID_ARGUMENT`` with ``ErrorInfo.reason: API_KEY_INVALID`` (no key: 403); no rate-limit
headers and no ``Retry-After``: a 429 says how long to wait in ``google.rpc.RetryInfo``. One
simplification: every entry of a batch must ask for the same ``outputDimensionality``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ._errors import _STATUS_TEXT, ErrorSpec
from ._routes import EmbedCall, Limits, Route
from ._vectors import count_tokens

__all__ = [
    "GeminiRoute",
    "bad_key_error",
    "gemini_error_body",
    "gemini_inputs",
    "gemini_payload",
    "match_gemini",
    "parse_gemini_call",
]

_PATH = re.compile(r"/gemini/(v\d+(?:alpha|beta)?\d*)/models/([^/:]+):batchEmbedContents")
MAX_BATCH = 100
_MAX_DIMENSIONS = 65_536
TASK_TYPES = frozenset(
    {
        "TASK_TYPE_UNSPECIFIED",
        "RETRIEVAL_QUERY",
        "RETRIEVAL_DOCUMENT",
        "SEMANTIC_SIMILARITY",
        "CLASSIFICATION",
        "CLUSTERING",
        "QUESTION_ANSWERING",
        "FACT_VERIFICATION",
        "CODE_RETRIEVAL_QUERY",
    }
)
_RPC_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_TYPE = "type.googleapis.com/google.rpc."
_SERVICE = "generativelanguage.googleapis.com"
_BAD_KEY = "API key not valid. Please pass a valid API key."
_NO_KEY = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)
_MESSAGES = {
    400: "Request contains an invalid argument.",
    403: "The caller does not have permission",
    409: "The operation was aborted.",
    500: "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "Deadline expired before operation could complete.",
}


@dataclass(frozen=True)
class GeminiRoute(Route):
    """The Gemini route: the model (and API version) come from the URL."""

    model: str = ""
    version: str = "v1beta"


def match_gemini(path: str) -> GeminiRoute | None:
    """The Gemini route serving ``path``, or ``None``."""
    match = _PATH.fullmatch(path)
    return None if match is None else GeminiRoute("gemini", version=match[1], model=match[2])


def _text_of(entry: Any) -> str | None:
    content = entry.get("content") if isinstance(entry, dict) else None
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list) or len(parts) != 1 or not isinstance(parts[0], dict):
        return None
    text = parts[0].get("text")
    return text if isinstance(text, str) else None


def gemini_inputs(body: Any) -> tuple[str, ...]:
    """The texts of a request body, best effort (for the request log)."""
    entries = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(entries, list):
        return ()
    return tuple(text for text in map(_text_of, entries) if text is not None)


def _invalid(message: str) -> ErrorSpec:
    return ErrorSpec(400, message)


def _entry_error(position: int, entry: Any, route: GeminiRoute) -> ErrorSpec | None:
    where = f"requests[{position}]"
    if not isinstance(entry, dict):
        return _invalid(f"Invalid JSON payload received. Unknown name at '{where}'.")
    if entry.get("model") != f"models/{route.model}":
        return _invalid(
            f"* BatchEmbedContentsRequest.{where}.model: the model in the request "
            f"({entry.get('model')!r}) must match the model in the URL (models/{route.model})"
        )
    text = _text_of(entry)
    if not text:  # None (no single text part) or "": the API refuses both
        return _invalid(f"* BatchEmbedContentsRequest.{where}.content: contents must not be empty")
    task = entry.get("taskType")
    if task is not None and task not in TASK_TYPES:
        return _invalid(
            f"Invalid value at '{where}.task_type' "
            f"(type.googleapis.com/google.ai.generativelanguage.v1beta.TaskType), {task!r}"
        )
    size = entry.get("outputDimensionality")
    if size is not None and (type(size) is not int or not 1 <= size <= _MAX_DIMENSIONS):
        return _invalid(f"Invalid value at '{where}.output_dimensionality' (TYPE_INT32), {size!r}")
    return None


def parse_gemini_call(route: GeminiRoute, body: Any, limits: Limits) -> EmbedCall | ErrorSpec:
    """Validate a ``batchEmbedContents`` body; return the call or the error to send."""
    entries = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(entries, list) or not entries:
        return _invalid("* BatchEmbedContentsRequest.requests: must not be empty")
    cap = MAX_BATCH if limits.max_batch_size is None else min(MAX_BATCH, limits.max_batch_size)
    if len(entries) > cap:
        return _invalid(
            f"* BatchEmbedContentsRequest.requests: at most {cap} requests can be in one batch\n"
        )
    for position, entry in enumerate(entries):
        error = _entry_error(position, entry, route)
        if error is not None:
            return error
    sizes = {entry.get("outputDimensionality") for entry in entries}
    if len(sizes) > 1:
        return _invalid("this test server needs one outputDimensionality per batch")
    size = sizes.pop()
    inputs = tuple(text for text in map(_text_of, entries) if text is not None)
    counts = [count_tokens(text) for text in inputs]
    if limits.max_input_tokens is not None and max(counts) > limits.max_input_tokens:
        message = (
            f"The input token count ({max(counts)}) exceeds the maximum number of tokens "
            f"allowed ({limits.max_input_tokens})."
        )
        return ErrorSpec(400, message, kind="context_length")
    dimensions = limits.dimensions if size is None else size
    return EmbedCall(
        route, route.model, inputs, dimensions, False, sum(counts), None, limits.vectors
    )


def gemini_payload(call: EmbedCall, rows: list[Any], fault: str | None) -> dict[str, Any]:
    """The 200 document for ``call``: ``rows`` are the vectors to send, in order.

    ``bad_index`` (there is no index on this wire) adds one vector too many, the closest
    breakage; usage is reported only by gemini-embedding-2 models, as by the real API.
    """
    if fault == "bad_index":
        rows = [*rows, rows[0]]
    payload: dict[str, Any] = {"embeddings": [{"values": row} for row in rows]}
    if call.model.startswith("gemini-embedding-2"):
        details = [{"modality": "TEXT", "tokenCount": call.tokens}]
        payload["usageMetadata"] = {"promptTokenCount": call.tokens, "promptTokenDetails": details}
    return payload


def bad_key_error(headers: dict[str, str]) -> ErrorSpec:
    """A wrong key is a 400 ``API_KEY_INVALID``; no key at all a 403."""
    if headers.get("x-goog-api-key"):
        return ErrorSpec(400, _BAD_KEY, kind="auth")
    return ErrorSpec(403, _NO_KEY, kind="auth")


def _duration(seconds: float) -> str:
    """A protobuf Duration in JSON: decimal seconds, at most 9 decimals, an ``s``."""
    text = f"{max(0.0, seconds):.9f}".rstrip("0").rstrip(".")
    return f"{text}s"


# QuotaFailure violations by what ran out: (metric, quota id, limit).
_QUOTAS = {
    "requests": ("embed_content_requests", "EmbedContentRequestsPerMinutePerProjectPerModel",
                 "3000"),
    "tokens": ("embed_content_input_token_count", "EmbedContentInputTokensPerModelPerMinute",
               "1000000"),
    "day": ("embed_content_free_tier_requests",
            "EmbedContentRequestsPerDayPerProjectPerModel-FreeTier", "1000"),
}  # fmt: skip


def _quota(metric: str, quota_id: str, value: str, model: str) -> dict[str, Any]:
    return {
        "quotaMetric": f"{_SERVICE}/{metric}",
        "quotaId": quota_id,
        "quotaDimensions": {"model": model, "location": "global"},
        "quotaValue": value,
    }


def _details(spec: ErrorSpec, model: str) -> list[dict[str, Any]]:
    if spec.kind == "auth" and spec.status == 400:
        info = {"reason": "API_KEY_INVALID", "domain": "googleapis.com",
                "metadata": {"service": _SERVICE}}  # fmt: skip
        localized = {"locale": "en-US", "message": spec.message}
        return [{"@type": _TYPE + "ErrorInfo", **info},
                {"@type": _TYPE + "LocalizedMessage", **localized}]  # fmt: skip
    if spec.status == 401:
        info = {"reason": "CREDENTIALS_MISSING", "domain": "googleapis.com",
                "metadata": {"service": _SERVICE}}  # fmt: skip
        return [{"@type": _TYPE + "ErrorInfo", **info}]
    if spec.kind in ("rate_limit", "quota"):
        links = [{"description": "Learn more about Gemini API quotas",
                  "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]  # fmt: skip
        which = "day" if spec.kind == "quota" else spec.type
        quota = _quota(*_QUOTAS.get(which, _QUOTAS["requests"]), model)
        details = [{"@type": _TYPE + "Help", "links": links},
                   {"@type": _TYPE + "QuotaFailure", "violations": [quota]}]  # fmt: skip
        if spec.retry_after is not None:
            delay = _duration(spec.retry_after)
            details.append({"@type": _TYPE + "RetryInfo", "retryDelay": delay})
        return details
    return []


def _message(spec: ErrorSpec, route: GeminiRoute) -> str:
    if spec.kind == "context_length":
        if spec.message.startswith("The input token count"):
            return spec.message
        return "The input token count exceeds the maximum number of tokens allowed (2048)."
    if spec.kind in ("rate_limit", "quota"):
        hint = "" if spec.retry_after is None else f"\nPlease retry in {spec.retry_after:g}s."
        return (
            "You exceeded your current quota, please check your plan and billing details. For "
            "more information on this error, head to: "
            f"https://ai.google.dev/gemini-api/docs/rate-limits.{hint}"
        )
    if spec.status == 404:
        return (
            f"models/{route.model} is not found for API version {route.version}, or is not "
            "supported for embedContent. Call ListModels to see the list of available models "
            "and their supported methods."
        )
    if spec.status == 401:
        return "Request had invalid authentication credentials."
    generic = _STATUS_TEXT.get(spec.status, ("",))[0]
    if spec.message in (generic, "Error."):  # the server's stock text: say it as Google does
        return _MESSAGES.get(spec.status, spec.message)
    return spec.message


def gemini_error_body(route: GeminiRoute, spec: ErrorSpec) -> dict[str, Any]:
    """``spec`` in the Google RPC envelope, as the Gemini API words it."""
    error: dict[str, Any] = {
        "code": spec.status,
        "message": _message(spec, route),
        "status": _RPC_STATUS.get(spec.status, "UNKNOWN"),
    }
    details = _details(spec, route.model)
    if details:
        error["details"] = details
    return {"error": error}
