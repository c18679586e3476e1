"""Voyage AI's wire format on the loopback server: requests, bodies, errors, headers (pure).

Route ``POST /voyage/v1/embeddings`` (``server.base_url("voyage")`` is ``{url}/voyage/v1``).
The request is validated as Voyage does (``input``: a string or 1 to 1,000 non-empty strings;
``model``: one Voyage serves; ``input_type``: null, ``query`` or ``document``; ``truncation``;
``output_dimension``: 256/512/1024/2048 on the flexible models only; ``output_dtype``;
``encoding_format``: null or ``base64``); every refusal is Voyage's ``{"detail": "..."}``. Vectors
are the model's native size unless ``output_dimension`` says otherwise (the server's
``dimensions`` setting does not apply to this route). The body is Voyage's: ``object``, ``data``
items of ``object, embedding, index``, ``model``, ``usage: {"total_tokens"}`` only. Compact
dtypes come from the float vector (:func:`voyage_vectors`): ``int8`` is ``rint(127 v /
max|v|)``, ``uint8`` that plus 128, ``ubinary`` the sign bits packed 8 per byte (most significant
first) and ``binary`` those bytes minus 128 (offset binary, as Voyage documents). Voyage sends no
``x-ratelimit-*`` headers: a server with both rate limits set answers like a free-tier account,
with an ``x-api-warning`` stating them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pybase64

from embedguard.core.providers.voyage import FLEXIBLE_SIZES, VOYAGE_MODELS

from ._errors import ErrorSpec
from ._ratelimit import RateDecision
from ._routes import _NAN, _NAN_JSON, EmbedCall, Limits, Route, _order, _vectors
from ._vectors import count_tokens, deterministic_vectors, lexical_vectors

__all__ = [
    "PATH",
    "VoyageCall",
    "parse_voyage",
    "render_voyage",
    "voyage_error_body",
    "voyage_rate_headers",
    "voyage_vectors",
]

PATH = "/voyage/v1/embeddings"
MAX_INPUTS = 1000
_DTYPES = frozenset({"float", "int8", "uint8", "binary", "ubinary"})
_BITS = frozenset({"binary", "ubinary"})
_INPUT_TYPES = frozenset({"query", "document"})


@dataclass(frozen=True)
class VoyageCall(EmbedCall):
    """A validated Voyage request: the OpenAI-route fields plus its dtype and input type."""

    dtype: str = "float"
    input_type: str | None = None


def _bad(message: str) -> ErrorSpec:
    return ErrorSpec(400, message)


def _inputs(raw: Any) -> tuple[str, ...] | ErrorSpec:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items:
        return _bad("input should be a string or a non-empty list of strings.")
    if not all(isinstance(item, str) and item for item in items):
        return _bad("input should be a string or a non-empty list of non-empty strings.")
    return tuple(items)


def _output(body: dict[str, Any], model: str) -> tuple[str, int | None] | ErrorSpec:
    """The dtype and the ``output_dimension`` asked for, or the 400 Voyage answers."""
    spec = VOYAGE_MODELS[model]
    dtype = body.get("output_dtype") or "float"
    if dtype not in _DTYPES:
        return _bad(f"output_dtype should be one of {sorted(_DTYPES)}, not {dtype!r}.")
    if dtype != "float" and not spec.flexible:
        return _bad(f"output_dtype {dtype} is not supported for model {model}.")
    size = body.get("output_dimension")
    if size is None:
        return dtype, None
    if type(size) is not int:
        return _bad(f"output_dimension should be an integer, not {size!r}.")
    if not spec.flexible:
        return _bad(f"output_dimension is not supported for model {model}.")
    if size not in FLEXIBLE_SIZES:
        return _bad(f"output_dimension {size} is not supported for model {model}; use one of "
                    f"{list(FLEXIBLE_SIZES)}.")  # fmt: skip
    return dtype, size


def _token_error(model: str, counts: list[int], context: int, truncate: bool) -> ErrorSpec | None:
    over = [i for i, count in enumerate(counts) if count > context]
    if over and not truncate:
        return ErrorSpec(
            400,
            f"Request to model '{model}' failed. The example at index {over[0]} in your batch has "
            f"too many tokens and does not fit into the model's context window of {context} "
            "tokens. Please lower the number of tokens in the listed example(s) or use "
            "truncation.",
            kind="context_length",
        )
    return None


def parse_voyage(body: Any, limits: Limits) -> VoyageCall | ErrorSpec:
    """Validate a Voyage request body; return the call or the 400 to send."""
    if not isinstance(body, dict):
        return _bad("There was an error parsing the body.")
    model = body.get("model")
    if not isinstance(model, str):
        return _bad("model is required.")
    if model not in VOYAGE_MODELS:
        names = ", ".join(repr(name) for name in VOYAGE_MODELS)
        return _bad(f"Model {model} is not supported. Supported models are [{names}].")
    inputs = _inputs(body.get("input"))
    if isinstance(inputs, ErrorSpec):
        return inputs
    cap = min(MAX_INPUTS, limits.max_batch_size or MAX_INPUTS)
    if len(inputs) > cap:
        return _bad(f"The max allowed number of texts in a request is {cap}. Your request has "
                    f"{len(inputs)} texts.")  # fmt: skip
    input_type = body.get("input_type")
    if input_type is not None and input_type not in _INPUT_TYPES:
        return _bad(f"input_type should be 'query', 'document' or null, not {input_type!r}.")
    truncate = body.get("truncation", True)
    if not isinstance(truncate, bool):
        return _bad(f"truncation should be a boolean, not {truncate!r}.")
    encoding = body.get("encoding_format")
    if encoding not in (None, "base64"):
        return _bad(f"encoding_format should be null or 'base64', not {encoding!r}.")
    output = _output(body, model)
    if isinstance(output, ErrorSpec):
        return output
    dtype, size = output
    spec = VOYAGE_MODELS[model]
    context = limits.max_input_tokens or spec.max_tokens_per_input
    counts = [count_tokens(text) for text in inputs]
    refused = _token_error(model, counts, context, truncate)
    if refused is not None:
        return refused
    tokens = sum(min(count, context) for count in counts)
    if tokens > spec.max_tokens_per_request:
        return _bad(
            f"Request to model '{model}' failed. The max allowed tokens per submitted batch is "
            f"{spec.max_tokens_per_request}. Your batch has {tokens} tokens after truncation. "
            "Please lower the number of tokens in the batch."
        )
    return VoyageCall(
        Route("voyage"), model, inputs, size or spec.size, encoding == "base64", tokens, None,
        limits.vectors, dtype=dtype, input_type=input_type,
    )  # fmt: skip


def _quantized(matrix: npt.NDArray[np.float32], dtype: str) -> npt.NDArray[np.int16]:
    """The integers ``dtype`` holds for each float row (see the module docstring)."""
    if dtype in _BITS:
        packed = np.packbits(matrix > 0, axis=1).astype(np.int16)
        return packed - 128 if dtype == "binary" else packed
    peak = np.abs(matrix).max(axis=1, keepdims=True)
    peak[peak == 0] = 1.0
    scaled = np.clip(np.rint(matrix / peak * 127), -127, 127)
    values: npt.NDArray[np.int16] = scaled.astype(np.int16)
    return values + 128 if dtype == "uint8" else values


def voyage_vectors(
    texts: list[str], dimensions: int, dtype: str = "float", vectors: str = "random"
) -> npt.NDArray[Any]:
    """What the server answers for ``texts``: float32 rows, or the integers of a compact dtype.

    Args:
        texts: the texts.
        dimensions: the vector size (for the bit types, in bits: rows are ``dimensions / 8``).
        dtype: Voyage's ``output_dtype`` (``float``, ``int8``, ``uint8``, ``binary``,
            ``ubinary``).
        vectors: the server's vector mode, ``"random"`` or ``"lexical"``.
    """
    make = lexical_vectors if vectors == "lexical" else deterministic_vectors
    matrix = make(texts, dimensions)
    return matrix if dtype == "float" else _quantized(matrix, dtype)


def _embedding(call: VoyageCall, values: npt.NDArray[Any], damaged: bool) -> Any:
    """One row in the body: base64 of its bytes, or a JSON list (``damaged``: an invalid one)."""
    if call.dtype == "float":
        if call.base64:
            return pybase64.b64encode(values.astype("<f4").tobytes()).decode("ascii")
        if damaged:  # orjson writes NaN as null: a placeholder is swapped for NaN afterwards
            return [_NAN if v != v else v for v in values.tolist()]
        return values
    if call.base64:
        raw = values.astype(np.int8 if call.dtype in ("int8", "binary") else np.uint8).tobytes()
        text = pybase64.b64encode(raw).decode("ascii")
        return "*" + text[1:] if damaged else text  # '*' is not base64
    row = values.tolist()
    if damaged:
        row[0] = 0.5  # a compact vector holds integers only
    return row


def render_voyage(call: VoyageCall, fault: str | None, rng: random.Random) -> bytes:
    """The 200 body for ``call``, damaged as the data fault ``fault`` says (``None``: intact)."""
    matrix, nan_row = _vectors(call, None if call.dtype != "float" else fault, rng)
    values: npt.NDArray[Any] = matrix
    if call.dtype != "float":
        values = _quantized(matrix, call.dtype)
        if fault == "wrong_dimensions":
            values = values[:, :-1]
        if fault == "nan":
            nan_row = rng.randrange(len(call.inputs))
    rows, indices = _order(len(call.inputs), fault, rng, False)
    payload = {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "embedding": _embedding(call, values[r], r == nan_row),
                "index": i,
            }
            for r, i in zip(rows, indices, strict=True)
        ],
        "model": call.model,
        "usage": {"total_tokens": call.tokens},
    }
    body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    if nan_row is not None and call.dtype == "float" and not call.base64:
        body = body.replace(_NAN_JSON, b"NaN", 1)
    return body


_TEXTS = {
    "auth": "Provided API key is invalid.",
    "rate_limit": "You have exceeded your rate limit. Please slow down your requests or request a "
    "rate limit increase.",
    "quota": "You have exceeded your usage limit. Please add a payment method or raise the "
    "usage limit of your organization.",
    "context_length": "The example at index 0 in your batch has too many tokens and does not fit "
    "into the model's context window of 32000 tokens. Please lower the number of tokens in the "
    "listed example(s) or use truncation.",
}
_STATUS_TEXTS = {401: _TEXTS["auth"], 404: "Not Found", 405: "Method Not Allowed",
                 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
                 504: "Gateway Timeout"}  # fmt: skip


def voyage_error_body(spec: ErrorSpec) -> dict[str, Any]:
    """Voyage's (FastAPI's) error body for ``spec``: ``{"detail": "<text>"}``.

    The route's own refusals keep their texts (Voyage's 400 wordings: unsupported model, too
    many tokens in an input or in the batch). Other errors get Voyage-style texts: the 401,
    429 and 5xx bodies are recorded nowhere we looked, so those wordings are ours.
    """
    if spec.message.startswith(("Request to model", "Model ")):
        return {"detail": spec.message}
    if spec.kind in _TEXTS:
        return {"detail": _TEXTS[spec.kind]}
    return {"detail": _STATUS_TEXTS.get(spec.status, spec.message)}


def voyage_rate_headers(decision: RateDecision) -> list[tuple[str, str]]:
    """The free-tier ``x-api-warning`` stating the server's limits (both must be set)."""
    rpm, tpm = decision.limit_requests, decision.limit_tokens
    if rpm is None or tpm is None:
        return []
    tokens = f"{tpm // 1000}K" if tpm % 1000 == 0 else str(tpm)
    return [(
        "x-api-warning",
        "You have not yet added your payment method in the billing page and will have reduced "
        f"rate limits of {rpm} RPM and {tokens} TPM. To unlock our standard rate limits, please "
        "add a payment method in the billing page for the appropriate organization in the user "
        "dashboard (https://dashboard.voyageai.com/).",
    )]  # fmt: skip
