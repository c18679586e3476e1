"""Bedrock on the wire: paths, bodies, SigV4 headers and credentials, compact vector types.

The loopback server verifies every SigV4 signature with botocore (its ``require_key`` is the
planted secret access key), so each test also proves the exact bytes and path sent were signed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from embedguard import AuthenticationError
from embedguard.testing import EmbeddingServer, Fault, deterministic_vectors
from embedguard.testing._wire_bedrock import compact_rows

from ._bedrock import ENV, KEY_ID, REGION, SECRET, TOKEN, client

TEXTS = ["alpha", "beta", "gamma", "alpha"]


@pytest.fixture
def server() -> Iterator[EmbeddingServer]:
    """A loopback server that verifies SigV4 signatures made with SECRET."""
    with EmbeddingServer(require_key=SECRET) as srv:
        yield srv


def test_wire_details(server: EmbeddingServer) -> None:
    """Paths, bodies and the SigV4 header follow Bedrock: the model id in the path, no model in
    a Cohere body, a credential scoped to region and service bedrock, the body hash signed."""
    with client(server, dimensions=256) as titan, client(server, "cohere.embed-v4:0",
                                                         dimensions=512) as cohere:  # fmt: skip
        titan.embed(["x"])
        cohere.embed(["x"])
    first, second = server.requests
    assert first.path == "/bedrock/model/amazon.titan-embed-text-v2:0/invoke"
    assert first.body == {"inputText": "x", "dimensions": 256, "normalize": True}
    assert second.path == "/bedrock/model/cohere.embed-v4:0/invoke"
    assert second.body == {"texts": ["x"], "input_type": "search_document", "truncate": "NONE",
                           "output_dimension": 512}  # fmt: skip
    for request in server.requests:
        auth = request.headers["authorization"]
        day = request.headers["x-amz-date"][:8]
        assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={KEY_ID}/{day}/{REGION}/bedrock/")
        signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
        assert {"host", "x-amz-date", "x-amz-content-sha256"} <= set(signed)
        assert "x-amz-security-token" not in request.headers
        assert SECRET not in str(request.headers)


def test_the_model_id_is_sent_percent_encoded_as_botocore_does(server: EmbeddingServer) -> None:
    """An inference profile ARN is one path segment (``:`` and ``/`` encoded) and signs right."""
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.cohere.embed-v4:0"
    with client(server, arn) as c:
        c.embed(["x"])
        assert c._primary.codec.url.endswith(
            "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile"
            "%2Fus.cohere.embed-v4%3A0/invoke"
        )
    assert [r.status for r in server.requests] == [200]


def test_temporary_credentials_send_the_session_token(server: EmbeddingServer) -> None:
    """AWS_SESSION_TOKEN goes out as X-Amz-Security-Token, inside the signature."""
    with client(server, env={**ENV, "AWS_SESSION_TOKEN": TOKEN}) as c:
        c.embed(["x"])
    request = server.requests[0]
    assert request.status == 200 and request.headers["x-amz-security-token"] == TOKEN
    assert "x-amz-security-token" in request.headers["authorization"]


def test_a_bedrock_api_key_is_a_bearer_token_without_sigv4() -> None:
    """AWS_BEARER_TOKEN_BEDROCK is sent as Authorization: Bearer; nothing is signed."""
    with EmbeddingServer(require_key="bedrock-api-key-PLANTED-123") as srv:
        env = {"AWS_BEARER_TOKEN_BEDROCK": "bedrock-api-key-PLANTED-123"}
        with client(srv, env=env) as c:
            c.embed(["x"])
    request = srv.requests[0]
    assert request.headers["authorization"] == "Bearer bedrock-api-key-PLANTED-123"
    assert "x-amz-date" not in request.headers and request.status == 200


def test_each_attempt_is_signed_anew(server: EmbeddingServer, monkeypatch: Any) -> None:
    """A retried request is signed again: a later X-Amz-Date and another signature."""
    import datetime

    import botocore.auth

    ticks = iter(range(100))
    start = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)

    def clock(remove_tzinfo: bool = True) -> datetime.datetime:
        return start + datetime.timedelta(seconds=next(ticks))

    monkeypatch.setattr(botocore.auth, "get_current_datetime", clock)
    server.script(Fault.status(503))
    with client(server) as c:
        c.embed(["x"])
    first, retry = server.requests
    assert [first.status, retry.status] == [503, 200]
    assert retry.headers["x-amz-date"] > first.headers["x-amz-date"]
    assert retry.headers["authorization"] != first.headers["authorization"]


@pytest.mark.parametrize(
    ("env", "name"),
    [({"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": "wrong-secret"},
      "InvalidSignatureException"),
     ({"AWS_BEARER_TOKEN_BEDROCK": "not-the-key"}, "UnrecognizedClientException")],
    ids=["bad-signature", "bad-api-key"],
)  # fmt: skip
def test_rejected_credentials_are_authentication_errors(
    server: EmbeddingServer, env: dict[str, str], name: str
) -> None:
    """A signature made with the wrong secret, or a wrong API key: 403, not retried."""
    with client(server, env=env) as c, pytest.raises(AuthenticationError) as info:
        c.embed(["x"])
    assert info.value.status_code == 403 and info.value.code == name
    assert len(server.requests) == 1


# -- compact vector types ------------------------------------------------------------------------
@pytest.mark.parametrize(("dtype", "numpy_type"), [("binary", np.int8), ("ubinary", np.uint8)])
def test_titan_binary_is_packed_8_dimensions_per_byte(
    server: EmbeddingServer, dtype: str, numpy_type: type
) -> None:
    """Titan's one 0/1 per dimension comes back packed (MSB first); binary is the byte - 128."""
    with client(server, dimensions=256, dtype=dtype) as c:
        vectors = c.embed(["alpha", "beta"])
    assert server.requests[0].body["embeddingTypes"] == ["binary"]
    packed = np.packbits(deterministic_vectors(["alpha", "beta"], 256) > 0, axis=1).astype(int)
    expected = packed - 128 if dtype == "binary" else packed
    assert vectors.dtype == numpy_type and vectors.shape == (2, 32)
    np.testing.assert_array_equal(vectors.astype(int), expected)


@pytest.mark.parametrize(
    ("dtype", "numpy_type"),
    [("int8", np.int8), ("uint8", np.uint8), ("binary", np.int8), ("ubinary", np.uint8)],
)
def test_cohere_compact_types(server: EmbeddingServer, dtype: str, numpy_type: type) -> None:
    """Cohere's int8/uint8/binary/ubinary arrive exactly as sent, asked by embedding_types."""
    with client(server, "cohere.embed-v4:0", dimensions=256, dtype=dtype) as c:
        vectors = c.embed(TEXTS)
    assert server.requests[0].body["embedding_types"] == [dtype]
    expected = compact_rows(deterministic_vectors(TEXTS, 256), dtype)
    assert vectors.dtype == numpy_type
    np.testing.assert_array_equal(vectors.astype(int), expected)
