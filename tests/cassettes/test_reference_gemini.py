"""Conformance: real recorded Gemini API traffic, replayed through the public API.

The recordings live outside the project (``../shared/reference-cassettes/gemini``) and are read in
place, never copied; without them every test here is skipped. Each is replayed twice, by vcrpy
and through an ``httpx.MockTransport``, and must give the recorded vectors or the right typed
error.

Requests match on method, URL and JSON body, with two allowances for choices the recording's
client made and embedguard does not (the API accepts both forms): ``"role": "user"`` inside
``content`` (the Go and newrelic clients add it), and an absent ``taskType`` where embedguard
always sends one (``RETRIEVAL_DOCUMENT`` for ``embed``: asserted separately). The langchaingo
recording repeats a text, which the client would send once, so it is replayed through the codec
(request built, response parsed). The Vertex AI ``:predict`` recording is another API (embedguard
speaks the Gemini API only) and is not replayed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pytest
import vcr

from embedguard import (
    AuthenticationError,
    EmbedGuardError,
    ModelNotFoundError,
    ProviderProfile,
    RateLimitError,
    profiles,
)
from embedguard.core.providers import make_codec

from .conftest import REFERENCE, Recording, fast, run_client

GEMINI = REFERENCE / "gemini"
KEY = "AIzaSyPLANTEDgeminiREFERENCEkey-98765432"

pytestmark = pytest.mark.skipif(
    not GEMINI.is_dir(),
    reason=f"reference recordings not present at {GEMINI} (they live outside the project)",
)


def normalized(body: Any, ignore: frozenset[str]) -> Any:
    """The parsed request body without the ``ignore`` fields (``role`` in content, entries'
    ``taskType``, the top-level ``model``)."""
    raw = body.decode("utf-8") if isinstance(body, bytes) else body
    doc = json.loads(raw) if raw else None
    if not isinstance(doc, dict):
        return doc
    if "model" in ignore:
        doc.pop("model", None)
    for entry in doc.get("requests", []):
        if "taskType" in ignore:
            entry.pop("taskType", None)
        if "role" in ignore:
            entry.get("content", {}).pop("role", None)
    return doc


@dataclass(frozen=True)
class Reference:
    """A recording, the call that reproduces its request, and the outcome expected."""

    file: str
    profile: Callable[[], ProviderProfile]
    query: bool
    expect: type[EmbedGuardError] | None  # None: the recorded vectors
    ignore: frozenset[str] = field(default_factory=frozenset)
    code: str | None = None
    retry_after: float | None = None


REFERENCES = [
    Reference(
        "pydai_batch_dims768.yaml",
        lambda: profiles.gemini("gemini-embedding-2-preview", dimensions=768),
        query=True,
        expect=None,
    ),
    Reference(
        "pydai_404_model_not_found.yaml",
        lambda: profiles.gemini("nonexistent-model"),
        query=True,
        expect=ModelNotFoundError,
        code="NOT_FOUND",
    ),
    Reference(
        "newrelic_400_api_key_invalid.yaml",
        profiles.gemini,
        query=False,
        expect=AuthenticationError,
        ignore=frozenset({"role", "taskType"}),
        code="API_KEY_INVALID",
    ),
    Reference(
        "rubyllm_429_repointed.yaml",
        lambda: profiles.gemini(retry={"max_retries": 0}),
        query=False,
        expect=RateLimitError,
        ignore=frozenset({"taskType"}),
        code="RESOURCE_EXHAUSTED",
        retry_after=48.0,  # RetryInfo's "48s", not the message's 48.94 s
    ),
]


def texts(rec: Recording, i: int = 0) -> list[str]:
    """The texts of the recorded request ``i``."""
    return [e["content"]["parts"][0]["text"] for e in rec.request_body(i)["requests"]]


def recorded_vectors(rec: Recording, i: int) -> np.ndarray:
    """The recorded vectors of interaction ``i``, decoded independently of embedguard."""
    return np.array([e["values"] for e in rec.doc(i)["embeddings"]], np.float64).astype("f4")


def replayer(ignore: frozenset[str]) -> vcr.VCR:
    """A replay-only VCR matching bodies up to the ``ignore`` allowances."""

    def body(r1: Any, r2: Any) -> None:
        left, right = normalized(r1.body, ignore), normalized(r2.body, ignore)
        assert left == right, f"request bodies differ: {left!r} != {right!r}"

    recorder = vcr.VCR(
        record_mode="none",
        match_on=("method", "scheme", "host", "port", "path", "query", "gemini_body"),
        decode_compressed_response=False,
    )
    recorder.register_matcher("gemini_body", body)
    return recorder


@contextmanager
def transport(rec: Recording, ignore: frozenset[str]) -> Iterator[tuple[Any, list[int]]]:
    """Serve the recording's interactions in order through an ``httpx.MockTransport``."""
    played: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        for i, interaction in enumerate(rec.interactions):
            sent = interaction["request"]
            if i in played or httpx.URL(sent["uri"]) != request.url:
                continue
            if normalized(sent["body"], ignore) != normalized(request.content, ignore):
                continue
            played.append(i)
            answer = interaction["response"]
            headers = [(name, str(value)) for name, values in answer["headers"].items()
                       for value in values]  # fmt: skip
            return httpx.Response(answer["status"]["code"], headers=headers, content=rec.body(i))
        raise AssertionError(f"no unplayed interaction matches {request.url}")

    yield httpx.MockTransport(handle), played


@pytest.mark.parametrize("how", ["vcrpy", "mock"])
@pytest.mark.parametrize("ref", REFERENCES, ids=[r.file.removesuffix(".yaml") for r in REFERENCES])
async def test_real_recording_replays(ref: Reference, how: str, mode: Any) -> None:
    """The client's request matches the recording; vectors are exact, errors typed, once."""
    rec = Recording(GEMINI / ref.file)
    profile = fast(ref.profile())
    options: dict[str, Any] = {}
    served: Any
    if how == "vcrpy":
        served = replayer(ref.ignore).use_cassette(str(rec.path))
    else:
        served = transport(rec, ref.ignore)
    with served as handle:
        if how == "mock":
            options = {"transport": handle[0], "async_transport": handle[0]}
        out = await run_client(profile, texts(rec), mode, api_key=KEY, query=ref.query, **options)
        played = len(handle[1]) if how == "mock" else handle.play_count
    assert played == 1 and out.metrics.total_requests == 1
    if ref.expect is None:
        assert out.error is None and out.vectors is not None
        expected = recorded_vectors(rec, 0)
        assert np.array_equal(out.vectors, expected[0] if ref.query else expected)
        return
    error = out.error
    assert type(error) is ref.expect, error
    assert (error.status_code, error.code) == (rec.status(0), ref.code)  # type: ignore[attr-defined]
    assert KEY not in str(error)
    if ref.retry_after is not None:
        assert isinstance(error, RateLimitError) and error.retry_after == ref.retry_after


@pytest.mark.parametrize(
    "ref",
    [r for r in REFERENCES if "taskType" in r.ignore],
    ids=lambda r: r.file.removesuffix(".yaml"),
)
def test_where_the_recording_sent_no_task_type_embedguard_sends_one(ref: Reference) -> None:
    """The allowance is only that: embedguard's body is the recorded one plus taskType."""
    rec = Recording(GEMINI / ref.file)
    codec = make_codec(ref.profile(), api_key=KEY, environ={})
    body = codec.build_request(texts(rec)).body
    assert {e["taskType"] for e in json.loads(body)["requests"]} == {"RETRIEVAL_DOCUMENT"}
    assert normalized(body, ref.ignore) == normalized(rec.interactions[0]["request"]["body"],
                                                      ref.ignore)  # fmt: skip


def test_the_go_clients_three_vectors_through_the_codec() -> None:
    """langchaingo's batch of 3 (one text twice) for embedding-001: same URL path, same body
    but for its role, top-level model and task type; the 3 x 768 floats decode exactly."""
    rec = Recording(GEMINI / "langchaingo_batch3_embedding001.yaml")
    ignore = frozenset({"role", "model", "taskType"})
    codec = make_codec(profiles.gemini("embedding-001"), api_key=KEY, environ={})
    request = codec.build_request(texts(rec))
    recorded = httpx.URL(rec.interactions[0]["request"]["uri"])
    assert request.url == str(recorded.copy_with(query=None))  # its ?$alt=json is the Go SDK's
    assert normalized(request.body, ignore) == normalized(
        rec.interactions[0]["request"]["body"], ignore
    )
    headers = {
        name: values[0] for name, values in rec.interactions[0]["response"]["headers"].items()
    }
    result = codec.parse_response(200, headers, rec.body(0), n_inputs=3, dimensions=768)
    np.testing.assert_array_equal(result.vectors, recorded_vectors(rec, 0))
    assert result.prompt_tokens is None  # embedding-001 reports no usage
