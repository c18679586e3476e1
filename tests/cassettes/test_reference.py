"""Conformance: real recorded provider traffic, replayed through the public API.

The recordings live outside the project (``../shared/reference-cassettes``) and are read in place,
never copied. Each one is replayed twice: by vcrpy as is, and served from its YAML through an
``httpx.MockTransport`` (the loader that copes with recordings vcrpy cannot replay unchanged).
Both must give the recorded vectors and the typed errors.
"""

import gzip
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest

from embedguard import (
    AuthenticationError,
    EmbedGuardError,
    ModelNotFoundError,
    ProviderProfile,
    profiles,
)

from .conftest import (
    AZURE_KEY,
    MISTRAL_KEY,
    OPENAI_KEY,
    REFERENCE,
    Mode,
    Recording,
    fast,
    make_vcr,
    mock_transport,
    run_client,
)

needs_reference = pytest.mark.skipif(
    not REFERENCE.is_dir(),
    reason=f"reference recordings not present at {REFERENCE} (they live outside the project)",
)


@dataclass(frozen=True)
class Reference:
    """A recording, the profile that produces its requests, and what each interaction means."""

    file: str
    profile: Callable[[], ProviderProfile]
    key: str
    # Per interaction, in order: None for a 200 with vectors, else the error class expected.
    expect: tuple[type[EmbedGuardError] | None, ...]
    request_id_header: str | None = None


REFERENCES = [
    Reference(
        "openai_float_dims512.yaml",
        lambda: profiles.openai("text-embedding-3-small", dimensions=512, encoding_format="float"),
        OPENAI_KEY,
        (None,),
    ),
    Reference(
        "openai_404_model_not_found.yaml",
        lambda: profiles.openai("non-existent-embedding-model", encoding_format="float"),
        OPENAI_KEY,
        (ModelNotFoundError,),
        "x-request-id",
    ),
    Reference(
        "openai_base64_gzip.yaml",
        lambda: profiles.openai("text-embedding-ada-002"),
        OPENAI_KEY,
        (None, None, None, None),
    ),
    Reference(
        "azure_openai_200_401.yaml",
        lambda: profiles.azure(
            "text-embedding-3-large",
            base_url="https://test-resource.openai.azure.com",
            deployment="test-deployment",
            api_version="2023-07-01-preview",
        ),
        AZURE_KEY,
        (None, None, AuthenticationError, AuthenticationError),
        "apim-request-id",
    ),
    Reference("mistral_embed_gzip.yaml", profiles.mistral, MISTRAL_KEY, (None,)),
]


async def _replay(ref: Reference, mode: Mode, transport: str) -> None:
    recording = Recording(REFERENCE / ref.file)
    assert len(recording) == len(ref.expect)
    profile = fast(ref.profile())
    served: AbstractContextManager[Any]
    if transport == "vcrpy":
        served = make_vcr().use_cassette(str(recording.path))
    else:
        served = mock_transport(recording)
    with served as handle:
        options: dict[str, Any] = {}
        if transport == "mock":
            mock, played = handle
            options = {"transport": mock, "async_transport": mock}
        for i, expected in enumerate(ref.expect):
            # One call per interaction: each replays exactly one recorded exchange.
            out = await run_client(profile, recording.inputs(i), mode, api_key=ref.key, **options)
            if expected is None:
                assert out.error is None, out.error
                assert out.vectors is not None
                assert np.array_equal(out.vectors, recording.vectors(i))
                assert out.metrics.tokens_used == recording.prompt_tokens(i)
            else:
                assert isinstance(out.error, expected)
                assert out.error.status_code == recording.status(i)
                assert ref.request_id_header is not None
                assert out.error.request_id == recording.header(i, ref.request_id_header)
                assert ref.key not in str(out.error)
            assert out.metrics.total_requests == 1  # nothing retried
        played_count = len(played) if transport == "mock" else handle.play_count
        assert played_count == len(ref.expect)


@needs_reference
@pytest.mark.parametrize("transport", ["vcrpy", "mock"])
@pytest.mark.parametrize("ref", REFERENCES, ids=[r.file.removesuffix(".yaml") for r in REFERENCES])
async def test_real_recording_replays(ref, mode, transport):
    """Our client reproduces a real recording: every request matches, vectors and errors agree."""
    await _replay(ref, mode, transport)


@needs_reference
def test_scalar_header_is_served_as_one_value():
    """The fallback loader serves a header stored as a bare string as one value, not per char."""
    recording = Recording(REFERENCE / "openai_404_model_not_found.yaml")
    assert isinstance(recording.interactions[0]["response"]["headers"]["openai-organization"], str)
    body = recording.interactions[0]["request"]["body"]
    with mock_transport(recording) as (mock, played), httpx.Client(transport=mock) as http:
        response = http.post("https://api.openai.com/v1/embeddings", content=body)
    assert response.headers.get_list("openai-organization") == ["test_openai_org_id"]
    assert played == [0]


def test_gzip_header_over_a_decoded_body_is_dropped():
    """The fallback loader serves a body stored decoded under Content-Encoding: gzip as is."""
    doc = '{"object": "list"}'
    interactions = []
    for body in (doc, gzip.compress(doc.encode())):
        interactions.append({
            "request": {"method": "POST", "uri": "https://api.openai.com/v1/embeddings",
                        "body": '{"input": "x"}', "headers": {}},
            "response": {"status": {"code": 200, "message": "OK"}, "body": {"string": body},
                         "headers": {"Content-Encoding": ["gzip"]}},
        })  # fmt: skip
    recording = Recording.from_interactions(interactions)
    with mock_transport(recording) as (mock, played), httpx.Client(transport=mock) as http:
        texts = [http.post("https://api.openai.com/v1/embeddings", json={"input": ["x"]}).text
                 for _ in interactions]  # fmt: skip
    assert texts == [doc, doc]
    assert played == [0, 1]
