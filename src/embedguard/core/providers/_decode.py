"""Validate and decode successful embedding responses into one float32 array (pure, no I/O).

The full parser: the body is parsed once with orjson, one ``(n, d)`` float32 array is allocated,
and each vector is written straight into its row (base64 items are decoded with pybase64, never
through Python lists). Anything that is not exactly one finite vector of the right size per input
raises :class:`~embedguard.core.errors.ResponseValidationError`; nothing partial is returned.
Plain base64 bodies take a faster route that never builds the JSON tree of vector strings
(``_json.py``), and plain float bodies one that decodes against the response's schema
(``_typed.py``); both fall back here for anything else, so this module defines the results.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson
import pybase64

from embedguard.core.errors import ResponseValidationError

from ._errors import error_from_response, request_id_of
from ._json import _has_error, _target, echoed_model, usage_tokens

__all__ = [
    "decode_float_rows",
    "decode_openai_data",
    "echoed_model",
    "load_json_object",
    "usage_tokens",
]

_FLOAT32 = np.dtype(np.float32)
_NUMERIC_KINDS = frozenset("fiu")


class _Invalid:
    """Builds ResponseValidationErrors that all carry the same provider, status and request id."""

    __slots__ = ("provider", "request_id", "status_code")

    def __init__(self, provider: str, status_code: int | None, request_id: str | None) -> None:
        self.provider = provider
        self.status_code = status_code
        self.request_id = request_id

    def __call__(self, message: str, *, truncated: bool = False) -> ResponseValidationError:
        return ResponseValidationError(
            message,
            truncated=truncated,
            provider=self.provider,
            status_code=self.status_code,
            request_id=self.request_id,
        )


def load_json_object(
    provider: str,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    secrets: Sequence[str | None] = (),
) -> dict[str, Any]:
    """Parse a 2xx body into a JSON object, or raise. ``headers`` have lower-case names.

    Raises:
        ResponseValidationError: The body is empty, not JSON (``truncated`` when it starts like
            JSON but ends early) or not a JSON object.
        ProviderError: The body is an error document despite the 2xx status (the typed error).
    """

    def invalid(message: str, *, truncated: bool = False) -> ResponseValidationError:
        request_id = request_id_of(headers, secrets)  # only when there is an error to name
        return _Invalid(provider, status, request_id)(message, truncated=truncated)

    stripped = body.strip()
    if not stripped:
        # An empty 2xx is what a connection dropped before the body looks like: retry once.
        raise invalid("empty response body", truncated=True)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        looks_json = stripped[:1] in (b"{", b"[")
        cut_short = looks_json and (exc.pos >= len(body.rstrip()) or "end of data" in exc.msg)
        kind = "truncated JSON" if cut_short else "non-JSON"
        raise invalid(f"{kind} response body", truncated=cut_short) from None
    if not isinstance(doc, dict):
        raise invalid(f"response body is a JSON {type(doc).__name__}, not an object")
    if _has_error(doc):
        raise error_from_response(provider, status, headers, body, secrets=secrets)
    return doc


def _float_row(value: list[Any]) -> np.ndarray | None:
    """A 1-D numeric array from a JSON list, or ``None`` when it holds anything else."""
    try:
        arr = np.array(value)
    except (ValueError, TypeError, OverflowError):
        return None
    if arr.ndim != 1 or arr.dtype.kind not in _NUMERIC_KINDS:
        return None
    # A JSON number is a double: a row of integers rounds to float32 through float64, as a row
    # holding any float does (and as the float fast path, _typed.py, reads every number).
    return arr if arr.dtype.kind == "f" else arr.astype(np.float64)


def _width(first: Any, invalid: _Invalid) -> int:
    """The vector size announced by the first item (base64 string or list)."""
    if isinstance(first, str):
        if len(first) % 4:
            raise invalid("embedding is not valid base64")
        pad = len(first) - len(first.rstrip("="))
        nbytes = len(first) // 4 * 3 - pad
        if nbytes % 4:
            raise invalid(f"base64 embedding holds {nbytes} bytes, not whole float32 values")
        return nbytes // 4
    if isinstance(first, list):
        return len(first)
    raise invalid(f"embedding is {type(first).__name__}, not a list of numbers or base64")


def _check_width(d: int, dimensions: int | None, invalid: _Invalid) -> None:
    if d == 0:
        raise invalid("empty embedding")
    if dimensions is not None and d != dimensions:
        raise invalid(f"embedding has {d} dimensions, expected {dimensions}")


def _put(out: np.ndarray, row: int, emb: Any, b64_len: int, invalid: _Invalid) -> None:
    d = out.shape[1]
    if isinstance(emb, str):
        if len(emb) != b64_len:
            raise invalid(f"embedding {row} has a different size than embedding 0")
        try:
            raw = pybase64.b64decode(emb, validate=True)
        except (binascii.Error, ValueError):
            raise invalid(f"embedding {row} is not valid base64") from None
        if len(raw) != 4 * d:
            raise invalid(f"embedding {row} has a different size than embedding 0")
        out[row] = np.frombuffer(raw, dtype="<f4")
    elif isinstance(emb, list):
        if len(emb) != d:
            raise invalid(f"embedding {row} has {len(emb)} dimensions, embedding 0 has {d}")
        arr = _float_row(emb)
        if arr is None:
            raise invalid(f"embedding {row} is not a flat list of numbers")
        out[row] = arr
    else:
        raise invalid(f"embedding {row} is {type(emb).__name__}, not a list of numbers or base64")


def _check_finite(out: np.ndarray, invalid: _Invalid) -> np.ndarray:
    if not np.isfinite(out).all():
        bad = int(np.flatnonzero(~np.isfinite(out).all(axis=1))[0])
        raise invalid(f"embedding {bad} holds NaN or infinite values")
    return out


def _decode_in_order(data: list[Any], out: np.ndarray, b64_len: int, invalid: _Invalid) -> bool:
    """The bulk path: base64 items in index order, decoded with one call into ``out``.

    Without padding (``4*d`` divisible by 3: 1536, 3072, 1024, 768 ... dimensions) the items'
    strings concatenate into one valid base64 text. Returns ``False`` (nothing decided) when the
    response is not of that shape, so the item-by-item path handles and diagnoses it.
    """
    texts = []
    for position, item in enumerate(data):
        if not isinstance(item, dict):
            return False
        index, emb = item.get("index"), item.get("embedding")
        if index != position or type(index) is not int or type(emb) is not str:
            return False
        if len(emb) != b64_len:
            return False
        texts.append(emb)
    try:
        raw = pybase64.b64decode("".join(texts), validate=True)
    except (binascii.Error, ValueError):
        return False  # let the item-by-item path name the bad embedding
    out[...] = np.frombuffer(raw, dtype="<f4").reshape(out.shape)
    return True


def decode_openai_data(
    data: object,
    *,
    n_inputs: int,
    dimensions: int | None,
    provider: str,
    status_code: int | None = None,
    request_id: str | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Validate an OpenAI-shaped ``data`` list and decode it into a float32 ``(n_inputs, d)`` array.

    With ``out`` (a float32 array of that shape), the vectors are decoded straight into it.

    Each item must be an object with an integer ``index`` in ``[0, n_inputs)`` (no repeats; items
    may come in any order) and an ``embedding`` that is a list of numbers or a base64 string of
    little-endian float32 values, whichever was requested. Every vector must have the same size
    (``dimensions`` when given) and only finite values. Row ``i`` is the item whose index is ``i``.

    Raises:
        ResponseValidationError: Anything else; no array is returned then.
    """
    invalid = _Invalid(provider, status_code, request_id)
    if not isinstance(data, list):
        raise invalid(f"'data' is {type(data).__name__}, not a list")
    if len(data) != n_inputs:
        raise invalid(f"got {len(data)} embeddings for {n_inputs} inputs")
    if n_inputs == 0:
        return np.empty((0, dimensions or 0), dtype=_FLOAT32)
    first = data[0]
    if not isinstance(first, dict):
        raise invalid("data item 0 is not an object")
    d = _width(first.get("embedding"), invalid)
    _check_width(d, dimensions, invalid)
    b64_len = (4 * d + 2) // 3 * 4  # padded base64 length of 4*d bytes
    out = _target(out, n_inputs, d)
    if (4 * d) % 3 == 0 and _decode_in_order(data, out, b64_len, invalid):
        return _check_finite(out, invalid)
    seen = bytearray(n_inputs)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow shows up as inf, checked below
        for position, item in enumerate(data):
            if not isinstance(item, dict):
                raise invalid(f"data item {position} is not an object")
            index = item.get("index")
            if not isinstance(index, int) or isinstance(index, bool):
                raise invalid(f"data item {position} has no integer 'index'")
            if not 0 <= index < n_inputs:
                raise invalid(f"data item {position} has index {index} outside [0, {n_inputs})")
            if seen[index]:
                raise invalid(f"index {index} appears twice")
            seen[index] = 1
            _put(out, index, item.get("embedding"), b64_len, invalid)
    return _check_finite(out, invalid)


def decode_float_rows(
    rows: object,
    *,
    n_inputs: int,
    dimensions: int | None,
    provider: str,
    status_code: int | None = None,
    request_id: str | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Validate a list of float vectors given in input order (Ollama's ``embeddings``).

    Raises:
        ResponseValidationError: Wrong count, ragged or wrong-sized rows, non-numbers, NaN/inf.
    """
    invalid = _Invalid(provider, status_code, request_id)
    if not isinstance(rows, list):
        raise invalid(f"'embeddings' is {type(rows).__name__}, not a list")
    if len(rows) != n_inputs:
        raise invalid(f"got {len(rows)} embeddings for {n_inputs} inputs")
    if n_inputs == 0:
        return np.empty((0, dimensions or 0), dtype=_FLOAT32)
    first = rows[0]
    if not isinstance(first, list):
        raise invalid(f"embedding 0 is {type(first).__name__}, not a list of numbers")
    d = len(first)
    _check_width(d, dimensions, invalid)
    out = _target(out, n_inputs, d)
    with np.errstate(over="ignore", invalid="ignore"):
        for row, emb in enumerate(rows):
            if not isinstance(emb, list):
                raise invalid(f"embedding {row} is {type(emb).__name__}, not a list of numbers")
            _put(out, row, emb, 0, invalid)
    return _check_finite(out, invalid)
