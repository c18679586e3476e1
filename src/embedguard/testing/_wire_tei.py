"""Text Embeddings Inference's native wire format for the test server (pure).

Routes, under ``server.base_url("tei")`` (``{url}/tei``): ``POST /tei/embed`` and ``GET
/tei/info``. The served "model" has the prompts :data:`PROMPTS` (TEI prepends the prompt's text
to the input before embedding it, so ``prompt_name="query"`` embeds ``"query: " + text``), no
default prompt, and TEI's default limits unless the server is given its own:
``max_batch_size`` (``max_client_batch_size``, default 32) and ``max_input_tokens``
(``max_input_length``, default 512). As TEI does, a request over the batch size gets 422
``batch size N > maximum allowed batch size M``; an input over the length gets 422 when
``truncate`` is false and is cut otherwise (``truncate`` absent means the server's
``--auto-truncate``, on by default); an empty list gets 400 ``Empty``. The 200 body is a bare
array of vectors with the ``x-compute-*`` headers; errors are ``{"error", "error_type"}``, except
401/404/405, which TEI (axum) sends with an empty body. No request id and no rate-limit headers.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import orjson

from ._errors import ErrorSpec
from ._http import HttpReply
from ._vectors import count_tokens

if TYPE_CHECKING:
    from ._routes import EmbedCall, Limits, Route

__all__ = [
    "INFO_PATH",
    "PATHS",
    "PROMPTS",
    "info_reply",
    "parse_tei_call",
    "tei_error_body",
    "tei_headers",
    "tei_inputs",
    "tei_spec",
]

INFO_PATH = "/tei/info"
PATHS = frozenset({"/tei/embed", INFO_PATH})
PROMPTS = {"query": "query: ", "document": "document: ", "passage": "passage: ",
           "classification": "classification: "}  # fmt: skip
"""The served model's prompts (``prompt_name`` -> text put before the input)."""
MODEL_ID = "embedguard/loopback-tei"
MAX_CLIENT_BATCH_SIZE = 32
MAX_INPUT_LENGTH = 512
MAX_BATCH_TOKENS = 16_384

# The error_type TEI sends with each status (Validation was 413 in releases before 1.6).
_TYPES = {400: "Empty", 413: "Validation", 422: "Validation", 424: "Backend", 429: "Overloaded",
          503: "Unhealthy"}  # fmt: skip
_TEI_TYPES = frozenset({*_TYPES.values(), "Tokenizer"})
_BARE = frozenset({401, 403, 404, 405})  # axum answers these with an empty body
_JSON = "application/json"


def _validation(message: str, status: int = 422) -> ErrorSpec:
    return ErrorSpec(status, message, "Validation")


def _deserialize(detail: str) -> ErrorSpec:
    return _validation(f"Failed to deserialize the JSON body into the target type: {detail}")


def tei_inputs(body: Any) -> tuple[str, ...]:
    """The string inputs of a request body, best effort (for the request log)."""
    raw = body.get("inputs") if isinstance(body, dict) else None
    items = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    return tuple(item for item in items if isinstance(item, str))


def _fields(body: dict[str, Any]) -> ErrorSpec | None:
    """A type error in the optional fields, as serde reports it, or ``None``."""
    expected = {"truncate": bool, "normalize": bool, "prompt_name": str, "dimensions": int}
    for name, kind in expected.items():
        value = body.get(name)
        if value is not None and (type(value) is not kind):
            return _deserialize(f"{name}: invalid type, expected {kind.__name__}")
    return None


def parse_tei_call(route: Route, body: Any, limits: Limits) -> EmbedCall | ErrorSpec:
    """Validate an ``/embed`` body as TEI does; return the call or the error to send."""
    from ._routes import EmbedCall  # here: _routes imports this module

    if not isinstance(body, dict):
        return _deserialize("expected a JSON object")
    raw = body.get("inputs")
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        return _deserialize("inputs: data did not match any variant of untagged enum Input")
    wrong = _fields(body)
    if wrong is not None:
        return wrong
    if not items:
        return ErrorSpec(400, "`inputs` cannot be empty", "Empty")
    cap = limits.max_batch_size or MAX_CLIENT_BATCH_SIZE
    if len(items) > cap:
        return _validation(f"batch size {len(items)} > maximum allowed batch size {cap}")
    name = body.get("prompt_name")
    if name is not None and name not in PROMPTS:
        return _validation(
            f"Input validation error: `default-prompt-name` is set to `{name}` but it was not "
            f"found in the Sentence Transformers prompts. Available prompts: {sorted(PROMPTS)}"
        )
    prompt = PROMPTS.get(name or "", "")
    if any(not item for item in items):
        return _validation("Input validation error: `inputs` cannot be empty")
    asked = body.get("dimensions")
    dimensions = limits.dimensions if asked is None else asked
    if not 1 <= dimensions <= limits.dimensions:
        return _validation(
            f"Input validation error: `dimensions` must be between 1 and {limits.dimensions}"
        )
    texts = tuple(prompt + item for item in items)
    longest = limits.max_input_tokens or MAX_INPUT_LENGTH
    counts = [count_tokens(text) for text in texts]
    if max(counts) > longest:
        if body.get("truncate") is False:
            return _validation(
                f"Input validation error: `inputs` must have less than {longest} tokens. "
                f"Given: {max(counts)}"
            )
        counts = [min(c, longest) for c in counts]
    return EmbedCall(route, MODEL_ID, texts, dimensions, False, sum(counts), None, limits.vectors)


def tei_spec(spec: ErrorSpec) -> ErrorSpec:
    """``spec`` as TEI would send it: its status, wording and ``error_type``."""
    if spec.type in _TEI_TYPES:
        return spec  # made by parse_tei_call
    if spec.kind in ("rate_limit", "quota"):  # TEI has no quota: a full queue is all it knows
        return ErrorSpec(429, "Model is overloaded", "Overloaded", kind=spec.kind,
                         retry_after=spec.retry_after)  # fmt: skip
    if spec.kind == "context_length":
        message = "Input validation error: `inputs` must have less than 512 tokens. Given: 513"
        return ErrorSpec(422, message, "Validation", kind=spec.kind)
    fallback = "Backend" if spec.status >= 500 else "Validation"
    return replace(spec, type=_TYPES.get(spec.status, fallback))


def tei_error_body(spec: ErrorSpec) -> bytes:
    """The body of a TEI error: ``{"error", "error_type"}``, or nothing for 401/403/404/405."""
    spec = tei_spec(spec)
    if spec.status in _BARE:
        return b""
    return orjson.dumps({"error": spec.message, "error_type": spec.type})


def tei_headers(call: EmbedCall, elapsed: float) -> list[tuple[str, str]]:
    """The ``x-compute-*`` and timing headers of a 200 (milliseconds)."""
    millis = str(int(elapsed * 1000))
    return [
        ("x-compute-type", "cpu"),
        ("x-compute-time", millis),
        ("x-compute-characters", str(sum(len(text) for text in call.inputs))),
        ("x-compute-tokens", str(call.tokens)),
        ("x-total-time", millis),
        ("x-tokenization-time", "0"),
        ("x-queue-time", "0"),
        ("x-inference-time", millis),
    ]


def info_reply(limits: Limits, method: str, authorized: bool) -> HttpReply:
    """``GET /info``: the served model and the limits the server enforces."""
    if not authorized or method != "GET":
        return HttpReply(401 if not authorized else 405, b"", [])
    info = {
        "model_id": MODEL_ID,
        "model_sha": None,
        "model_dtype": "float32",
        "model_type": {"embedding": {"pooling": "mean"}},
        "max_concurrent_requests": 512,
        "max_input_length": limits.max_input_tokens or MAX_INPUT_LENGTH,
        "max_batch_tokens": MAX_BATCH_TOKENS,
        "max_batch_requests": None,
        "max_client_batch_size": limits.max_batch_size or MAX_CLIENT_BATCH_SIZE,
        "auto_truncate": True,
        "tokenization_workers": 2,
        "version": "1.9.3",
        "sha": None,
        "docker_label": None,
    }
    return HttpReply(200, orjson.dumps(info), [("content-type", _JSON)])
