"""Cohere's v2 /embed, replayed from cassettes (tools/make_cassettes_cohere.py) through the
public API, sync and async."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import yaml

from embedguard import (
    AuthenticationError,
    CircuitState,
    ContextLengthError,
    EmbeddingClient,
    InputValidationError,
    ModelNotFoundError,
    QuotaExhaustedError,
    profiles,
)

from .conftest import CASSETTES, Recording, assert_metrics, fast, run_client
from .test_secrets import find_secrets

COHERE_KEY = "PLANTEDcohereCASSETTEkey0123456789abcd"


def vectors(rec: Recording, i: int, name: str = "float") -> np.ndarray:
    """Interaction ``i``'s ``embeddings.<name>`` rows, decoded without embedguard."""
    return np.array(rec.doc(i)["embeddings"][name], dtype=np.float64)


def texts(rec: Recording, i: int = 0) -> list[str]:
    """The texts interaction ``i``'s request sent."""
    return list(rec.request_body(i)["texts"])


def billed(rec: Recording, i: int) -> int:
    """The input tokens interaction ``i``'s 200 reports."""
    return int(rec.doc(i)["meta"]["billed_units"]["input_tokens"])


async def test_float_vectors_at_256_dimensions(replay, mode):
    """embed-v4.0 at 256 dimensions: the recorded float vectors, tokens from meta.billed_units."""
    name = "cohere/embed_float_dims256.yaml"
    rec = Recording.of(name)
    profile = fast(profiles.cohere(dimensions=256))
    with replay(name) as cassette:
        out = await run_client(profile, texts(rec), mode, api_key=COHERE_KEY)
    assert out.error is None and out.vectors is not None
    np.testing.assert_array_equal(out.vectors, vectors(rec, 0).astype(np.float32))
    assert cassette.play_count == 1 and cassette.all_played
    assert_metrics(out, attempts=1, failures={}, items=2, tokens=billed(rec, 0))
    assert out.circuit is CircuitState.CLOSED


async def test_int8_query_on_a_trial_key(replay, mode):
    """A search_query for int8 on embed-english-light-v3.0: the recorded 384 integers as int8,
    and the trial key's call limit becomes the stated request limit."""
    name = "cohere/query_int8_trial.yaml"
    rec = Recording.of(name)
    assert rec.request_body()["input_type"] == "search_query"
    profile = fast(profiles.cohere("embed-english-light-v3.0", dtype="int8"))
    with replay(name) as cassette, EmbeddingClient(profile, api_key=COHERE_KEY, environ={}) as c:
        got = (
            c.embed_query(texts(rec)[0]) if mode == "sync" else await c.aembed_query(texts(rec)[0])
        )
        status, limits = c.rate_limit_status, c.rate_limits
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, vectors(rec, 0, "int8")[0].astype(np.int8))
    assert cassette.all_played
    assert status is not None and (status.limit_requests, status.remaining_requests) == (100, 99)
    assert limits["requests"] == (100.0, "server")


async def test_ubinary_documents_are_packed_bytes(replay, mode):
    """ubinary at 512 dimensions: 64 packed bytes per document, exactly as recorded."""
    name = "cohere/document_ubinary_dims512.yaml"
    rec = Recording.of(name)
    profile = fast(profiles.cohere(dimensions=512, dtype="ubinary"))
    with replay(name):
        out = await run_client(profile, texts(rec), mode, api_key=COHERE_KEY)
    assert out.vectors is not None and out.vectors.dtype == np.uint8
    assert out.vectors.shape == (2, 64)
    np.testing.assert_array_equal(out.vectors, vectors(rec, 0, "ubinary").astype(np.uint8))


async def test_trial_rate_limit_then_ok(replay, mode):
    """A trial key's per-minute 429 (no Retry-After) is retried, and the 200 gives the vector."""
    name = "cohere/trial_rate_limited_then_ok.yaml"
    rec = Recording.of(name)
    assert rec.header(0, "retry-after") is None
    with replay(name) as cassette:
        out = await run_client(
            fast(profiles.cohere()), texts(rec), mode, api_key=COHERE_KEY, query=True
        )
    assert out.vectors is not None
    np.testing.assert_array_equal(out.vectors, vectors(rec, 1)[0].astype(np.float32))
    assert cassette.play_count == 2 and cassette.all_played
    assert_metrics(out, attempts=2, failures={"rate_limit": 1}, items=1, tokens=billed(rec, 1))


async def test_server_error_then_ok(replay, mode):
    """A 500 {"id", "message"} is retried; the breaker stays closed."""
    name = "cohere/server_error_then_ok.yaml"
    rec = Recording.of(name)
    with replay(name) as cassette:
        out = await run_client(
            fast(profiles.cohere(dimensions=256)), texts(rec), mode, api_key=COHERE_KEY
        )
    assert out.vectors is not None
    np.testing.assert_array_equal(out.vectors, vectors(rec, 1).astype(np.float32))
    assert cassette.play_count == 2
    assert_metrics(out, attempts=2, failures={"server": 1}, items=1, tokens=billed(rec, 1))
    assert out.circuit is CircuitState.CLOSED


@pytest.mark.parametrize(
    ("name", "model", "query", "error", "kind"),
    [
        ("cohere/trial_monthly_quota_429.yaml", "embed-v4.0", False, QuotaExhaustedError,
         "quota"),
        ("cohere/invalid_api_key_401.yaml", "embed-v4.0", False, AuthenticationError,
         "authentication"),
        ("cohere/model_not_found_404.yaml", "embed-englsh-v3.0", True, ModelNotFoundError,
         "model_not_found"),
    ],
)  # fmt: skip
async def test_errors_are_typed_and_not_retried(replay, mode, name, model, query, error, kind):
    """A monthly trial cap, a bad key and an unknown model: one attempt, the typed error, the
    body's id as request id, and no key in the message."""
    rec = Recording.of(name)
    with replay(name) as cassette:
        out = await run_client(
            fast(profiles.cohere(model)), texts(rec), mode, api_key=COHERE_KEY, query=query
        )
    assert type(out.error) is error
    assert out.error.status_code == rec.status(0)
    assert out.error.request_id == rec.doc(0)["id"]
    assert COHERE_KEY not in str(out.error)
    assert cassette.play_count == 1
    assert_metrics(out, attempts=1, failures={kind: 1}, items=0, tokens=0)


async def test_too_many_tokens_is_a_context_length_error(replay, mode):
    """With the local check lifted, the over-long text reaches Cohere, whose TOO_MANY_TOKENS
    400 is a ContextLengthError; with the profile's 512-token limit it is refused unsent."""
    name = "cohere/too_many_tokens_400.yaml"
    rec = Recording.of(name)
    lifted = fast(profiles.cohere("embed-english-v3.0", batching={"max_tokens_per_input": 8000}))
    with replay(name) as cassette:
        out = await run_client(lifted, texts(rec), mode, api_key=COHERE_KEY)
    assert isinstance(out.error, ContextLengthError)
    assert out.error.code == "TOO_MANY_TOKENS" and cassette.play_count == 1
    with EmbeddingClient(fast(profiles.cohere("embed-english-v3.0")), api_key=COHERE_KEY,
                         environ={}) as strict:  # fmt: skip
        with pytest.raises(InputValidationError) as info:
            strict.embed(texts(rec))
        assert strict.metrics().total_requests == 0
    assert info.value.index == 0


def test_cohere_cassettes_hold_no_secret() -> None:
    """No Cohere cassette holds the planted key, a credentials header or a token."""
    files = sorted((CASSETTES / "cohere").glob("*.yaml"))
    assert len(files) >= 9
    for path in files:
        raw = path.read_text("utf-8")
        doc: Any = yaml.safe_load(raw)
        headers = [(k, str(v)) for i in doc["interactions"] for part in ("request", "response")
                   for k, vs in i[part]["headers"].items() for v in vs]  # fmt: skip
        assert COHERE_KEY not in raw, path
        assert find_secrets(raw, headers) == [], path
        assert not {k.lower() for k, _ in headers} & {"authorization", "api-key"}, path
        assert all(json.loads(i["request"]["body"])["truncate"] == "NONE"
                   for i in doc["interactions"])  # fmt: skip
