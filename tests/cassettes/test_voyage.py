"""Voyage AI's /v1/embeddings, replayed from cassettes through the public API (sync and async)."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest

from embedguard import (
    AuthenticationError,
    CircuitState,
    ContextLengthError,
    EmbeddingClient,
    EndpointNotFoundError,
    ModelNotFoundError,
    ProviderProfile,
    profiles,
)

from .conftest import CASSETTES, Recording, assert_metrics, fast, run_client

# A planted key shaped like Voyage's (``pa-`` + 43 characters): it must never reach a cassette.
VOYAGE_KEY = "pa-PLANTEDvoyageCASSETTEkey0123456789abcdefABC"
_VOYAGE_KEYS = re.compile(r"\b(?:pa|al)-[A-Za-z0-9_-]{30,}")


def _profile(model: str = "voyage-3.5", **changes: object) -> ProviderProfile:
    return fast(profiles.voyage(model, **changes))


def _float_rows(rec: Recording, i: int = 0) -> np.ndarray:
    """The recorded base64 float32 rows, decoded independently of embedguard, by index."""
    items = sorted(rec.doc(i)["data"], key=lambda item: item["index"])
    return np.stack([np.frombuffer(base64.b64decode(it["embedding"]), "<f4") for it in items])


def _tokens(rec: Recording, i: int) -> int:
    return int(rec.doc(i)["usage"]["total_tokens"])  # Voyage reports total_tokens only


async def test_query_sends_the_query_type_and_gets_the_recorded_vector(replay, mode):
    """embed_query on voyage-3.5: input_type "query", the recorded 1024 floats, usage counted."""
    name = "voyage/query_base64.yaml"
    rec = Recording.of(name)
    assert rec.request_body()["input_type"] == "query"
    with replay(name) as cassette:
        out = await run_client(_profile(), rec.inputs(), mode, api_key=VOYAGE_KEY, query=True)
    assert out.error is None and out.vectors is not None
    assert np.array_equal(out.vectors, _float_rows(rec)[0])
    assert cassette.play_count == 1 and cassette.all_played
    assert_metrics(out, attempts=1, failures={}, items=1, tokens=_tokens(rec, 0))


async def test_documents_at_512_dimensions(replay, mode):
    """embed of three documents with dimensions=512: output_dimension 512, the recorded rows."""
    name = "voyage/documents_dims512_free_tier.yaml"
    rec = Recording.of(name)
    assert rec.request_body()["output_dimension"] == 512
    with replay(name) as cassette:
        out = await run_client(_profile(dimensions=512), rec.inputs(), mode, api_key=VOYAGE_KEY)
    assert out.vectors is not None and out.vectors.shape == (3, 512)
    assert np.array_equal(out.vectors, _float_rows(rec))
    assert cassette.all_played
    assert_metrics(out, attempts=1, failures={}, items=3, tokens=_tokens(rec, 0))


def test_the_free_tier_warning_sets_the_limits(replay):
    """The recorded x-api-warning ("3 RPM and 10K TPM") becomes the limits in force."""
    name = "voyage/documents_dims512_free_tier.yaml"
    rec = Recording.of(name)
    assert "3 RPM and 10K TPM" in (rec.header(0, "x-api-warning") or "")
    with replay(name), EmbeddingClient(_profile(dimensions=512), api_key=VOYAGE_KEY) as client:
        client.embed(rec.inputs())
        status = client.rate_limit_status
        in_force = client._primary.limiter.limits_in_force
    assert status is not None and (status.limit_requests, status.limit_tokens) == (3, 10_000)
    assert in_force == {"requests": (3.0, "server"), "tokens": (10_000.0, "server")}


async def test_int8_vectors_from_base64_bytes(replay, mode):
    """voyage-3-large with dtype int8: base64 of signed bytes comes back as the recorded int8."""
    name = "voyage/int8_base64.yaml"
    rec = Recording.of(name)
    profile = _profile("voyage-3-large", dtype="int8", dimensions=256)
    with replay(name) as cassette:
        out = await run_client(profile, rec.inputs(), mode, api_key=VOYAGE_KEY)
    raw = [base64.b64decode(item["embedding"]) for item in rec.doc(0)["data"]]
    expected = np.stack([np.frombuffer(row, np.int8) for row in raw])
    assert out.vectors is not None and out.vectors.dtype == np.int8
    assert np.array_equal(out.vectors, expected)
    assert cassette.all_played


async def test_ubinary_vectors_from_json_integers(replay, mode):
    """voyage-code-3 with dtype ubinary and JSON numbers: 1024 bits packed in 128 uint8."""
    name = "voyage/ubinary_json.yaml"
    rec = Recording.of(name)
    assert rec.request_body()["encoding_format"] is None
    profile = _profile("voyage-code-3", dtype="ubinary", encoding_format="float")
    with replay(name) as cassette:
        out = await run_client(profile, rec.inputs(), mode, api_key=VOYAGE_KEY)
    expected = np.array([item["embedding"] for item in rec.doc(0)["data"]], dtype=np.uint8)
    assert out.vectors is not None and out.vectors.dtype == np.uint8
    assert out.vectors.shape == (2, 128) and np.array_equal(out.vectors, expected)
    assert cassette.all_played


@pytest.mark.parametrize(
    ("name", "model", "error", "kind"),
    [
        ("model_not_supported_400", "voyage-3.6", ModelNotFoundError, "model_not_found"),
        ("context_length_400", "voyage-3.5", ContextLengthError, "context_length"),
        ("unauthorized_401", "voyage-3.5", AuthenticationError, "authentication"),
    ],
)
async def test_refusals_are_typed_and_not_retried(replay, mode, name, model, error, kind):
    """400 unsupported model, 400 over-long input and 401 are typed and sent once."""
    rec = Recording.of(f"voyage/{name}.yaml")
    with replay(f"voyage/{name}.yaml") as cassette:
        out = await run_client(_profile(model), rec.inputs(), mode, api_key=VOYAGE_KEY)
    assert type(out.error) is error
    assert out.error.status_code == rec.status(0)
    assert out.error.message == rec.doc(0)["detail"]
    assert out.error.request_id == rec.header(0, "x-request-id")
    assert VOYAGE_KEY not in str(out.error)
    if isinstance(out.error, ContextLengthError):
        assert out.error.index == 0
    assert cassette.play_count == 1
    assert_metrics(out, attempts=1, failures={kind: 1}, items=0, tokens=0)
    assert out.circuit is CircuitState.CLOSED


async def test_a_wrong_base_url_is_an_endpoint_error(replay, mode):
    """A base URL without /v1 gets FastAPI's 404 "Not Found": EndpointNotFoundError with the URL."""
    rec = Recording.of("voyage/not_found_404.yaml")
    profile = _profile(base_url="https://api.voyageai.com")
    with replay("voyage/not_found_404.yaml") as cassette:
        out = await run_client(profile, rec.inputs(), mode, api_key=VOYAGE_KEY)
    assert isinstance(out.error, EndpointNotFoundError)
    assert out.error.url == "https://api.voyageai.com/embeddings"
    assert cassette.play_count == 1


@pytest.mark.parametrize(
    ("name", "kind"),
    [("rate_limited_then_ok", "rate_limit"), ("server_error_then_ok", "server")],
)
async def test_transient_failures_are_retried(replay, mode, name, kind):
    """A 429 {"detail"} and a plain-text 500 are retried; the second answer's vector comes."""
    rec = Recording.of(f"voyage/{name}.yaml")
    with replay(f"voyage/{name}.yaml") as cassette:
        out = await run_client(_profile(), rec.inputs(), mode, api_key=VOYAGE_KEY)
    assert out.vectors is not None and np.array_equal(out.vectors, _float_rows(rec, 1))
    assert cassette.play_count == 2 and cassette.all_played
    assert_metrics(out, attempts=2, failures={kind: 1}, items=1, tokens=_tokens(rec, 1))


def test_no_voyage_cassette_holds_a_key():
    """No file under cassettes/voyage holds the planted key, a Voyage-shaped key or auth."""
    files = sorted((CASSETTES / "voyage").glob("*.yaml"))
    assert len(files) >= 10
    for path in files:
        text = path.read_text("utf-8")
        assert VOYAGE_KEY not in text, path
        assert not _VOYAGE_KEYS.search(text), path
        assert "authorization" not in text.lower(), path
    assert _VOYAGE_KEYS.search(f"leaked {VOYAGE_KEY}")  # the pattern catches the planted key
