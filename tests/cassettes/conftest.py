"""Cassette replay: the vcrpy configuration, client runs, and decoding of recorded responses.

Cassettes live in ``cassettes/<provider>/`` (written by ``tools/make_cassettes.py``). They replay
with ``record_mode="none"`` (never the network), matched on method, scheme, host, port, path,
query and the parsed JSON request body.
"""

from __future__ import annotations

import base64
import gzip
import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np
import pytest
import vcr
import yaml
from vcr.cassette import Cassette

from embedguard import (
    CircuitState,
    EmbeddingClient,
    EmbedGuardError,
    MetricsSnapshot,
    ProviderProfile,
)

ROOT = Path(__file__).resolve().parents[2]
CASSETTES = ROOT / "cassettes"
REFERENCE = ROOT.parent / "shared" / "reference-cassettes"

# Planted keys shaped like real ones: the secret scan fails if any of them reaches a cassette.
OPENAI_KEY = "sk-proj-PLANTEDcassetteTESTkey0123456789abcdefABCDEF"
AZURE_KEY = "5f0c7e2a9b1d4c3e8f6a0b2c4d6e8f10"
MISTRAL_KEY = "PLANTEDmistralCASSETTEkey01234567"
PLANTED_KEYS = (OPENAI_KEY, AZURE_KEY, MISTRAL_KEY)

Mode = Literal["sync", "async"]


# -- matching ----------------------------------------------------------------------------------
def normalized_body(body: bytes | str | None, path: str) -> Any:
    """The JSON request body with equivalent spellings made equal.

    Bodies are compared as parsed JSON, never as bytes (spacing and key order vary by client).
    Forms the APIs treat identically are normalised: a single string ``input`` equals a one-item
    list, an absent ``encoding_format`` equals the API default ``"float"``, and on Azure
    deployment URLs the body's ``model`` is ignored (the deployment in the URL selects it).
    """
    raw = body.encode("utf-8") if isinstance(body, str) else (body or b"")
    if raw[:2] == b"\x1f\x8b":  # a gzip-compressed request body
        raw = gzip.decompress(raw)
    doc = json.loads(raw) if raw.strip() else None
    if isinstance(doc, dict):
        if isinstance(doc.get("input"), str):
            doc["input"] = [doc["input"]]
        if path.endswith("/embeddings"):
            doc.setdefault("encoding_format", "float")
        if "/openai/deployments/" in path:
            doc.pop("model", None)
    return doc


def json_body(r1: Any, r2: Any) -> None:
    """vcrpy matcher: the parsed, normalised JSON bodies are equal (raises AssertionError)."""
    left, right = normalized_body(r1.body, r1.path), normalized_body(r2.body, r2.path)
    assert left == right, f"request bodies differ: {left!r} != {right!r}"


MATCH_ON = ("method", "scheme", "host", "port", "path", "query", "json_body")


def make_vcr() -> vcr.VCR:
    """A VCR that replays only: no recording, no network, credentials filtered."""
    recorder = vcr.VCR(
        record_mode="none",
        match_on=MATCH_ON,
        filter_headers=["authorization", "api-key"],
        decode_compressed_response=False,
    )
    recorder.register_matcher("json_body", json_body)
    return recorder


@pytest.fixture
def replay() -> Callable[[str | Path], AbstractContextManager[Cassette]]:
    """Open a cassette by path (relative to ``cassettes/``) for replay."""
    recorder = make_vcr()

    def use(name: str | Path) -> AbstractContextManager[Cassette]:
        path = CASSETTES / name
        assert path.is_file(), f"missing cassette {path}"
        return recorder.use_cassette(str(path))  # type: ignore[no-any-return]

    return use


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> Mode:
    """Run each test through the sync and the async entry points."""
    value: Mode = request.param
    return value


# -- running the client ------------------------------------------------------------------------
def fast(profile: ProviderProfile, **retry: Any) -> ProviderProfile:
    """``profile`` with millisecond backoff (server hints still apply), plus ``retry`` changes."""
    policy = {**profile.retry.to_dict(), "initial_delay": 0.001, "max_delay": 0.005, **retry}
    return profile.evolve(retry=policy)


@dataclass(frozen=True)
class Outcome:
    """What one call through the public API produced."""

    vectors: np.ndarray | None
    error: EmbedGuardError | None
    metrics: MetricsSnapshot
    circuit: CircuitState
    elapsed: float


async def run_client(
    profile: ProviderProfile,
    texts: list[str],
    mode: Mode,
    *,
    api_key: str | None = None,
    query: bool = False,
    **client_options: Any,
) -> Outcome:
    """Embed ``texts`` (or the single text, with ``query``) and capture the result or error."""
    vectors: np.ndarray | None = None
    error: EmbedGuardError | None = None
    options = {"api_key": api_key, "environ": {}, **client_options}
    started = time.perf_counter()
    if mode == "sync":
        with EmbeddingClient(profile, **options) as client:
            try:
                vectors = client.embed_query(texts[0]) if query else client.embed(texts)
            except EmbedGuardError as exc:
                error = exc
    else:
        async with EmbeddingClient(profile, **options) as client:
            try:
                vectors = await (client.aembed_query(texts[0]) if query else client.aembed(texts))
            except EmbedGuardError as exc:
                error = exc
    elapsed = time.perf_counter() - started
    return Outcome(vectors, error, client.metrics(), client.circuit_state, elapsed)


def assert_metrics(
    outcome: Outcome,
    *,
    attempts: int,
    failures: dict[str, int],
    items: int,
    tokens: int,
) -> None:
    """The snapshot's identities hold and match what the cassette played."""
    m = outcome.metrics
    assert m.total_requests == m.successful_requests + m.failed_requests == attempts
    assert m.failed_requests == sum(m.errors_by_kind.values())
    assert dict(m.errors_by_kind) == failures
    assert m.successful_requests == attempts - sum(failures.values())
    # Each call here is one batch, so every attempt after its first is a retry.
    assert m.retried_requests == attempts - 1
    assert m.items_embedded == items
    assert m.tokens_used == tokens
    assert m.latency_count == attempts
    assert m.rejected_requests == 0


# -- decoding recorded responses ---------------------------------------------------------------
class Recording:
    """A cassette file read with plain YAML, to compare the client's output with its bytes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.interactions: list[dict[str, Any]] = yaml.safe_load(path.read_text("utf-8"))[
            "interactions"
        ]

    @classmethod
    def of(cls, name: str | Path) -> Recording:
        """The cassette at ``cassettes/<name>``."""
        return cls(CASSETTES / name)

    @classmethod
    def from_interactions(cls, interactions: list[dict[str, Any]]) -> Recording:
        """A recording built in memory (vcrpy's interaction layout)."""
        recording = cls.__new__(cls)
        recording.path = Path("<memory>")
        recording.interactions = interactions
        return recording

    def __len__(self) -> int:
        return len(self.interactions)

    def status(self, i: int) -> int:
        """The recorded status code of interaction ``i``."""
        return int(self.interactions[i]["response"]["status"]["code"])

    def header(self, i: int, name: str) -> str | None:
        """A response header of interaction ``i`` (first value, name case-blind)."""
        for key, value in self.interactions[i]["response"]["headers"].items():
            if key.lower() == name.lower():
                return str(value[0] if isinstance(value, list) else value)
        return None

    def body(self, i: int) -> bytes:
        """The response body of interaction ``i``, gunzipped when it is stored compressed."""
        raw = self.interactions[i]["response"]["body"]["string"]
        data = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
        return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data

    def doc(self, i: int) -> Any:
        """The response body of interaction ``i`` as JSON."""
        return json.loads(self.body(i))

    def inputs(self, i: int = 0) -> list[str]:
        """The texts the recorded request of interaction ``i`` sent."""
        body = self.interactions[i]["request"]["body"]
        value = json.loads(body)["input"]
        return [value] if isinstance(value, str) else list(value)

    def request_body(self, i: int = 0) -> Any:
        """The parsed request body of interaction ``i``."""
        return json.loads(self.interactions[i]["request"]["body"])

    def vectors(self, i: int) -> np.ndarray:
        """The vectors of a recorded 200, decoded independently of embedguard, in input order."""
        doc = self.doc(i)
        if "embeddings" in doc:  # Ollama's /api/embed
            return np.array(doc["embeddings"], dtype=np.float64).astype(np.float32)
        rows = []
        for item in sorted(doc["data"], key=lambda item: item["index"]):
            embedding = item["embedding"]
            if isinstance(embedding, str):
                rows.append(np.frombuffer(base64.b64decode(embedding), dtype="<f4"))
            else:
                rows.append(np.array(embedding, dtype=np.float64).astype(np.float32))
        return np.stack(rows).astype(np.float32)

    def prompt_tokens(self, i: int) -> int:
        """Input tokens a recorded 200 reports."""
        doc = self.doc(i)
        if "prompt_eval_count" in doc:
            return int(doc["prompt_eval_count"])
        return int(doc["usage"]["prompt_tokens"])


# -- serving a recording without vcrpy ---------------------------------------------------------
@contextmanager
def mock_transport(recording: Recording) -> Iterator[tuple[httpx.MockTransport, list[int]]]:
    """Serve a recording's interactions, in order, through an ``httpx.MockTransport``.

    The fallback for recordings vcrpy cannot replay as is: a header stored as a bare string
    (vcrpy replays it one character per header) is served as one value, and a
    ``Content-Encoding: gzip`` kept over a body that is no longer compressed is dropped. Yields
    the transport and the list of interaction indices played so far.
    """
    played: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        for i, interaction in enumerate(recording.interactions):
            recorded = interaction["request"]
            if i in played or recorded["method"] != request.method:
                continue
            if httpx.URL(recorded["uri"]) != request.url:
                continue
            mine = normalized_body(request.content, request.url.path)
            if normalized_body(recorded["body"], request.url.path) != mine:
                continue
            played.append(i)
            return _recorded_response(interaction["response"])
        raise AssertionError(f"no unplayed interaction matches {request.method} {request.url}")

    yield httpx.MockTransport(handle), played


def _recorded_response(response: dict[str, Any]) -> httpx.Response:
    raw = response["body"]["string"]
    content = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw or b"")
    headers: list[tuple[str, str]] = []
    for name, values in response["headers"].items():
        for value in [values] if isinstance(values, str) else values:
            if name.lower() == "content-encoding" and content[:2] != b"\x1f\x8b":
                continue  # the recorder kept the header but stored the decoded body
            headers.append((name, str(value)))
    message = response["status"].get("message") or ""
    return httpx.Response(
        response["status"]["code"],
        headers=headers,
        content=content,
        extensions={"reason_phrase": message.encode("ascii")} if message else {},
    )
