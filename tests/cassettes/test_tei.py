"""Text Embeddings Inference's /info and /embed, replayed from cassettes through the public API.

There is no real TEI recording: the cassettes are authored in the shape TEI's source defines
(``tools/make_cassettes_tei.py``). Every call replays its ``GET /info`` first.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import logging
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import yaml

from embedguard import (
    AuthenticationError,
    CircuitState,
    ContextLengthError,
    EndpointNotFoundError,
    RateLimitError,
    ServerError,
    profiles,
)

from .conftest import CASSETTES, ROOT, Recording, assert_metrics, fast, run_client
from .test_secrets import find_secrets

TEI_KEY = "tei_PLANTEDcassetteKEY_0123456789abcdef"  # must never reach a cassette
LOGGER = "embedguard.core.send.discover"


def vectors_of(rec: Recording, i: int) -> np.ndarray:
    """The rows of a recorded bare-array 200, decoded independently of embedguard."""
    return np.array(rec.doc(i), dtype=np.float64).astype(np.float32)


def inputs_of(rec: Recording, i: int) -> list[str]:
    texts: list[str] = rec.request_body(i)["inputs"]
    return texts


def tokens_of(rec: Recording, i: int) -> int:
    value = rec.header(i, "x-compute-tokens")
    assert value is not None
    return int(value)


def info_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


async def test_embed_returns_recorded_vectors(replay, mode):
    """/info then /embed: the bare array's rows, in order, with x-compute-tokens as usage."""
    name = "tei/embed_ok.yaml"
    rec = Recording.of(name)
    with replay(name) as cassette:
        out = await run_client(
            fast(profiles.tei("BAAI/bge-small-en-v1.5")), inputs_of(rec, 1), mode
        )
    assert out.error is None and out.vectors is not None
    assert out.vectors.shape == (2, 384)
    assert np.array_equal(out.vectors, vectors_of(rec, 1))
    assert cassette.play_count == 2 and cassette.all_played
    assert_metrics(out, attempts=1, failures={}, items=2, tokens=tokens_of(rec, 1))
    assert out.circuit is CircuitState.CLOSED


async def test_embed_query_sends_the_query_prompt(replay, mode):
    """embed_query with query_input_type="query" sends prompt_name "query" (matched on the body)."""
    name = "tei/query_prompt.yaml"
    rec = Recording.of(name)
    assert rec.request_body(1)["prompt_name"] == "query"
    profile = fast(
        profiles.tei("Snowflake/snowflake-arctic-embed-m-v1.5", query_input_type="query")
    )
    with replay(name) as cassette:
        out = await run_client(profile, inputs_of(rec, 1), mode, query=True)
    assert out.vectors is not None and np.array_equal(out.vectors, vectors_of(rec, 1)[0])
    assert cassette.all_played


async def test_unauthorized_401_everywhere(replay, mode, caplog):
    """A server with --api-key refuses /info and /embed with a bare 401: one warning for /info,
    then an AuthenticationError, not retried; the key is nowhere."""
    caplog.set_level(logging.WARNING, LOGGER)
    name = "tei/unauthorized_401.yaml"
    rec = Recording.of(name)
    with replay(name) as cassette:
        out = await run_client(fast(profiles.tei()), inputs_of(rec, 1), mode, api_key=TEI_KEY)
    error = out.error
    assert isinstance(error, AuthenticationError)
    assert (error.status_code, error.code, error.request_id) == (401, None, None)
    assert TEI_KEY not in str(error)
    [warning] = info_warnings(caplog)
    assert "status 401" in warning and TEI_KEY not in warning
    assert cassette.all_played
    assert_metrics(out, attempts=1, failures={"authentication": 1}, items=0, tokens=0)


async def test_wrong_base_url_404(replay, mode):
    """A base URL ending in /v1 finds no /embed route: EndpointNotFoundError showing the URL."""
    name = "tei/not_found_404.yaml"
    rec = Recording.of(name)
    profile = fast(profiles.tei(base_url="http://localhost:8080/v1"))
    with replay(name) as cassette:
        out = await run_client(profile, inputs_of(rec, 1), mode)
    error = out.error
    assert isinstance(error, EndpointNotFoundError)
    assert error.url == "http://localhost:8080/v1/embed" and "base_url" in str(error)
    assert cassette.all_played
    assert_metrics(out, attempts=1, failures={"endpoint_not_found": 1}, items=0, tokens=0)


async def test_input_too_long_422(replay, mode):
    """truncate=false and an input over the model's 512 tokens: a ContextLengthError, unretried."""
    name = "tei/input_too_long_422.yaml"
    rec = Recording.of(name)
    profile = fast(profiles.tei(batching={"max_tokens_per_input": 2000}))  # explicit: kept
    with replay(name) as cassette:
        out = await run_client(profile, inputs_of(rec, 1), mode)
    error = out.error
    assert isinstance(error, ContextLengthError)
    assert (error.status_code, error.code) == (422, "Validation")
    assert error.message == rec.doc(1)["error"]
    assert cassette.all_played
    assert_metrics(out, attempts=1, failures={"context_length": 1}, items=0, tokens=0)


@pytest.mark.parametrize("name", ["tei/batch_over_cap_422.yaml", "tei/payload_too_large_413.yaml"])
async def test_a_refused_batch_is_split(replay, mode, name):
    """Over the server's batch size (422) or payload limit (413): the batch is halved and every
    text gets the vector the halves' replies hold."""
    rec = Recording.of(name)
    profile = fast(profiles.tei(batching={"max_inputs": 4}))
    with replay(name) as cassette:
        out = await run_client(profile, inputs_of(rec, 1), mode)
    assert out.error is None and out.vectors is not None
    expected = np.concatenate([vectors_of(rec, 2), vectors_of(rec, 3)])
    assert np.array_equal(out.vectors, expected)
    assert cassette.play_count == 4 and cassette.all_played
    m = out.metrics
    assert (m.total_requests, m.successful_requests, m.items_embedded) == (3, 2, 4)
    assert m.tokens_used == tokens_of(rec, 2) + tokens_of(rec, 3)


@pytest.mark.parametrize(
    ("name", "kind", "failure"),
    [
        ("tei/overloaded_429_then_ok.yaml", RateLimitError, "rate_limit"),
        ("tei/backend_424_then_ok.yaml", ServerError, "server"),
        ("tei/unhealthy_503_then_ok.yaml", ServerError, "server"),
    ],
)
async def test_transient_errors_then_ok(replay, mode, name, kind, failure):
    """Overloaded (429), Backend (424) and Unhealthy (503) are retried; the 200's vectors win."""
    rec = Recording.of(name)
    with replay(name) as cassette:
        out = await run_client(fast(profiles.tei()), inputs_of(rec, 1), mode)
    assert out.error is None and out.vectors is not None
    assert np.array_equal(out.vectors, vectors_of(rec, 2))
    assert cassette.play_count == 3 and cassette.all_played
    assert_metrics(out, attempts=2, failures={failure: 1}, items=2, tokens=tokens_of(rec, 2))
    without_retries = fast(profiles.tei(), max_retries=0)
    with replay(name):
        failed = await run_client(without_retries, inputs_of(rec, 1), mode)
    assert type(failed.error) is kind
    assert failed.error.code == rec.doc(1)["error_type"]
    if isinstance(failed.error, RateLimitError):
        assert failed.error.retry_after is None  # TEI never says how long to wait


# -- the cassettes themselves --------------------------------------------------------------------
def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_cassettes_tei", ROOT / "tools" / "make_cassettes_tei.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _decoded(text: str) -> Any:
    doc = yaml.safe_load(text)
    for interaction in doc["interactions"]:
        body = interaction["response"]["body"]
        if isinstance(body["string"], bytes):
            body["string"] = gzip.decompress(body["string"]).decode("utf-8")
    return doc


def test_committed_tei_cassettes_match_the_generator():
    """Regenerating gives the committed cassettes/tei/ files, and nothing else is there."""
    generated: dict[str, str] = _generator().cassettes()
    committed = {f"tei/{p.name}": p.read_text("utf-8") for p in (CASSETTES / "tei").glob("*")}
    assert sorted(generated) == sorted(committed)
    for name, text in generated.items():
        assert _decoded(text) == _decoded(committed[name]), name


def test_generator_writes_where_told(tmp_path: Path):
    """``main(["--out", DIR])`` writes every TEI cassette under DIR/tei, identically twice."""
    module = _generator()
    assert module.main(["--out", str(tmp_path)]) == 0
    assert {f"tei/{p.name}" for p in (tmp_path / "tei").iterdir()} == set(module.cassettes())
    assert module.cassettes() == module.cassettes()


def test_tei_cassettes_hold_no_secret():
    """No key, token or planted key (the TEI one included) in any TEI cassette."""
    for path in sorted((CASSETTES / "tei").glob("*.yaml")):
        raw = path.read_text("utf-8")
        assert TEI_KEY not in raw, path
        assert find_secrets(raw) == [], path
        for interaction in yaml.safe_load(raw)["interactions"]:
            names = {
                n.lower() for part in ("request", "response") for n in interaction[part]["headers"]
            }
            assert not names & {"authorization", "api-key"}, path


def test_recorded_bodies_are_what_the_codec_sends():
    """Each recorded /embed body is TEI's shape: inputs, normalize on, truncate off."""
    for path in sorted((CASSETTES / "tei").glob("*.yaml")):
        for interaction in yaml.safe_load(path.read_text("utf-8"))["interactions"]:
            request = interaction["request"]
            if request["method"] == "POST":
                body = json.loads(request["body"])
                assert body["normalize"] is True and body["truncate"] is False, path
                assert set(body) <= {"inputs", "normalize", "truncate", "prompt_name"}, path
