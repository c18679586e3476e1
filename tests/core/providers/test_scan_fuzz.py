"""Property: the scanner plus its fallback equals the full parser on valid, varied and damaged
OpenAI base64 bodies (byte-identical arrays, or the same error type, message and attributes)."""

from __future__ import annotations

import json
import re

import numpy as np
import pybase64
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedguard.core.providers._json import scan_openai_base64

from .test_scan import body_outcome, full_outcome

_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_ws = st.text(st.sampled_from(" \t\n\r"), max_size=3)
_text = st.text(max_size=8)  # any unicode, written raw or \u-escaped
_extra_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=6,
)
# Any float32 bit pattern (tiny, huge, NaN payloads), and the special values themselves.
_bits = st.one_of(
    st.integers(0, 2**32 - 1).map(lambda u: np.array([u], "<u4").view("<f4")[0]),
    st.sampled_from([np.nan, np.inf, -np.inf, -0.0]),
)
_finite = st.floats(width=32, allow_nan=False, allow_infinity=False)


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, int, int | None, bool]:
    """A base64 response in one consistent style (as a server writes it).

    Returns the body, the number of inputs, the dimensions asked for, and whether the body is
    plain enough that the scanner must take it (valid, no escapes, the expected size).
    """
    n = draw(st.integers(1, 5))
    d = draw(st.sampled_from([1, 2, 3, 4, 6, 7, 12]))
    values = _bits if draw(st.integers(0, 9)) == 0 else _finite
    rows = np.array(
        draw(st.lists(st.lists(values, min_size=d, max_size=d), min_size=n, max_size=n)),
        dtype="<f4",
    )
    order = draw(st.permutations(range(n)))
    item_keys = draw(st.permutations(["object", "index", "embedding", "extra"]))
    data = []
    for i in order:
        encoded = pybase64.b64encode(rows[i].tobytes()).decode()
        item = {"object": "embedding", "index": i, "embedding": encoded}
        item["extra"] = draw(_extra_value)
        keep_extra = draw(st.booleans())
        data.append({k: item[k] for k in item_keys if k != "extra" or keep_extra})
    top = {
        "object": "list",
        "data": data,
        "model": draw(st.one_of(_text, _extra_value)),
        "usage": draw(
            st.one_of(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "prompt_tokens": st.integers(-2, 10**6) | _extra_value,
                        "total_tokens": st.integers(-2, 10**6),
                    },
                ),
                _extra_value,
            )
        ),
        "id": draw(_text),
    }
    top_keys = draw(st.permutations(list(top)))
    doc = {k: top[k] for k in top_keys if k == "data" or draw(st.booleans())}
    ascii_only = draw(st.booleans())
    item_sep = draw(_ws) + "," + draw(_ws)
    key_sep = draw(_ws) + ":" + draw(_ws)
    indent = draw(st.sampled_from([None, 0, 2, "\t"]))
    text = json.dumps(doc, separators=(item_sep, key_sep), indent=indent, ensure_ascii=ascii_only)
    if draw(st.integers(0, 4)) == 0:
        text = text.replace("/", "\\/")  # some servers escape every slash
    dims = draw(st.sampled_from([None, d, d, d + 1]))
    plain = "\\" not in text and dims in (None, d) and bool(np.isfinite(rows).all())
    return text.encode(), n, dims, plain


_hostile = [b'"', b"\\", b",", b":", b"{", b"}", b"[", b"]", b" ", b"=", b"A", b"/", b"\x00",
            b"\xff", b"\xc3\xa9", b'"embedding":"', b'"embedding"', b"e", b"1", b"-"]  # fmt: skip


_KEY = re.compile(rb'"embedding"[ \t\n\r]*:[ \t\n\r]*"[^"]*"')


def _grafts(b64: bytes) -> list[bytes]:
    """Key-values that put an ``embedding`` where the scanner must not be fooled by it."""
    return [
        b'"embedding":"' + b64 + b'"',  # a duplicate key
        b'"embedding" : "' + b64 + b'"',  # the same, spaced otherwise
        b'"meta":{"embedding":"' + b64 + b'"}',  # nested
        b'"meta":[{"embedding":"' + b64 + b'"}]',
        b'"embedding":""',
        b'"embedding" : ""',
        b'"embedding":[1.5]',
        b'"embe\\u0064ding":"' + b64 + b'"',
        b'"error":{"message":"x"}',
        b'"index":0',
    ]


def _damage(draw: st.DrawFn, body: bytes) -> bytes:
    """``body`` damaged once: cut, a byte dropped, inserted or replaced, a slice repeated, a
    key-value grafted into an object, or one embedding string emptied under other spacing."""
    where = draw(st.integers(0, len(body)))
    kind = draw(st.sampled_from(["cut", "drop", "insert", "replace", "repeat", "graft", "hollow"]))
    if kind == "cut":
        return body[:where]
    if kind == "drop":
        return body[:where] + body[where + 1 :]
    if kind == "insert":
        return body[:where] + draw(st.sampled_from(_hostile)) + body[where:]
    if kind == "replace":
        return body[:where] + draw(st.sampled_from(_hostile)) + body[where + 1 :]
    if kind == "repeat":
        size = draw(st.integers(1, 200))
        return body[:where] + body[where : where + size] * 2 + body[where + size :]
    keys = list(_KEY.finditer(body))
    if kind == "graft":
        opens = [i for i, byte in enumerate(body) if byte == ord("{")]
        b64 = draw(st.sampled_from([m.group()[:-1].rsplit(b'"', 1)[1] for m in keys] or [b""]))
        at = draw(st.sampled_from(opens)) + 1 if opens else 0
        return body[:at] + draw(st.sampled_from(_grafts(b64))) + b"," + body[at:]
    if not keys:
        return body
    victim = draw(st.sampled_from(keys))
    return body[: victim.start()] + b'"embedding" : ""' + body[victim.end() :]


@st.composite
def damaged(draw: st.DrawFn) -> tuple[bytes, int, int | None]:
    """A valid body damaged one to three times, or asked for the wrong number of inputs."""
    body, n, dims, _ = draw(bodies())
    for _ in range(draw(st.integers(1, 3))):
        body = _damage(draw, body)
    if draw(st.integers(0, 5)) == 0:
        n = draw(st.sampled_from([max(0, n - 1), n + 1]))
    return body, n, dims


@_SETTINGS
@given(case=bodies())
def test_plain_bodies_are_scanned_and_every_body_matches_the_full_parser(
    case: tuple[bytes, int, int | None, bool],
) -> None:
    """Any whitespace, key order, extra keys, unicode or escapes: same outcome as the full
    parser; a plain valid body (no escapes, right size, finite) never falls back."""
    body, n, dims, plain = case
    expected = full_outcome(body, n, dims)
    assert body_outcome(body, n, dims) == expected
    scanned = scan_openai_base64(body, n_inputs=n, dimensions=dims)
    if plain:
        assert expected[0] == "vectors"
        assert scanned is not None, "the scanner fell back on a plain body"
    if scanned is not None:
        assert scanned.vectors.tobytes() == expected[3]


@_SETTINGS
@given(case=damaged())
def test_damaged_bodies_end_as_the_full_parser_ends(case: tuple[bytes, int, int | None]) -> None:
    """Any damage gives the full parser's array or its exact error, never another."""
    body, n, dims = case
    assert body_outcome(body, n, dims) == full_outcome(body, n, dims)


@_SETTINGS
@given(case=damaged(), fill=st.floats(width=32))
def test_damaged_bodies_decoded_into_out_match_too(
    case: tuple[bytes, int, int | None], fill: float
) -> None:
    """With a caller's ``out`` (pre-filled with junk) the outcome is still the full parser's."""
    body, n, dims = case
    d = dims or 6
    mine, theirs = np.full((n, d), fill, np.float32), np.full((n, d), fill, np.float32)
    assert body_outcome(body, n, dims, mine) == full_outcome(body, n, dims, theirs)
