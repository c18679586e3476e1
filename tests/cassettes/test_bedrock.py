"""Amazon Bedrock's InvokeModel, replayed from cassettes through the public API, SigV4 signing on.

The cassettes (``cassettes/bedrock/``, written by ``tools/make_cassettes_bedrock.py``) hold no
``Authorization``; requests match on method, host, path and the parsed JSON body, so a body the
codec builds differently from Bedrock's documented one fails to match.
"""

import re

import numpy as np
import pytest

from embedguard import (
    AuthenticationError,
    CircuitState,
    ContextLengthError,
    ModelNotFoundError,
    QuotaExhaustedError,
    profiles,
)

from .conftest import CASSETTES, Recording, assert_metrics, fast, run_client

KEY_ID = "AKIDPLANTEDCASSETTE1"
SECRET = "PLANTED/cassette+secret/0123456789abcdefABCDEF"
TOKEN = "PLANTED-cassette-session-token-0123456789"
API_KEY = "PLANTED-bedrock-api-key-0123456789"
ENV = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_SESSION_TOKEN": TOKEN}
TITAN = {"region": "us-east-1", "dimensions": 256}


def _text(rec: Recording, i: int = 0) -> str:
    body = rec.request_body(i)
    return body["inputText"] if "inputText" in body else body["texts"][0]


def _float_rows(rec: Recording, i: int) -> np.ndarray:
    doc = rec.doc(i)
    rows = [doc["embedding"]] if "embedding" in doc else doc["embeddings"]
    return np.array(rows, dtype=np.float64).astype(np.float32)


async def test_titan_v2_floats(replay, mode):
    """One text, one request: the recorded 256 floats, tokens from inputTextTokenCount."""
    name = "bedrock/titan_v2_float_dims256.yaml"
    rec = Recording.of(name)
    with replay(name) as cassette:
        out = await run_client(fast(profiles.bedrock(**TITAN)), [_text(rec)], mode, environ=ENV)
    assert out.error is None and out.vectors is not None
    np.testing.assert_array_equal(out.vectors, _float_rows(rec, 0))
    assert cassette.all_played
    tokens = rec.doc(0)["inputTextTokenCount"]
    assert_metrics(out, attempts=1, failures={}, items=1, tokens=tokens)


async def test_titan_two_texts_are_two_requests(replay, mode):
    """Two texts go out as two single-text requests; the vectors come back in input order."""
    name = "bedrock/titan_v2_two_texts.yaml"
    rec = Recording.of(name)
    texts = [_text(rec, 0), _text(rec, 1)]
    with replay(name) as cassette:
        out = await run_client(fast(profiles.bedrock(**TITAN)), texts, mode, environ=ENV)
    assert out.vectors is not None and cassette.play_count == 2
    np.testing.assert_array_equal(
        out.vectors, np.vstack([_float_rows(rec, 0), _float_rows(rec, 1)])
    )
    assert out.metrics.successful_requests == 2
    assert out.metrics.tokens_used == sum(rec.doc(i)["inputTextTokenCount"] for i in (0, 1))


@pytest.mark.parametrize("dtype", ["binary", "ubinary"])
async def test_titan_binary_is_packed(replay, mode, dtype):
    """embeddingTypes ["binary"]: 256 recorded bits come back as 32 packed bytes."""
    name = "bedrock/titan_v2_binary.yaml"
    rec = Recording.of(name)
    profile = fast(profiles.bedrock(**TITAN, dtype=dtype))
    with replay(name):
        out = await run_client(profile, [_text(rec)], mode, environ=ENV)
    packed = np.packbits(np.array(rec.doc(0)["embeddingsByType"]["binary"], dtype=np.uint8))
    expected = packed.astype(int) - (128 if dtype == "binary" else 0)
    assert out.vectors is not None and out.vectors.shape == (1, 32)
    np.testing.assert_array_equal(out.vectors[0].astype(int), expected)


async def test_titan_v1_is_1536_and_not_normalised(replay, mode):
    """Titan v1 takes inputText alone and answers 1536 floats of norm about 19."""
    name = "bedrock/titan_v1_ok.yaml"
    rec = Recording.of(name)
    assert rec.request_body(0) == {"inputText": _text(rec)}
    profile = fast(profiles.bedrock("amazon.titan-embed-text-v1", region="us-east-1"))
    with replay(name):
        out = await run_client(profile, [_text(rec)], mode, environ=ENV)
    assert out.vectors is not None and out.vectors.shape == (1, 1536)
    np.testing.assert_array_equal(out.vectors, _float_rows(rec, 0))
    assert 18 < float(np.linalg.norm(out.vectors[0])) < 20


async def test_cohere_v3_documents_with_an_api_key(replay, mode):
    """Cohere v3 (a Bedrock API key instead of SigV4): search_document, a bare float list,
    tokens from X-Amzn-Bedrock-Input-Token-Count."""
    name = "bedrock/cohere_v3_documents.yaml"
    rec = Recording.of(name)
    texts = rec.request_body(0)["texts"]
    profile = fast(profiles.bedrock("cohere.embed-english-v3", region="us-east-1"))
    with replay(name):
        out = await run_client(profile, texts, mode, api_key=API_KEY)
    assert out.vectors is not None
    np.testing.assert_array_equal(out.vectors, _float_rows(rec, 0))
    tokens = int(rec.header(0, "X-Amzn-Bedrock-Input-Token-Count") or 0)
    assert_metrics(out, attempts=1, failures={}, items=2, tokens=tokens)


async def test_cohere_v4_query_int8(replay, mode):
    """embed_query on an inference profile: search_query, int8 by type, output_dimension 512."""
    name = "bedrock/cohere_v4_query_int8.yaml"
    rec = Recording.of(name)
    profile = fast(profiles.bedrock("us.cohere.embed-v4:0", region="us-east-1", dimensions=512,
                                    dtype="int8"))  # fmt: skip
    with replay(name):
        out = await run_client(profile, [_text(rec)], mode, environ=ENV, query=True)
    assert out.vectors is not None and out.vectors.dtype == np.int8
    np.testing.assert_array_equal(out.vectors, rec.doc(0)["embeddings"]["int8"][0])


async def test_throttling_then_ok(replay, mode):
    """A ThrottlingException (no wait stated) is retried; the second attempt succeeds."""
    name = "bedrock/titan_throttled_then_ok.yaml"
    rec = Recording.of(name)
    with replay(name) as cassette:
        out = await run_client(fast(profiles.bedrock(**TITAN)), [_text(rec)], mode, environ=ENV)
    assert out.vectors is not None and cassette.play_count == 2
    np.testing.assert_array_equal(out.vectors, _float_rows(rec, 1))
    tokens = rec.doc(1)["inputTextTokenCount"]
    assert_metrics(out, attempts=2, failures={"rate_limit": 1}, items=1, tokens=tokens)


async def test_model_not_ready_503_500_then_ok(replay, mode):
    """ModelNotReady (429, not a rate limit), 503 and 500 are retried as server errors."""
    name = "bedrock/cohere_model_not_ready_then_ok.yaml"
    rec = Recording.of(name)
    profile = fast(profiles.bedrock("cohere.embed-english-v3", region="us-east-1"))
    with replay(name) as cassette:
        out = await run_client(profile, [_text(rec)], mode, environ=ENV)
    assert out.vectors is not None and cassette.play_count == 4
    np.testing.assert_array_equal(out.vectors, _float_rows(rec, 3))
    tokens = int(rec.header(3, "X-Amzn-Bedrock-Input-Token-Count") or 0)
    assert_metrics(out, attempts=4, failures={"server": 3}, items=1, tokens=tokens)
    assert out.circuit is CircuitState.CLOSED


@pytest.mark.parametrize(
    ("name", "model", "error", "kind"),
    [
        ("titan_too_many_tokens_400", "amazon.titan-embed-text-v2:0", ContextLengthError,
         "context_length"),
        ("invalid_model_id_400", "amazon.titan-embed-text-v2:9", ModelNotFoundError,
         "model_not_found"),
        ("unrecognized_client_403", "amazon.titan-embed-text-v2:0", AuthenticationError,
         "authentication"),
        ("access_denied_403", "amazon.titan-embed-text-v1", AuthenticationError, "authentication"),
        ("resource_not_found_404", "us.cohere.embed-v4:0", ModelNotFoundError, "model_not_found"),
        ("service_quota_exceeded_400", "cohere.embed-english-v3", QuotaExhaustedError, "quota"),
    ],
)  # fmt: skip
async def test_errors_are_typed_and_not_retried(replay, mode, name, model, error, kind):
    """Each Bedrock error is its typed error, with the exception name, request id and message."""
    path = f"bedrock/{name}.yaml"
    rec = Recording.of(path)
    body = rec.request_body(0)
    dims = body.get("dimensions") or body.get("output_dimension")
    profile = fast(profiles.bedrock(model, region="us-east-1", dimensions=dims))
    query = body.get("input_type") == "search_query"
    with replay(path) as cassette:
        out = await run_client(profile, [_text(rec)], mode, environ=ENV, query=query)
    assert isinstance(out.error, error) and cassette.play_count == 1
    assert out.error.code == (rec.header(0, "x-amzn-ErrorType") or "").split(":")[0]
    assert out.error.request_id == rec.header(0, "x-amzn-RequestId")
    assert out.error.message == rec.doc(0)["message"]
    assert SECRET not in str(out.error) and TOKEN not in str(out.error)
    assert_metrics(out, attempts=1, failures={kind: 1}, items=0, tokens=0)


def test_bedrock_cassettes_hold_no_aws_secret():
    """No signature, session token, secret key, planted key or real-looking key id is stored."""
    key_id = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")
    files = sorted((CASSETTES / "bedrock").glob("*.yaml"))
    assert len(files) >= 12
    for path in files:
        text = path.read_text("utf-8")
        lowered = text.lower()
        assert "authorization" not in lowered and "x-amz-security-token" not in lowered, path
        assert "signature=" not in lowered and not key_id.search(text), path
        for planted in (KEY_ID, SECRET, TOKEN, API_KEY):
            assert planted not in text, path
