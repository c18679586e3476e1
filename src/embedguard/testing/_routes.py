"""The embedding routes: match a path, validate a request, render a response (pure)."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import orjson

from ._errors import (
    ErrorSpec,
    context_length_error,
    invalid_input_error,
    shape_error,
    status_error,
)
from ._vectors import count_tokens, deterministic_vectors, encode_base64_rows, lexical_vectors
from ._wire_cohere import PATH as COHERE_PATH
from ._wire_cohere import CohereRequest, cohere_payload, parse_cohere
from ._wire_tei import PATHS as TEI_PATHS
from ._wire_tei import parse_tei_call, tei_error_body, tei_inputs

__all__ = [
    "HTML_PAGE",
    "EmbedCall",
    "Limits",
    "Route",
    "VectorMode",
    "error_200",
    "error_body",
    "extract_inputs",
    "match_route",
    "parse_call",
    "render",
]

_AZURE_DEPLOYMENT = re.compile(r"/openai/deployments/([^/]+)/embeddings")
_NAN = "__embedguard_nan__"
_NAN_JSON = orjson.dumps(_NAN)
_MAX_DIMENSIONS = 65_536

HTML_PAGE = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


@dataclass(frozen=True)
class Route:
    """A matched embedding route; ``provider`` names its wire format."""

    provider: (
        str  # "openai", "azure", "mistral", "ollama", "cohere", "voyage", "gemini", "bedrock"...
    )
    legacy: bool = False  # Ollama's /api/embeddings (one prompt, one vector)
    deployment: str | None = None  # Azure's classic deployments URL


def match_route(path: str) -> Route | None:
    """The route serving ``path``, or ``None`` (404)."""
    if path.startswith("/gemini/"):
        from ._wire_gemini import match_gemini  # imported here: it imports this module

        return match_gemini(path)
    if path == "/v1/embeddings":
        return Route("openai")
    if path == "/mistral/v1/embeddings":
        return Route("mistral")
    if path == "/api/embed":
        return Route("ollama")
    if path == "/api/embeddings":
        return Route("ollama", legacy=True)
    if path == "/openai/v1/embeddings":
        return Route("azure")
    if path == COHERE_PATH:
        return Route("cohere")
    if path == "/voyage/v1/embeddings":
        return Route("voyage")
    if path.startswith("/bedrock/"):
        from ._wire_bedrock import match as bedrock_route

        return bedrock_route(path)
    if path in TEI_PATHS:
        return Route("tei")
    match = _AZURE_DEPLOYMENT.fullmatch(path)
    if match is not None:
        return Route("azure", deployment=match.group(1))
    return None


VectorMode = Literal["random", "lexical"]
"""How the server makes vectors: ``deterministic_vectors`` or ``lexical_vectors``."""


@dataclass(frozen=True)
class Limits:
    """The server's defaults, optional request limits and vector mode."""

    dimensions: int
    max_input_tokens: int | None = None
    max_batch_size: int | None = None
    vectors: VectorMode = "random"


@dataclass(frozen=True)
class EmbedCall:
    """A validated embedding request."""

    route: Route
    model: str
    inputs: tuple[str, ...]
    dimensions: int
    base64: bool
    tokens: int
    api_version: str | None
    vectors: VectorMode = "random"
    wire: Any = None  # the provider's own parsed request, for wire formats that need more


def extract_inputs(route: Route, body: Any) -> tuple[str, ...]:
    """The string inputs of a request body, best effort (for the request log)."""
    if route.provider == "bedrock":
        from ._wire_bedrock import inputs_of

        return inputs_of(body)
    if route.provider == "tei":
        return tei_inputs(body)
    if not isinstance(body, dict):
        return ()
    if route.provider == "gemini":
        from ._wire_gemini import gemini_inputs

        return gemini_inputs(body)
    raw = body.get("texts" if route.provider == "cohere" else "prompt" if route.legacy else "input")
    if isinstance(raw, str):
        return (raw,)
    if isinstance(raw, list):
        return tuple(item for item in raw if isinstance(item, str))
    return ()


def _inputs(route: Route, body: dict[str, Any]) -> tuple[str, ...] | ErrorSpec:
    raw = body.get("prompt" if route.legacy else "input")
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items:
        return invalid_input_error()
    if not all(isinstance(item, str) and item for item in items):
        # Token-id arrays and empty strings are refused, as OpenAI-compatible servers do.
        return invalid_input_error()
    return tuple(items)


def _dimensions(route: Route, body: dict[str, Any], default: int) -> int | ErrorSpec:
    key = "output_dimension" if route.provider == "mistral" else "dimensions"
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_DIMENSIONS:
        return ErrorSpec(400, f"Invalid value for '{key}': {value!r}. Expected a positive integer.")
    return value


def _encoding(route: Route, body: dict[str, Any]) -> bool | ErrorSpec:
    value = body.get("encoding_format")
    if route.provider not in {"openai", "azure"}:
        return False  # Mistral and Ollama answer with floats whatever was asked
    if value is None or value == "float":
        return False
    if value == "base64":
        return True
    return ErrorSpec(
        400,
        f"Invalid value for 'encoding_format' = {value}. Supported values: ['float', 'base64'].",
    )


def parse_call(
    route: Route, query: dict[str, str], body: Any, limits: Limits
) -> EmbedCall | ErrorSpec:
    """Validate a request body for ``route``; return the call or the error to send."""
    if route.provider == "cohere":
        wire = parse_cohere(body, dimensions=limits.dimensions,
                            max_input_tokens=limits.max_input_tokens,
                            max_batch_size=limits.max_batch_size)  # fmt: skip
        if isinstance(wire, ErrorSpec):
            return wire
        return EmbedCall(route, wire.model, wire.inputs, wire.dimensions, False, wire.tokens,
                         None, limits.vectors, wire)  # fmt: skip
    if route.provider == "gemini":
        from ._wire_gemini import GeminiRoute, parse_gemini_call

        assert isinstance(route, GeminiRoute)
        return parse_gemini_call(route, body, limits)
    if route.provider == "voyage":
        from ._wire_voyage import parse_voyage

        return parse_voyage(body, limits)
    if route.provider == "bedrock":
        from ._wire_bedrock import parse_call as bedrock_call

        return bedrock_call(route, body, limits)
    if route.provider == "tei":
        return parse_tei_call(route, body, limits)
    api_version = query.get("api-version")
    if route.deployment is not None and not api_version:
        return ErrorSpec(400, "Missing required query parameter 'api-version'.")
    if not isinstance(body, dict):
        return ErrorSpec(400, "We could not parse the JSON body of your request.")
    model = body.get("model") or route.deployment
    if not isinstance(model, str):
        message = (
            "model is required"
            if route.provider == "ollama"
            else "you must provide a model parameter"
        )
        return ErrorSpec(400, message)
    inputs = _inputs(route, body)
    if isinstance(inputs, ErrorSpec):
        return inputs
    dimensions = _dimensions(route, body, limits.dimensions)
    if isinstance(dimensions, ErrorSpec):
        return dimensions
    base64 = _encoding(route, body)
    if isinstance(base64, ErrorSpec):
        return base64
    if limits.max_batch_size is not None and len(inputs) > limits.max_batch_size:
        return ErrorSpec(
            400, f"Too many inputs. The max number of inputs is {limits.max_batch_size}."
        )
    counts = [count_tokens(text) for text in inputs]
    if limits.max_input_tokens is not None and max(counts) > limits.max_input_tokens:
        truncate = body.get("truncate", True) is not False
        if route.provider != "ollama" or not truncate:
            return context_length_error()
        counts = [min(c, limits.max_input_tokens) for c in counts]
    return EmbedCall(
        route, model, inputs, dimensions, base64, sum(counts), api_version, limits.vectors
    )


def error_body(route: Route | None, spec: ErrorSpec, api_version: str | None = None) -> bytes:
    """The serialized error body of ``spec`` in ``route``'s wire shape (OpenAI when unknown)."""
    provider = "openai" if route is None else route.provider
    if provider == "gemini":
        from ._wire_gemini import GeminiRoute, gemini_error_body

        assert isinstance(route, GeminiRoute)
        return orjson.dumps(gemini_error_body(route, spec))
    if provider == "tei":
        return tei_error_body(spec)
    return orjson.dumps(shape_error(provider, spec, api_version=api_version))


def _order(
    n: int, fault: str | None, rng: random.Random, ollama: bool
) -> tuple[list[int], list[int]]:
    """Which rows are sent, in which order, and the ``index`` each one claims."""
    rows = list(range(n))
    if fault == "wrong_count":
        rows.pop()
    elif fault == "shuffle" and n > 1:
        rng.shuffle(rows)
        if rows == sorted(rows):
            rows.reverse()
    elif fault == "bad_index" and ollama:
        rows.append(0)  # no index on the wire: an extra vector is the closest breakage
    indices = list(rows)
    if fault == "bad_index" and not ollama:
        indices[-1] = indices[0] if n > 1 else n
    return rows, indices


def _vectors(
    call: EmbedCall, fault: str | None, rng: random.Random
) -> tuple[npt.NDArray[np.float32], int | None]:
    make = lexical_vectors if call.vectors == "lexical" else deterministic_vectors
    matrix = make(call.inputs, call.dimensions)
    if fault == "wrong_dimensions":
        matrix = np.ascontiguousarray(matrix[:, :-1])
    nan_row = None
    if fault == "nan":
        nan_row = rng.randrange(len(call.inputs))
        matrix[nan_row, rng.randrange(matrix.shape[1])] = np.nan
    return matrix, nan_row


def _float_row(matrix: npt.NDArray[np.float32], row: int, nan_row: int | None) -> Any:
    if row != nan_row:
        return matrix[row]
    # orjson writes NaN as null; a placeholder is swapped for the bare NaN literal afterwards.
    return [_NAN if value != value else value for value in matrix[row].tolist()]


def render(call: EmbedCall, fault: str | None, rng: random.Random, elapsed_ns: int) -> bytes:
    """The 200 body for ``call``, damaged as the data fault ``fault`` says (``None``: intact)."""
    provider = call.route.provider
    if provider == "voyage":
        from ._wire_voyage import VoyageCall, render_voyage

        assert isinstance(call, VoyageCall)
        return render_voyage(call, fault, rng)
    if provider == "bedrock":
        from ._wire_bedrock import render as bedrock_render

        return bedrock_render(call, fault, rng)
    matrix, nan_row = _vectors(call, fault, rng)
    rows, indices = _order(len(call.inputs), fault, rng, provider in ("ollama", "cohere", "tei"))
    payload: Any
    if provider == "tei":  # a bare array of vectors
        payload = [_float_row(matrix, r, nan_row) for r in rows]
    elif call.route.legacy:
        payload = {"embedding": _float_row(matrix, 0, nan_row) if rows else []}
    elif provider == "ollama":
        payload = {
            "model": call.model,
            "embeddings": [_float_row(matrix, r, nan_row) for r in rows],
            "total_duration": elapsed_ns,
            "load_duration": min(elapsed_ns, 1_019_500),
            "prompt_eval_count": call.tokens,
        }
    elif isinstance(call.wire, CohereRequest):
        floats = [_float_row(matrix, r, nan_row) for r in rows]
        payload = cohere_payload(call.wire, matrix, rows, floats, nan_row, fault, rng)
    elif provider == "gemini":
        from ._wire_gemini import gemini_payload

        payload = gemini_payload(call, [_float_row(matrix, r, nan_row) for r in rows], fault)
    elif provider == "mistral":
        payload = {
            "id": rng.getrandbits(128).to_bytes(16, "big").hex(),
            "object": "list",
            "data": [
                {"object": "embedding", "embedding": _float_row(matrix, r, nan_row), "index": i}
                for r, i in zip(rows, indices, strict=True)
            ],
            "model": call.model,
            "usage": {
                "prompt_audio_seconds": None,
                "prompt_tokens": call.tokens,
                "total_tokens": call.tokens,
                "completion_tokens": 0,
                "request_count": None,
                "prompt_token_details": None,
            },
        }
    else:
        encoded = encode_base64_rows(matrix) if call.base64 else None
        payload = {
            "object": "list",
            "data": [
                {
                    "object": "embedding",
                    "index": i,
                    "embedding": encoded[r] if encoded else _float_row(matrix, r, nan_row),
                }
                for r, i in zip(rows, indices, strict=True)
            ],
            "model": call.model,
            "usage": {"prompt_tokens": call.tokens, "total_tokens": call.tokens},
        }
    body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    if nan_row is not None and not call.base64:
        body = body.replace(_NAN_JSON, b"NaN", 1)
    return body


def error_200(call: EmbedCall) -> bytes:
    """A 500-style error body for ``call``'s provider (sent with status 200)."""
    return error_body(call.route, status_error(500, call.model), call.api_version)
