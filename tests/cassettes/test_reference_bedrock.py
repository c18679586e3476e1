"""Conformance: real recorded Bedrock traffic, replayed through the public API.

The recordings live outside the project (``../shared/reference-cassettes/bedrock``) and are read
in place, never copied; without them every test here skips. Each is replayed by vcrpy and by an
``httpx.MockTransport``, with our real SigV4 signing on (fake keys): the signature was redacted
from the recordings, so requests are matched on method, scheme, host, path (percent-decoded: one
client sent ``:`` raw, botocore sends ``%3A``) and the parsed JSON body (Bedrock's defaults made
explicit: Cohere's ``truncate: NONE``, Titan v2's ``normalize: true`` and 1024 dimensions), never
on ``Authorization``. Two recordings were reconstructed from a table of real responses (see
``MORE_SOURCES.md``); one of them sent a non-JSON body no client of ours can send, so it is
matched without its body.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import numpy as np
import pytest
import vcr

from embedguard import (
    AuthenticationError,
    BadRequestError,
    EmbedGuardError,
    ProviderProfile,
    profiles,
)

from .conftest import REFERENCE, Mode, Recording, fast, run_client

BEDROCK = REFERENCE / "bedrock"
ENV = {"AWS_ACCESS_KEY_ID": "AKIDREPLAY000000", "AWS_SECRET_ACCESS_KEY": "replay-secret-key"}
needs_reference = pytest.mark.skipif(
    not BEDROCK.is_dir(),
    reason=f"Bedrock reference recordings not present at {BEDROCK} (they live outside the project)",
)
_PLACEHOLDER = re.compile(r"<[^>]*>")


@dataclass(frozen=True)
class Reference:
    """A recording, the profile that produces its request, and what it must give."""

    file: str
    profile: Callable[[], ProviderProfile]
    error: type[EmbedGuardError] | None = None  # None: a 200 with vectors
    query: bool = False  # sent by embed_query (Cohere's search_query)
    match_body: bool = True


REFERENCES = [
    Reference("pydai_titan_v2_dims256.yaml",
              lambda: profiles.bedrock(dimensions=256, region="us-east-1")),
    Reference("rubyllm_titan_v2_sigv4_dims1024.yaml", lambda: profiles.bedrock(region="eu-west-3")),
    Reference("pydai_cohere_v4_dims512.yaml",
              lambda: profiles.bedrock("cohere.embed-v4:0", dimensions=512, region="us-east-1"),
              query=True),
    Reference("ddtrace_cohere_v3_two_texts.yaml",
              lambda: profiles.bedrock("cohere.embed-english-v3", region="us-east-1")),
    Reference("newrelic_titan_v1_403_invalid_token.yaml",
              lambda: profiles.bedrock("amazon.titan-embed-text-v1", region="us-east-1"),
              AuthenticationError),
    Reference("newrelic_titan_g1_400_malformed_body.yaml",
              lambda: profiles.bedrock("amazon.titan-embed-g1-text-02", region="us-east-1"),
              BadRequestError, match_body=False),
]  # fmt: skip


# -- matching --------------------------------------------------------------------------------------
def normalized(body: bytes | str | None) -> Any:
    """A Bedrock request body as JSON, with the defaults Bedrock applies made explicit."""
    raw = body.decode("utf-8") if isinstance(body, bytes) else body or ""
    doc = json.loads(raw)
    if isinstance(doc, dict) and "texts" in doc:
        doc.setdefault("truncate", "NONE")
    elif isinstance(doc, dict) and "dimensions" in doc:
        doc.setdefault("normalize", True)
        doc.setdefault("embeddingTypes", ["float"])
    return doc


def _same_host(recorded: str, sent: str) -> bool:
    """Hosts equal, a recording's ``<AWS_REGION>``-style placeholder standing for any label."""
    pattern = _PLACEHOLDER.sub("[a-z0-9-]+", re.escape(recorded))
    return re.fullmatch(pattern, sent) is not None


def _recorded_and_sent(r1: Any, r2: Any) -> tuple[Any, Any]:
    return (r1, r2) if "<" in (r1.host or "") else (r2, r1)


def host_matcher(r1: Any, r2: Any) -> None:
    """vcrpy matcher: same host, placeholders allowed (raises AssertionError)."""
    recorded, sent = _recorded_and_sent(r1, r2)
    assert _same_host(recorded.host.lower(), sent.host.lower()), (r1.host, r2.host)


def path_matcher(r1: Any, r2: Any) -> None:
    """vcrpy matcher: the same path once percent-decoded (``%3A`` and ``:`` alike)."""
    assert unquote(r1.path) == unquote(r2.path), (r1.path, r2.path)


def body_matcher(r1: Any, r2: Any) -> None:
    """vcrpy matcher: the same Bedrock body, defaults made explicit."""
    assert normalized(r1.body) == normalized(r2.body)


def make_vcr(match_body: bool) -> vcr.VCR:
    """A replay-only VCR matching as the module docstring says."""
    matchers = ["method", "scheme", "bedrock_host", "bedrock_path"]
    recorder = vcr.VCR(
        record_mode="none",
        match_on=[*matchers, "bedrock_body"] if match_body else matchers,
        decode_compressed_response=False,
    )
    recorder.register_matcher("bedrock_host", host_matcher)
    recorder.register_matcher("bedrock_path", path_matcher)
    recorder.register_matcher("bedrock_body", body_matcher)
    return recorder


def mock_transport(
    recording: Recording, match_body: bool, played: list[int]
) -> httpx.MockTransport:
    """Serve the recording's interactions through httpx, matched as vcrpy matches them."""

    def handle(request: httpx.Request) -> httpx.Response:
        for i, interaction in enumerate(recording.interactions):
            recorded = interaction["request"]
            where = urlsplit(recorded["uri"])
            if i in played or recorded["method"].upper() != request.method:
                continue
            if not _same_host(where.hostname or "", request.url.host):
                continue
            if unquote(where.path) != unquote(request.url.raw_path.decode("ascii")):
                continue
            if match_body and normalized(recorded["body"]) != normalized(request.content):
                continue
            played.append(i)
            response = interaction["response"]
            headers = [(name, str(value)) for name, values in response["headers"].items()
                       for value in ([values] if isinstance(values, str) else values)]  # fmt: skip
            return httpx.Response(response["status"]["code"], headers=headers,
                                  content=recording.body(i))  # fmt: skip
        raise AssertionError(f"no unplayed interaction matches {request.method} {request.url}")

    return httpx.MockTransport(handle)


# -- what a recording says -------------------------------------------------------------------------
def texts_of(recording: Recording) -> list[str]:
    """The texts the recorded request embedded (best effort for a non-JSON body)."""
    raw = recording.interactions[0]["request"]["body"]
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError:
        return ["Malformed Request Body"]
    return [doc["inputText"]] if "inputText" in doc else list(doc["texts"])


def expected_vectors(recording: Recording) -> np.ndarray:
    """The recorded vectors, decoded without embedguard."""
    doc = recording.doc(0)
    if "embedding" in doc:
        rows = [doc["embedding"]]
    else:
        embeddings = doc["embeddings"]
        rows = embeddings["float"] if isinstance(embeddings, dict) else embeddings
    return np.array(rows, dtype=np.float64).astype(np.float32)


def expected_tokens(recording: Recording) -> int:
    """Tokens: Titan's body count, else the X-Amzn-Bedrock-Input-Token-Count header."""
    count = recording.doc(0).get("inputTextTokenCount")
    if count is not None:
        return int(count)
    header = recording.header(0, "x-amzn-bedrock-input-token-count")
    assert header is not None
    return int(header)


async def _replay(ref: Reference, mode: Mode, transport: str) -> None:
    recording = Recording(BEDROCK / ref.file)
    assert len(recording) == 1
    played: list[int] = []
    options: dict[str, Any] = {"environ": ENV}
    served: AbstractContextManager[Any]
    if transport == "vcrpy":
        served = make_vcr(ref.match_body).use_cassette(str(recording.path))
    else:
        mock = mock_transport(recording, ref.match_body, played)
        options.update(transport=mock, async_transport=mock)
        served = nullcontext()
    with served as cassette:
        out = await run_client(fast(ref.profile()), texts_of(recording), mode, query=ref.query,
                               **options)  # fmt: skip
    if ref.error is None:
        assert out.error is None, out.error
        assert out.vectors is not None
        vectors = out.vectors.reshape(-1, out.vectors.shape[-1])
        assert np.array_equal(vectors, expected_vectors(recording))
        assert out.metrics.tokens_used == expected_tokens(recording)
    else:
        error = out.error
        assert isinstance(error, ref.error)
        assert error.status_code == recording.status(0)
        assert error.code == recording.header(0, "x-amzn-ErrorType").split(":")[0]
        assert error.request_id == recording.header(0, "x-amzn-RequestId")
        assert error.message == recording.doc(0)["message"]
        assert ENV["AWS_SECRET_ACCESS_KEY"] not in str(error)
    assert out.metrics.total_requests == 1  # nothing retried
    count = cassette.play_count if transport == "vcrpy" else len(played)
    assert count == 1


@needs_reference
@pytest.mark.parametrize("transport", ["vcrpy", "mock"])
@pytest.mark.parametrize("ref", REFERENCES, ids=[r.file.removesuffix(".yaml") for r in REFERENCES])
async def test_real_bedrock_recording_replays(ref: Reference, mode: Mode, transport: str) -> None:
    """Our signed request matches a real recording; the vectors or typed error are its own."""
    await _replay(ref, mode, transport)


def test_matching_rules() -> None:
    """Placeholders match any region, paths compare decoded, Bedrock's defaults compare equal."""
    assert _same_host("bedrock-runtime.<aws_region>.amazonaws.com",
                      "bedrock-runtime.eu-west-3.amazonaws.com")  # fmt: skip
    assert not _same_host("bedrock-runtime.us-east-1.amazonaws.com",
                          "bedrock-runtime.us-east-2.amazonaws.com")  # fmt: skip
    assert normalized('{"texts": ["a"], "input_type": "search_query"}') == normalized(
        b'{"texts":["a"],"input_type":"search_query","truncate":"NONE"}'
    )
    assert normalized('{"inputText": "a", "dimensions": 256}') != normalized(
        '{"inputText": "a", "dimensions": 512, "normalize": true}'
    )
