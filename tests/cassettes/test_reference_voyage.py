"""Conformance: real recorded Voyage AI traffic, replayed through the public API.

The recordings live outside the project (``../shared/reference-cassettes/voyage``) and are read
in place, never copied; the tests skip when the folder is absent. Each one is replayed twice, by
vcrpy and served from its YAML through an ``httpx.MockTransport``, sync and async; both must send
the recorded request body and give the recorded vectors, usage and typed errors.

One recording (pydantic-ai's) stores the method as ``post``: its serializer lower-cased it, the
request on the wire was ``POST``. Methods are therefore compared case-blind here; nothing else
about the recordings is changed.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from embedguard import EmbedGuardError, ModelNotFoundError, ProviderProfile, profiles

from .conftest import (
    MATCH_ON,
    REFERENCE,
    Mode,
    Recording,
    fast,
    json_body,
    mock_transport,
    run_client,
)

VOYAGE = REFERENCE / "voyage"
KEY = "pa-PLANTEDvoyageREFERENCEkey0123456789abcdef"

needs_reference = pytest.mark.skipif(
    not VOYAGE.is_dir(),
    reason=f"reference recordings not present at {VOYAGE} (they live outside the project)",
)


@dataclass(frozen=True)
class Reference:
    """A recording, the profile and call that reproduce its request, and what it should give."""

    file: str
    profile: Callable[[], ProviderProfile]
    query: bool  # embed_query (input_type "query") rather than embed ("document")
    expect: type[EmbedGuardError] | None  # None: a 200 with vectors


REFERENCES = [
    Reference("pydai_query_base64.yaml", lambda: profiles.voyage("voyage-3.5"), True, None),
    Reference(
        "openllmetry_documents3_base64.yaml",
        # The SDK's default truncation (true) was recorded; 512 is voyage-3-lite's native size.
        lambda: profiles.voyage("voyage-3-lite", extra_body={"truncation": True}),
        False,
        None,
    ),
    Reference(
        "pydai_400_model_not_supported.yaml",
        lambda: profiles.voyage("nonexistent"),
        True,
        ModelNotFoundError,
    ),
]


def _method(r1: Any, r2: Any) -> None:
    """vcrpy matcher: the same HTTP method, compared case-blind (see the module docstring)."""
    assert r1.method.upper() == r2.method.upper(), f"{r1.method} != {r2.method}"


def _vcr() -> Any:
    import vcr

    recorder = vcr.VCR(
        record_mode="none",
        match_on=("method_any_case", *MATCH_ON[1:]),
        filter_headers=["authorization"],
        decode_compressed_response=False,
    )
    recorder.register_matcher("method_any_case", _method)
    recorder.register_matcher("json_body", json_body)
    return recorder


def _recording(name: str) -> Recording:
    """The recording, its request methods upper-cased in memory for the mock transport."""
    recording = Recording(VOYAGE / name)
    for interaction in recording.interactions:
        interaction["request"]["method"] = interaction["request"]["method"].upper()
    return recording


def _vectors(recording: Recording) -> np.ndarray:
    """The recorded base64 float32 rows, decoded independently of embedguard, by index."""
    items = sorted(recording.doc(0)["data"], key=lambda item: item["index"])
    return np.stack([np.frombuffer(base64.b64decode(it["embedding"]), "<f4") for it in items])


@needs_reference
@pytest.mark.parametrize("transport", ["vcrpy", "mock"])
@pytest.mark.parametrize("ref", REFERENCES, ids=[r.file.removesuffix(".yaml") for r in REFERENCES])
async def test_real_voyage_recording_replays(ref: Reference, mode: Mode, transport: str) -> None:
    """Our request matches the real one; vectors, usage and errors are the recorded ones."""
    recording = _recording(ref.file)
    assert len(recording) == 1
    served: AbstractContextManager[Any]
    if transport == "vcrpy":
        served = _vcr().use_cassette(str(recording.path))
    else:
        served = mock_transport(recording)
    with served as handle:
        options: dict[str, Any] = {}
        if transport == "mock":
            options = {"transport": handle[0], "async_transport": handle[0]}
        out = await run_client(
            fast(ref.profile()), recording.inputs(), mode, api_key=KEY, query=ref.query, **options
        )
        played = len(handle[1]) if transport == "mock" else handle.play_count
    assert played == 1
    assert out.metrics.total_requests == 1  # nothing retried
    if ref.expect is None:
        assert out.error is None, out.error
        expected = _vectors(recording)
        assert out.vectors is not None
        assert np.array_equal(out.vectors, expected[0] if ref.query else expected)
        assert out.metrics.tokens_used == recording.doc(0)["usage"]["total_tokens"]
    else:
        assert type(out.error) is ref.expect
        assert out.error.status_code == recording.status(0)
        assert out.error.message == recording.doc(0)["detail"]
        assert KEY not in str(out.error)


@needs_reference
def test_the_recorded_free_tier_warning_reads_as_limits() -> None:
    """openllmetry's real x-api-warning (3 RPM / 10K TPM) reads as those limits."""
    from embedguard.core.providers.voyage import voyage_rate_limit

    warning = _recording("openllmetry_documents3_base64.yaml").header(0, "x-api-warning")
    assert warning is not None
    info = voyage_rate_limit({"x-api-warning": warning})
    assert info is not None and (info.limit_requests, info.limit_tokens) == (3, 10_000)


def test_the_method_matcher_still_tells_methods_apart() -> None:
    """The case-blind method matcher accepts post/POST and refuses GET/POST."""

    class Req:
        def __init__(self, method: str) -> None:
            self.method = method

    _method(Req("post"), Req("POST"))
    with pytest.raises(AssertionError):
        _method(Req("GET"), Req("POST"))
