"""The test server's Gemini wire format, spoken to with plain httpx (no embedguard client)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from embedguard.testing import EmbeddingServer, Fault, deterministic_vectors

KEY = "AIzaSyPLANTED-wire-gemini-key-99"
PATH = "/v1beta/models/gemini-embedding-001:batchEmbedContents"


@pytest.fixture
def server() -> Iterator[EmbeddingServer]:
    """A server wanting KEY, with 8-dimensional vectors."""
    with EmbeddingServer(dimensions=8, require_key=KEY) as srv:
        yield srv


def entry(text: str, model: str = "gemini-embedding-001", **fields: Any) -> dict[str, Any]:
    """One ``requests`` entry."""
    return {"model": f"models/{model}", "content": {"parts": [{"text": text}]}, **fields}


def post(
    server: EmbeddingServer, entries: list[Any], *, path: str = PATH, key: str | None = KEY
) -> httpx.Response:
    """POST a batch to the server's Gemini route."""
    headers = {} if key is None else {"x-goog-api-key": key}
    url = server.base_url("gemini") + path
    return httpx.post(url, json={"requests": entries}, headers=headers, timeout=5)


def rpc(response: httpx.Response) -> dict[str, Any]:
    """The ``error`` object of a Google RPC envelope."""
    error: dict[str, Any] = response.json()["error"]
    return error


def test_a_batch_answers_values_in_order_without_usage_or_ids(server: EmbeddingServer) -> None:
    """Vectors in request order, no index, no usage for 001, no request id or limit headers."""
    response = post(server, [entry("a", taskType="RETRIEVAL_QUERY"), entry("b")])
    assert response.status_code == 200
    doc = response.json()
    assert list(doc) == ["embeddings"]
    values = np.array([item["values"] for item in doc["embeddings"]], dtype=np.float32)
    np.testing.assert_array_equal(values, deterministic_vectors(["a", "b"], 8))
    assert not any(name.startswith(("x-ratelimit", "x-request-id")) for name in response.headers)


def test_gemini_embedding_2_reports_usage(server: EmbeddingServer) -> None:
    """usageMetadata (promptTokenCount, promptTokenDetails) comes with gemini-embedding-2."""
    path = "/v1beta/models/gemini-embedding-2:batchEmbedContents"
    doc = post(server, [entry("one two", "gemini-embedding-2")], path=path).json()
    assert doc["usageMetadata"] == {
        "promptTokenCount": 2, "promptTokenDetails": [{"modality": "TEXT", "tokenCount": 2}]
    }  # fmt: skip


def test_a_wrong_key_is_400_api_key_invalid_and_none_is_403(server: EmbeddingServer) -> None:
    """As the real API: a wrong key is 400 INVALID_ARGUMENT + ErrorInfo; no key 403."""
    wrong = post(server, [entry("a")], key="AIza-wrong")
    assert wrong.status_code == 400
    error = rpc(wrong)
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["details"][0]["reason"] == "API_KEY_INVALID"
    missing = post(server, [entry("a")], key=None)
    assert (missing.status_code, rpc(missing)["status"]) == (403, "PERMISSION_DENIED")


@pytest.mark.parametrize(
    ("entries", "words"),
    [
        ([entry(f"t{i}") for i in range(101)], "at most 100 requests"),
        ([entry("a", "text-embedding-004")], "must match the model in the URL"),
        ([entry("a", taskType="search_query")], "task_type"),
        ([entry("a", outputDimensionality=0)], "output_dimensionality"),
        ([entry("a", outputDimensionality=8), entry("b")], "one outputDimensionality"),
        ([entry("")], "must not be empty"),
        ([{"model": "models/gemini-embedding-001", "content": {"parts": []}}], "must not be empty"),
        ([], "must not be empty"),
    ],
    ids=["101", "model", "task", "dims", "mixed-dims", "empty-text", "no-parts", "no-entries"],
)
def test_invalid_batches_are_400_invalid_argument(
    server: EmbeddingServer, entries: list[Any], words: str
) -> None:
    """Each malformed batch gets the API's 400 INVALID_ARGUMENT envelope."""
    response = post(server, entries)
    assert response.status_code == 400
    error = rpc(response)
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert words in error["message"]


def test_429s_carry_the_wait_in_retry_info_only() -> None:
    """The rate limiter's 429: RESOURCE_EXHAUSTED with QuotaFailure and RetryInfo, no headers."""
    with EmbeddingServer(dimensions=8, rate_limit_rpm=1) as srv:
        assert post(srv, [entry("a")]).status_code == 200
        limited = post(srv, [entry("b")])
    assert limited.status_code == 429
    assert "retry-after" not in limited.headers
    assert not any(name.startswith("x-ratelimit") for name in limited.headers)
    error = rpc(limited)
    assert error["status"] == "RESOURCE_EXHAUSTED"
    types = [d["@type"].rsplit(".", 1)[1] for d in error["details"]]
    assert types == ["Help", "QuotaFailure", "RetryInfo"]
    delay = error["details"][2]["retryDelay"]
    assert delay.endswith("s") and 0 < float(delay[:-1]) <= 60


@pytest.mark.parametrize(
    ("fault", "status", "rpc_status"),
    [
        (Fault.status(404), 404, "NOT_FOUND"),
        (Fault.status(503), 503, "UNAVAILABLE"),
        (Fault.status(504), 504, "DEADLINE_EXCEEDED"),
        (Fault.context_length(), 400, "INVALID_ARGUMENT"),
        (Fault.quota(), 429, "RESOURCE_EXHAUSTED"),
    ],
    ids=str,
)
def test_faults_use_the_rpc_envelope(
    server: EmbeddingServer, fault: Fault, status: int, rpc_status: str
) -> None:
    """Scripted faults answer in Google's envelope, worded as the Gemini API words them."""
    server.script(fault)
    response = post(server, [entry("a")])
    error = rpc(response)
    assert (response.status_code, error["code"], error["status"]) == (status, status, rpc_status)
    if status == 404:
        assert error["message"].startswith("models/gemini-embedding-001 is not found")


def test_an_unknown_gemini_path_is_404(server: EmbeddingServer) -> None:
    """The single-text :embedContent method is not served (the client never uses it)."""
    path = "/v1beta/models/gemini-embedding-001:embedContent"
    assert post(server, [entry("a")], path=path).status_code == 404
