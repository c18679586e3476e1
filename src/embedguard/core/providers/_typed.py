"""The float fast path: a float body decoded against its schema (pure).

With orjson, a float body becomes a tree of Python objects that numpy then has to convert row by
row, inferring each row's type, because a bulk conversion to float32 would take a JSON ``true``
as 1.0 and ``"0.5"`` as 0.5. Here msgspec decodes the body against the response's schema
instead: every vector a list of JSON numbers (never a bool, string or null), every ``index`` an
integer. The rows are then proven numbers and numpy converts them all at once. The typed decode
is also faster than building the untyped tree: on 1,250 vectors of 1,536 floats the whole path
takes about 0.8x the full parser's time.

Four shapes: OpenAI's (also Azure, Mistral, Voyage and every OpenAI-compatible server asked
for floats), Ollama's ``/api/embed``, Gemini's ``batchEmbedContents`` and TEI's bare list.
Like the base64 scanner, each function never raises: it returns ``None`` for anything it does
not prove valid (an error document, a wrong count, index, size or value, a non-number, invalid
JSON...) and the codec runs its full parser, so results and errors are always the full
parser's.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
import numpy as np

from ._json import DecodedBody, _has_error, _target, echoed_model, token_count, usage_tokens

__all__ = [
    "decode_float_list",
    "decode_gemini_floats",
    "decode_ollama_floats",
    "decode_openai_floats",
]

# orjson reads integers up to 2**64 - 1 as ints and larger ones as floats; msgspec keeps them
# ints. A token count past that bound would be read differently, so it goes to the full parser.
_LARGEST_INT = 2**64 - 1
_T = TypeVar("_T")


class _Item(msgspec.Struct, gc=False):
    index: int
    embedding: list[float]  # ints are numbers too; bools, strings and null are not


class _Top(msgspec.Struct, gc=False):
    """What every body's top level is checked for (an error document), and its model."""

    object: Any = None
    error: Any = None
    model: Any = None

    @property
    def model_doc(self) -> dict[str, Any]:
        return {"model": self.model}


class _OpenAIBody(_Top, gc=False):
    data: list[_Item] = []
    usage: Any = None


class _OllamaBody(_Top, gc=False):
    embeddings: list[list[float]] = []
    prompt_eval_count: Any = None


class _GeminiItem(msgspec.Struct, gc=False):
    values: list[float]


class _GeminiBody(_Top, gc=False):
    embeddings: list[_GeminiItem] = []
    usageMetadata: Any = None  # noqa: N815 - Google's field name


_OPENAI = msgspec.json.Decoder(_OpenAIBody)
_OLLAMA = msgspec.json.Decoder(_OllamaBody)
_GEMINI = msgspec.json.Decoder(_GeminiBody)
_ROWS = msgspec.json.Decoder(list[list[float]])


def decode_openai_floats(
    body: bytes,
    *,
    n_inputs: int,
    dimensions: int | None,
    out: np.ndarray | None = None,
) -> DecodedBody | None:
    """Decode an OpenAI-shaped float body as the full parser would, or return ``None``.

    Args:
        body: The raw 2xx response body.
        n_inputs: How many vectors the request asked for.
        dimensions: The expected vector size, or ``None`` to take the first vector's.
        out: A writable float32 ``(n_inputs, d)`` array to decode into (used when it fits, as
            the full parser does); it is written only when the vectors are returned.
    """
    doc = _decoded(_OPENAI, body, n_inputs, out)
    if doc is None or len(doc.data) != n_inputs:
        return None
    rows: list[list[float] | None] = [None] * n_inputs
    for item in doc.data:
        index = item.index
        if not 0 <= index < n_inputs or rows[index] is not None:
            return None
        rows[index] = item.embedding
    if isinstance(doc.usage, dict) and any(map(_past_orjson, doc.usage.values())):
        return None
    vectors = _array(rows, n_inputs, dimensions, out)  # type: ignore[arg-type]  # all filled
    if vectors is None:
        return None
    return DecodedBody(vectors, usage_tokens({"usage": doc.usage}), echoed_model(doc.model_doc))


def decode_ollama_floats(
    body: bytes,
    *,
    n_inputs: int,
    dimensions: int | None,
    out: np.ndarray | None = None,
) -> DecodedBody | None:
    """:func:`decode_openai_floats` for Ollama's ``/api/embed`` body (``embeddings`` in input
    order, tokens in ``prompt_eval_count``), as its codec's full parser reads it."""
    doc = _decoded(_OLLAMA, body, n_inputs, out)
    if doc is None or _past_orjson(doc.prompt_eval_count):
        return None
    vectors = _array(doc.embeddings, n_inputs, dimensions, out)
    if vectors is None:
        return None
    return DecodedBody(vectors, token_count(doc.prompt_eval_count), echoed_model(doc.model_doc))


def decode_gemini_floats(
    body: bytes,
    *,
    n_inputs: int,
    dimensions: int | None,
    out: np.ndarray | None = None,
) -> DecodedBody | None:
    """:func:`decode_openai_floats` for Gemini's ``batchEmbedContents`` body (``embeddings[i]
    .values`` in input order, tokens in ``usageMetadata.promptTokenCount``)."""
    doc = _decoded(_GEMINI, body, n_inputs, out)
    if doc is None:
        return None
    usage = doc.usageMetadata
    count = usage.get("promptTokenCount") if isinstance(usage, dict) else None
    if _past_orjson(count):
        return None
    vectors = _array([item.values for item in doc.embeddings], n_inputs, dimensions, out)
    if vectors is None:
        return None
    return DecodedBody(vectors, token_count(count), None)


def decode_float_list(
    body: bytes,
    *,
    n_inputs: int,
    dimensions: int | None,
    out: np.ndarray | None = None,
) -> np.ndarray | None:
    """The vectors of a body that is a bare JSON list of float vectors (TEI's ``/embed``), as
    :func:`~embedguard.core.providers._decode.decode_float_rows` reads them, or ``None``."""
    rows = _decoded(_ROWS, body, n_inputs, out)
    return None if rows is None else _array(rows, n_inputs, dimensions, out)


def _decoded(
    decoder: msgspec.json.Decoder[_T], body: bytes, n_inputs: int, out: np.ndarray | None
) -> _T | None:
    """``body`` decoded against the decoder's schema, or ``None``: when it does not match, when
    it is an error document, or when there is nothing to decode into (no inputs, a read-only
    ``out``: the full parser names those)."""
    if n_inputs <= 0 or (out is not None and not out.flags.writeable):
        return None
    try:
        doc = decoder.decode(body)
    except (msgspec.DecodeError, RecursionError):  # ValidationError is a DecodeError
        return None
    if isinstance(doc, _Top) and _has_error({"error": doc.error, "object": doc.object}):
        return None
    return doc


def _past_orjson(value: object) -> bool:
    """An integer orjson would have read as a float (so the full parser reads it otherwise)."""
    return type(value) is int and value > _LARGEST_INT


def _array(
    rows: list[list[float]], n_inputs: int, dimensions: int | None, out: np.ndarray | None
) -> np.ndarray | None:
    """``rows`` (proven lists of numbers) as one float32 array, when they are ``n_inputs``
    finite vectors of one size (``dimensions`` when given); written into ``out`` when it fits."""
    if len(rows) != n_inputs:
        return None
    d = len(rows[0])
    if d == 0 or (dimensions is not None and d != dimensions):
        return None
    if any(len(row) != d for row in rows):
        return None
    with np.errstate(over="ignore"):  # a value past float32's range becomes inf: refused below
        vectors = np.array(rows, dtype=np.float32)
    if not np.isfinite(vectors).all():
        return None
    if out is not None and _target(out, n_inputs, d) is out:
        out[...] = vectors
        return out
    return vectors
