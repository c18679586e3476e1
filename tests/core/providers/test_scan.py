"""The bulk scanner: plain base64 bodies decode from the raw bytes, anything else goes to the full
parser, and both routes give the full parser's exact result or error."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pybase64
import pytest

from embedguard.core.errors import ProviderError, ResponseValidationError
from embedguard.core.providers._decode import (
    decode_openai_data,
    echoed_model,
    load_json_object,
    usage_tokens,
)
from embedguard.core.providers._json import decode_openai_body, scan_openai_base64

HEADERS = {"x-request-id": "req_1"}
RNG = np.random.default_rng(7)
VECTORS = RNG.standard_normal((4, 6)).astype(np.float32)  # 6 dims: 24 bytes, no base64 padding


def b64(row: Any) -> str:
    """Base64 of little-endian float32 values, as OpenAI sends them."""
    return pybase64.b64encode(np.asarray(row, dtype="<f4").tobytes()).decode()


def response(vectors: np.ndarray = VECTORS, *, order: list[int] | None = None, **top: Any) -> Any:
    """An OpenAI response document (items in ``order``, index = row)."""
    order = list(range(len(vectors))) if order is None else order
    data = [{"object": "embedding", "index": i, "embedding": b64(vectors[i])} for i in order]
    return {
        "object": "list",
        "data": data,
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 9, "total_tokens": 9},
        **top,
    }


def compact(doc: Any) -> bytes:
    """The document as vLLM and the loopback server write it."""
    return orjson.dumps(doc)


def pretty(doc: Any) -> bytes:
    """The document as OpenAI writes it (two-space indent)."""
    return json.dumps(doc, indent=2).encode()


def full_outcome(body: bytes, n: int, dims: int | None, out: np.ndarray | None = None) -> Any:
    """What the full parser gives: the decoded fields, or the error's type and state."""
    try:
        doc = load_json_object("p", 200, HEADERS, body, secrets=("sk-secret",))
        vectors = decode_openai_data(
            doc.get("data"),
            n_inputs=n,
            dimensions=dims,
            provider="p",
            status_code=200,
            request_id="req_1",
            out=out,
        )
    except Exception as exc:  # any exception at all must be matched exactly
        return error_state(exc)
    return vector_state(vectors, usage_tokens(doc), echoed_model(doc))


def body_outcome(body: bytes, n: int, dims: int | None, out: np.ndarray | None = None) -> Any:
    """What decode_openai_body gives, in the same form as :func:`full_outcome`."""
    try:
        decoded = decode_openai_body(
            "p", 200, HEADERS, body, n_inputs=n, dimensions=dims, secrets=("sk-secret",), out=out
        )
    except Exception as exc:
        return error_state(exc)
    return vector_state(*decoded)


def vector_state(vectors: np.ndarray, tokens: int | None, model: str | None) -> Any:
    """Vectors compared byte for byte, with dtype and shape, plus tokens and model."""
    return ("vectors", vectors.dtype.str, vectors.shape, vectors.tobytes(), tokens, model)


def error_state(exc: Exception) -> Any:
    """An error compared by type, message and every attribute."""
    return ("error", type(exc), exc.args, str(exc), sorted(vars(exc).items()))


def assert_fast(body: bytes, expected: np.ndarray, dims: int | None = None) -> None:
    """The scanner decodes ``body`` itself, to ``expected``, exactly as the full parser does."""
    n = expected.shape[0]
    scanned = scan_openai_base64(body, n_inputs=n, dimensions=dims)
    assert scanned is not None, "the scanner fell back on a plain base64 body"
    np.testing.assert_array_equal(scanned.vectors, expected)
    assert vector_state(*scanned) == full_outcome(body, n, dims)


def assert_falls_back(body: bytes, n: int, dims: int | None = None) -> None:
    """The scanner declines ``body``, and decode_openai_body still matches the full parser."""
    assert scan_openai_base64(body, n_inputs=n, dimensions=dims) is None
    assert body_outcome(body, n, dims) == full_outcome(body, n, dims)


# -- the fast path ---------------------------------------------------------------------------------


def test_compact_body_decodes_on_the_fast_path() -> None:
    """A compact body (vLLM, the loopback server) decodes with its usage and model."""
    scanned = scan_openai_base64(compact(response()), n_inputs=4, dimensions=6)
    assert scanned is not None
    np.testing.assert_array_equal(scanned.vectors, VECTORS)
    assert scanned.vectors.dtype == np.float32
    assert (scanned.prompt_tokens, scanned.model) == (9, "text-embedding-3-small")


def test_pretty_printed_openai_body_decodes_on_the_fast_path() -> None:
    """OpenAI's indented body (whitespace around every colon) stays on the fast path."""
    assert_fast(pretty(response()), VECTORS, dims=6)


@pytest.mark.parametrize(
    "separators", [(",", ":"), (", ", ": "), (" ,\n", " :\t"), ("\r\n,", "\n:\r\n")]
)
def test_any_consistent_json_whitespace_stays_on_the_fast_path(separators: tuple[str, str]) -> None:
    """Spaces, tabs, CR and LF around colons and commas do not leave the fast path."""
    assert_fast(json.dumps(response(), separators=separators).encode(), VECTORS)


def test_key_order_extra_keys_and_unicode_stay_on_the_fast_path() -> None:
    """Index after the embedding, extra keys, nested objects and raw UTF-8 text are fine."""
    doc = response()
    doc["data"] = [
        {"embedding": b64(VECTORS[i]), "meta": {"lang": "日本語", "n": [1, 2.5]}, "index": i}
        for i in range(4)
    ]
    doc = {"usage": doc["usage"], "model": "modèle ✨", "id": "embd-1", "data": doc["data"]}
    body = orjson.dumps(doc)
    assert_fast(body, VECTORS)
    assert scan_openai_base64(body, n_inputs=4, dimensions=None).model == "modèle ✨"  # type: ignore[union-attr]


def test_items_out_of_index_order_land_in_their_rows() -> None:
    """Items in any order are written to the row their index names."""
    assert_fast(compact(response(order=[2, 0, 3, 1])), VECTORS)


@pytest.mark.parametrize("d", [1, 2, 4, 5, 1536, 3072])
def test_padded_and_unpadded_sizes_stay_on_the_fast_path(d: int) -> None:
    """Base64 with padding (4*d not a multiple of 3) decodes per item just the same."""
    vectors = RNG.standard_normal((3, d)).astype(np.float32)
    assert_fast(compact(response(vectors)), vectors, dims=d)


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": 3, "total_tokens": 5},
        {"total_tokens": 5},
        {"prompt_tokens": -1, "total_tokens": 5},
        {"prompt_tokens": True},
        "many",
        None,
    ],
)
def test_usage_and_model_are_read_as_the_full_parser_reads_them(usage: Any) -> None:
    """prompt_tokens, else total_tokens, and the echoed model match the full parser."""
    assert_fast(compact(response(usage=usage, model=usage)), VECTORS)


def test_decodes_into_the_callers_array() -> None:
    """With a fitting ``out`` the vectors are written into it and it is returned."""
    out = np.full((4, 6), 7.0, dtype=np.float32)
    scanned = scan_openai_base64(compact(response()), n_inputs=4, dimensions=6, out=out)
    assert scanned is not None and scanned.vectors is out
    np.testing.assert_array_equal(out, VECTORS)


def test_an_unfit_out_is_left_alone() -> None:
    """An ``out`` of another shape or dtype is ignored, as the full parser ignores it."""
    for out in (np.zeros((4, 5), np.float32), np.zeros((4, 6), np.float64)):
        before = out.copy()
        scanned = scan_openai_base64(compact(response()), n_inputs=4, dimensions=6, out=out)
        assert scanned is not None and scanned.vectors is not out
        np.testing.assert_array_equal(out, before)


def test_a_non_contiguous_out_is_filled_row_by_row() -> None:
    """A strided view of the right shape receives every row."""
    out = np.zeros((4, 12), np.float32)[:, ::2]
    scanned = scan_openai_base64(compact(response()), n_inputs=4, dimensions=6, out=out)
    assert scanned is not None and scanned.vectors is out
    np.testing.assert_array_equal(out, VECTORS)


def test_a_read_only_out_goes_to_the_full_parser() -> None:
    """A read-only ``out`` fails as the full parser fails, not in another way."""
    out = np.zeros((4, 6), np.float32)
    out.flags.writeable = False
    body = compact(response())
    assert scan_openai_base64(body, n_inputs=4, dimensions=6, out=out) is None
    assert body_outcome(body, 4, 6, out) == full_outcome(body, 4, 6, out)


# -- everything else goes to the full parser -------------------------------------------------------

_OK = compact(response())
_B0, _B1 = b64(VECTORS[0]).encode(), b64(VECTORS[1]).encode()
_NAN = VECTORS.copy()
_NAN[2, 3] = np.nan
_INF = VECTORS.copy()
_INF[3, 0] = -np.inf
_SLASHED = VECTORS.copy()
_SLASHED[0] = np.frombuffer(pybase64.b64decode(b"////" * 8), "<f4")  # base64 full of '/'


def _item_with(extra: bytes) -> bytes:
    """The compact body with ``extra`` key-values spliced into the first item."""
    return _OK.replace(b'{"object":"embedding",', b'{"object":"embedding",' + extra + b",", 1)


FALLBACKS: dict[str, tuple[bytes, int, int | None]] = {
    "escaped slashes": (compact(response(_SLASHED)).replace(b"/", b"\\/"), 4, 6),
    "float vectors": (compact({"data": [{"index": 0, "embedding": [1.0, 2.0]}]}), 1, None),
    "error key on a 200": (compact(response(error={"message": "boom", "code": 500})), 4, 6),
    "mistral error object": (compact({"object": "error", "message": "Too many tokens"}), 4, 6),
    "truncated": (_OK[: len(_OK) // 2], 4, 6),
    "truncated in the tail": (_OK[:-3], 4, 6),
    "trailing garbage": (_OK + b"x", 4, 6),
    "utf-8 bom": (b"\xef\xbb\xbf" + _OK, 4, 6),
    "duplicate embedding key": (_item_with(b'"embedding":"' + _B1 + b'"'), 4, 6),
    "embedding nested in an item": (_item_with(b'"meta":{"embedding":"' + _B1 + b'"}'), 4, 6),
    "embedding at the top level": (
        b'{"embedding":"' + _B1 + b'",' + _OK[1:],
        4,
        6,
    ),
    "escaped key name": (_item_with(b'"embe\\u0064ding":"' + _B1 + b'"'), 4, 6),
    # An escaped key hiding the real embedding while a nested one takes its place in the count.
    # An escaped key stands in for the real embedding, moved into a nested object.
    "decoy": (
        _OK.replace(
            b'"embedding":"' + _B0,
            b'"meta":{"embedding":"' + _B0 + b'"},"embe\\u0064ding":"',
            1,
        ),
        4,
        6,
    ),
    # The same without an escape: an empty string under a differently spaced key.
    "spaced decoy": (
        _OK.replace(
            b'"embedding":"' + _B0,
            b'"meta":{"embedding":"' + _B0 + b'"},"embedding" : "',
            1,
        ),
        4,
        6,
    ),
    "embedding moved into a nested object": (
        _OK.replace(b'"embedding":"' + _B0, b'"meta":{"embedding":"' + _B0 + b'"},"x":"', 1),
        4,
        6,
    ),
    "other spacing in one item": (
        _OK.replace(b'"embedding":"' + _B1, b'"embedding" : "' + _B1),
        4,
        6,
    ),
    "form feed before the colon": (_OK.replace(b'"embedding":', b'"embedding"\f:', 1), 4, 6),
    "one item too many": (compact(response(order=[0, 1, 2, 3, 0])), 4, 6),
    "one item too few": (compact(response(order=[0, 1, 2])), 4, 6),
    "repeated index": (compact(response(order=[0, 1, 1, 3])), 4, 6),
    "index out of range": (_OK.replace(b'"index":3', b'"index":4'), 4, 6),
    "negative index": (_OK.replace(b'"index":3', b'"index":-1'), 4, 6),
    "boolean index": (_OK.replace(b'"index":1', b'"index":true'), 4, 6),
    "string index": (_OK.replace(b'"index":1', b'"index":"1"'), 4, 6),
    "float index": (_OK.replace(b'"index":1', b'"index":1.0'), 4, 6),
    "nan value": (compact(response(_NAN)), 4, 6),
    "infinite value": (compact(response(_INF)), 4, 6),
    "other dimensions asked": (_OK, 4, 5),
    "one vector shorter": (_OK.replace(_B1, _B1[:-4]), 4, 6),
    "one vector longer": (_OK.replace(_B1, _B1 + b"AAAA"), 4, 6),
    "raw newline inside a string": (_OK.replace(_B1, _B1[:4] + b"\n" + _B1[4:]), 4, 6),
    "bad base64 character": (_OK.replace(_B1, b"*" + _B1[1:]), 4, 6),
    "padding inside": (_OK.replace(_B1, b"AA==" + _B1[4:]), 4, 6),
    "empty embedding": (_OK.replace(_B0, b""), 4, 6),
    "zero-dimension vectors": (compact(response(np.zeros((4, 0), np.float32))), 4, None),
    "no inputs": (compact({"data": []}), 0, None),
    "invalid utf-8 in the model": (_OK.replace(b"text-embedding", b"text-\xffembedding"), 4, 6),
    "data not a list": (compact({"data": {"0": b64(VECTORS[0])}}), 1, None),
    "not an object": (b"[" + _OK + b"]", 4, 6),
    "empty body": (b"", 4, 6),
}


@pytest.mark.parametrize("case", sorted(FALLBACKS))
def test_anything_unusual_goes_to_the_full_parser_with_the_same_outcome(case: str) -> None:
    """Each unusual body is declined by the scanner and ends exactly as the full parser ends."""
    body, n, dims = FALLBACKS[case]
    assert_falls_back(body, n, dims)


@pytest.mark.parametrize("case", ["decoy", "spaced decoy"])
def test_the_decoys_would_be_wrong_if_they_were_decoded(case: str) -> None:
    """A decoy body is really an error: the full parser rejects it, so must we."""
    body, n, dims = FALLBACKS[case]
    with pytest.raises(ResponseValidationError, match=r"empty embedding|different size"):
        decode_openai_body("p", 200, {}, body, n_inputs=n, dimensions=dims)


def test_an_error_document_raises_the_typed_error() -> None:
    """A 200 carrying an error body raises the provider error the full parser raises."""
    body, n, dims = FALLBACKS["error key on a 200"]
    with pytest.raises(ProviderError) as info:
        decode_openai_body("p", 200, {}, body, n_inputs=n, dimensions=dims)
    assert not isinstance(info.value, ResponseValidationError)


def test_float_bodies_decode_through_the_full_parser() -> None:
    """decode_openai_body serves float responses too (the codec needs one call for both)."""
    doc = {"data": [{"index": i, "embedding": [float(x) for x in VECTORS[i]]} for i in range(4)]}
    decoded = decode_openai_body("p", 200, {}, compact(doc), n_inputs=4, dimensions=6)
    np.testing.assert_array_equal(decoded.vectors, VECTORS)
