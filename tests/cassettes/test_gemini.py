"""The Gemini API's batchEmbedContents, replayed from cassettes through the public API.

The cassettes are written by ``tools/make_cassettes_gemini.py`` in the API's documented shape;
they replay only when embedguard's request body matches (task type and size included).
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pytest
import yaml
from vcr.errors import CannotOverwriteExistingCassetteException

from embedguard import (
    AuthenticationError,
    CircuitState,
    ModelNotFoundError,
    RateLimitError,
    profiles,
)
from embedguard.core.tokens import default_token_counter

from .conftest import CASSETTES, Outcome, Recording, assert_metrics, fast, run_client
from .test_secrets import find_secrets

KEY = "AIzaSyPLANTEDgeminiCASSETTEkey-0123456789"


def texts(rec: Recording, i: int = 0) -> list[str]:
    """The texts the recorded request of interaction ``i`` sent."""
    return [e["content"]["parts"][0]["text"] for e in rec.request_body(i)["requests"]]


def vectors(rec: Recording, i: int) -> np.ndarray:
    """The recorded vectors of interaction ``i``, decoded independently of embedguard."""
    rows = [item["values"] for item in rec.doc(i)["embeddings"]]
    return np.array(rows, dtype=np.float64).astype(np.float32)


def estimated(batch: list[str]) -> int:
    """The tokens the client books for a batch the API reports no usage for."""
    counter = default_token_counter()
    return sum(counter.count(t) for t in batch)


async def run(name: str, replay: Any, mode: str, **kw: Any) -> tuple[Outcome, Recording, Any]:
    """Replay cassette ``name`` through a client of the profile ``kw`` describes."""
    rec = Recording.of(name)
    model = kw.pop("model", "gemini-embedding-001")
    retry = kw.pop("retry", {})
    query = kw.pop("query", False)
    profile = fast(profiles.gemini(model, **kw), **retry)
    with replay(name) as cassette:
        out = await run_client(profile, texts(rec), mode, api_key=KEY, query=query)  # type: ignore[arg-type]
    return out, rec, cassette


async def test_documents_at_768_come_back_exactly_and_unnormalised(replay, mode):
    """Two documents at 768 d: the recorded floats, in order, with their ~0.58 norm kept."""
    out, rec, cassette = await run("gemini/embed_dims768.yaml", replay, mode, dimensions=768)
    assert out.error is None and out.vectors is not None
    assert np.array_equal(out.vectors, vectors(rec, 0))
    assert np.allclose(np.linalg.norm(out.vectors, axis=1), 0.58, atol=1e-3)
    assert cassette.play_count == 1 and cassette.all_played
    assert_metrics(out, attempts=1, failures={}, items=2, tokens=estimated(texts(rec)))
    assert out.circuit is CircuitState.CLOSED


async def test_a_query_sends_retrieval_query(replay, mode):
    """embed_query's body (RETRIEVAL_QUERY) is the one recorded; its vector comes back."""
    out, rec, cassette = await run(
        "gemini/query_dims128.yaml", replay, mode, dimensions=128, query=True
    )
    assert out.vectors is not None and np.array_equal(out.vectors, vectors(rec, 0)[0])
    assert rec.request_body(0)["requests"][0]["taskType"] == "RETRIEVAL_QUERY"
    assert cassette.play_count == 1


async def test_the_same_text_as_a_document_does_not_match_the_query(replay, mode):
    """Embedding the query's text as a document sends another body: nothing replays."""
    with pytest.raises(CannotOverwriteExistingCassetteException, match="RETRIEVAL_DOCUMENT"):
        await run("gemini/query_dims128.yaml", replay, mode, dimensions=128)


async def test_usage_metadata_becomes_tokens_used(replay, mode):
    """gemini-embedding-2's usageMetadata.promptTokenCount is the usage recorded."""
    out, rec, _ = await run(
        "gemini/embedding2_usage.yaml", replay, mode, model="gemini-embedding-2", dimensions=128
    )
    assert out.vectors is not None and np.array_equal(out.vectors, vectors(rec, 0))
    tokens = rec.doc(0)["usageMetadata"]["promptTokenCount"]
    assert_metrics(out, attempts=1, failures={}, items=2, tokens=tokens)


async def test_a_bad_key_is_a_400_authentication_error(replay, mode):
    """400 INVALID_ARGUMENT + ErrorInfo API_KEY_INVALID: AuthenticationError, not retried."""
    out, _, cassette = await run("gemini/bad_key_400.yaml", replay, mode, dimensions=768)
    error = out.error
    assert isinstance(error, AuthenticationError)
    assert (error.status_code, error.code) == (400, "API_KEY_INVALID")
    assert error.message == "API key not valid. Please pass a valid API key."
    assert cassette.play_count == 1 and KEY not in str(error)
    assert_metrics(out, attempts=1, failures={"authentication": 1}, items=0, tokens=0)
    assert out.circuit is CircuitState.CLOSED


async def test_a_blocked_key_is_a_403_authentication_error(replay, mode):
    """403 PERMISSION_DENIED (API_KEY_SERVICE_BLOCKED) is an AuthenticationError too."""
    out, _, _ = await run("gemini/key_blocked_403.yaml", replay, mode, dimensions=768)
    assert isinstance(out.error, AuthenticationError)
    assert (out.error.status_code, out.error.code) == (403, "API_KEY_SERVICE_BLOCKED")


async def test_an_unknown_model_is_model_not_found(replay, mode):
    """404 NOT_FOUND is a ModelNotFoundError (never an endpoint error), not retried."""
    out, _, cassette = await run(
        "gemini/model_not_found_404.yaml", replay, mode, model="models/gemini-embeding-001"
    )
    assert isinstance(out.error, ModelNotFoundError)
    assert (out.error.status_code, out.error.code) == (404, "NOT_FOUND")
    assert cassette.play_count == 1
    assert_metrics(out, attempts=1, failures={"model_not_found": 1}, items=0, tokens=0)


async def test_a_48s_retry_info_over_the_cap_fails_at_once(replay, mode):
    """RetryInfo asks 48 s, over max_retry_after (10 s): RateLimitError(retry_after=48) now."""
    out, _, cassette = await run(
        "gemini/rate_limited_48s.yaml", replay, mode, dimensions=768,
        retry={"max_retry_after": 10.0},
    )  # fmt: skip
    error = out.error
    assert isinstance(error, RateLimitError)
    assert (error.retry_after, error.code, error.status_code) == (48.0, "RESOURCE_EXHAUSTED", 429)
    assert cassette.play_count == 1 and out.elapsed < 5
    assert_metrics(out, attempts=1, failures={"rate_limit": 1}, items=0, tokens=0)


async def test_rate_limited_then_ok(replay, mode):
    """A 429 whose RetryInfo says 0s is retried at once and the next reply is used."""
    out, rec, cassette = await run(
        "gemini/rate_limited_then_ok.yaml", replay, mode, dimensions=128,
        retry={"initial_delay": 30.0, "max_delay": 30.0},
    )  # fmt: skip
    assert out.vectors is not None and np.array_equal(out.vectors, vectors(rec, 1))
    assert cassette.all_played and out.elapsed < 5  # the 30 s backoff was not used
    tokens = estimated(texts(rec))
    assert_metrics(out, attempts=2, failures={"rate_limit": 1}, items=1, tokens=tokens)


async def test_server_errors_then_ok(replay, mode):
    """500 INTERNAL then 503 UNAVAILABLE are retried; the third reply's vector is returned."""
    out, rec, cassette = await run(
        "gemini/server_errors_then_ok.yaml", replay, mode, dimensions=128
    )
    assert out.vectors is not None and np.array_equal(out.vectors, vectors(rec, 2))
    assert cassette.all_played
    tokens = estimated(texts(rec))
    assert_metrics(out, attempts=3, failures={"server": 2}, items=1, tokens=tokens)
    assert out.circuit is CircuitState.CLOSED


def test_gemini_cassettes_hold_no_key() -> None:
    """No Gemini cassette holds the planted key, an AIza key, or an x-goog-api-key header."""
    google_key = re.compile(r"AIza[0-9A-Za-z_-]{20,}")
    files = sorted((CASSETTES / "gemini").glob("*.yaml"))
    assert len(files) >= 9
    for path in files:
        raw = path.read_text("utf-8")
        doc = yaml.safe_load(raw)
        assert KEY not in raw and not google_key.search(raw), path
        headers = [
            (name, str(value))
            for interaction in doc["interactions"]
            for part in ("request", "response")
            for name, values in interaction[part]["headers"].items()
            for value in values
        ]
        assert find_secrets(raw, headers) == [], path
        assert all(name.lower() != "x-goog-api-key" for name, _ in headers), path
        for interaction in doc["interactions"]:
            assert "key=" not in interaction["request"]["uri"], path
            json.loads(interaction["request"]["body"])  # a JSON body, as embedguard sends
