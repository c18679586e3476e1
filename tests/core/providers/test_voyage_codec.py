"""The Voyage AI codec on its own (no I/O): requests, keys, decoding, errors and headers."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedguard import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ContextLengthError,
    EmbedGuardError,
    InputValidationError,
    ModelNotFoundError,
    ProviderProfile,
    ResponseValidationError,
    ServerError,
    profiles,
)
from embedguard.core.providers import make_codec
from embedguard.core.providers.headers import rate_limit_info
from embedguard.core.providers.voyage import (
    VOYAGE_MODELS,
    VoyageCodec,
    voyage_error,
    voyage_rate_limit,
)

KEY = "pa-PLANTEDvoyageUNITkey-0123456789abcdef"


def _codec(**changes: Any) -> VoyageCodec:
    model = changes.pop("model", "voyage-3.5")
    codec = make_codec(profiles.voyage(model, **changes), api_key=KEY, environ={})
    assert isinstance(codec, VoyageCodec)
    return codec


def _body(codec: VoyageCodec, texts: list[str], kind: str = "document") -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(codec.build_request(texts, kind).body)
    return doc


def _reply(items: list[Any], tokens: int = 5, **extra: Any) -> bytes:
    data = [{"object": "embedding", "embedding": e, "index": i} for i, e in enumerate(items)]
    doc = {"object": "list", "data": data, "model": "voyage-3.5", "usage": {"total_tokens": tokens}}
    return orjson.dumps({**doc, **extra})


# -- requests ----------------------------------------------------------------------------------
def test_request_is_the_sdks_body_with_the_kinds_input_type() -> None:
    """Query and document kinds send Voyage's types; the SDK's null fields are explicit."""
    codec = _codec()
    request = codec.build_request(["hi"], "query")
    assert request.method == "POST" and request.url == "https://api.voyageai.com/v1/embeddings"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert list(orjson.loads(request.body)) == [
        "input", "model", "input_type", "truncation", "output_dtype", "output_dimension",
        "encoding_format",
    ]  # fmt: skip
    assert _body(codec, ["hi"], "query")["input_type"] == "query"
    assert _body(codec, ["hi"])["input_type"] == "document"
    assert _body(codec, ["hi"], "none")["input_type"] is None
    assert _body(codec, ["hi"], "null")["input_type"] is None
    assert KEY not in repr(codec)


def test_unknown_input_types_and_token_ids_are_refused() -> None:
    """A type Voyage does not take, or a non-string input, is an InputValidationError."""
    codec = _codec()
    with pytest.raises(InputValidationError, match="search_query"):
        codec.build_request(["x"], "search_query")
    with pytest.raises(InputValidationError):
        codec.build_request([[1, 2]], "query")  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("model", "dimensions", "sent"),
    [
        ("voyage-3.5", 1024, None),
        ("voyage-3.5", 2048, 2048),
        ("voyage-code-3", 256, 256),
        ("voyage-3-lite", 512, None),
        ("voyage-5-preview", 768, 768),  # unknown: Voyage judges
        ("voyage-5-preview", None, None),
    ],
)
def test_output_dimension(model: str, dimensions: int | None, sent: int | None) -> None:
    """The native size is sent as null; flexible sizes and unknown models' sizes as asked."""
    codec = _codec(model=model, dimensions=dimensions)
    assert _body(codec, ["x"])["output_dimension"] == sent


def test_profile_defaults_follow_the_model() -> None:
    """Native size, request and input token caps come from Voyage's documented limits."""
    lite = profiles.voyage("voyage-3.5-lite")
    large = profiles.voyage("voyage-3-large")
    legacy = profiles.voyage("voyage-2")
    assert lite.batching.max_tokens_per_request == 1_000_000
    assert large.batching.max_tokens_per_request == 120_000
    assert (legacy.batching.max_tokens_per_input, legacy.dimensions) == (4_000, 1024)
    assert lite.batching.max_inputs == 1000
    assert profiles.voyage("voyage-5-preview").dimensions is None
    assert profiles.voyage().evolve(model="voyage-code-2").dimensions == 1536
    assert (
        ProviderProfile.from_dict({"provider": "voyage", "model": "voyage-3-lite"}).dimensions
        == 512
    )
    typed = profiles.voyage("voyage-3-large", dtype="int8", query_input_type="null")
    assert ProviderProfile.from_toml(typed.to_toml()) == typed


def test_truncation_and_encoding_can_be_changed() -> None:
    """extra_body restores truncation; encoding_format float asks for JSON numbers (null)."""
    codec = _codec(extra_body={"truncation": True}, encoding_format="float", dtype="int8")
    body = _body(codec, ["x"])
    assert (body["truncation"], body["encoding_format"], body["output_dtype"]) == (
        True, None, "int8",
    )  # fmt: skip


# -- keys and URLs -----------------------------------------------------------------------------
def test_atlas_keys_go_to_mongodb_and_the_base_url_variable_wins() -> None:
    """An al- key defaults to ai.mongodb.com; VOYAGE_BASE_URL or the profile overrides."""
    profile = profiles.voyage()
    atlas = make_codec(profile, api_key="al-atlas-key-0123", environ={})
    assert atlas.url == "https://ai.mongodb.com/v1/embeddings"
    env = {"VOYAGE_BASE_URL": "https://proxy.example/voyage/v1/"}
    assert make_codec(profile, api_key=KEY, environ=env).url == (
        "https://proxy.example/voyage/v1/embeddings"
    )
    with pytest.raises(ConfigurationError) as info:
        make_codec(profile, api_key=KEY, environ={"VOYAGE_BASE_URL": "ftp://x"})
    assert info.value.field == "base_url"


def test_key_file_errors_name_the_file_not_the_key(tmp_path: Path) -> None:
    """A missing or empty VOYAGE_API_KEY_PATH file is a ConfigurationError on api_key."""
    empty = tmp_path / "empty.key"
    empty.write_text("  \n")
    for path in (tmp_path / "missing.key", empty):
        env = {"VOYAGE_API_KEY_PATH": str(path), "VOYAGE_API_KEY": KEY}
        with pytest.raises(ConfigurationError, match="VOYAGE_API_KEY_PATH") as info:
            make_codec(profiles.voyage(), environ=env)
        assert info.value.field == "api_key" and KEY not in str(info.value)
    given = make_codec(profiles.voyage(), api_key=KEY, environ={"VOYAGE_API_KEY_PATH": "/no"})
    assert given.build_request(["x"]).headers["Authorization"] == f"Bearer {KEY}"


# -- responses ---------------------------------------------------------------------------------
def test_float_base64_and_unknown_usage() -> None:
    """Base64 float32 rows decode exactly; usage.total_tokens 0 reads as unknown, not free."""
    rows = np.arange(8, dtype="<f4").reshape(2, 4) / 10
    items = [base64.b64encode(r.tobytes()).decode() for r in rows]
    result = _codec().parse_response(200, {}, _reply(items, 0), n_inputs=2, dimensions=4)
    np.testing.assert_array_equal(result.vectors, rows)
    assert result.prompt_tokens is None and result.model == "voyage-3.5"
    again = _codec().parse_response(200, {}, _reply(items, 7), n_inputs=2, dimensions=4)
    assert again.prompt_tokens == 7


@pytest.mark.parametrize(
    ("dtype", "values"),
    [("int8", [-128, 0, 127]), ("binary", [-128, 5, 127]), ("uint8", [0, 9, 255]),
     ("ubinary", [0, 200, 255])],
)  # fmt: skip
def test_compact_rows_as_base64_bytes_or_integers(dtype: str, values: list[int]) -> None:
    """int8/binary bytes are signed, uint8/ubinary unsigned; rows follow their index."""
    codec = _codec(dtype=dtype, dimensions=1024)
    width = 3
    store = np.int8 if dtype in ("int8", "binary") else np.uint8
    rows = [values, values[::-1]]
    raw = [base64.b64encode(np.array(row, dtype=store).tobytes()).decode() for row in rows]
    items = [{"embedding": raw[1], "index": 1}, {"embedding": raw[0], "index": 0}]
    body = orjson.dumps({"data": items})
    decoded = codec.parse_response(200, {}, body, n_inputs=2, dimensions=width).vectors
    np.testing.assert_array_equal(decoded, np.array(rows, dtype=np.float32))
    as_ints = codec.parse_response(200, {}, _reply([values]), n_inputs=1, dimensions=width)
    np.testing.assert_array_equal(as_ints.vectors[0], values)


@pytest.mark.parametrize(
    ("items", "dimensions", "why"),
    [
        ([[1, 2, 128]], 3, "outside"),
        ([[1, 2, 3.5]], 3, "not integers"),
        ([[1, True, 3]], 3, "not integers"),
        ([[1, 2]], 3, "expected 3"),
        (["AQID", "AQ=="], None, "expected 3"),
        (["AQI*"], None, "not valid base64"),
        ([{"x": 1}], None, "not a list"),
    ],
)
def test_bad_compact_rows_are_never_returned(items: list[Any], dimensions: int | None, why: str):
    """Out-of-range, non-integer, short or undecodable rows are ResponseValidationErrors."""
    codec = _codec(dtype="int8")
    with pytest.raises(ResponseValidationError, match=why):
        codec.parse_response(200, {}, _reply(items), n_inputs=len(items), dimensions=dimensions)


def test_compact_index_and_count_are_checked() -> None:
    """A repeated index or a missing row is refused."""
    codec = _codec(dtype="uint8")
    twice = orjson.dumps({"data": [{"embedding": [1], "index": 0}, {"embedding": [2], "index": 0}]})
    with pytest.raises(ResponseValidationError, match="twice"):
        codec.parse_response(200, {}, twice, n_inputs=2, dimensions=None)
    with pytest.raises(ResponseValidationError, match="1 embeddings for 2"):
        codec.parse_response(200, {}, _reply([[1]]), n_inputs=2, dimensions=None)


# -- errors ------------------------------------------------------------------------------------
def _error(status: int, detail: str, **headers: str) -> Exception:
    body = orjson.dumps({"detail": detail})
    return voyage_error("voyage", status, headers, body, secrets=(KEY,))


def test_voyages_400_texts_become_the_right_errors() -> None:
    """Unsupported model, an input over the context and a batch over the cap are told apart."""
    missing = _error(400, "Model nonexistent is not supported. Supported models are ['x'].")
    item = _error(400, "Request to model 'voyage-code-2' failed. The example at index 3 in your "
                  "batch has too many tokens and does not fit into the model's context window "
                  "of 16000 tokens.")  # fmt: skip
    batch = _error(
        400,
        "Request to model 'voyage-3-large' failed. The max allowed tokens per "
        "submitted batch is 120000. Your batch has 124302 tokens after truncation.",
    )
    other = _error(400, "output_dtype int8 is not supported for model voyage-3.")
    assert type(missing) is ModelNotFoundError
    assert type(item) is ContextLengthError and item.index == 3
    assert type(batch) is ContextLengthError and batch.index is None
    assert type(other) is BadRequestError


def test_other_statuses_keep_the_shared_mapping_and_hide_the_key() -> None:
    """401 is AuthenticationError, 5xx ServerError; the key never reaches the message."""
    auth = _error(401, f"Provided API key is invalid: {KEY}", **{"x-request-id": "abc123"})
    assert type(auth) is AuthenticationError and KEY not in str(auth)
    assert auth.request_id == "abc123"
    assert type(_error(503, "Service Unavailable")) is ServerError
    codec = _codec()
    with pytest.raises(ModelNotFoundError):
        codec.parse_response(400, {}, b'{"detail":"Model m is not supported."}', n_inputs=1,
                             dimensions=None)  # fmt: skip


# -- headers -----------------------------------------------------------------------------------
_WARNING = (
    "You have not yet added your payment method in the billing page and will have reduced rate "
    "limits of 3 RPM and 10K TPM. To unlock our standard rate limits, please add a payment method."
)


def test_the_free_tier_warning_states_the_limits() -> None:
    """x-api-warning's "3 RPM and 10K TPM" reads as those limits, on 2xx and 429 alike."""
    info = voyage_rate_limit({"x-api-warning": _WARNING})
    assert info is not None and (info.limit_requests, info.limit_tokens) == (3, 10_000)
    assert rate_limit_info("voyage", {"X-Api-Warning": _WARNING}) == info
    mega = voyage_rate_limit({"x-api-warning": "rate limits of 2000 RPM and 1.5M TPM"})
    assert mega is not None and mega.limit_tokens == 1_500_000
    result = _codec().parse_response(
        200, {"X-Api-Warning": _WARNING}, _reply([[0.5]]), n_inputs=1, dimensions=None
    )
    assert result.rate_limit == info


def test_other_headers_state_nothing_or_their_own_limits() -> None:
    """No warning, an unrelated one or absurd numbers state nothing; x-ratelimit-* win."""
    assert voyage_rate_limit({}) is None
    assert voyage_rate_limit({"x-api-warning": "deprecated model"}) is None
    huge = voyage_rate_limit({"x-api-warning": "rate limits of 999999999M RPM and 1 TPM"})
    assert huge is not None and huge.limit_requests is None and huge.limit_tokens == 1
    stated = voyage_rate_limit({"x-ratelimit-limit-requests": "50", "x-api-warning": _WARNING})
    assert stated is not None and stated.limit_requests == 50


def test_the_model_table_is_consistent() -> None:
    """Every known model's input limit fits its request cap; flexible ones are 1024 natively."""
    for name, spec in VOYAGE_MODELS.items():
        assert spec.max_tokens_per_input <= spec.max_tokens_per_request, name
        assert not spec.flexible or spec.size == 1024, name


# -- fuzzing -----------------------------------------------------------------------------------
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.text(max_size=8),
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([-129, 128, 255, 256, 1e39]),
)  # fmt: skip
_ROW = st.one_of(
    st.lists(st.integers(-130, 260), min_size=1, max_size=4),
    st.lists(_SCALARS, min_size=1, max_size=4),
    st.binary(min_size=1, max_size=16).map(lambda b: base64.b64encode(b).decode()),
    st.text(max_size=12),
    _SCALARS,
)
_ITEM = st.fixed_dictionaries(
    {"embedding": _ROW},
    optional={"index": st.one_of(st.integers(-1, 3), _SCALARS), "object": st.text(max_size=9)},
)
_DOC = st.fixed_dictionaries(
    {"data": st.one_of(st.lists(_ITEM, max_size=4), _SCALARS)},
    optional={"usage": st.dictionaries(st.sampled_from(["total_tokens", "x"]), _SCALARS),
              "model": _SCALARS, "detail": _SCALARS, "error": _SCALARS},
)  # fmt: skip
_WIRES = [("float32", "base64"), ("float32", "float"), ("int8", "float"), ("uint8", "base64"),
          ("ubinary", "float")]  # fmt: skip
_FUZZED = {wire: _codec(dtype=wire[0], encoding_format=wire[1]) for wire in _WIRES}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    wire=st.sampled_from(_WIRES),
    doc=_DOC,
    status=st.sampled_from([200, 201, 400, 401, 404, 422, 429, 500, 503]),
    n=st.integers(1, 3),
    dimensions=st.sampled_from([None, 1, 2, 3]),
)
def test_any_body_is_a_valid_array_or_a_typed_error(
    wire: tuple[str, str], doc: dict[str, Any], status: int, n: int, dimensions: int | None
) -> None:
    """Whatever the body and status, parsing gives n finite in-range rows or an EmbedGuardError."""
    codec, dtype = _FUZZED[wire], wire[0]
    try:
        result = codec.parse_response(
            status, {}, json.dumps(doc).encode(), n_inputs=n, dimensions=dimensions
        )
    except EmbedGuardError:
        return
    vectors = result.vectors
    assert 200 <= status < 300 and vectors.dtype == np.float32 and vectors.shape[0] == n
    assert np.isfinite(vectors).all() and (dimensions is None or vectors.shape[1] == dimensions)
    if dtype != "float32":
        low, high = (-128, 127) if dtype == "int8" else (0, 255)
        assert (vectors == np.rint(vectors)).all() and low <= vectors.min() <= vectors.max() <= high
