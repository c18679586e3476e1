"""The loopback server's Voyage AI route, exercised over real HTTP with plain httpx."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from embedguard.testing import EmbeddingServer, Fault
from embedguard.testing._wire_voyage import voyage_vectors


@pytest.fixture
def server() -> Iterator[EmbeddingServer]:
    """A running server (its Voyage route ignores ``dimensions``: model sizes apply)."""
    with EmbeddingServer(dimensions=16) as srv:
        yield srv


def _post(server: EmbeddingServer, body: Any, **kw: Any) -> httpx.Response:
    return httpx.post(server.base_url("voyage") + "/embeddings", json=body, timeout=5.0, **kw)


def _body(**fields: Any) -> dict[str, Any]:
    return {"input": ["a b", "c"], "model": "voyage-3.5", **fields}


def test_base_url_and_default_answer(server: EmbeddingServer) -> None:
    """{url}/voyage/v1 answers Voyage's body: native 1024 floats, total_tokens, x-request-id."""
    assert server.base_url("voyage") == server.url + "/voyage/v1"
    reply = _post(server, _body())
    doc = reply.json()
    assert reply.status_code == 200 and len(reply.headers["x-request-id"]) == 32
    assert list(doc) == ["object", "data", "model", "usage"]
    assert doc["usage"] == {"total_tokens": 3} and doc["model"] == "voyage-3.5"
    assert list(doc["data"][0]) == ["object", "embedding", "index"]
    np.testing.assert_allclose(
        [item["embedding"] for item in doc["data"]], voyage_vectors(["a b", "c"], 1024), atol=1e-7
    )
    assert server.requests[0].inputs == ("a b", "c")


def test_base64_compact_and_sized_answers(server: EmbeddingServer) -> None:
    """output_dimension, output_dtype and base64 shape the vectors as Voyage documents."""
    floats = _post(server, _body(encoding_format="base64", output_dimension=256)).json()
    row = np.frombuffer(base64.b64decode(floats["data"][0]["embedding"]), "<f4")
    np.testing.assert_array_equal(row, voyage_vectors(["a b"], 256)[0])
    binary = _post(server, _body(output_dtype="binary", encoding_format="base64")).json()
    packed = np.frombuffer(base64.b64decode(binary["data"][1]["embedding"]), np.int8)
    np.testing.assert_array_equal(packed, voyage_vectors(["c"], 1024, "binary")[0])
    assert packed.shape == (128,)
    ints = _post(server, _body(output_dtype="uint8", output_dimension=512)).json()
    assert ints["data"][0]["embedding"] == voyage_vectors(["a b"], 512, "uint8")[0].tolist()


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        ({"model": "voyage-9"}, "Model voyage-9 is not supported"),
        ({"input": []}, "input should be"),
        ({"input": ["ok", ""]}, "input should be"),
        ({"input_type": "search_query"}, "input_type should be"),
        ({"truncation": "no"}, "truncation should be a boolean"),
        ({"encoding_format": "float"}, "encoding_format should be"),
        ({"output_dtype": "int4"}, "output_dtype should be"),
        ({"model": "voyage-3", "output_dtype": "int8"}, "not supported for model voyage-3"),
        ({"model": "voyage-3", "output_dimension": 512}, "not supported for model voyage-3"),
        ({"output_dimension": 300}, "output_dimension 300 is not supported"),
        ({"input": ["x"] * 1001}, "max allowed number of texts"),
    ],
)
def test_refusals_are_voyages_detail_400(
    server: EmbeddingServer, fields: dict[str, Any], detail: str
) -> None:
    """Each request Voyage refuses gets a 400 {"detail": "..."} saying why."""
    reply = _post(server, _body(**fields))
    assert reply.status_code == 400
    assert list(reply.json()) == ["detail"] and detail in reply.json()["detail"]


def test_token_limits_follow_truncation() -> None:
    """Over the context: truncation=false is Voyage's 400 naming the index; true cuts it."""
    with EmbeddingServer(max_input_tokens=3) as srv:
        long = ["short", "one two three four five"]
        refused = _post(srv, {"input": long, "model": "voyage-3.5", "truncation": False})
        cut = _post(srv, {"input": long, "model": "voyage-3.5"})
    assert refused.status_code == 400
    assert "example at index 1 in your batch has too many tokens" in refused.json()["detail"]
    assert cut.status_code == 200 and cut.json()["usage"]["total_tokens"] == 4


@pytest.mark.parametrize(
    ("fault", "status", "detail"),
    [
        (Fault.status(401), 401, "Provided API key is invalid."),
        (Fault.status(404), 404, "Not Found"),
        (Fault.status(503), 503, "Service Unavailable"),
        (Fault.rate_limited(retry_after=0.5), 429, "You have exceeded your rate limit"),
        (Fault.context_length(), 400, "too many tokens"),
    ],
)
def test_faults_wear_voyages_error_shape(
    server: EmbeddingServer, fault: Fault, status: int, detail: str
) -> None:
    """Injected faults answer {"detail"} bodies; a 429 carries its retry-after."""
    server.script(fault)
    reply = _post(server, _body())
    assert reply.status_code == status and detail in reply.json()["detail"]
    if status == 429:
        assert reply.headers["retry-after"] == "0.5"


def test_a_wrong_key_and_an_outage(server: EmbeddingServer) -> None:
    """require_key answers Voyage's 401; set_down answers its 5xx detail."""
    with EmbeddingServer(require_key="pa-right") as srv:
        wrong = _post(srv, _body(), headers={"Authorization": "Bearer pa-wrong"})
        right = _post(srv, _body(), headers={"Authorization": "Bearer pa-right"})
    assert wrong.status_code == 401 and wrong.json() == {"detail": "Provided API key is invalid."}
    assert right.status_code == 200
    server.set_down(True, status=500)
    assert _post(server, _body()).json() == {"detail": "Internal Server Error"}


def test_server_limits_answer_as_a_free_tier_account() -> None:
    """With both limits set, replies carry the x-api-warning and no x-ratelimit-* headers."""
    with EmbeddingServer(rate_limit_rpm=2, rate_limit_tpm=10_000) as srv:
        replies = [_post(srv, _body()) for _ in range(3)]
    assert [r.status_code for r in replies] == [200, 200, 429]
    warning = replies[0].headers["x-api-warning"]
    assert "reduced rate limits of 2 RPM and 10K TPM" in warning
    assert not any(name.startswith("x-ratelimit") for r in replies for name in r.headers)
    assert float(replies[2].headers["retry-after"]) > 0


@pytest.mark.parametrize("dtype", ["float", "int8"])
@pytest.mark.parametrize("encoding", [None, "base64"])
def test_data_faults_damage_the_body(server: EmbeddingServer, dtype: str, encoding: Any) -> None:
    """nan, wrong_count and wrong_dimensions damage float and compact bodies alike."""
    body = _body(output_dtype=dtype, encoding_format=encoding, output_dimension=256)
    server.script(Fault("wrong_count"), Fault("wrong_dimensions"), Fault("nan"))
    short = _post(server, body).json()["data"]
    narrow = _post(server, body).json()["data"]
    damaged = _post(server, body).json()["data"]
    assert len(short) == 1
    width = (
        len(base64.b64decode(narrow[0]["embedding"])) if encoding else len(narrow[0]["embedding"])
    )
    assert width == (255 * 4 if dtype == "float" and encoding else 255)
    assert damaged != _post(server, body).json()["data"]
