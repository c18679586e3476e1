"""Real TEI recordings, when there are any, replayed through the public API.

No real recording of Text Embeddings Inference was found (see
``../shared/reference-cassettes/MORE_SOURCES.md``), so ``reference-cassettes/tei/`` does not exist
yet and the replay of real recordings skips. Drop vcrpy-format recordings there and each
``POST .../embed`` is replayed in order, one call each (no retries, every batching limit explicit
so no ``/info`` is needed): a 200 must give exactly the recorded rows, an error status the typed
error it stands for. Recordings are read in place, never copied. Bodies are matched on ``inputs``
and ``prompt_name`` only: a recording made by another client may leave out ``normalize`` /
``truncate``, which embedguard always sends. The same harness replays the project's own TEI
cassettes, so it is known to work before a real recording arrives.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from embedguard import (
    AuthenticationError,
    BadRequestError,
    ContextLengthError,
    EmbeddingClient,
    EmbedGuardError,
    EndpointNotFoundError,
    RateLimitError,
    ServerError,
    profiles,
)

from .conftest import CASSETTES, REFERENCE, Mode, Recording, _recorded_response, fast

FOLDER = REFERENCE / "tei"
KEY = "tei_PLANTEDreferenceKEY_0123456789"

# The typed error each status stands for (422/413 bodies about length or batch size: context).
EXPECTED: dict[int, type[EmbedGuardError]] = {
    400: BadRequestError, 401: AuthenticationError, 403: AuthenticationError,
    404: EndpointNotFoundError, 422: BadRequestError, 424: ServerError, 429: RateLimitError,
    500: ServerError, 502: ServerError, 503: ServerError, 504: ServerError,
}  # fmt: skip


def _recordings() -> list[Path]:
    return sorted(FOLDER.glob("*.yaml")) if FOLDER.is_dir() else []


def _embeds(recording: Recording) -> Iterator[tuple[int, dict[str, Any]]]:
    """Each recorded POST .../embed and its parsed body."""
    for i, interaction in enumerate(recording.interactions):
        request = interaction["request"]
        if request["method"] == "POST" and request["uri"].rstrip("/").endswith("/embed"):
            yield i, json.loads(request["body"])


def _key(body: Any) -> tuple[Any, Any]:
    inputs = body.get("inputs") if isinstance(body, dict) else None
    inputs = [inputs] if isinstance(inputs, str) else inputs
    return inputs, body.get("prompt_name") if isinstance(body, dict) else None


def _transport(recording: Recording) -> httpx.MockTransport:
    """Serve the recording: /info from its GET (else 404), /embed matched on inputs and prompt."""
    played: set[int] = set()

    def handle(request: httpx.Request) -> httpx.Response:
        wanted = _key(json.loads(request.content)) if request.content else None
        for i, interaction in enumerate(recording.interactions):
            recorded = interaction["request"]
            if i in played or recorded["method"] != request.method:
                continue
            if httpx.URL(recorded["uri"]).path != request.url.path:
                continue
            if wanted is not None and _key(json.loads(recorded["body"])) != wanted:
                continue
            played.add(i)
            return _recorded_response(interaction["response"])
        return httpx.Response(404)  # e.g. no /info in the recording: the client warns, goes on

    return httpx.MockTransport(handle)


def _expected_error(recording: Recording, i: int) -> type[EmbedGuardError]:
    status = recording.status(i)
    text = recording.body(i).decode("utf-8", errors="replace")
    if status in (413, 422) and ("must have less than" in text or "batch size" in text):
        return ContextLengthError
    return EXPECTED.get(status, ServerError if status >= 500 else BadRequestError)


async def _replay(path: Path, mode: Mode) -> None:
    """Replay every /embed of ``path`` in order, one call (and one client) each."""
    recording = Recording(path)
    calls = list(_embeds(recording))
    assert calls, f"{path.name} holds no POST /embed"
    first = recording.interactions[calls[0][0]]["request"]["uri"]
    base = first.rstrip("/").removesuffix("/embed")
    everything = {"max_inputs": 2048, "max_tokens_per_request": 10**6,
                  "max_tokens_per_input": 10**6}  # fmt: skip  # explicit: no /info, no refusal
    mock = _transport(recording)  # one for the whole recording: each interaction plays once
    for i, body in calls:
        inputs, prompt = _key(body)
        profile = profiles.tei(base_url=base, document_input_type=prompt, batching=everything)
        client = EmbeddingClient(
            fast(profile, max_retries=0), api_key=KEY, environ={}, transport=mock,
            async_transport=mock,
        )  # fmt: skip
        error: EmbedGuardError | None = None
        vectors = None
        try:
            if mode == "sync":
                with client:
                    vectors = client.embed(inputs)
            else:
                async with client:
                    vectors = await client.aembed(inputs)
        except EmbedGuardError as exc:
            error = exc
        if recording.status(i) == 200:
            assert error is None, error
            expected = np.array(recording.doc(i), dtype=np.float64).astype(np.float32)
            assert vectors is not None and np.array_equal(vectors, expected)
        else:
            assert isinstance(error, _expected_error(recording, i)), error
            assert error.status_code == recording.status(i)
            assert KEY not in str(error)


@pytest.mark.skipif(not _recordings(), reason=f"no TEI reference recordings at {FOLDER}")
@pytest.mark.parametrize("path", _recordings(), ids=lambda p: p.stem)
async def test_real_tei_recording_replays(path: Path, mode: Mode) -> None:
    """Every recorded /embed replays to its exact rows or to its typed error."""
    await _replay(path, mode)


# The project's cassettes made of independent calls (the others record a client splitting).
OWN = ["embed_ok", "query_prompt", "unauthorized_401", "not_found_404", "input_too_long_422",
       "overloaded_429_then_ok", "backend_424_then_ok", "unhealthy_503_then_ok"]  # fmt: skip


@pytest.mark.parametrize("name", OWN)
async def test_the_replay_reproduces_the_project_cassettes(name: str, mode: Mode) -> None:
    """The harness that replays real recordings gives the project's TEI cassettes' rows and
    errors, so it works before any real recording arrives."""
    await _replay(CASSETTES / "tei" / f"{name}.yaml", mode)
