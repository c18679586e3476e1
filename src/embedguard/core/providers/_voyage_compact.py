"""Voyage AI's compact vectors (``int8``, ``uint8``, ``binary``, ``ubinary``), validated (pure).

Voyage answers an ``output_dtype`` other than ``float`` in its OpenAI-shaped body
(``data[i].embedding``, ``index``), each embedding either a JSON list of integers or, with
``encoding_format: "base64"``, the standard base64 of the raw bytes: one signed byte per value for
``int8`` and ``binary``, one unsigned byte for ``uint8`` and ``ubinary`` (voyageai-python decodes
them with ``np.frombuffer(..., np.int8 / np.uint8)``). The bit types hold 8 dimensions per byte,
so their rows are ``output_dimension / 8`` values wide. Each value comes back as a float32 that
holds the integer exactly (the client casts once, at the end). Anything else (a float, ``true``,
a value out of the type's range, a wrong count, width or index) raises
:class:`~embedguard.core.errors.ResponseValidationError`; nothing partial is returned.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pybase64

from embedguard.core.errors import ResponseValidationError

from ._decode import load_json_object
from ._json import DecodedBody, _target, echoed_model, usage_tokens
from .headers import request_id_of

__all__ = ["COMPACT_RANGES", "decode_compact_body"]

COMPACT_RANGES: Mapping[str, tuple[int, int]] = {
    "int8": (-128, 127),
    "binary": (-128, 127),
    "uint8": (0, 255),
    "ubinary": (0, 255),
}
"""The integer range of each compact dtype (the bit types pack 8 dimensions per value)."""

_BYTES = {"int8": np.dtype(np.int8), "binary": np.dtype(np.int8),
          "uint8": np.dtype(np.uint8), "ubinary": np.dtype(np.uint8)}  # fmt: skip


class _Invalid:
    """Builds the ResponseValidationErrors of one response."""

    __slots__ = ("provider", "request_id", "status")

    def __init__(self, provider: str, status: int, request_id: str | None) -> None:
        self.provider, self.status, self.request_id = provider, status, request_id

    def __call__(self, message: str) -> ResponseValidationError:
        return ResponseValidationError(
            message, provider=self.provider, status_code=self.status, request_id=self.request_id
        )


def _width(first: Any, invalid: _Invalid) -> int:
    """The row width the first embedding announces (bytes of base64, or list length)."""
    if isinstance(first, str):
        pad = len(first) - len(first.rstrip("="))
        if len(first) % 4 or pad > 2:
            raise invalid("embedding 0 is not valid base64")
        return len(first) // 4 * 3 - pad
    if isinstance(first, list):
        return len(first)
    raise invalid(f"embedding is {type(first).__name__}, not a list of integers or base64")


def _row(emb: Any, row: int, dtype: str, width: int, invalid: _Invalid) -> np.ndarray:
    """One embedding as an integer array of ``width`` values within ``dtype``'s range."""
    if isinstance(emb, str):
        try:
            raw = pybase64.b64decode(emb, validate=True)
        except (binascii.Error, ValueError):
            raise invalid(f"embedding {row} is not valid base64") from None
        if len(raw) != width:
            raise invalid(f"embedding {row} has {len(raw)} values, expected {width}")
        return np.frombuffer(raw, dtype=_BYTES[dtype])  # every byte is in range by construction
    if not isinstance(emb, list):
        raise invalid(f"embedding {row} is {type(emb).__name__}, not a list of integers or base64")
    if len(emb) != width:
        raise invalid(f"embedding {row} has {len(emb)} values, expected {width}")
    if not all(type(value) is int for value in emb):  # floats, true/false, null, strings
        raise invalid(f"embedding {row} holds values that are not integers")
    low, high = COMPACT_RANGES[dtype]
    if min(emb) < low or max(emb) > high:
        raise invalid(f"embedding {row} holds values outside [{low}, {high}] ({dtype})")
    return np.array(emb, dtype=np.int16)


def decode_compact_body(
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
    """Validate and decode a 2xx body of compact ``dtype`` vectors into float32 rows.

    ``headers`` have lower-case names. ``dimensions`` is the expected row width (packed bytes
    for the bit types), or ``None`` to take the first row's. Row ``i`` is the item whose
    ``index`` is ``i``; items may come in any order.

    Example::

        decoded = decode_compact_body("voyage", 200, {}, body, dtype="int8", n_inputs=2,
                                      dimensions=1024)
        decoded.vectors.dtype  # float32, holding integers in [-128, 127]

    Raises:
        ResponseValidationError: The body is not exactly one valid row per input.
        ProviderError: The body is an error document despite the 2xx status.
    """
    if dtype not in COMPACT_RANGES:
        raise ValueError(f"not a compact dtype: {dtype!r}")
    doc = load_json_object(provider, status, headers, body, secrets=secrets)
    invalid = _Invalid(provider, status, request_id_of(headers, secrets))
    data = doc.get("data")
    if not isinstance(data, list):
        raise invalid(f"'data' is {type(data).__name__}, not a list")
    if len(data) != n_inputs:
        raise invalid(f"got {len(data)} embeddings for {n_inputs} inputs")
    if n_inputs == 0:
        return DecodedBody(np.empty((0, dimensions or 0), dtype=np.float32), None, None)
    if not isinstance(data[0], dict):
        raise invalid("data item 0 is not an object")
    width = _width(data[0].get("embedding"), invalid)
    if width == 0:
        raise invalid("empty embedding")
    if dimensions is not None and width != dimensions:
        raise invalid(f"embedding has {width} values, expected {dimensions}")
    target = _target(out, n_inputs, width)
    seen = bytearray(n_inputs)
    for position, item in enumerate(data):
        if not isinstance(item, dict):
            raise invalid(f"data item {position} is not an object")
        index = item.get("index")
        if type(index) is not int or not 0 <= index < n_inputs:
            raise invalid(f"data item {position} has no integer 'index' in [0, {n_inputs})")
        if seen[index]:
            raise invalid(f"index {index} appears twice")
        seen[index] = 1
        target[index] = _row(item.get("embedding"), index, dtype, width, invalid)
    return DecodedBody(target, usage_tokens(doc), echoed_model(doc))
