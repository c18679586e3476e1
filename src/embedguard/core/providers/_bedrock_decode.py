"""Decode Bedrock's 2xx bodies, Titan's and Cohere's, into validated float32 rows (pure, no I/O).

Titan answers one text: ``{"embedding": [...], "embeddingsByType": {"float": [...],
"binary": [...]}, "inputTextTokenCount": n}``; its ``binary`` holds one 0/1 per dimension
(AWS: "each dimension encoded as a single binary digit"), packed here 8 per byte, most
significant bit first, so Titan's bits read like every other provider's packed ones.

Cohere on Bedrock answers ``{"embeddings": [[...], ...]}`` (v3 without ``embedding_types``) or
``{"embeddings": {"float"|"int8"|"uint8"|"binary"|"ubinary": [[...], ...]}}`` (by type, which v4
always uses), in input order.

Compact types come back as float32 rows holding the integers exactly (``binary`` is the packed
byte minus 128, as Cohere defines it; ``ubinary`` the byte itself). Anything else than exactly
one finite vector of the right size per input raises ``ResponseValidationError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from embedguard.core.errors import ResponseValidationError

from ._decode import decode_float_rows
from ._json import _target

__all__ = ["INT_RANGES", "WIRE_TYPES", "decode_cohere", "decode_titan"]

WIRE_TYPES: Mapping[str, str] = {
    "float32": "float", "int8": "int8", "uint8": "uint8", "binary": "binary", "ubinary": "ubinary",
}  # fmt: skip
"""The wire name of each :data:`~embedguard.core.config.VectorDtype`."""

INT_RANGES: Mapping[str, tuple[int, int]] = {
    "int8": (-128, 127), "uint8": (0, 255), "binary": (-128, 127), "ubinary": (0, 255),
}  # fmt: skip
"""The values each compact dtype may hold."""


class _Context:
    """What every validation error of one response carries."""

    __slots__ = ("provider", "request_id", "status")

    def __init__(self, provider: str, status: int, request_id: str | None) -> None:
        self.provider, self.status, self.request_id = provider, status, request_id

    def invalid(self, message: str) -> ResponseValidationError:
        return ResponseValidationError(
            message, provider=self.provider, status_code=self.status, request_id=self.request_id
        )

    def rows(
        self, rows: object, n_inputs: int, dimensions: int | None, out: np.ndarray | None
    ) -> np.ndarray:
        return decode_float_rows(
            rows, n_inputs=n_inputs, dimensions=dimensions, provider=self.provider,
            status_code=self.status, request_id=self.request_id, out=out,
        )  # fmt: skip


def _integers(vectors: np.ndarray, dtype: str, ctx: _Context) -> np.ndarray:
    """``vectors`` when every value is a whole number in ``dtype``'s range."""
    low, high = INT_RANGES[dtype]
    if not np.array_equal(vectors, np.rint(vectors)):
        raise ctx.invalid(f"{dtype} embeddings hold values that are not whole numbers")
    if vectors.size and (vectors.min() < low or vectors.max() > high):
        raise ctx.invalid(f"{dtype} embeddings hold values outside [{low}, {high}]")
    return vectors


def decode_titan(
    doc: Mapping[str, Any],
    dtype: str,
    *,
    n_inputs: int,
    dimensions: int | None,
    provider: str,
    status: int,
    request_id: str | None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The one vector of a Titan body: ``embedding`` (float), or ``embeddingsByType.binary``
    packed for ``dtype`` ``binary`` / ``ubinary`` (``dimensions`` is then the packed width).

    Raises:
        ResponseValidationError: Not exactly one finite vector of the expected size.
    """
    ctx = _Context(provider, status, request_id)
    if n_inputs != 1:
        raise ctx.invalid(f"Titan embeds one text per request, not {n_inputs}")
    if dtype == "float32":
        if "embedding" not in doc:
            raise ctx.invalid("the response has no 'embedding'")
        return ctx.rows([doc["embedding"]], 1, dimensions, out)
    by_type = doc.get("embeddingsByType")
    bits = by_type.get("binary") if isinstance(by_type, dict) else None
    if bits is None:
        raise ctx.invalid("the response has no 'embeddingsByType.binary'")
    unpacked = ctx.rows([bits], 1, None if dimensions is None else dimensions * 8, None)
    if unpacked.shape[1] % 8:
        raise ctx.invalid(f"{unpacked.shape[1]} binary dimensions do not fill whole bytes")
    if not np.isin(unpacked, (0.0, 1.0)).all():
        raise ctx.invalid("binary embeddings hold values other than 0 and 1")
    packed = np.packbits(unpacked.astype(np.uint8), axis=1).astype(np.float32)
    if dtype == "binary":
        packed -= 128.0
    target = _target(out, 1, packed.shape[1])
    target[...] = packed
    return target


def decode_cohere(
    doc: Mapping[str, Any],
    dtype: str,
    *,
    n_inputs: int,
    dimensions: int | None,
    provider: str,
    status: int,
    request_id: str | None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The vectors of a Cohere-on-Bedrock body, in input order, for ``dtype``.

    Raises:
        ResponseValidationError: A missing or mistyped ``embeddings``, a type other than the one
            asked for, or anything but one finite vector of the expected size per input.
    """
    ctx = _Context(provider, status, request_id)
    embeddings = doc.get("embeddings")
    wire = WIRE_TYPES[dtype]
    if isinstance(embeddings, list):
        if dtype != "float32":
            raise ctx.invalid(f"asked for {wire} embeddings, got a plain list of floats")
        return ctx.rows(embeddings, n_inputs, dimensions, out)
    if not isinstance(embeddings, dict):
        raise ctx.invalid(f"'embeddings' is {type(embeddings).__name__}, not a list or an object")
    if wire not in embeddings:
        got = ", ".join(sorted(str(key) for key in embeddings)) or "none"
        raise ctx.invalid(f"the response has no {wire} embeddings (it has: {got})")
    vectors = ctx.rows(embeddings[wire], n_inputs, dimensions, out)
    return vectors if dtype == "float32" else _integers(vectors, dtype, ctx)
