"""Cohere's v2 embed wire format for the test server (pure): requests, bodies, errors, headers.

Served at ``/cohere/v2/embed`` (``server.base_url("cohere")`` is ``{url}/cohere``). A request
must carry ``model``, ``texts`` (1 to 96 non-empty strings) and ``input_type``; it may carry
``embedding_types`` (default ``["float"]``), ``output_dimension`` (256/512/1024/1536 on
embed-v4, refused on the v2/v3 models) and ``truncate`` (``NONE``, ``START``, ``END``; default
``END``: with ``NONE`` an input over the server's ``max_input_tokens`` is a 400
``TOO_MANY_TOKENS``). The answer is the by-type body, keys in the order Cohere writes them::

    {"id": "...", "texts": [...], "embeddings": {"float": [[...]], "int8": [[...]]},
     "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": 7}},
     "response_type": "embeddings_by_type"}

Compact types are derived from the float vectors by :func:`compact_rows`, so a test can compute
what it expects. Errors are ``{"id", "message"}`` with Cohere's wording where it is known (the
401, 404 and trial-key 429 texts are recorded ones; the 5xx and validation texts are not).
"""

from __future__ import annotations

import math
import random
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ._errors import ErrorSpec
from ._vectors import count_tokens

__all__ = [
    "EMBEDDING_TYPES",
    "PATH",
    "CohereRequest",
    "cohere_error_body",
    "cohere_ids",
    "cohere_payload",
    "cohere_rate_headers",
    "cohere_success_headers",
    "compact_rows",
    "parse_cohere",
]

PATH = "/cohere/v2/embed"
MAX_TEXTS = 96
EMBEDDING_TYPES = ("float", "int8", "uint8", "binary", "ubinary")
INPUT_TYPES = ("search_document", "search_query", "classification", "clustering", "image")
_TRUNCATE = ("NONE", "START", "END")
_V4_SIZES = (256, 512, 1024, 1536)
_OLD_MODEL = re.compile(r"-v[123]\.\d+$")
_BITS = ("binary", "ubinary")
_MAX_DIMENSIONS = 65_536
_TRIAL = (
    " You can continue to use the Trial key for free or upgrade to a Production key with higher"
    " rate limits at 'https://dashboard.cohere.com/api-keys'. Contact us on"
    " 'https://discord.gg/XW44jPfYJu' or email us at support@cohere.com with any questions"
)
_LIMIT = re.compile(r"Limit (\d+)")
_MODEL = re.compile(r"`([^`]*)`")


@dataclass(frozen=True)
class CohereRequest:
    """A valid Cohere embed request: what the response depends on."""

    model: str
    inputs: tuple[str, ...]
    dimensions: int
    tokens: int
    embedding_types: tuple[str, ...]
    input_type: str


def _bad(message: str) -> ErrorSpec:
    return ErrorSpec(400, f"invalid request: {message}")


def _texts(body: dict[str, Any]) -> tuple[str, ...] | ErrorSpec:
    texts = body.get("texts")
    if not isinstance(texts, list) or not texts:
        return _bad("texts must be a non-empty list of strings")
    if not all(isinstance(t, str) and t for t in texts):
        return _bad("every element of texts must be a non-empty string")
    if len(texts) > MAX_TEXTS:
        return _bad(f"total number of texts must be at most {MAX_TEXTS} - received {len(texts)}")
    return tuple(texts)


def _dimensions(model: str, body: dict[str, Any], default: int) -> int | ErrorSpec:
    value = body.get("output_dimension")
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_DIMENSIONS:
        return _bad(f"output_dimension must be a positive integer, got {value!r}")
    if _OLD_MODEL.search(model):
        return _bad(f"output_dimension is not supported for model '{model}'")
    if model.startswith("embed-v4") and value not in _V4_SIZES:
        sizes = ", ".join(map(str, _V4_SIZES))
        return _bad(f"output_dimension must be one of {sizes} for model '{model}'")
    return value


def _types(body: dict[str, Any]) -> tuple[str, ...] | ErrorSpec:
    value = body.get("embedding_types")
    if value is None:
        return ("float",)
    if not isinstance(value, list) or not value or not all(v in EMBEDDING_TYPES for v in value):
        return _bad(f"embedding_types must be a list of {', '.join(EMBEDDING_TYPES)}")
    return tuple(dict.fromkeys(value))


def parse_cohere(
    body: Any,
    *,
    dimensions: int,
    max_input_tokens: int | None,
    max_batch_size: int | None,
) -> CohereRequest | ErrorSpec:
    """Validate a ``/v2/embed`` body; return the request or the error to send."""
    if not isinstance(body, dict):
        return _bad("the body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return _bad("model is required")
    texts = _texts(body)
    if isinstance(texts, ErrorSpec):
        return texts
    input_type = body.get("input_type")
    if input_type is None:
        return _bad("input_type is required for embed models v3 and higher")
    if input_type not in INPUT_TYPES:
        return _bad(f"input_type must be one of {', '.join(INPUT_TYPES)}, got {input_type!r}")
    size = _dimensions(model, body, dimensions)
    if isinstance(size, ErrorSpec):
        return size
    types = _types(body)
    if isinstance(types, ErrorSpec):
        return types
    truncate = body.get("truncate")
    if truncate is not None and truncate not in _TRUNCATE:
        return _bad(f"truncate must be one of {', '.join(_TRUNCATE)}")
    if max_batch_size is not None and len(texts) > max_batch_size:
        return _bad(f"total number of texts must be at most {max_batch_size}")
    counts = [count_tokens(text) for text in texts]
    if max_input_tokens is not None and max(counts) > max_input_tokens:
        if truncate == "NONE":
            over = max(counts) - max_input_tokens
            message = (
                f"too many tokens: size limit exceeded by {over} tokens. Try using shorter or "
                "fewer inputs, or setting truncate to START or END."
            )
            return ErrorSpec(400, message, code="TOO_MANY_TOKENS", kind="context_length")
        counts = [min(c, max_input_tokens) for c in counts]
    return CohereRequest(model, texts, size, sum(counts), types, input_type)


# -- bodies ------------------------------------------------------------------------------------
def compact_rows(matrix: npt.NDArray[np.float32], embedding_type: str) -> npt.NDArray[Any]:
    """What the server sends as ``embedding_type`` for these float vectors (deterministic).

    ``int8``: each row scaled so its largest magnitude is 127, rounded; ``uint8``: that plus
    128; ``binary``/``ubinary``: one bit per dimension (``value > 0``), packed 8 per byte, most
    significant bit first: ``ubinary`` the bytes, ``binary`` the bytes minus 128 (offset binary,
    as sentence-transformers' quantization, Voyage and Bedrock define it). ``float``: the matrix
    itself.
    """
    if embedding_type == "float":
        return matrix
    clean = np.nan_to_num(matrix.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if embedding_type in _BITS:
        packed = np.packbits(clean > 0, axis=1)
        if embedding_type == "binary":
            return (packed.astype(np.int16) - 128).astype(np.int8)
        return packed
    peak = np.abs(clean).max(axis=1, keepdims=True)
    peak[peak == 0] = 1.0
    scaled = np.rint(clean / peak * 127).astype(np.int16)
    out: npt.NDArray[Any] = scaled + 128 if embedding_type == "uint8" else scaled
    return out.astype(np.uint8 if embedding_type == "uint8" else np.int8)


def _compact(
    matrix: npt.NDArray[np.float32],
    name: str,
    rows: Sequence[int],
    nan_row: int | None,
    full_width: int,
    fault: str | None,
) -> list[list[int]]:
    packed = compact_rows(matrix, name)
    if fault == "wrong_dimensions" and packed.shape[1] == full_width:
        packed = packed[:, :-1]  # a bit-packed row one bit short can keep its byte width
    values = packed.astype(np.int64)
    if nan_row is not None:  # an integer has no NaN: the nearest breakage is a value out of range
        values[nan_row, 0] = 300
    return [values[r].tolist() for r in rows]


def cohere_payload(
    request: CohereRequest,
    matrix: npt.NDArray[np.float32],
    rows: Sequence[int],
    float_rows: list[Any],
    nan_row: int | None,
    fault: str | None,
    rng: random.Random,
) -> dict[str, Any]:
    """The by-type 200 body: ``float_rows`` (already damaged by data faults) for ``float``,
    :func:`compact_rows` of ``matrix`` for the other types, each in ``rows`` order."""
    embeddings: dict[str, Any] = {}
    for name in request.embedding_types:
        if name == "float":
            embeddings[name] = float_rows
        else:
            width = math.ceil(request.dimensions / 8) if name in _BITS else request.dimensions
            embeddings[name] = _compact(matrix, name, rows, nan_row, width, fault)
    billed: dict[str, Any] = {"input_tokens": request.tokens}
    if request.model.startswith("embed-v4"):
        billed["image_tokens"] = 0
    return {
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "texts": list(request.inputs),
        "embeddings": embeddings,
        "meta": {"api_version": {"version": "2"}, "billed_units": billed},
        "response_type": "embeddings_by_type",
    }


# -- errors and headers ------------------------------------------------------------------------
def _message(spec: ErrorSpec) -> str:
    if spec.kind == "auth":
        return (
            "Incorrect API key provided: ***********. You can find your API key at "
            "https://dashboard.cohere.com/api-keys."
        )
    if spec.kind == "rate_limit":
        match = _LIMIT.search(spec.message)
        limit = match.group(1) if match else "100"
        if spec.type == "tokens":  # Cohere publishes no token limit: the server's own words
            return f"You are using a key which is limited to {limit} tokens / minute."
        return f"You are using a Trial key, which is limited to {limit} API calls / minute.{_TRIAL}"
    if spec.kind == "quota":
        return f"You are using a Trial key, which is limited to 1000 API calls / month.{_TRIAL}"
    if spec.kind == "context_length" and spec.code != "TOO_MANY_TOKENS":
        return (
            "too many tokens: size limit exceeded. Try using shorter or fewer inputs, or "
            "setting truncate to START or END."
        )
    if spec.code == "model_not_found":
        match = _MODEL.search(spec.message)
        model = match.group(1) if match else "unknown"
        return (
            f"model '{model}' not found, make sure the correct model ID was used and that you "
            "have access to the model."
        )
    if spec.status >= 500:
        return "internal server error, this has been reported to our developers"
    return spec.message


def cohere_error_body(spec: ErrorSpec) -> dict[str, Any]:
    """``{"id", "message"}`` (plus ``error_type`` for too many tokens) for ``spec``."""
    message = _message(spec)
    error_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"cohere:{spec.status}:{message}"))
    body: dict[str, Any] = {"id": error_id, "message": message}
    if spec.kind == "context_length":
        body = {"error_type": "TOO_MANY_TOKENS", **body}
    return body


def cohere_ids(bits: int) -> list[tuple[str, str]]:
    """Cohere's per-response trace header."""
    return [("x-debug-trace-id", f"{bits:032x}")]


def cohere_success_headers(inputs: Sequence[str], tokens: int) -> list[tuple[str, str]]:
    """``num_chars`` and ``num_tokens``, as Cohere sends them with every 200."""
    return [("num_chars", str(sum(len(t) for t in inputs))), ("num_tokens", str(tokens))]


def cohere_rate_headers(
    limit_requests: int | None, remaining_requests: int
) -> list[tuple[str, str]]:
    """Trial-key headers: the per-minute call limit, what is left, and the monthly cap."""
    if limit_requests is None:
        return []  # Cohere states no token limit
    return [
        ("x-endpoint-monthly-call-limit", "1000"),
        ("x-trial-endpoint-call-limit", str(limit_requests)),
        ("x-trial-endpoint-call-remaining", str(remaining_requests)),
    ]
