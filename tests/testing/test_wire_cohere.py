"""The loopback server's Cohere route (/cohere/v2/embed), exercised over real HTTP with httpx."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from embedguard.testing import EmbeddingServer, Fault, deterministic_vectors
from embedguard.testing._wire_cohere import compact_rows

D = 16


@pytest.fixture
def server() -> Iterator[EmbeddingServer]:
    """A running server with small vectors."""
    with EmbeddingServer(dimensions=D, max_input_tokens=5) as srv:
        yield srv


def post(server: EmbeddingServer, **fields: Any) -> httpx.Response:
    """POST a Cohere body (model, texts, input_type by default, ``fields`` on top)."""
    body = {"model": "embed-v4.0", "texts": ["a b", "c"], "input_type": "search_document",
            **fields}  # fmt: skip
    body = {k: v for k, v in body.items() if v is not None}
    return httpx.post(server.base_url("cohere") + "/v2/embed", json=body, timeout=5.0)


def test_by_type_body_headers_and_key_order(server: EmbeddingServer) -> None:
    """A 200 is Cohere's by-type body (id, texts, embeddings, meta, response_type) with
    num_chars/num_tokens and a trace id; float values are the deterministic vectors."""
    reply = post(server, embedding_types=["float", "int8"])
    assert reply.status_code == 200
    doc = reply.json()
    assert list(doc) == ["id", "texts", "embeddings", "meta", "response_type"]
    assert doc["texts"] == ["a b", "c"] and doc["response_type"] == "embeddings_by_type"
    assert doc["meta"]["billed_units"] == {"input_tokens": 3, "image_tokens": 0}
    expected = deterministic_vectors(["a b", "c"], D)
    np.testing.assert_allclose(doc["embeddings"]["float"], expected, atol=1e-7)
    assert doc["embeddings"]["int8"] == compact_rows(expected, "int8").tolist()
    assert (reply.headers["num_chars"], reply.headers["num_tokens"]) == ("4", "3")
    assert len(reply.headers["x-debug-trace-id"]) == 32
    assert server.requests[0].inputs == ("a b", "c")


def test_compact_rows_are_what_cohere_types_mean() -> None:
    """int8 peaks at +-127, uint8 is that plus 128; ubinary packs sign bits MSB first and binary
    is those bytes minus 128 (offset binary)."""
    matrix = np.array([[0.5, -0.25, 0.0, 0.1, -0.5, 0.2, 0.3, -0.1, 0.9]], dtype=np.float32)
    int8 = compact_rows(matrix, "int8")
    assert int8.dtype == np.int8 and int8.max() == 127 and int8[0, 2] == 0
    assert (compact_rows(matrix, "uint8").astype(int) == int8.astype(int) + 128).all()
    bits = [1, 0, 0, 1, 0, 1, 1, 0]  # value > 0, first byte
    assert compact_rows(matrix, "ubinary").tolist() == [[int("".join(map(str, bits)), 2), 128]]
    assert compact_rows(matrix, "binary").tolist() == [[150 - 128, 0]]


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"input_type": None}, "input_type is required"),
        ({"input_type": "query"}, "input_type must be one of"),
        ({"texts": []}, "non-empty list"),
        ({"texts": ["ok", ""]}, "non-empty string"),
        ({"texts": [f"t{i}" for i in range(97)]}, "at most 96 - received 97"),
        ({"embedding_types": ["base64"]}, "embedding_types must be"),
        ({"output_dimension": 300}, "must be one of 256, 512, 1024, 1536"),
        ({"model": "embed-english-v3.0", "output_dimension": 256}, "not supported for model"),
        ({"truncate": "LEFT"}, "truncate must be one of"),
        ({"model": None}, "model is required"),
    ],
)
def test_invalid_requests_get_cohere_400s(
    server: EmbeddingServer, fields: dict[str, Any], needle: str
) -> None:
    """Cohere's request rules: each violation is a 400 {"id", "message"}."""
    reply = post(server, **fields)
    assert reply.status_code == 400
    assert set(reply.json()) == {"id", "message"} and needle in reply.json()["message"]


def test_truncate_none_refuses_long_inputs_others_cut_them(server: EmbeddingServer) -> None:
    """Over max_input_tokens: NONE is a 400 TOO_MANY_TOKENS, START/END (and absent) count
    the cut text."""
    long = "one two three four five six seven"
    refused = post(server, texts=[long], truncate="NONE")
    assert refused.status_code == 400
    assert refused.json()["error_type"] == "TOO_MANY_TOKENS"
    assert refused.json()["message"].startswith("too many tokens: size limit exceeded by 2")
    for truncate in ("END", "START", None):
        reply = post(server, texts=[long], truncate=truncate)
        assert reply.json()["meta"]["billed_units"]["input_tokens"] == 5


@pytest.mark.parametrize(
    ("fault", "status", "needle"),
    [
        (Fault.status(401), 401, "Incorrect API key provided"),
        (Fault.status(404), 404, "model 'embed-v4.0' not found"),
        (Fault.rate_limited(0.5), 429, "limited to 3 API calls / minute"),
        (Fault.quota(), 429, "limited to 1000 API calls / month"),
        (Fault.status(503), 503, "internal server error"),
    ],
)
def test_error_faults_in_cohere_words(
    server: EmbeddingServer, fault: Fault, status: int, needle: str
) -> None:
    """Status faults answer Cohere's {"id", "message"} bodies in its wording."""
    server.script(fault)
    reply = post(server)
    assert reply.status_code == status and needle in reply.json()["message"]


def test_trial_rate_headers() -> None:
    """Under a request limit the server sends the trial-key headers Cohere sends."""
    with EmbeddingServer(dimensions=D, rate_limit_rpm=40, rate_limit_tpm=10_000) as srv:
        reply = post(srv)
    assert reply.headers["x-trial-endpoint-call-limit"] == "40"
    assert reply.headers["x-trial-endpoint-call-remaining"] == "39"
    assert reply.headers["x-endpoint-monthly-call-limit"] == "1000"
    assert not any(name.startswith("x-ratelimit") for name in reply.headers)
