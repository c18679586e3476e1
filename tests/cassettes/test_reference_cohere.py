"""Conformance: real recorded Cohere traffic (../shared/reference-cassettes/cohere), replayed.

The recordings are read in place, never copied, and skipped when the folder is absent (CI).
Each v2 recording is replayed by vcrpy through the public API, sync and async. Requests match
on method, URL and body, where the body rule allows exactly two differences, both deliberate:
a field recorded as ``null`` equals an absent one (Cohere accepts explicit nulls), and
embedguard's ``truncate: "NONE"`` (over-long inputs are errors, never silently cut) may stand
where the recording sent no ``truncate``. The v1 int8 recording is on ``/v1/embed``, which the
codec does not call: its request is compared with the one the codec builds, and its response
(the same by-type shape) is decoded by the codec's parser.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import vcr

from embedguard import AuthenticationError, EmbedGuardError, ModelNotFoundError, profiles
from embedguard.core.config import ProviderProfile
from embedguard.core.providers import make_codec

from .conftest import REFERENCE, Mode, Recording, fast, run_client

HERE = REFERENCE / "cohere"
KEY = "PLANTEDcohereREFERENCEkey0123456789"
ADDED = {"truncate": "NONE"}  # what embedguard sends that a recording may have left out

needs_reference = pytest.mark.skipif(
    not HERE.is_dir(), reason=f"reference recordings not present at {HERE} (outside the project)"
)


def request_matches(sent: dict[str, Any], recorded: dict[str, Any]) -> list[str]:
    """Differences between a body embedguard sent and a recorded one (empty: they match)."""
    recorded = {k: v for k, v in recorded.items() if v is not None}
    problems = [f"{k}: sent {sent.get(k)!r}, recorded {v!r}" for k, v in recorded.items()
                if sent.get(k) != v]  # fmt: skip
    problems += [f"{k}: sent {v!r}, not recorded" for k, v in sent.items()
                 if k not in recorded and ADDED.get(k) != v]  # fmt: skip
    return problems


def cohere_body(r1: Any, r2: Any) -> None:
    """vcrpy matcher: the JSON bodies match by :func:`request_matches`."""
    problems = request_matches(json.loads(r1.body), json.loads(r2.body))
    assert not problems, "; ".join(problems)


def recorder() -> vcr.VCR:
    """Replay only, credentials filtered, bodies compared by :func:`cohere_body`."""
    v = vcr.VCR(record_mode="none", filter_headers=["authorization"],
                match_on=("method", "scheme", "host", "port", "path", "query", "cohere_body"),
                decode_compressed_response=False)  # fmt: skip
    v.register_matcher("cohere_body", cohere_body)
    return v


@dataclass(frozen=True)
class Reference:
    """A recording, the profile that makes its request, and what it must give."""

    file: str
    profile: ProviderProfile
    query: bool
    error: type[EmbedGuardError] | None = None


REFERENCES = [
    Reference("pydai_v2_query_float_v4.yaml", profiles.cohere(), query=True),
    Reference("rubyllm_v2_dims1024.yaml", profiles.cohere(dimensions=1024), query=False),
    Reference(
        "pydai_v2_404_model_not_found.yaml",
        profiles.cohere("nonexistent"),
        query=True,
        error=ModelNotFoundError,
    ),
    Reference(
        "rubyllm_401_repointed.yaml", profiles.cohere(), query=True, error=AuthenticationError
    ),
]


@needs_reference
@pytest.mark.parametrize("ref", REFERENCES, ids=[r.file.removesuffix(".yaml") for r in REFERENCES])
async def test_v2_recording_replays(ref: Reference, mode: Mode) -> None:
    """Our request matches the recording's; the vectors are the recorded ones exactly (tokens
    from meta.billed_units), or the error is the right type with Cohere's id, never retried."""
    rec = Recording(HERE / ref.file)
    body = rec.request_body(0)
    with recorder().use_cassette(str(rec.path)) as cassette:
        out = await run_client(fast(ref.profile), list(body["texts"]), mode, api_key=KEY,
                               query=ref.query)  # fmt: skip
    assert cassette.play_count == 1 and out.metrics.total_requests == 1
    doc = rec.doc(0)
    if ref.error is None:
        assert out.error is None, out.error
        expected = np.array(doc["embeddings"]["float"], dtype=np.float64).astype(np.float32)
        assert out.vectors is not None
        np.testing.assert_array_equal(out.vectors.reshape(expected.shape), expected)
        assert out.metrics.tokens_used == doc["meta"]["billed_units"]["input_tokens"]
    else:
        assert type(out.error) is ref.error
        assert out.error.status_code == rec.status(0)
        assert out.error.request_id == doc["id"]
        assert KEY not in str(out.error)


def test_the_body_rule_refuses_other_differences() -> None:
    """The matcher accepts nulls and the added truncate NONE, and nothing else."""
    recorded = {"model": "embed-v4.0", "texts": ["a"], "input_type": "search_query",
                "output_dimension": None}  # fmt: skip
    sent = {"model": "embed-v4.0", "texts": ["a"], "input_type": "search_query",
            "truncate": "NONE"}  # fmt: skip
    assert request_matches(sent, recorded) == []
    assert request_matches({**sent, "truncate": "END"}, recorded)
    assert request_matches({**sent, "input_type": "search_document"}, recorded)
    assert request_matches({**sent, "embedding_types": ["float"]}, recorded)


@needs_reference
def test_trial_headers_of_a_real_reply_are_the_request_limit() -> None:
    """The ruby_llm recording's X-Trial-Endpoint-Call-Limit/-Remaining (100/99) are read."""
    rec = Recording(HERE / "rubyllm_v2_dims1024.yaml")
    codec = make_codec(profiles.cohere(dimensions=1024), api_key=KEY, environ={})
    headers = {k: v[0] for k, v in rec.interactions[0]["response"]["headers"].items()}
    result = codec.parse_response(200, headers, rec.body(0), n_inputs=1, dimensions=1024)
    assert result.rate_limit is not None
    assert (result.rate_limit.limit_requests, result.rate_limit.remaining_requests) == (100, 99)
    assert result.prompt_tokens == 7


@needs_reference
def test_v1_int8_recording_decodes_exactly() -> None:
    """The v1 int8 recording: the codec's request differs only by truncate (null there, NONE
    here) and the URL version; its response decodes to the recorded 384 integers, with the trial
    limits (40/36) and the billed tokens."""
    rec = Recording(HERE / "langchain_v1_query_int8.yaml")
    assert rec.interactions[0]["request"]["uri"] == "https://api.cohere.com/v1/embed"
    profile = profiles.cohere("embed-english-light-v3.0", dtype="int8")
    codec = make_codec(profile, api_key=KEY, environ={})
    recorded = rec.request_body(0)
    sent = json.loads(codec.build_request(recorded["texts"], "query").body)
    assert codec.url == "https://api.cohere.com/v2/embed"
    assert request_matches(sent, recorded) == []
    assert recorded["truncate"] is None and sent["truncate"] == "NONE"
    headers = {k: v[0] for k, v in rec.interactions[0]["response"]["headers"].items()}
    result = codec.parse_response(200, headers, rec.body(0), n_inputs=1, dimensions=384)
    expected = np.array(rec.doc(0)["embeddings"]["int8"], dtype=np.int64)
    assert expected.min() >= -128 and expected.max() <= 127 and expected.shape == (1, 384)
    np.testing.assert_array_equal(result.vectors, expected.astype(np.float32))
    assert result.rate_limit is not None
    assert (result.rate_limit.limit_requests, result.rate_limit.remaining_requests) == (40, 36)
    assert result.prompt_tokens == rec.doc(0)["meta"]["billed_units"]["input_tokens"] == 2
