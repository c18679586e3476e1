"""The float fast path: plain float bodies decode against the response's schema, anything else
goes to the full parser, and both routes give the full parser's exact result or error."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedguard.core.providers._typed import decode_openai_floats

from .test_scan import body_outcome, full_outcome, vector_state

RNG = np.random.default_rng(11)
VECTORS = RNG.standard_normal((4, 5)).astype(np.float32)


def floats_doc(vectors: np.ndarray = VECTORS, *, order: list[int] | None = None, **top: Any) -> Any:
    """An OpenAI float response document (items in ``order``, index = row)."""
    order = list(range(len(vectors))) if order is None else order
    data = [{"object": "embedding", "index": i, "embedding": vectors[i].tolist()} for i in order]
    return {
        "object": "list",
        "data": data,
        "model": "nomic-embed-text",
        "usage": {"prompt_tokens": 7, "total_tokens": 7},
        **top,
    }


def assert_typed(body: bytes, n: int, dims: int | None = None) -> np.ndarray:
    """The typed path decodes ``body`` itself, exactly as the full parser does."""
    typed = decode_openai_floats(body, n_inputs=n, dimensions=dims)
    assert typed is not None, "the typed path fell back on a plain float body"
    assert vector_state(*typed) == full_outcome(body, n, dims)
    return typed.vectors


def assert_falls_back(body: bytes, n: int, dims: int | None = None) -> None:
    """The typed path declines ``body``, and decode_openai_body still matches the full parser."""
    assert decode_openai_floats(body, n_inputs=n, dimensions=dims) is None
    assert body_outcome(body, n, dims) == full_outcome(body, n, dims)


# -- the fast path ---------------------------------------------------------------------------------


@pytest.mark.parametrize("indent", [None, 2])
def test_plain_float_bodies_take_the_typed_path(indent: int | None) -> None:
    """Compact (vLLM, llama.cpp) and indented (OpenAI) float bodies decode without the tree."""
    body = json.dumps(floats_doc(), indent=indent).encode()
    np.testing.assert_array_equal(assert_typed(body, 4, 5), VECTORS)


def test_items_out_of_index_order_land_in_their_rows() -> None:
    vectors = assert_typed(orjson.dumps(floats_doc(order=[2, 0, 3, 1])), 4)
    np.testing.assert_array_equal(vectors, VECTORS)


def test_integers_are_numbers_rounded_as_doubles() -> None:
    """A row of integers (or one mixing them with floats) reads as JSON doubles: the same float32
    values through either route, even where float32 rounds them (2**24 + 1)."""
    doc = {"data": [{"index": 0, "embedding": [1, 2**24 + 1, -3]},
                    {"index": 1, "embedding": [0.5, 2**24 + 1, -0]}]}  # fmt: skip
    vectors = assert_typed(orjson.dumps(doc), 2)
    assert vectors.tolist() == [[1.0, 16777216.0, -3.0], [0.5, 16777216.0, 0.0]]
    huge = _first_row(b"18446744073709551615,1,2,3,4")  # the largest integer orjson keeps
    assert assert_typed(huge, 4, 5)[0, 0] == np.float32(2.0**64)


def test_decodes_into_the_callers_array() -> None:
    out = np.full((4, 5), 7.0, np.float32)
    typed = decode_openai_floats(orjson.dumps(floats_doc()), n_inputs=4, dimensions=5, out=out)
    assert typed is not None and typed.vectors is out
    np.testing.assert_array_equal(out, VECTORS)


def test_an_unfit_out_is_left_alone() -> None:
    out = np.full((4, 6), 7.0, np.float32)
    typed = decode_openai_floats(orjson.dumps(floats_doc()), n_inputs=4, dimensions=None, out=out)
    assert typed is not None and typed.vectors is not out
    assert (out == 7.0).all()


def test_usage_and_model_are_read_as_the_full_parser_reads_them() -> None:
    for usage in [{"prompt_tokens": 3}, {"total_tokens": 4}, {"prompt_tokens": True}, None, 5,
                  {"prompt_tokens": -1, "total_tokens": 2}]:  # fmt: skip
        body = orjson.dumps(floats_doc(usage=usage, model=["not", "a", "string"]))
        assert_typed(body, 4)


# -- everything else goes to the full parser -------------------------------------------------------

_OK = orjson.dumps(floats_doc())
_FIRST = orjson.dumps(VECTORS[0].tolist())[1:-1]  # the first row's numbers, as written


def _first_row(replacement: bytes) -> bytes:
    """The body with the first row's numbers replaced."""
    assert _FIRST in _OK
    return _OK.replace(_FIRST, replacement, 1)


FALLBACKS: dict[str, tuple[bytes, int, int | None]] = {
    "a boolean among numbers": (_first_row(b"true,1.0,2.0,3.0,4.0"), 4, 5),
    "a row of booleans": (_first_row(b"true,false,true,true,false"), 4, 5),
    "a number written as a string": (_first_row(b'"0.5",1.0,2.0,3.0,4.0'), 4, 5),
    "a row of numeric strings": (_first_row(b'"1","2","3","4","5"'), 4, 5),
    "null among numbers": (_first_row(b"null,1.0,2.0,3.0,4.0"), 4, 5),
    "a nested row": (_first_row(b"[1.0,2.0],[3.0],4.0,5.0,6.0"), 4, 5),
    "nested empties": (_first_row(b"[],[1.0,2.0],[],3.0,4.0"), 4, 5),
    "an object in a row": (_first_row(b'{"x":1},1.0,2.0,3.0,4.0'), 4, 5),
    "a value past float32": (_first_row(b"1e39,1.0,2.0,3.0,4.0"), 4, 5),
    "a value past float64": (_first_row(b"1e400,1.0,2.0,3.0,4.0"), 4, 5),
    "a row too short": (_first_row(b"1.0,2.0,3.0,4.0"), 4, 5),
    "a row too long": (_first_row(b"1.0,2.0,3.0,4.0,5.0,6.0"), 4, 5),
    "an empty first row": (_first_row(b""), 4, None),
    "other dimensions asked": (_OK, 4, 6),
    "one item too many": (orjson.dumps(floats_doc(order=[0, 1, 2, 3, 0])), 4, 5),
    "one item too few": (orjson.dumps(floats_doc(order=[0, 1, 2])), 4, 5),
    "repeated index": (orjson.dumps(floats_doc(order=[0, 1, 1, 3])), 4, 5),
    "index out of range": (_OK.replace(b'"index":3', b'"index":4'), 4, 5),
    "negative index": (_OK.replace(b'"index":3', b'"index":-1'), 4, 5),
    "boolean index": (_OK.replace(b'"index":1', b'"index":true'), 4, 5),
    "float index": (_OK.replace(b'"index":1', b'"index":1.0'), 4, 5),
    "huge index": (_OK.replace(b'"index":1', b'"index":18446744073709551616'), 4, 5),
    "no index": (_OK.replace(b'"index":1,', b""), 4, 5),
    "base64 item": (_first_row(b"").replace(b"[]", b'"AAAAAAAAAAAAAAAAAAAAAAAAAAA="', 1), 4, 5),
    "error key on a 200": (orjson.dumps(floats_doc(error={"message": "boom"})), 4, 5),
    "error object on a 200": (orjson.dumps(floats_doc(object="error")), 4, 5),
    "huge token count": (json.dumps(floats_doc(usage={"prompt_tokens": 2**64})).encode(), 4, 5),
    "truncated": (_OK[:-5], 4, 5),
    "trailing garbage": (_OK + b"x", 4, 5),
    "NaN literal": (_first_row(b"NaN,1.0,2.0,3.0,4.0"), 4, 5),
    "leading zero": (_first_row(b"01,1.0,2.0,3.0,4.0"), 4, 5),
    "lone surrogate in the model": (_OK.replace(b"nomic", b"\\ud800nomic"), 4, 5),
    "deep nesting elsewhere": (_OK[:-1] + b',"x":' + b"[" * 1100 + b"]" * 1100 + b"}", 4, 5),
    "no data": (orjson.dumps({"object": "list"}), 4, 5),
    "not an object": (b"[" + _OK + b"]", 4, 5),
    "no inputs": (orjson.dumps({"data": []}), 0, None),
    "empty body": (b"", 4, 5),
}


@pytest.mark.parametrize("case", sorted(FALLBACKS))
def test_anything_unusual_goes_to_the_full_parser_with_the_same_outcome(case: str) -> None:
    body, n, dims = FALLBACKS[case]
    assert_falls_back(body, n, dims)


@pytest.mark.parametrize("case", ["a row of booleans", "a row of numeric strings", "a nested row"])
def test_what_a_bulk_conversion_would_take_for_numbers_is_refused(case: str) -> None:
    """numpy's float32 conversion would read these as numbers: the result is an error."""
    body, n, dims = FALLBACKS[case]
    assert body_outcome(body, n, dims)[0] == "error"


# -- property: any float body, varied or damaged, ends as the full parser ends ---------------------

_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_number = st.one_of(
    st.floats(width=32, allow_nan=False, allow_infinity=False),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**70), 2**70),
)
_odd = st.one_of(st.booleans(), st.none(), st.text(max_size=3), st.just([]), st.just([1.5]))
_extra = st.one_of(st.none(), st.booleans(), st.integers(-(2**66), 2**66), st.text(max_size=4))


@st.composite
def float_bodies(draw: st.DrawFn) -> tuple[bytes, int, int | None]:
    """A float response in one server's style: any order, spacing, extra keys, odd values."""
    n = draw(st.integers(1, 4))
    d = draw(st.integers(1, 6))
    odd = draw(st.integers(0, 3)) == 0
    element = st.one_of(_number, _odd) if odd else _number
    rows = draw(st.lists(st.lists(element, min_size=d, max_size=d), min_size=n, max_size=n))
    data = []
    for i in draw(st.permutations(range(n))):
        item: dict[str, Any] = {"object": "embedding", "index": i, "embedding": rows[i]}
        if draw(st.booleans()):
            item["extra"] = draw(_extra)
        data.append(item)
    doc: dict[str, Any] = {"object": "list", "data": data}
    if draw(st.booleans()):
        doc["usage"] = draw(
            st.fixed_dictionaries({}, optional={"prompt_tokens": _extra, "total_tokens": _extra})
            | _extra
        )
    if draw(st.booleans()):
        doc["model"] = draw(_extra)
    indent = draw(st.sampled_from([None, 2]))
    body = json.dumps(doc, indent=indent, separators=None if indent else (",", ":")).encode()
    if draw(st.integers(0, 3)) == 0:  # damage: cut, drop, insert or replace a byte
        where = draw(st.integers(0, len(body)))
        junk = draw(st.sampled_from([b",", b"]", b"[", b'"', b"-", b"e", b"0", b"t", b" "]))
        body = draw(
            st.sampled_from(
                [body[:where], body[:where] + body[where + 1 :], body[:where] + junk + body[where:]]
            )
        )
    dims = draw(st.sampled_from([None, d, d, d + 1]))
    return body, draw(st.sampled_from([n, n, n, n + 1])), dims


@_SETTINGS
@given(case=float_bodies())
def test_float_bodies_end_as_the_full_parser_ends(case: tuple[bytes, int, int | None]) -> None:
    body, n, dims = case
    expected = full_outcome(body, n, dims)
    assert body_outcome(body, n, dims) == expected
    typed = decode_openai_floats(body, n_inputs=n, dimensions=dims)
    if typed is not None:
        assert vector_state(*typed) == expected
    elif expected[0] == "vectors" and re.fullmatch(rb"[^tfn\"]*", body):
        # Only numbers in the rows and a valid result: the typed path must not have declined it,
        # unless a number is an integer past what orjson keeps as one.
        assert re.search(rb"\d{20}", body), "the typed path fell back on a plain float body"


# -- Ollama, TEI and Gemini: the codec's outcome with and without the fast path -------------------


def _codec(provider: str) -> Any:
    from embedguard import profiles
    from embedguard.core.providers import make_codec

    profile = {"ollama": profiles.ollama, "tei": profiles.tei, "gemini": profiles.gemini}
    return make_codec(profile[provider](), api_key="gm-key", environ={})


def codec_outcome(provider: str, body: bytes, n: int, dims: int | None, typed: bool) -> Any:
    """What the codec's parse_response gives, with the typed path on or forced off."""
    import embedguard.core.providers._typed as module

    names = ("decode_ollama_floats", "decode_float_list", "decode_gemini_floats")
    saved = {name: getattr(module, name) for name in names}
    if not typed:
        for name in names:
            setattr(module, name, lambda *a, **k: None)
    try:
        result = _codec(provider).parse_response(
            200, {"x-compute-tokens": "9"}, body, n_inputs=n, dimensions=dims
        )
    except Exception as exc:
        return ("error", type(exc), str(exc), sorted(vars(exc).items()))
    finally:
        for name, function in saved.items():
            setattr(module, name, function)
    return vector_state(result.vectors, result.prompt_tokens, result.model)


def _shaped(provider: str, rows: list[Any], extra: dict[str, Any]) -> Any:
    if provider == "tei":
        return rows
    if provider == "gemini":
        count = extra.pop("prompt_eval_count", None)
        usage = {} if count is None else {"usageMetadata": {"promptTokenCount": count}}
        return {"embeddings": [{"values": row} for row in rows], **usage, **extra}
    return {"model": "all-minilm", "embeddings": rows, **extra}


@pytest.mark.parametrize("provider", ["ollama", "tei", "gemini"])
def test_plain_float_bodies_of_ollama_tei_and_gemini_take_the_typed_path(provider: str) -> None:
    import embedguard.core.providers._typed as module

    body = orjson.dumps(_shaped(provider, VECTORS.tolist(), {"prompt_eval_count": 8}))
    fast = {"ollama": module.decode_ollama_floats, "tei": module.decode_float_list,
            "gemini": module.decode_gemini_floats}[provider]  # fmt: skip
    assert fast(body, n_inputs=4, dimensions=5) is not None
    typed = codec_outcome(provider, body, 4, 5, typed=True)
    assert typed == codec_outcome(provider, body, 4, 5, typed=False)
    assert typed[3] == VECTORS.tobytes() and typed[4] == (9 if provider == "tei" else 8)


@st.composite
def shaped_bodies(draw: st.DrawFn) -> tuple[str, bytes, int, int | None]:
    provider = draw(st.sampled_from(["ollama", "tei", "gemini"]))
    n = draw(st.integers(1, 4))
    d = draw(st.integers(1, 5))
    element = st.one_of(_number, _odd) if draw(st.integers(0, 3)) == 0 else _number
    rows = draw(st.lists(st.lists(element, min_size=d, max_size=d), min_size=n, max_size=n))
    extra = draw(
        st.fixed_dictionaries(
            {}, optional={"prompt_eval_count": _extra, "error": _extra, "object": _extra}
        )
    )
    body = json.dumps(_shaped(provider, rows, extra)).encode()
    if draw(st.integers(0, 3)) == 0:
        where = draw(st.integers(0, len(body)))
        body = (
            body[:where]
            + draw(st.sampled_from([b"", b",", b"]", b"[", b'"', b"t"]))
            + (body[where + draw(st.integers(0, 1)) :])
        )
    return provider, body, draw(st.sampled_from([n, n, n + 1])), draw(st.sampled_from([None, d]))


@_SETTINGS
@given(case=shaped_bodies())
def test_ollama_tei_and_gemini_bodies_end_as_their_full_parsers_end(
    case: tuple[str, bytes, int, int | None],
) -> None:
    provider, body, n, dims = case
    assert codec_outcome(provider, body, n, dims, True) == codec_outcome(
        provider, body, n, dims, False
    )
