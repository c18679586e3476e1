"""The Bedrock codec without a server: model ids, URLs, region, credentials, errors, decoding."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from embedguard import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ContextLengthError,
    ModelNotFoundError,
    ProviderError,
    ProviderProfile,
    ProviderTimeoutError,
    QuotaExhaustedError,
    RateLimitError,
    ResponseValidationError,
    ServerError,
    profiles,
)
from embedguard.core.providers import make_codec
from embedguard.core.providers._bedrock_errors import bedrock_error
from embedguard.core.providers._bedrock_models import base_model_id, bedrock_model

SECRET = "PLANTED/unit+secret/key0123456789abcdef"
TOKEN = "PLANTED-unit-session-token-987654321"
ENV = {"AWS_ACCESS_KEY_ID": "AKIDUNITTEST0000", "AWS_SECRET_ACCESS_KEY": SECRET}


def codec(model: str = "amazon.titan-embed-text-v2:0", env: dict[str, str] | None = None,
          api_key: str | None = None, **changes: Any) -> Any:  # fmt: skip
    """A Bedrock codec for ``model`` in us-east-1 unless ``changes`` say otherwise."""
    changes.setdefault("region", "us-east-1")
    return make_codec(profiles.bedrock(model, **changes), api_key=api_key,
                      environ=ENV if env is None else env)  # fmt: skip


@pytest.fixture
def no_ambient_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """botocore's chain sees no variables, files, SSO or instance role of this machine."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return tmp_path


# -- model ids and URLs --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("amazon.titan-embed-text-v2:0", "titan-v2"),
        ("amazon.titan-embed-text-v1", "titan-v1"),
        ("amazon.titan-embed-g1-text-02", "titan-v1"),
        ("cohere.embed-english-v3", "cohere-v3"),
        ("cohere.embed-multilingual-v3", "cohere-v3"),
        ("cohere.embed-v4:0", "cohere-v4"),
        ("us.cohere.embed-v4:0", "cohere-v4"),
        ("global.cohere.embed-v4:0", "cohere-v4"),
        ("arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-embed-text-v2:0", "titan-v2"),
        ("arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.cohere.embed-v4:0",
         "cohere-v4"),
        ("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3", None),
        ("amazon.nova-2-multimodal-embeddings-v1:0", None),
        ("cohere.command-r-v1:0", None),
    ],
)  # fmt: skip
def test_model_families(model: str, family: str | None) -> None:
    """Base ids, inference profiles and ARNs naming a model resolve to its body family."""
    spec = bedrock_model(model)
    assert (spec.family if spec else None) == family


def test_an_unknown_model_is_a_configuration_error() -> None:
    """A model the codec cannot tell the body of is refused at construction, naming model."""
    with pytest.raises(ConfigurationError) as info:
        codec("arn:aws:bedrock:us-east-1:1:application-inference-profile/a1b2c3")
    assert info.value.field == "model"
    assert base_model_id("us.amazon.titan-embed-text-v2:0") == "amazon.titan-embed-text-v2:0"


@pytest.mark.parametrize(
    ("changes", "env", "url"),
    [
        ({}, {}, "https://bedrock-runtime.us-east-1.amazonaws.com/model/"
                 "amazon.titan-embed-text-v2%3A0/invoke"),
        ({"region": "cn-north-1"}, {}, "https://bedrock-runtime.cn-north-1.amazonaws.com.cn/"
                                       "model/amazon.titan-embed-text-v2%3A0/invoke"),
        ({"base_url": "https://vpce-1.bedrock-runtime.example.com/"}, {},
         "https://vpce-1.bedrock-runtime.example.com/model/amazon.titan-embed-text-v2%3A0/invoke"),
        ({}, {"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": "http://proxy.local:8080"},
         "http://proxy.local:8080/model/amazon.titan-embed-text-v2%3A0/invoke"),
    ],
    ids=["public", "china", "base_url", "endpoint-variable"],
)  # fmt: skip
def test_urls(changes: dict[str, Any], env: dict[str, str], url: str) -> None:
    """The host is the region's public endpoint unless base_url or the AWS variable says."""
    assert codec(env={**ENV, **env}, **changes).url == url


# -- region --------------------------------------------------------------------------------------
def test_region_order(no_ambient_aws: Path) -> None:
    """profile.region, then AWS_REGION, then AWS_DEFAULT_REGION, then the AWS config's."""
    (no_ambient_aws / "config").write_text("[profile team]\nregion = ap-south-1\n")
    env = {**ENV, "AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-west-2"}
    assert codec(env=env, region="us-west-2").region == "us-west-2"
    assert codec(env=env, region=None).region == "eu-west-1"
    env.pop("AWS_REGION")
    assert codec(env=env, region=None).region == "eu-west-2"
    env.pop("AWS_DEFAULT_REGION")
    assert codec(env={**env, "AWS_PROFILE": "team"}, region=None).region == "ap-south-1"


def test_no_region_is_a_configuration_error(no_ambient_aws: Path) -> None:
    """Without any region (and a host to build from it) the codec names the field."""
    with pytest.raises(ConfigurationError, match="AWS_REGION") as info:
        codec(region=None)
    assert info.value.field == "region"
    with pytest.raises(ConfigurationError) as bad:
        codec(region="us-east-1.evil.com/x")
    assert bad.value.field == "region"


def test_a_bearer_key_with_an_explicit_host_needs_no_region(no_ambient_aws: Path) -> None:
    """A Bedrock API key and base_url: no region is needed (nothing is signed)."""
    built = codec(env={}, api_key="k" * 20, region=None, base_url="http://127.0.0.1:9")
    assert built.region is None and "sigv4" not in repr(built)


# -- credentials ---------------------------------------------------------------------------------
def test_no_credentials_fail_the_first_request_not_the_constructor(no_ambient_aws: Path) -> None:
    """Credentials are resolved lazily; none anywhere is a ConfigurationError naming the ways."""
    built = codec(env={})
    with pytest.raises(ConfigurationError, match="AWS_ACCESS_KEY_ID") as info:
        built.build_request(["x"])
    assert info.value.field == "credentials"


def test_a_shared_credentials_profile_is_used(no_ambient_aws: Path) -> None:
    """AWS_PROFILE names a profile of the shared credentials file: its key signs."""
    (no_ambient_aws / "credentials").write_text(
        "[team]\naws_access_key_id = AKIDFROMFILE0000\naws_secret_access_key = file-secret\n"
    )
    request = codec(env={"AWS_PROFILE": "team"}).build_request(["x"])
    assert "Credential=AKIDFROMFILE0000/" in request.headers["Authorization"]


def test_signed_headers_cover_the_body() -> None:
    """X-Amz-Content-SHA256 is the body's hash, signed with host and X-Amz-Date."""
    import hashlib

    request = codec().build_request(["hello"])
    assert request.headers["X-Amz-Content-SHA256"] == hashlib.sha256(request.body).hexdigest()
    assert (
        "SignedHeaders=accept;content-type;host;x-amz-content-sha256;x-amz-date,"
        in (request.headers["Authorization"])
    )


def test_missing_botocore_is_a_configuration_error_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without botocore, SigV4 is refused naming embedguard[bedrock]; an API key still works."""
    for name in ("botocore.auth", "botocore.awsrequest", "botocore.session"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ConfigurationError, match=r"embedguard\[bedrock\]"):
        codec()
    request = codec(env={"AWS_BEARER_TOKEN_BEDROCK": "bedrock-key-0123"}).build_request(["x"])
    assert request.headers["Authorization"] == "Bearer bedrock-key-0123"


def test_secrets_stay_out_of_reprs_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    """The secret key, session token and signature are in no repr and no log record, even with
    botocore logging at DEBUG."""
    caplog.set_level(logging.DEBUG)
    built = codec(env={**ENV, "AWS_SESSION_TOKEN": TOKEN})
    request = built.build_request(["x"])
    signature = request.headers["Authorization"].rsplit("Signature=", 1)[1]
    shown = " ".join([repr(built), repr(request), repr(built._signer), caplog.text])
    for secret in (SECRET, TOKEN, signature):
        assert secret not in shown
    assert request.headers["X-Amz-Security-Token"] == TOKEN


# -- settings a family cannot honour -------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "changes", "field"),
    [
        ("amazon.titan-embed-text-v2:0", {"dimensions": 384}, "dimensions"),
        ("amazon.titan-embed-text-v1", {"dimensions": 1024}, "dimensions"),
        ("amazon.titan-embed-text-v2:0", {"dtype": "int8"}, "dtype"),
        ("amazon.titan-embed-text-v1", {"dtype": "binary"}, "dtype"),
        ("amazon.titan-embed-text-v2:0", {"batching": {"max_inputs": 2}}, "batching.max_inputs"),
        ("cohere.embed-english-v3", {"batching": {"max_inputs": 97}}, "batching.max_inputs"),
        ("cohere.embed-english-v3", {"dimensions": 512}, "dimensions"),
        ("cohere.embed-v4:0", {"compression": {"enabled": True}}, "compression.enabled"),
        ("amazon.titan-embed-text-v2:0", {"query_input_type": "search_query"}, "query_input_type"),
    ],
)  # fmt: skip
def test_settings_a_family_cannot_honour(model: str, changes: dict[str, Any], field: str) -> None:
    """Sizes, dtypes, batch sizes, gzip and input types a model cannot take fail at once."""
    with pytest.raises(ConfigurationError) as info:
        codec(model, **changes)
    assert info.value.field == field


def test_profile_defaults_follow_the_model_family() -> None:
    """Titan: one text per request, pool 16, 1024 d; Cohere v4: 96 texts, pool 8, 1536 d; the
    profile round-trips through TOML and rebases on a new model."""
    titan = profiles.bedrock(region="eu-west-1")
    assert (titan.batching.max_inputs, titan.pool_size, titan.dimensions) == (1, 16, 1024)
    cohere = titan.evolve(model="cohere.embed-v4:0")
    assert (cohere.batching.max_inputs, cohere.pool_size, cohere.dimensions) == (96, 8, 1536)
    assert cohere.region == "eu-west-1"
    assert ProviderProfile.from_toml(titan.to_toml()) == titan
    assert profiles.get("bedrock") == profiles.bedrock()


# -- errors --------------------------------------------------------------------------------------
def _error(status: int, name: str | None, message: str, key: str = "message") -> ProviderError:
    headers = {"x-amzn-RequestId": "0e9cb5ab-1fef-46eb-8e2c-773f0f60f39d"}
    if name:
        headers["x-amzn-ErrorType"] = f"{name}:http://internal.amazon.com/coral/com.amazon.bedrock/"
    body = orjson.dumps({key: message})
    return bedrock_error("bedrock", status, headers, body, secrets=(SECRET,))


@pytest.mark.parametrize(
    ("status", "name", "message", "kind", "retryable"),
    [
        (429, "ThrottlingException", "Too many requests", RateLimitError, True),
        (429, "ModelNotReadyException", "Model is not ready", ServerError, True),
        (400, "ServiceQuotaExceededException", "quota", QuotaExhaustedError, False),
        (400, "ValidationException", "The provided model identifier is invalid.",
         ModelNotFoundError, False),
        (400, "ValidationException", "400 Bad Request: Too many input tokens. Max input tokens: "
         "8192, request input token count: 9875", ContextLengthError, False),
        (400, "ValidationException", "Malformed input request: #/texts/0: expected maxLength: "
         "2048, actual: 3000", ContextLengthError, False),
        (400, "ValidationException", "Malformed input request, please reformat your input",
         BadRequestError, False),
        (404, "ResourceNotFoundException", "not found", ModelNotFoundError, False),
        (403, "AccessDeniedException", "no access", AuthenticationError, False),
        (403, "UnrecognizedClientException", "The security token included in the request is "
         "invalid.", AuthenticationError, False),
        (403, "ExpiredTokenException", "expired", AuthenticationError, False),
        (408, "ModelTimeoutException", "timed out", ProviderTimeoutError, True),
        (500, "InternalServerException", "oops", ServerError, True),
        (503, "ServiceUnavailableException", "busy", ServerError, True),
        (424, "ModelErrorException", "the model failed", ProviderError, False),
    ],
)  # fmt: skip
def test_error_types(status: int, name: str, message: str, kind: type, retryable: bool) -> None:
    """x-amzn-ErrorType decides the class (two kinds of 429, a 400 quota), with code and id."""
    error = _error(status, name, message)
    assert type(error) is kind and error.retryable is retryable
    assert error.code == name and error.status_code == status
    assert error.request_id == "0e9cb5ab-1fef-46eb-8e2c-773f0f60f39d"


def test_error_details() -> None:
    """{"Message"} is read too; secrets are redacted; without the header the status decides."""
    capital = _error(403, "AccessDeniedException", f"bad key {SECRET}", key="Message")
    assert "bad key ***" in capital.message and SECRET not in str(capital)
    assert type(_error(429, None, "slow down")) is RateLimitError
    assert type(_error(502, None, "bad gateway")) is ServerError


# -- decoding --------------------------------------------------------------------------------------
def _parse(built: Any, doc: Any, n: int = 1, dimensions: int | None = None,
           headers: dict[str, str] | None = None) -> Any:  # fmt: skip
    return built.parse_response(200, headers or {}, orjson.dumps(doc), n_inputs=n,
                                dimensions=dimensions)  # fmt: skip


def test_titan_tokens_from_the_body_cohere_tokens_from_the_header() -> None:
    """inputTextTokenCount (Titan) or X-Amzn-Bedrock-Input-Token-Count (Cohere) is the usage."""
    titan = _parse(codec(dimensions=256), {"embedding": [0.5] * 256, "inputTextTokenCount": 4})
    assert titan.prompt_tokens == 4 and titan.vectors.shape == (1, 256) and titan.model is None
    cohere = _parse(codec("cohere.embed-english-v3"), {"embeddings": [[0.1] * 8, [0.2] * 8]}, 2,
                    headers={"X-Amzn-Bedrock-Input-Token-Count": "7"})  # fmt: skip
    assert cohere.prompt_tokens == 7 and cohere.rate_limit is None


@pytest.mark.parametrize(
    ("model", "dtype", "doc", "n", "match"),
    [
        ("amazon.titan-embed-text-v2:0", "float32", {"message": "internal error"}, 1,
         "no 'embedding'"),
        ("amazon.titan-embed-text-v2:0", "float32", {"embedding": [[0.1, 0.2], [0.1, 0.2]]}, 1,
         "not a flat list"),
        ("amazon.titan-embed-text-v2:0", "ubinary", {"embeddingsByType": {"binary": [0, 2] * 4}},
         1, "other than 0 and 1"),
        ("amazon.titan-embed-text-v2:0", "ubinary", {"embeddingsByType": {"float": [0.1] * 8}},
         1, "embeddingsByType.binary"),
        ("cohere.embed-v4:0", "int8", {"embeddings": [[0.1, 0.2]]}, 1, "plain list"),
        ("cohere.embed-v4:0", "int8", {"embeddings": {"float": [[0.1, 0.2]]}}, 1,
         "no int8 embeddings"),
        ("cohere.embed-v4:0", "int8", {"embeddings": {"int8": [[1, 300]]}}, 1, "outside"),
        ("cohere.embed-v4:0", "uint8", {"embeddings": {"uint8": [[1.5, 3]]}}, 1, "whole numbers"),
        ("cohere.embed-english-v3", "float32", {"embeddings": [[0.1, 0.2]]}, 2, "1 embeddings"),
    ],
    ids=["error-doc", "nested", "bits", "no-binary", "floats-for-int8", "wrong-type",
         "range", "fraction", "count"],
)  # fmt: skip
def test_bad_bodies_are_never_vectors(model: str, dtype: str, doc: Any, n: int, match: str) -> None:
    """Whatever is not exactly the asked type, one vector per input, is a validation error."""
    built = codec(model, dtype=dtype, dimensions=None)
    with pytest.raises(ResponseValidationError, match=match):
        _parse(built, doc, n)


def test_titan_binary_packs_bits_most_significant_first() -> None:
    """Titan's 0/1 per dimension becomes one byte per 8 dimensions, MSB first."""
    bits = [1, 0, 0, 0, 0, 0, 0, 1] + [0] * 7 + [1]
    doc = {"embedding": [0.1] * 16, "embeddingsByType": {"binary": bits}}
    unsigned = _parse(codec(dtype="ubinary", dimensions=None), doc, dimensions=2)
    signed = _parse(codec(dtype="binary", dimensions=None), doc, dimensions=2)
    np.testing.assert_array_equal(unsigned.vectors, [[129, 1]])
    np.testing.assert_array_equal(signed.vectors, [[1, -127]])
