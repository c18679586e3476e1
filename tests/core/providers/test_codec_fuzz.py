"""Property: parse_response on any body returns a valid array or raises an EmbedGuardError."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pybase64
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedguard.core.config import ProviderProfile
from embedguard.core.errors import EmbedGuardError
from embedguard.core.providers import Codec, make_codec

CODECS: list[Codec] = [
    make_codec(ProviderProfile(provider="openai", model="m"), api_key="k" * 12, environ={}),
    make_codec(ProviderProfile(provider="ollama", model="m"), environ={}),
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)
vectors = st.one_of(
    st.lists(st.floats(width=32, allow_nan=True, allow_infinity=True), min_size=0, max_size=5),
    st.lists(st.floats(width=32), min_size=1, max_size=5).map(
        lambda v: pybase64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode()
    ),
    json_values,
)
items = st.fixed_dictionaries(
    {"index": st.one_of(st.integers(-1, 4), json_values), "embedding": vectors},
    optional={"object": st.just("embedding")},
)
openai_like = st.fixed_dictionaries(
    {"data": st.one_of(st.lists(items, max_size=4), json_values)},
    optional={"usage": json_values, "model": json_values, "error": json_values},
)
ollama_like = st.fixed_dictionaries(
    {"embeddings": st.one_of(st.lists(vectors, max_size=4), json_values)},
    optional={"prompt_eval_count": json_values, "error": json_values},
)
bodies = st.one_of(
    openai_like.map(lambda d: json.dumps(d).encode()),
    ollama_like.map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=64),
    openai_like.map(lambda d: json.dumps(d).encode()[: len(json.dumps(d)) // 2]),
)


def _check(codec: Codec, status: int, body: bytes, n: int, dims: int | None) -> None:
    try:
        result = codec.parse_response(status, {}, body, n_inputs=n, dimensions=dims)
    except EmbedGuardError:
        return
    vectors_ = result.vectors
    assert 200 <= status < 300
    assert isinstance(vectors_, np.ndarray)
    assert vectors_.dtype == np.float32
    assert vectors_.ndim == 2
    assert vectors_.shape[0] == n
    assert dims is None or vectors_.shape[1] == dims
    assert n == 0 or vectors_.shape[1] > 0
    assert np.isfinite(vectors_).all()
    assert result.prompt_tokens is None or result.prompt_tokens >= 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=bodies,
    n=st.integers(0, 4),
    dims=st.none() | st.integers(1, 5),
    status=st.sampled_from([200, 200, 200, 201, 400, 404, 429, 500]),
    which=st.integers(0, len(CODECS) - 1),
)
def test_any_body_gives_valid_vectors_or_typed_error(
    body: bytes, n: int, dims: int | None, status: int, which: int
) -> None:
    """Random JSON and bytes never escape as anything but a valid array or EmbedGuardError."""
    _check(CODECS[which], status, body, n, dims)


@settings(max_examples=200, deadline=None)
@given(data=st.lists(items, min_size=1, max_size=4), dims=st.none() | st.integers(1, 5))
def test_near_valid_openai_data(data: list[dict[str, Any]], dims: int | None) -> None:
    """Near-valid OpenAI data lists are either fully valid or rejected as a whole."""
    body = json.dumps({"object": "list", "data": data}).encode()
    _check(CODECS[0], 200, body, len(data), dims)


@st.composite
def responses(draw: st.DrawFn) -> tuple[np.ndarray, list[dict[str, Any]], str | None]:
    """A valid response (shuffled, float or base64 items), maybe with one corruption."""
    n = draw(st.integers(1, 4))
    d = draw(st.integers(1, 5))
    finite = st.floats(width=32, allow_nan=False, allow_infinity=False)
    expected = np.array(
        draw(st.lists(st.lists(finite, min_size=d, max_size=d), min_size=n, max_size=n)),
        dtype=np.float32,
    )
    order = draw(st.permutations(range(n)))
    data: list[dict[str, Any]] = []
    for i in order:
        row = expected[i]
        as_b64 = draw(st.booleans())
        emb: Any = (
            pybase64.b64encode(row.astype("<f4").tobytes()).decode()
            if as_b64
            else [float(x) for x in row]
        )
        data.append({"object": "embedding", "index": i, "embedding": emb})
    corruption = draw(st.sampled_from([None, None, "drop", "dup", "nan", "resized", "index"]))
    victim = draw(st.integers(0, n - 1))
    if corruption == "drop":
        del data[victim]
    elif corruption == "dup":
        data.append(dict(data[victim]))
    elif corruption == "nan":
        data[victim]["embedding"] = [float("nan")] * d
    elif corruption == "resized":
        data[victim]["embedding"] = [0.0] * (d + 1)
    elif corruption == "index":
        data[victim]["index"] = n
    return expected, data, corruption


@settings(max_examples=200, deadline=None)
@given(case=responses())
def test_valid_responses_decode_exactly_and_any_corruption_is_caught(
    case: tuple[np.ndarray, list[dict[str, Any]], str | None],
) -> None:
    """Intact responses decode to the exact rows; a single corruption always raises."""
    expected, data, corruption = case
    body = json.dumps({"object": "list", "data": data}).encode()
    n = expected.shape[0]
    if corruption is None:
        result = CODECS[0].parse_response(200, {}, body, n_inputs=n, dimensions=expected.shape[1])
        np.testing.assert_array_equal(result.vectors, expected)
    else:
        try:
            CODECS[0].parse_response(200, {}, body, n_inputs=n, dimensions=expected.shape[1])
        except EmbedGuardError:
            return
        raise AssertionError(f"corruption {corruption!r} was not detected")
