"""Bedrock's InvokeModel wire format for the test server: Titan and Cohere bodies, errors, headers.

Route: ``POST /bedrock/model/{modelId}/invoke`` (``server.base_url("bedrock")`` is the host part a
profile's ``base_url`` takes). The request is validated as Bedrock validates it (a JSON schema per
model: unknown keys, a ``model`` key in a Cohere body, a missing ``input_type``, more than 96
texts, a Titan size other than 256/512/1024 are all ``ValidationException`` 400s), then answered
in the model's own shape: Titan ``{"embedding", "embeddingsByType", "inputTextTokenCount"}``,
Cohere ``{"id", "texts", "embeddings", "response_type"}`` (a bare float list from v3 without
``embedding_types``, by type otherwise). Errors are ``{"message"}`` with the exception in
``x-amzn-ErrorType``; successes carry ``X-Amzn-Bedrock-Input-Token-Count`` and
``X-Amzn-Bedrock-Invocation-Latency``; no response states a rate limit or a wait.

Vectors: ``deterministic_vectors`` (or ``lexical_vectors``) at the model's size (Titan v1 1536,
v2 ``dimensions`` or 1024, Cohere v3 1024, v4 ``output_dimension`` or 1536). Compact types:
Titan ``binary`` is one 0/1 per dimension (1 where the float is > 0); Cohere ``ubinary`` packs
those bits 8 per byte (most significant first), ``binary`` is that byte minus 128, ``int8`` is
``rint(v / max|v| * 127)`` per row and ``uint8`` that plus 128 (see :func:`compact_rows`).
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from ._errors import ErrorSpec
from ._routes import EmbedCall, Limits, Route
from ._vectors import count_tokens, deterministic_vectors, lexical_vectors

__all__ = [
    "BedrockCall",
    "BedrockRoute",
    "compact_rows",
    "error",
    "inputs_of",
    "match",
    "parse_call",
    "render",
    "success_headers",
]

_PATH = re.compile(r"/bedrock/model/(.+)/invoke")
_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.bedrock/"
_AUTH_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.coral.service/"
_MALFORMED = "Malformed input request, please reformat your input and try again."
_NAN = "__embedguard_nan__"
# model family -> (native size, sizes it can be asked for, max tokens per text)
_FAMILIES: dict[str, tuple[int, frozenset[int], int]] = {
    "titan-v1": (1536, frozenset({1536}), 8192),
    "titan-v2": (1024, frozenset({256, 512, 1024}), 8192),
    "cohere-v3": (1024, frozenset({1024}), 512),
    "cohere-v4": (1536, frozenset({256, 512, 1024, 1536}), 128_000),
}
_MODELS = {
    "amazon.titan-embed-text-v1": "titan-v1",
    "amazon.titan-embed-g1-text-02": "titan-v1",
    "amazon.titan-embed-text-v2:0": "titan-v2",
    "cohere.embed-english-v3": "cohere-v3",
    "cohere.embed-multilingual-v3": "cohere-v3",
    "cohere.embed-v4:0": "cohere-v4",
}
_TITAN_KEYS = {"titan-v1": {"inputText"}, "titan-v2": {"inputText", "dimensions", "normalize",
                                                       "embeddingTypes"}}  # fmt: skip
_COHERE_KEYS = {"texts", "images", "input_type", "truncate", "embedding_types", "output_dimension",
                "max_tokens"}  # fmt: skip
_INPUT_TYPES = frozenset({"search_document", "search_query", "classification", "clustering"})
_COHERE_TYPES = ("float", "int8", "uint8", "binary", "ubinary")
# Exception names for a status when a fault asks for a bare status.
_BY_STATUS: dict[int, tuple[str, str]] = {
    400: ("ValidationException", _MALFORMED),
    401: ("UnrecognizedClientException", "The security token included in the request is invalid."),
    403: ("AccessDeniedException", "You don't have access to the model with this model ID."),
    404: ("ResourceNotFoundException", "The requested model was not found."),
    408: ("ModelTimeoutException", "Model has timed out in processing the request."),
    409: ("ConflictException", "The request conflicts with another request."),
    424: ("ModelErrorException", "The model returned an error while processing the request."),
    429: ("ThrottlingException", "Too many requests, please wait before trying again."),
    503: ("ServiceUnavailableException", "Bedrock is unable to process your request."),
}  # fmt: skip


@dataclass(frozen=True)
class BedrockRoute(Route):
    """The Bedrock route, with the model id its path names (percent-decoded)."""

    model_id: str = ""


@dataclass(frozen=True)
class BedrockCall(EmbedCall):
    """A validated InvokeModel request: the family, the vector types asked for, the input type."""

    family: str = ""
    types: tuple[str, ...] = ()
    input_type: str | None = None
    by_type: bool = False  # the answer lists embeddings by type (Cohere v4, or types asked)


def match(path: str) -> BedrockRoute | None:
    """The route for ``/bedrock/model/{modelId}/invoke``, else ``None``."""
    found = _PATH.fullmatch(path)
    return None if found is None else BedrockRoute("bedrock", model_id=found.group(1))


def _family(model_id: str) -> str | None:
    name = model_id.rsplit("/", 1)[-1] if model_id.startswith("arn:") else model_id
    head, dot, rest = name.partition(".")
    if dot and head not in ("amazon", "cohere"):
        name = rest  # a cross-Region inference profile: us.cohere.embed-v4:0
    return _MODELS.get(name)


def inputs_of(body: Any) -> tuple[str, ...]:
    """The texts of a Titan or Cohere body, best effort (for the request log)."""
    if not isinstance(body, dict):
        return ()
    if isinstance(body.get("inputText"), str):
        return (body["inputText"],)
    texts = body.get("texts")
    return tuple(t for t in texts if isinstance(t, str)) if isinstance(texts, list) else ()


def _invalid(message: str) -> ErrorSpec:
    return ErrorSpec(400, message, code="ValidationException")


def _schema(path: str, problem: str) -> ErrorSpec:
    return _invalid(f"Malformed input request: {path}: {problem}, please reformat your input and "
                    "try again.")  # fmt: skip


def _titan(
    family: str, body: dict[str, Any]
) -> tuple[tuple[str, ...], int, tuple[str, ...]] | ErrorSpec:
    extra = sorted(set(body) - _TITAN_KEYS[family])
    if extra:
        return _schema("#", f"extraneous key [{extra[0]}] is not permitted")
    text = body.get("inputText")
    if not isinstance(text, str):
        return _schema("#", "required key [inputText] not found")
    if not text:
        return _schema("#/inputText", "expected minLength: 1, actual: 0")
    native, sizes, _ = _FAMILIES[family]
    size = body.get("dimensions", native)
    if type(size) is not int or size not in sizes:
        return _invalid(f"Malformed input request: #/dimensions: {size} is not a valid enum "
                        "value, please reformat your input and try again.")  # fmt: skip
    types = body.get("embeddingTypes", ["float"])
    if not isinstance(types, list) or not types or not set(types) <= {"float", "binary"}:
        return _schema("#/embeddingTypes", f"{types!r} is not a valid list of types")
    return (text,), size, tuple(dict.fromkeys(types))


def _cohere(
    family: str, body: dict[str, Any]
) -> tuple[tuple[str, ...], int, tuple[str, ...]] | ErrorSpec:
    extra = sorted(set(body) - _COHERE_KEYS)
    if extra:
        return _schema("#", f"extraneous key [{extra[0]}] is not permitted")
    texts = body.get("texts")
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        return _schema("#/texts", "expected type: JSONArray of strings")
    if len(texts) > 96:
        return _schema("#/texts", f"expected maxItems: 96, actual: {len(texts)}")
    if body.get("input_type") not in _INPUT_TYPES:
        return _schema("#/input_type", f"{body.get('input_type')!r} is not a valid enum value")
    if body.get("truncate", "NONE") not in ("NONE", "START", "END"):
        return _schema("#/truncate", f"{body.get('truncate')!r} is not a valid enum value")
    types = body.get("embedding_types", ["float"])
    if not isinstance(types, list) or not types or not set(types) <= set(_COHERE_TYPES):
        return _schema("#/embedding_types", f"{types!r} is not a valid list of types")
    native, sizes, _ = _FAMILIES[family]
    size = body.get("output_dimension", native)
    if family == "cohere-v3" and "output_dimension" in body:
        return _schema("#", "extraneous key [output_dimension] is not permitted")
    if type(size) is not int or size not in sizes:
        return _schema("#/output_dimension", f"{size} is not a valid enum value")
    return tuple(texts), size, tuple(dict.fromkeys(types))


def parse_call(route: Route, body: Any, limits: Limits) -> EmbedCall | ErrorSpec:
    """Validate an InvokeModel body for the model ``route`` names; the call or the 400 to send."""
    model_id = route.model_id if isinstance(route, BedrockRoute) else ""
    family = _family(model_id)
    if family is None:
        return _invalid("The provided model identifier is invalid.")
    if not isinstance(body, dict):
        return _invalid(_MALFORMED)
    cohere = family.startswith("cohere")
    parsed = _cohere(family, body) if cohere else _titan(family, body)
    if isinstance(parsed, ErrorSpec):
        return parsed
    texts, size, types = parsed
    if limits.max_batch_size is not None and len(texts) > limits.max_batch_size:
        return _schema(
            "#/texts", f"expected maxItems: {limits.max_batch_size}, actual: {len(texts)}"
        )
    cap = limits.max_input_tokens or _FAMILIES[family][2]
    counts = [count_tokens(text) for text in texts]
    if max(counts) > cap:
        message = (f"400 Bad Request: Too many input tokens. Max input tokens: {cap}, request "
                   f"input token count: {max(counts)}")  # fmt: skip
        return _invalid(message)
    return BedrockCall(
        route, model_id, texts, size, False, sum(counts), None, limits.vectors,
        family=family, types=types, input_type=body.get("input_type"),
        by_type=cohere and (family == "cohere-v4" or "embedding_types" in body),
    )  # fmt: skip


def compact_rows(matrix: npt.NDArray[np.float32], wire_type: str) -> npt.NDArray[np.int64]:
    """The integer rows the server sends for a compact Cohere ``wire_type`` (see the module)."""
    rows: npt.NDArray[np.int64]
    if wire_type in ("binary", "ubinary"):
        rows = np.packbits(matrix > 0, axis=1).astype(np.int64)
        return rows - 128 if wire_type == "binary" else rows
    scale = np.abs(matrix).max(axis=1, keepdims=True)
    scale[scale == 0] = 1.0
    rows = np.clip(np.rint(matrix / scale * 127), -128, 127).astype(np.int64)
    return rows + 128 if wire_type == "uint8" else rows


def _rows(matrix: Any, fault: str | None, rng: random.Random) -> list[Any]:
    rows = [list(row) for row in np.asarray(matrix).tolist()]
    n = len(rows)
    if fault == "wrong_count":
        rows.pop()
    elif fault == "shuffle" and n > 1:
        rows = rows[1:] + rows[:1]  # no index on the wire: a reorder nobody can see
    elif fault == "bad_index":
        rows.append(rows[0])  # no index on the wire: an extra vector is the closest breakage
    elif fault == "wrong_dimensions":
        rows = [row[:-1] for row in rows]
    elif fault == "nan" and rows:
        row = rng.randrange(len(rows))
        rows[row][rng.randrange(len(rows[row]))] = _NAN
    return rows


def render(call: EmbedCall, fault: str | None, rng: random.Random) -> bytes:
    """The 200 body for ``call``, damaged as the data fault ``fault`` says (``None``: intact)."""
    assert isinstance(call, BedrockCall)
    make = lexical_vectors if call.vectors == "lexical" else deterministic_vectors
    matrix = make(call.inputs, call.dimensions)
    payload: dict[str, Any]
    if call.family.startswith("titan"):
        floats = _rows(matrix, fault, rng)
        single: Any = floats if fault == "bad_index" else (floats[0] if floats else [])
        payload = {"embedding": single, "inputTextTokenCount": call.tokens}
        if call.family == "titan-v2":
            by_type: dict[str, Any] = {}
            if "float" in call.types:
                by_type["float"] = single
            if "binary" in call.types:
                bits = _rows((matrix > 0).astype(np.int64), fault, rng)
                by_type["binary"] = bits[0] if bits else []
            payload = {"embedding": single, "embeddingsByType": by_type,
                       "inputTextTokenCount": call.tokens}  # fmt: skip
    else:
        embeddings: Any
        if call.by_type:
            embeddings = {}
            for wire in call.types:
                values = matrix if wire == "float" else compact_rows(matrix, wire)
                embeddings[wire] = _rows(values, fault, rng)
        else:
            embeddings = _rows(matrix, fault, rng)
        payload = {
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "texts": [text.lower() for text in call.inputs],
            "embeddings": embeddings,
            "response_type": "embeddings_by_type" if call.by_type else "embeddings_floats",
        }
    body = orjson.dumps(payload)
    return body.replace(orjson.dumps(_NAN), b"NaN")


def success_headers(call: EmbedCall, elapsed: float) -> list[tuple[str, str]]:
    """Bedrock's 200 headers besides the request id: input tokens and invocation latency."""
    return [
        ("X-Amzn-Bedrock-Invocation-Latency", str(int(elapsed * 1000))),
        ("X-Amzn-Bedrock-Input-Token-Count", str(call.tokens)),
    ]


def error(
    spec: ErrorSpec,
    body: bytes | None,
    headers: Sequence[tuple[str, str]],
) -> tuple[ErrorSpec, bytes, list[tuple[str, str]]]:
    """``spec`` as Bedrock sends it: ``{"message"}`` and ``x-amzn-ErrorType``.

    A spec the Bedrock route made (its ``code`` names an exception) is sent as is; a generic one
    (a scripted status, the rate limiter's 429, a quota or context-length fault) becomes the
    exception Bedrock uses: ``ThrottlingException`` 429, ``ServiceQuotaExceededException`` 400,
    a ``ValidationException`` for an input over the token limit, else the status's exception.
    A scripted ``body`` or ``x-amzn-ErrorType`` header is kept as given.
    """
    name = spec.code if spec.code and spec.code[:1].isupper() else None
    status, message = spec.status, spec.message
    if name is None:
        if spec.kind == "quota":
            status, name = 400, "ServiceQuotaExceededException"
            message = "Your request exceeds the service quota for your account."
        elif spec.kind == "context_length":
            name = "ValidationException"
            message = "400 Bad Request: Too many input tokens. Max input tokens: 8192."
        elif spec.kind == "auth" and status == 401:
            name, message = _BY_STATUS[401]
        else:
            name, message = _BY_STATUS.get(
                status, ("InternalServerException", "The server encountered an internal error.")
            )
    namespace = (
        _AUTH_NAMESPACE if name.startswith(("Unrecognized", "Missing", "Invalid")) else _NAMESPACE
    )
    extra = list(headers)
    if not any(key.lower() == "x-amzn-errortype" for key, _ in extra):
        extra.append(("x-amzn-ErrorType", f"{name}:{namespace}"))
    shaped = ErrorSpec(status, message, code=name, kind=spec.kind)
    return shaped, body if body is not None else orjson.dumps({"message": message}), extra
