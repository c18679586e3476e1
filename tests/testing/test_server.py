"""The loopback embedding server, exercised over real HTTP with httpx."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

import embedguard.testing as testing_pkg
from embedguard.testing import (
    EmbeddingServer,
    Fault,
    RecordedRequest,
    deterministic_vector,
    deterministic_vectors,
)
from embedguard.testing._ratelimit import TokenBuckets, go_duration

D = 16
PATHS = {
    "openai": "/v1/embeddings",
    "azure": "/openai/deployments/dep/embeddings?api-version=2024-10-21",
    "mistral": "/mistral/v1/embeddings",
    "ollama": "/api/embed",
}


@pytest.fixture
def server() -> Iterator[EmbeddingServer]:
    """A running server with small vectors."""
    with EmbeddingServer(dimensions=D) as srv:
        yield srv


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """A plain httpx client."""
    with httpx.Client(timeout=5.0) as client:
        yield client


def post(
    http: httpx.Client, server: EmbeddingServer, provider: str, body: dict[str, Any], **kw: Any
) -> httpx.Response:
    return http.post(server.url + PATHS[provider], json=body, **kw)


def body_of(texts: list[str], **extra: Any) -> dict[str, Any]:
    return {"input": texts, "model": "text-embedding-3-small", **extra}


def floats(values: list[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def b64(text: str) -> np.ndarray:
    import base64

    return np.frombuffer(base64.b64decode(text), dtype="<f4")


# -- vectors ----------------------------------------------------------------------------------


def test_deterministic_vector_is_pure_unit_float32() -> None:
    """The same text gives the same unit float32 vector; other texts and sizes differ."""
    v = deterministic_vector("hello", 1536)
    assert v.dtype == np.float32 and v.shape == (1536,)
    assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-5
    np.testing.assert_array_equal(v, deterministic_vector("hello", 1536))
    assert not np.array_equal(v, deterministic_vector("hello!", 1536))
    short = deterministic_vector("hello", 8)
    np.testing.assert_allclose(short, v[:8] / np.linalg.norm(v[:8]), rtol=1e-5)


def test_deterministic_vectors_rows_equal_single_vectors() -> None:
    """Batch rows are bit-identical to single vectors, whatever the batch."""
    texts = [f"text {i}" for i in range(300)] + ["", "ünïcode ☃"]
    batch = deterministic_vectors(texts, 33)
    assert batch.shape == (302, 33) and batch.flags.c_contiguous
    for i in (0, 150, 300, 301):
        np.testing.assert_array_equal(batch[i], deterministic_vector(texts[i], 33))
    np.testing.assert_array_equal(batch[5:9], deterministic_vectors(texts[5:9], 33))
    assert deterministic_vectors([], 4).shape == (0, 4)
    with pytest.raises(ValueError, match="dimensions"):
        deterministic_vectors(["a"], 0)


def test_count_tokens_counts_words_at_least_one(server: EmbeddingServer) -> None:
    """The server's token count is the number of words, at least 1."""
    assert server.count_tokens("one two  three") == 3
    assert server.count_tokens("   ") == 1


# -- routes -----------------------------------------------------------------------------------


def test_openai_float_response_shape(server: EmbeddingServer, http: httpx.Client) -> None:
    """OpenAI's exact keys, vectors, usage and headers, for float encoding."""
    texts = ["hello world", "a b c"]
    r = post(http, server, "openai", body_of(texts))
    assert r.status_code == 200
    data = r.json()
    assert list(data) == ["object", "data", "model", "usage"]
    assert data["object"] == "list" and data["model"] == "text-embedding-3-small"
    assert data["usage"] == {"prompt_tokens": 5, "total_tokens": 5}
    for i, item in enumerate(data["data"]):
        assert list(item) == ["object", "index", "embedding"]
        assert (item["object"], item["index"]) == ("embedding", i)
        np.testing.assert_array_equal(floats(item["embedding"]), deterministic_vector(texts[i], D))
    assert re.fullmatch(r"req_[0-9a-f]{32}", r.headers["x-request-id"])
    assert r.headers["openai-model"] == "text-embedding-3-small"
    assert r.headers["openai-processing-ms"].isdigit()
    assert "x-ratelimit-limit-requests" not in r.headers


def test_openai_base64_and_dimensions(server: EmbeddingServer, http: httpx.Client) -> None:
    """base64 decodes as little-endian float32; ``dimensions`` overrides the default."""
    r = post(http, server, "openai", body_of(["x"], encoding_format="base64", dimensions=40))
    embedding = r.json()["data"][0]["embedding"]
    assert isinstance(embedding, str)
    np.testing.assert_array_equal(b64(embedding), deterministic_vector("x", 40))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"input": [[1, 2, 3]]}, "'$.input' is invalid"),
        ({"input": [1, 2, 3]}, "'$.input' is invalid"),
        ({"input": ["ok", ""]}, "'$.input' is invalid"),
        ({"input": []}, "'$.input' is invalid"),
        ({"model": None}, "you must provide a model parameter"),
        ({"encoding_format": "md5"}, "Invalid value for 'encoding_format' = md5"),
        ({"dimensions": 0}, "Invalid value for 'dimensions'"),
    ],
)
def test_openai_rejects_invalid_requests(
    server: EmbeddingServer, http: httpx.Client, change: dict[str, Any], message: str
) -> None:
    """Token ids, empty strings, a missing model and bad options get OpenAI's 400."""
    r = post(http, server, "openai", {**body_of(["a"]), **change})
    assert r.status_code == 400
    error = r.json()["error"]
    assert message in error["message"] and error["type"] == "invalid_request_error"
    assert server.requests[0].status == 400


def test_non_json_body_is_400(server: EmbeddingServer, http: httpx.Client) -> None:
    """A body that is not JSON gets 400, logged with an empty body."""
    r = http.post(server.url + "/v1/embeddings", content=b"{nope")
    assert r.status_code == 400
    assert server.requests[0].body == {}


def test_azure_deployment_route(server: EmbeddingServer, http: httpx.Client) -> None:
    """The deployments URL needs api-version, echoes the deployment and sends UUID ids."""
    missing = http.post(server.url + "/openai/deployments/dep/embeddings", json={"input": "a"})
    assert missing.status_code == 400
    assert list(missing.json()["error"]) == ["code", "message"]
    r = post(http, server, "azure", {"input": "a", "encoding_format": "base64"})
    assert r.status_code == 200
    assert r.json()["model"] == "dep"
    np.testing.assert_array_equal(
        b64(r.json()["data"][0]["embedding"]), deterministic_vector("a", D)
    )
    assert re.fullmatch(r"[0-9a-f-]{36}", r.headers["x-request-id"])
    assert server.requests[1].query == {"api-version": "2024-10-21"}


def test_azure_v1_route_needs_no_api_version(server: EmbeddingServer, http: httpx.Client) -> None:
    """/openai/v1/embeddings works without api-version; model is the deployment name."""
    r = http.post(server.url + "/openai/v1/embeddings", json={"input": ["a"], "model": "my-dep"})
    assert r.status_code == 200 and r.json()["model"] == "my-dep"


def test_mistral_response_shape(server: EmbeddingServer, http: httpx.Client) -> None:
    """Mistral's id, key order, null usage extras, output_dimension and floats only."""
    body = {"input": ["a b"], "model": "mistral-embed", "output_dimension": 12}
    r = post(http, server, "mistral", {**body, "encoding_format": "base64"})
    data = r.json()
    assert list(data) == ["id", "object", "data", "model", "usage"]
    assert re.fullmatch(r"[0-9a-f]{32}", data["id"])
    item = data["data"][0]
    assert list(item) == ["object", "embedding", "index"]
    np.testing.assert_array_equal(floats(item["embedding"]), deterministic_vector("a b", 12))
    assert data["usage"] == {
        "prompt_audio_seconds": None,
        "prompt_tokens": 2,
        "total_tokens": 2,
        "completion_tokens": 0,
        "request_count": None,
        "prompt_token_details": None,
    }


def test_ollama_embed_shape(server: EmbeddingServer, http: httpx.Client) -> None:
    """/api/embed returns a list of vectors even for one string, with durations and count."""
    r = post(http, server, "ollama", {"model": "all-minilm", "input": "one two", "dimensions": 5})
    data = r.json()
    assert list(data) == [
        "model",
        "embeddings",
        "total_duration",
        "load_duration",
        "prompt_eval_count",
    ]
    assert data["model"] == "all-minilm" and data["prompt_eval_count"] == 2
    np.testing.assert_array_equal(floats(data["embeddings"][0]), deterministic_vector("one two", 5))
    assert isinstance(data["total_duration"], int)


def test_ollama_legacy_embeddings(server: EmbeddingServer, http: httpx.Client) -> None:
    """/api/embeddings takes one prompt and returns one ``embedding``."""
    r = http.post(server.url + "/api/embeddings", json={"model": "m", "prompt": "hi"})
    assert list(r.json()) == ["embedding"]
    np.testing.assert_array_equal(floats(r.json()["embedding"]), deterministic_vector("hi", D))
    assert server.requests[0].inputs == ("hi",)


def test_unknown_path_and_method(server: EmbeddingServer, http: httpx.Client) -> None:
    """An unknown path is 404; a GET on an embeddings route is 405."""
    assert http.post(server.url + "/v2/embeddings", json={}).status_code == 404
    assert http.get(server.url + "/v1/embeddings").status_code == 405


def test_base_urls(server: EmbeddingServer) -> None:
    """base_url maps each provider to the prefix its client expects."""
    assert server.url.startswith("http://127.0.0.1:")
    assert server.base_url("openai") == server.base_url("openai_compatible") == server.url + "/v1"
    assert server.base_url("mistral") == server.url + "/mistral/v1"
    assert server.base_url("ollama") == server.base_url("azure") == server.url
    assert server.base_url("cohere") == server.url + "/cohere"
    with pytest.raises(ValueError, match="unknown provider"):
        server.base_url("nonexistent")


# -- faults -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "check"),
    [
        ("openai", lambda b: b["error"]["type"] == "server_error" and "overloaded" in str(b)),
        ("azure", lambda b: b["error"]["code"] == "503"),
        ("mistral", lambda b: b["object"] == "error" and b["param"] is None),
        ("ollama", lambda b: isinstance(b["error"], str)),
    ],
)
def test_status_fault_uses_provider_error_shape(
    server: EmbeddingServer, http: httpx.Client, provider: str, check: Any
) -> None:
    """Fault.status sends the route's provider-shaped error body."""
    server.script(Fault.status(503))
    r = post(http, server, provider, body_of(["a"]))
    assert r.status_code == 503 and check(r.json())
    assert server.requests[0].fault == "status_503"


def test_status_fault_custom_body_and_headers(server: EmbeddingServer, http: httpx.Client) -> None:
    """A given body and headers are sent as they are."""
    server.script(Fault.status(429, body={"x": 1}, headers={"Retry-After": "0.05"}))
    r = post(http, server, "openai", body_of(["a"]))
    assert (r.status_code, r.json(), r.headers["retry-after"]) == (429, {"x": 1}, "0.05")


def test_rate_limited_fault_headers(server: EmbeddingServer, http: httpx.Client) -> None:
    """retry-after in seconds, retry-after-ms on request, both on Azure; none without a wait."""
    server.script(
        Fault.rate_limited(0.25),
        Fault.rate_limited(0.05, ms=True),
        Fault.rate_limited(1.5),
        Fault.rate_limited(),
    )
    first = post(http, server, "openai", body_of(["a"]))
    assert first.headers["retry-after"] == "0.25" and "retry-after-ms" not in first.headers
    assert first.json()["error"]["code"] == "rate_limit_exceeded"
    assert "Please try again in 250ms." in first.json()["error"]["message"]
    second = post(http, server, "openai", body_of(["a"]))
    assert second.headers["retry-after-ms"] == "50" and "retry-after" not in second.headers
    azure = post(http, server, "azure", {"input": "a"})
    assert (azure.headers["retry-after"], azure.headers["retry-after-ms"]) == ("2", "1500")
    assert azure.json()["error"]["code"] == "429"
    bare = post(http, server, "openai", body_of(["a"]))
    assert bare.status_code == 429 and "retry-after" not in bare.headers


def test_quota_and_context_length_faults(server: EmbeddingServer, http: httpx.Client) -> None:
    """quota is a 429 insufficient_quota; context_length is OpenAI's 400 wording."""
    server.script(Fault.quota(), Fault.context_length())
    quota = post(http, server, "openai", body_of(["a"])).json()["error"]
    assert quota["type"] == quota["code"] == "insufficient_quota"
    context = post(http, server, "openai", body_of(["a"]))
    assert context.status_code == 400
    assert context.json()["error"]["message"] == (
        "Invalid 'input': maximum context length is 8192 tokens."
    )


def test_drop_fault_closes_without_response(server: EmbeddingServer, http: httpx.Client) -> None:
    """The connection closes with no response; the next request is served."""
    server.script(Fault.drop())
    with pytest.raises(httpx.RemoteProtocolError):
        post(http, server, "openai", body_of(["a"]))
    assert post(http, server, "openai", body_of(["a"])).status_code == 200
    assert [(r.status, r.fault) for r in server.requests] == [(0, "drop"), (200, None)]


def test_delay_fault_triggers_read_timeout(server: EmbeddingServer, http: httpx.Client) -> None:
    """A delayed response exceeds a short read timeout."""
    server.script(Fault.delay(0.4))
    with pytest.raises(httpx.ReadTimeout):
        post(http, server, "openai", body_of(["a"]), timeout=0.1)


def test_trickle_fault_is_slow_but_complete(server: EmbeddingServer, http: httpx.Client) -> None:
    """The body arrives intact over the trickle time, each gap below a short read timeout."""
    server.script(Fault.trickle(0.3))
    start = time.perf_counter()
    r = post(http, server, "openai", body_of(["a", "b"]), timeout=httpx.Timeout(0.15))
    assert time.perf_counter() - start >= 0.25
    assert len(r.json()["data"]) == 2


def test_truncate_fault_cuts_the_body(server: EmbeddingServer, http: httpx.Client) -> None:
    """A truncated body has a correct Content-Length but is half the JSON."""
    full = post(http, server, "openai", body_of(["a", "b"])).content
    server.script(Fault.truncate())
    r = post(http, server, "openai", body_of(["a", "b"]))
    assert r.status_code == 200 and r.content == full[: len(full) // 2]
    assert int(r.headers["content-length"]) == len(r.content)
    with pytest.raises(json.JSONDecodeError):
        r.json()


def test_malformed_and_error_body_200(server: EmbeddingServer, http: httpx.Client) -> None:
    """malformed sends an HTML page; error_body_200 sends an error object with 200."""
    server.script(Fault.malformed(), Fault.error_body_200())
    html = post(http, server, "openai", body_of(["a"]))
    assert html.status_code == 200 and html.headers["content-type"] == "text/html"
    assert html.text.startswith("<html>")
    error = post(http, server, "openai", body_of(["a"]))
    assert error.status_code == 200 and error.json()["error"]["type"] == "server_error"


def test_data_faults_damage_vectors(server: EmbeddingServer, http: httpx.Client) -> None:
    """wrong_count, shuffle, bad_index and wrong_dimensions each break one property."""
    texts = [f"t{i}" for i in range(6)]
    server.script(Fault.wrong_count(), Fault.shuffle(), Fault.bad_index(), Fault.wrong_dimensions())
    items = [post(http, server, "openai", body_of(texts)).json()["data"] for _ in range(4)]
    assert len(items[0]) == 5
    shuffled = [item["index"] for item in items[1]]
    assert shuffled != list(range(6)) and sorted(shuffled) == list(range(6))
    for item in items[1]:
        expected = deterministic_vector(texts[item["index"]], D)
        np.testing.assert_array_equal(floats(item["embedding"]), expected)
    assert [item["index"] for item in items[2]] == [0, 1, 2, 3, 4, 0]
    assert {len(item["embedding"]) for item in items[3]} == {D - 1}


def test_bad_index_with_one_input_is_out_of_range(
    server: EmbeddingServer, http: httpx.Client
) -> None:
    """With a single input the bad index points past the end."""
    server.script(Fault.bad_index())
    assert post(http, server, "openai", body_of(["a"])).json()["data"][0]["index"] == 1


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_nan_fault(server: EmbeddingServer, http: httpx.Client, encoding: str) -> None:
    """Exactly one value is NaN: a NaN literal in JSON, NaN bytes in base64."""
    server.script(Fault.nan())
    r = post(http, server, "openai", body_of(["a", "b", "c"], encoding_format=encoding))
    if encoding == "float":
        assert r.content.count(b"NaN") == 1
    data = json.loads(r.content)["data"]  # the stdlib parser accepts the NaN literal
    if encoding == "float":
        rows = [floats(item["embedding"]) for item in data]
    else:
        rows = [b64(item["embedding"]) for item in data]
    assert int(np.isnan(np.stack(rows)).sum()) == 1


def test_ollama_data_faults(server: EmbeddingServer, http: httpx.Client) -> None:
    """Without indices Ollama's bad_index adds a vector and nan writes a NaN literal."""
    server.script(Fault.bad_index(), Fault.nan())
    body = {"model": "m", "input": ["a", "b"]}
    assert len(post(http, server, "ollama", body).json()["embeddings"]) == 3
    assert b"NaN" in post(http, server, "ollama", body).content


def test_script_order_then_normal(server: EmbeddingServer, http: httpx.Client) -> None:
    """Scripted faults apply to the next valid requests in order, then service is normal."""
    server.script(Fault.status(500), Fault.status(502))
    assert post(http, server, "openai", body_of([""])).status_code == 400  # invalid: no fault
    codes = [post(http, server, "openai", body_of(["a"])).status_code for _ in range(3)]
    assert codes == [500, 502, 200]
    assert [r.fault for r in server.requests] == [None, "status_500", "status_502", None]


def test_chaos_rate_is_roughly_honoured_and_seeded(http: httpx.Client) -> None:
    """About ``rate`` of requests fail; the same seed gives the same sequence."""
    runs = []
    for _ in range(2):
        with EmbeddingServer(dimensions=4) as srv:
            srv.chaos(0.3, [Fault.status(500), Fault.status(503)], seed=7)
            runs.append([post(http, srv, "openai", body_of(["a"])).status_code for _ in range(200)])
            srv.chaos(0.0, [])
            assert post(http, srv, "openai", body_of(["a"])).status_code == 200
    assert runs[0] == runs[1]
    failures = sum(code != 200 for code in runs[0])
    assert 35 <= failures <= 85
    assert {500, 503} <= set(runs[0])


def test_outage_on_and_off(server: EmbeddingServer, http: httpx.Client) -> None:
    """set_down fails every request (or drops it with status 0) until switched off."""
    server.set_down(True, status=503)
    assert post(http, server, "mistral", body_of(["a"])).status_code == 503
    assert http.post(server.url + "/nowhere", json={}).status_code == 503
    server.set_down(True, status=0)
    with pytest.raises(httpx.RemoteProtocolError):
        post(http, server, "openai", body_of(["a"]))
    server.set_down(False)
    assert post(http, server, "openai", body_of(["a"])).status_code == 200
    assert [r.fault for r in server.requests] == ["outage", "outage", "outage", None]


def test_reset_clears_everything(server: EmbeddingServer, http: httpx.Client) -> None:
    """reset clears the script, chaos, outage and log."""
    post(http, server, "openai", body_of(["a"]))
    server.script(Fault.status(500))
    server.chaos(1.0, [Fault.status(502)])
    server.set_down(True)
    server.reset()
    assert server.requests == [] and server.max_in_flight == 0
    assert post(http, server, "openai", body_of(["a"])).status_code == 200


def test_fault_constructors_validate_and_name() -> None:
    """Bad fault arguments are refused; names label faults in the log."""
    for bad in (lambda: Fault.status(99), lambda: Fault.delay(-1), lambda: Fault.trickle(1e999)):
        with pytest.raises(ValueError):
            bad()
    assert str(Fault.status(503)) == "status_503" and Fault.nan().name == "nan"
    assert Fault.rate_limited(0.2) == Fault.rate_limited(0.2)


# -- gzip, auth, limits -----------------------------------------------------------------------


def test_gzip_body_accepted(server: EmbeddingServer, http: httpx.Client) -> None:
    """A gzip body is decompressed and logged with both sizes."""
    raw = json.dumps(body_of(["same text"] * 50)).encode()
    headers = {"content-encoding": "gzip", "content-type": "application/json"}
    r = http.post(server.url + "/v1/embeddings", content=gzip.compress(raw), headers=headers)
    assert r.status_code == 200 and len(r.json()["data"]) == 50
    record = server.requests[0]
    assert record.gzip and record.raw_size == len(raw) and record.wire_size < record.raw_size
    assert record.inputs == ("same text",) * 50


def test_gzip_refused_with_415(http: httpx.Client) -> None:
    """accept_gzip=False answers 415 to a gzip body; a plain body still works."""
    with EmbeddingServer(dimensions=4, accept_gzip=False) as srv:
        raw = json.dumps(body_of(["a"])).encode()
        headers = {"content-encoding": "gzip"}
        r = http.post(srv.url + "/v1/embeddings", content=gzip.compress(raw), headers=headers)
        assert r.status_code == 415 and "error" in r.json()
        assert http.post(srv.url + "/v1/embeddings", content=raw).status_code == 200
        assert [(x.gzip, x.status) for x in srv.requests] == [(True, 415), (False, 200)]


def test_require_key(http: httpx.Client) -> None:
    """Bearer or api-key must carry the key; otherwise 401 in the route's shape."""
    with EmbeddingServer(dimensions=4, require_key="sk-test") as srv:
        assert post(http, srv, "openai", body_of(["a"])).status_code == 401
        wrong = post(http, srv, "openai", body_of(["a"]), headers={"authorization": "Bearer no"})
        assert wrong.json()["error"]["code"] == "invalid_api_key"
        ok = {"authorization": "Bearer sk-test"}
        assert post(http, srv, "openai", body_of(["a"]), headers=ok).status_code == 200
        azure = post(http, srv, "azure", {"input": "a"}, headers={"api-key": "sk-test"})
        assert azure.status_code == 200
        ollama = post(http, srv, "ollama", {"model": "m", "input": "a"})
        assert (ollama.status_code, ollama.json()) == (401, {"error": "unauthorized"})


def test_optional_input_limits(http: httpx.Client) -> None:
    """max_input_tokens and max_batch_size give 400s; Ollama truncates unless told not to."""
    with EmbeddingServer(dimensions=4, max_input_tokens=3, max_batch_size=2) as srv:
        long = "one two three four"
        too_long = post(http, srv, "openai", body_of([long]))
        assert too_long.status_code == 400 and "context length" in too_long.text
        assert post(http, srv, "openai", body_of(["a", "b", "c"])).status_code == 400
        truncated = post(http, srv, "ollama", {"model": "m", "input": long})
        assert truncated.json()["prompt_eval_count"] == 3
        refused = post(http, srv, "ollama", {"model": "m", "input": long, "truncate": False})
        assert refused.json() == {"error": "the input length exceeds the context length"}


def test_rate_limit_rpm_headers_and_429(http: httpx.Client) -> None:
    """Under rpm the server sends x-ratelimit-* and refuses the excess with a 429."""
    with EmbeddingServer(dimensions=4, rate_limit_rpm=2, rate_limit_tpm=1000) as srv:
        first = post(http, srv, "openai", body_of(["a b"]))
        assert first.headers["x-ratelimit-limit-requests"] == "2"
        assert first.headers["x-ratelimit-remaining-requests"] == "1"
        assert first.headers["x-ratelimit-remaining-tokens"] == "998"
        assert re.fullmatch(r"\d+(\.\d+)?s|\d+ms", first.headers["x-ratelimit-reset-requests"])
        post(http, srv, "openai", body_of(["a"]))
        refused = post(http, srv, "openai", body_of(["a"]))
        assert refused.status_code == 429
        assert 25 <= float(refused.headers["retry-after"]) <= 31
        assert refused.json()["error"]["type"] == "requests"
        assert "(RPM): Limit 2, Used 2, Requested 1" in refused.json()["error"]["message"]
        azure = post(http, srv, "azure", {"input": "a"})
        assert "x-ratelimit-limit-requests" not in azure.headers
        assert azure.headers["x-ratelimit-remaining-requests"] == "0"
        assert int(azure.headers["retry-after-ms"]) > 20_000
        mistral = post(http, srv, "mistral", {"input": "a", "model": "m"})
        assert mistral.headers["x-ratelimit-limit-req-minute"] == "2"
        assert mistral.json()["type"] == "rate_limited"


def test_rate_limit_tpm(http: httpx.Client) -> None:
    """A request over the remaining tokens per minute is refused as a tokens limit."""
    with EmbeddingServer(dimensions=4, rate_limit_tpm=10) as srv:
        assert post(http, srv, "openai", body_of(["1 2 3 4 5 6"])).status_code == 200
        refused = post(http, srv, "openai", body_of(["1 2 3 4 5 6"]))
        assert refused.status_code == 429 and refused.json()["error"]["type"] == "tokens"


def test_stated_limits_on_every_reply_but_not_on_a_scripted_429(http: httpx.Client) -> None:
    """Under limits every 200 states OpenAI's six x-ratelimit-* headers; a scripted 429 none."""
    kinds, units = ("limit", "remaining", "reset"), ("requests", "tokens")
    names = {f"x-ratelimit-{k}-{u}" for k in kinds for u in units}
    with EmbeddingServer(dimensions=4, rate_limit_rpm=10_000, rate_limit_tpm=10_000_000) as srv:
        srv.script(Fault.rate_limited(retry_after=0.05))
        refused = post(http, srv, "openai", body_of(["a"]))
        assert refused.status_code == 429 and refused.headers["retry-after"] == "0.05"
        assert not names & set(refused.headers)
        remaining = []
        for _ in range(3):
            reply = post(http, srv, "openai", body_of(["w " * 40]))
            assert reply.status_code == 200 and names <= set(reply.headers)
            assert reply.headers["x-ratelimit-limit-requests"] == "10000"
            assert reply.headers["x-ratelimit-limit-tokens"] == "10000000"
            for unit in ("requests", "tokens"):
                reset = reply.headers[f"x-ratelimit-reset-{unit}"]
                assert re.fullmatch(r"(\d+m)?\d+(\.\d+)?s|\d+ms", reset)
            remaining.append(int(reply.headers["x-ratelimit-remaining-tokens"]))
        assert remaining[0] <= 10_000_000 - 40
        assert remaining == sorted(remaining, reverse=True)


def test_token_buckets_refill_with_time() -> None:
    """Buckets refill continuously: a refused request fits after the advertised wait."""
    now = [0.0]
    buckets = TokenBuckets(60, None, clock=lambda: now[0])
    for _ in range(60):
        assert buckets.acquire(1).allowed
    refused = buckets.acquire(1)
    assert not refused.allowed and refused.retry_after == pytest.approx(1.0)
    now[0] += 1.0
    assert buckets.acquire(1).allowed


def test_go_duration_format() -> None:
    """Reset durations are written like OpenAI's (Go) headers."""
    assert [go_duration(s) for s in (0, 0.006, 1, 2.5, 360, 3723.5)] == [
        "0s",
        "6ms",
        "1s",
        "2.5s",
        "6m0s",
        "1h2m3.5s",
    ]


# -- concurrency, log, lifecycle --------------------------------------------------------------


async def test_max_concurrency_queues_requests() -> None:
    """Beyond max_concurrency requests wait; max_in_flight never exceeds the limit."""
    with EmbeddingServer(dimensions=4, latency=0.05, max_concurrency=3) as srv:
        limits = httpx.Limits(max_connections=20)
        async with httpx.AsyncClient(limits=limits, timeout=5.0) as client:
            url = srv.url + PATHS["openai"]
            start = time.perf_counter()
            replies = await asyncio.gather(
                *(client.post(url, json=body_of([f"t{i}"])) for i in range(12))
            )
            elapsed = time.perf_counter() - start
    assert all(r.status_code == 200 for r in replies)
    assert srv.max_in_flight == 3
    assert elapsed >= 4 * 0.05 * 0.9


async def test_requests_are_served_concurrently() -> None:
    """Without a limit, slow requests overlap instead of queueing."""
    with EmbeddingServer(dimensions=4, latency=0.1, latency_per_input=0.01) as srv:
        async with httpx.AsyncClient(timeout=5.0) as client:
            url = srv.url + PATHS["openai"]
            start = time.perf_counter()
            await asyncio.gather(*(client.post(url, json=body_of(["a"] * 5)) for _ in range(8)))
            elapsed = time.perf_counter() - start
    assert srv.max_in_flight == 8
    assert 0.15 <= elapsed < 0.9  # one after another would take 1.2 s


def test_request_log_contents(server: EmbeddingServer, http: httpx.Client) -> None:
    """Each request is logged with its parts, status and arrival time, in order."""
    post(http, server, "azure", {"input": ["x", "y"]}, headers={"API-Key": "k"})
    http.post(server.url + "/missing", json={"input": "z"})
    first, second = server.requests
    assert isinstance(first, RecordedRequest)
    assert (first.method, first.path, first.query) == (
        "POST",
        "/openai/deployments/dep/embeddings",
        {"api-version": "2024-10-21"},
    )
    assert first.headers["api-key"] == "k" and first.body == {"input": ["x", "y"]}
    assert (first.inputs, first.status, first.fault, first.gzip) == (("x", "y"), 200, None, False)
    assert first.raw_size == first.wire_size > 0
    assert (second.status, second.inputs) == (404, ())
    assert first.received_at <= second.received_at <= time.monotonic()
    log = server.requests
    log.clear()
    assert len(server.requests) == 2  # the property returns a copy


def test_start_is_fast_and_stop_closes_everything(http: httpx.Client) -> None:
    """Start takes well under a second; stop closes kept-alive connections and the thread."""
    srv = EmbeddingServer(dimensions=4)
    start = time.perf_counter()
    srv.start()
    assert time.perf_counter() - start < 0.5
    assert post(http, srv, "openai", body_of(["a"])).status_code == 200  # kept alive
    url = srv.url
    srv.stop()
    srv.stop()  # idempotent
    assert not any(t.name == "embedguard-test-server" for t in threading.enumerate())
    with pytest.raises(httpx.TransportError):
        http.post(url + PATHS["openai"], json=body_of(["a"]))
    with pytest.raises(RuntimeError, match="not running"):
        _ = srv.url


def test_bulk_base64_is_fast(http: httpx.Client) -> None:
    """20,000 texts of 1536-d base64 vectors are served within a few seconds."""
    texts = [f"text number {i} about embeddings" for i in range(20_000)]
    with EmbeddingServer() as srv:
        start = time.perf_counter()
        for i in range(0, len(texts), 2048):
            body = body_of(texts[i : i + 2048], encoding_format="base64")
            r = http.post(srv.url + PATHS["openai"], json=body, timeout=30)
            assert r.status_code == 200
        elapsed = time.perf_counter() - start
    last = r.json()["data"][-1]["embedding"]
    np.testing.assert_array_equal(b64(last), deterministic_vector(texts[-1], 1536))
    assert elapsed < 5.0


def test_public_names() -> None:
    """The package exports exactly its public names, sorted."""
    assert testing_pkg.__all__ == sorted(testing_pkg.__all__)
    assert set(testing_pkg.__all__) == {
        "EmbeddingServer",
        "Fault",
        "RecordedRequest",
        "deterministic_vector",
        "deterministic_vectors",
        "lexical_vectors",
    }
