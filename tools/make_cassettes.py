#!/usr/bin/env python3
"""Write the vcrpy cassettes under ``cassettes/``, deterministically.

No live API is reachable where the tests run, so every cassette is authored in its API's documented
wire shape: the status line, the header set and the body bytes each provider sends (OpenAI's
pretty-printed JSON, Mistral's compact JSON, Ollama's ``/api/embed`` document, a vLLM server's
``id``/``created`` extras...), gzip-compressed where the provider compresses. Vectors are unit-norm
float32 values drawn from a seeded RNG; base64 vectors are little-endian float32. Request bodies are
exactly what embedguard sends; ``Authorization`` and ``api-key`` headers are left out, as vcrpy's
``filter_headers`` leaves them out of a recording. The files use vcrpy's own cassette format, so
vcrpy replays them unchanged.

Usage::

    python tools/make_cassettes.py              # rewrite cassettes/
    python tools/make_cassettes.py --out DIR    # write somewhere else
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import struct
import zlib
from collections.abc import Callable, Iterator
from hashlib import sha1
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
OPENAI = "https://api.openai.com/v1/embeddings"
AZURE = "https://embedguard-ci-swc.openai.azure.com"
AZURE_DEPLOYMENT = f"{AZURE}/openai/deployments/emb-3-small/embeddings?api-version=2024-10-21"
MISTRAL = "https://api.mistral.ai/v1/embeddings"
OLLAMA = "http://localhost:11434/api/embed"
VLLM = "http://localhost:8000/v1/embeddings"
LM_STUDIO = "http://localhost:1234/v1/embeddings"
TWO = [
    "Rotate the signing keys before the quarterly audit.",
    "The cache hit ratio fell after the schema migration.",
]
ONE = ["Invoices older than ninety days are archived to cold storage."]
CLOUDFLARE = {
    "Server": "cloudflare",
    "alt-svc": 'h3=":443"; ma=86400',
    "cf-cache-status": "DYNAMIC",
}

Json = dict[str, Any]
Cassettes = Iterator[tuple[str, list[Json]]]


# -- numbers and text -----------------------------------------------------------------------------
def unit_vectors(seed: int, n: int, d: int, dtype: Any = np.float32) -> np.ndarray:
    """``n`` unit-norm vectors of size ``d`` from a seeded RNG, as ``dtype``."""
    v = np.random.default_rng(seed).standard_normal((n, d))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(dtype)


def b64(vector: np.ndarray) -> str:
    """Standard base64 of the little-endian float32 bytes (``encoding_format=base64``)."""
    return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")


def f32_numpy(x: Any) -> str:
    """Shortest float32 text, Python style (``0.009219426``, ``-7.420513e-05``), as OpenAI."""
    return str(np.float32(x))


def f32_double(x: Any) -> str:
    """A float32 widened to double, printed in full (llama.cpp-based servers such as LM Studio)."""
    return repr(float(np.float32(x)))


def f16_exact(x: Any) -> str:
    """The exact decimal of a half-precision value, as Mistral sends (``-0.02264404296875``)."""
    return repr(float(x))


def f32_go(x: Any) -> str:
    """Go's encoding/json text for a float32 (Ollama): positional, ``1e-7`` style when tiny."""
    value = np.float32(x)
    if value != 0 and (abs(value) < 1e-6 or abs(value) >= 1e21):
        mantissa, exponent = np.format_float_scientific(value, unique=True, trim="-").split("e")
        return f"{mantissa}e{exponent[0]}{exponent[1:].lstrip('0')}"
    return np.format_float_positional(value, unique=True, trim="-")


def tokens(texts: list[str]) -> int:
    """A plausible token count for English sentences."""
    return sum(max(1, round(len(t.split()) * 1.35)) for t in texts)


def dump_json(obj: Any, fmt: Callable[[Any], str], indent: int | None = None, lvl: int = 0) -> str:
    """JSON with numpy scalars written by ``fmt``: compact, or pretty-printed with ``indent``."""
    if isinstance(obj, np.floating):
        return fmt(obj)
    if not (isinstance(obj, dict | list) and obj):
        return json.dumps(obj, ensure_ascii=False)
    colon = ":" if indent is None else ": "
    pairs = obj.items() if isinstance(obj, dict) else ((None, v) for v in obj)
    parts = [("" if k is None else json.dumps(k) + colon) + dump_json(v, fmt, indent, lvl + 1)
             for k, v in pairs]  # fmt: skip
    left, right = ("{", "}") if isinstance(obj, dict) else ("[", "]")
    if indent is None:
        return left + ",".join(parts) + right
    pad, end = " " * indent * (lvl + 1), " " * indent * lvl
    return f"{left}\n{pad}" + f",\n{pad}".join(parts) + f"\n{end}{right}"


def compact(obj: Any) -> str:
    """Compact JSON, as most servers write it."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def gzip_bytes(text: str) -> bytes:
    """Gzip with a fixed header (no name, no mtime, OS=Unix), as HTTP servers emit it."""
    raw = text.encode("utf-8")
    packer = zlib.compressobj(6, zlib.DEFLATED, -15)
    deflated = packer.compress(raw) + packer.flush()
    trailer = struct.pack("<II", zlib.crc32(raw), len(raw) & 0xFFFFFFFF)
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + deflated + trailer


class Ids:
    """Deterministic request ids, UUIDs and CF-Ray values."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def hex(self, n: int = 32) -> str:
        return "".join(self._rng.choice("0123456789abcdef") for _ in range(n))

    def uuid(self, version: int = 4, millis: int | None = None) -> str:
        h = self.hex() if millis is None else f"{millis:012x}{self.hex(20)}"
        variant = "89ab"[int(h[16], 16) % 4]
        return f"{h[:8]}-{h[8:12]}-{version}{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"

    def ray(self, pop: str) -> str:
        return f"{self.hex(16)}-{pop}"


# -- interactions ---------------------------------------------------------------------------------
def exchange(
    uri: str,
    body: Json,
    status: int,
    headers: dict[str, str],
    payload: str | bytes,
    reason: str = "",
) -> Json:
    """One vcrpy interaction: embedguard's request (no credentials) and the server's response.

    A ``bytes`` payload is a gzip body (``Content-Encoding: gzip``, chunked); a text payload gets
    its ``Content-Length``. vcrpy stores every header as a list (a bare string would replay one
    character per header).
    """
    text = compact(body)
    sent = {"accept": "application/json", "accept-encoding": "gzip, deflate",
            "connection": "keep-alive", "content-length": str(len(text.encode())),
            "content-type": "application/json", "host": urlsplit(uri).netloc,
            "user-agent": "embedguard/0.1.0"}  # fmt: skip
    headers = dict(headers)
    case = str.lower if all(name.islower() for name in headers) else str  # uvicorn: lower case
    if isinstance(payload, bytes):
        headers.update({case("Content-Encoding"): "gzip", case("Transfer-Encoding"): "chunked"})
    else:
        headers[case("Content-Length")] = str(len(payload.encode()))
    return {
        "request": {"body": text, "headers": _listed(sent), "method": "POST", "uri": uri},
        "response": {
            "body": {"string": payload},
            "headers": _listed(headers),
            "status": {"code": status, "message": reason or HTTPStatus(status).phrase},
        },
    }


def _listed(headers: dict[str, str]) -> dict[str, list[str]]:
    return {name: [value] for name, value in headers.items()}


def openai_doc(vectors: np.ndarray, texts: list[str], *, as_base64: bool) -> Json:
    data = [{"object": "embedding", "index": i, "embedding": b64(v) if as_base64 else list(v)}
            for i, v in enumerate(vectors)]  # fmt: skip
    usage = {"prompt_tokens": tokens(texts), "total_tokens": tokens(texts)}
    return {"object": "list", "data": data, "model": "text-embedding-3-small", "usage": usage}


def openai_headers(ids: Ids, date: str, *, error: bool = False, **extra: str) -> dict[str, str]:
    """OpenAI's edge headers; successes add the organisation, project and routing headers."""
    headers = {
        "Date": date, "Connection": "keep-alive", "CF-RAY": ids.ray("FRA"),
        "Content-Type": "application/json; charset=utf-8" if error else "application/json",
        "X-Content-Type-Options": "nosniff", "x-request-id": f"req_{ids.hex()}",
        "strict-transport-security": "max-age=31536000; includeSubDomains; preload",
        **CLOUDFLARE,
    }  # fmt: skip
    if error:
        headers["vary"] = "Origin"
    else:
        headers.update({
            "access-control-allow-origin": "*", "access-control-expose-headers": "X-Request-ID",
            "openai-organization": "embedguard-ci", "openai-version": "2020-10-01",
            "openai-project": "proj_Qm4xT7vLs2Rk9eWb1NcYh8Zd", "x-openai-proxy-wasm": "v0.1",
            "via": f"envoy-router-{ids.hex(10)}-{ids.hex(5)}",
        })  # fmt: skip
    return {**headers, **extra}


def openai_limits(requests: int, tokens: int, resets: tuple[str, str]) -> dict[str, str]:
    """``x-ratelimit-*`` headers; resets are Go durations (``12ms``, ``1.2s``)."""
    return {
        "x-ratelimit-limit-requests": "5000", "x-ratelimit-limit-tokens": "5000000",
        "x-ratelimit-remaining-requests": str(requests),
        "x-ratelimit-remaining-tokens": str(tokens),
        "x-ratelimit-reset-requests": resets[0], "x-ratelimit-reset-tokens": resets[1],
    }  # fmt: skip


def openai_ok(
    body: Json, ids: Ids, date: str, doc: Json, *, gz: bool = False, ms: int = 41
) -> Json:
    used = doc["usage"]["prompt_tokens"]
    headers = openai_headers(ids, date, **openai_limits(4999, 5_000_000 - used, ("12ms", "0s")),
                             **{"openai-model": doc["model"], "openai-processing-ms": str(ms),
                                "x-envoy-upstream-service-time": str(ms - 4)})  # fmt: skip
    text = dump_json(doc, f32_numpy, indent=2)
    return exchange(OPENAI, body, 200, headers, gzip_bytes(text) if gz else text)


def openai_error(message: str, type_: str, code: str | None, *, indent: int = 2) -> str:
    error = {"message": message, "type": type_, "param": None, "code": code}
    return json.dumps({"error": error}, indent=indent) + ("\n" if indent == 4 else "")


# -- cassettes ------------------------------------------------------------------------------------
def openai_cassettes() -> Cassettes:
    small = {"model": "text-embedding-3-small", "encoding_format": "float", "dimensions": 256}
    two, one = {"input": TWO, **small}, {"input": ONE, **small}
    doc = openai_doc(unit_vectors(1, 2, 256), TWO, as_base64=False)
    yield (
        "openai/embed_float_dims256.yaml",
        [openai_ok(two, Ids(101), "Tue, 14 Oct 2025 09:12:44 GMT", doc)],
    )
    native = {"input": TWO, "model": "text-embedding-3-small", "encoding_format": "base64"}
    doc = openai_doc(unit_vectors(2, 2, 1536), TWO, as_base64=True)
    yield (
        "openai/embed_base64_gzip.yaml",
        [openai_ok(native, Ids(102), "Tue, 14 Oct 2025 09:13:02 GMT", doc, gz=True, ms=58)],
    )

    ids, date = Ids(103), "Tue, 14 Oct 2025 09:20:31 GMT"
    org = "Rate limit reached for text-embedding-3-small in organization org-Hq3vN8sKe2LmYt6WcR1bXz"
    visit = "Visit https://platform.openai.com/account/rate-limits to learn more."
    tpm = f"{org} on tokens per min (TPM): Limit 5000000, Used 4999990, Requested 12. Please try again in 20ms. {visit}"  # noqa: E501
    rpm = f"{org} on requests per min (RPM): Limit 5000, Used 5000, Requested 1. Please try again in 10ms. {visit}"  # noqa: E501
    hinted = {"retry-after": "1", "retry-after-ms": "10"}
    yield "openai/rate_limited_then_ok.yaml", [
        exchange(OPENAI, one, 429, openai_headers(ids, date, error=True, **openai_limits(
            4990, 10, ("1.2s", "20ms"))), openai_error(tpm, "tokens", "rate_limit_exceeded")),
        exchange(OPENAI, one, 429, openai_headers(ids, date, error=True, **hinted, **openai_limits(
            0, 4_999_800, ("10ms", "2ms"))), openai_error(rpm, "requests", "rate_limit_exceeded")),
        openai_ok(one, ids, date, openai_doc(unit_vectors(3, 1, 256), ONE, as_base64=False), ms=37),
    ]  # fmt: skip

    long_input = {"input": [" ".join(["Appendix B lists every sensor reading."] * 16)], **small}
    too_long = "Invalid 'input': maximum context length is 8192 tokens."
    yield "openai/context_length_400.yaml", [
        exchange(OPENAI, long_input, 400, openai_headers(Ids(104), "Tue, 14 Oct 2025 09:31:07 GMT",
                 error=True), openai_error(too_long, "invalid_request_error", None)),
    ]  # fmt: skip
    wrong_key = "Incorrect API key provided: sk-proj-************************************************Xk9Q. You can find your API key at https://platform.openai.com/account/api-keys."  # noqa: E501
    yield "openai/invalid_api_key_401.yaml", [
        exchange(OPENAI, one, 401, openai_headers(Ids(105), "Tue, 14 Oct 2025 09:33:50 GMT",
                 error=True), openai_error(wrong_key, "invalid_request_error", "invalid_api_key",
                                           indent=4)),
    ]  # fmt: skip
    typo = {"input": ONE, "model": "text-embedding-3-smal", "encoding_format": "base64"}
    unknown = "The model `text-embedding-3-smal` does not exist or you do not have access to it."
    yield "openai/model_not_found_404.yaml", [
        exchange(OPENAI, typo, 404, openai_headers(Ids(106), "Tue, 14 Oct 2025 09:35:12 GMT",
                 error=True), openai_error(unknown, "invalid_request_error", "model_not_found")),
    ]  # fmt: skip

    ids, date = Ids(107), "Tue, 14 Oct 2025 09:40:03 GMT"
    failed = openai_headers(ids, date, error=True)
    sorry = (
        "The server had an error processing your request. Sorry about that! You can retry your "
        "request, or contact us through our help center at help.openai.com if you keep seeing "
        f"this error. (Please include the request ID {failed['x-request-id']} in your email.)"
    )
    yield "openai/server_error_then_ok.yaml", [
        exchange(OPENAI, one, 500, failed, openai_error(sorry, "server_error", None)),
        openai_ok(one, ids, date, openai_doc(unit_vectors(7, 1, 256), ONE, as_base64=False), ms=45),
    ]  # fmt: skip
    quota = "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors."  # noqa: E501
    yield "openai/insufficient_quota_429.yaml", [
        exchange(OPENAI, one, 429, openai_headers(Ids(108), "Tue, 14 Oct 2025 09:44:40 GMT",
                 error=True), openai_error(quota, "insufficient_quota", "insufficient_quota")),
    ]  # fmt: skip


def azure_headers(ids: Ids, date: str, remaining: tuple[int, int]) -> dict[str, str]:
    """A deployment's 200 headers: APIM ids, region, remaining requests and tokens."""
    apim = ids.uuid()
    return {
        "Content-Type": "application/json", "Date": date,
        "Strict-Transport-Security": "max-age=31536000; includeSubDomains; preload",
        "access-control-allow-origin": "*", "apim-request-id": apim,
        "azureml-model-session": "d107-20250919043119", "x-content-type-options": "nosniff",
        "x-ms-client-request-id": apim, "x-ms-region": "Sweden Central",
        "x-ratelimit-remaining-requests": str(remaining[0]),
        "x-ratelimit-remaining-tokens": str(remaining[1]), "x-request-id": ids.uuid(),
    }  # fmt: skip


def azure_cassettes() -> Cassettes:
    fields = {"encoding_format": "base64", "dimensions": 256}
    doc = openai_doc(unit_vectors(11, 2, 256), TWO, as_base64=True)
    ok = azure_headers(Ids(201), "Wed, 15 Oct 2025 07:02:18 GMT", (349, 349_976))
    yield (
        "azure/deployment_ok.yaml",
        [
            exchange(
                AZURE_DEPLOYMENT, {"input": TWO, **fields}, 200, ok, dump_json(doc, f32_numpy, 2)
            )
        ],
    )
    denied = (
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide "
        "a valid key for an active subscription and use a correct regional API endpoint for your "
        "resource."
    )
    bare = {"Content-Type": "application/json", "Date": "Wed, 15 Oct 2025 07:04:51 GMT",
            "apim-request-id": Ids(202).uuid()}  # fmt: skip
    yield "azure/deployment_401.yaml", [
        exchange(AZURE_DEPLOYMENT, {"input": TWO, **fields}, 401, bare,
                 compact({"error": {"code": "401", "message": denied}}), "PermissionDenied"),
    ]  # fmt: skip

    ids, date = Ids(203), "Wed, 15 Oct 2025 07:06:09 GMT"
    throttled = {**azure_headers(ids, date, (0, 349_712)), "retry-after": "1",
                 "retry-after-ms": "15", "policy-id": "DeploymentRatelimit-Request"}  # fmt: skip
    for name in ("access-control-allow-origin", "azureml-model-session", "x-request-id"):
        del throttled[name]
    message = (
        "Requests to the Embeddings_Create Operation under Azure OpenAI API version 2024-10-21 "
        "have exceeded call rate limit of your current OpenAI S0 pricing tier. Please retry after "
        "1 second. Please go here: https://aka.ms/oai/quotaincrease if you would like to further "
        "increase the default rate limit."
    )
    doc = openai_doc(unit_vectors(13, 1, 256), ONE, as_base64=True)
    yield "azure/deployment_429_then_ok.yaml", [
        exchange(AZURE_DEPLOYMENT, {"input": ONE, **fields}, 429, throttled,
                 compact({"error": {"code": "429", "message": message}})),
        exchange(AZURE_DEPLOYMENT, {"input": ONE, **fields}, 200,
                 azure_headers(ids, date, (348, 349_700)), dump_json(doc, f32_numpy, 2)),
    ]  # fmt: skip
    v1 = {"input": TWO, "model": "text-embedding-3-small", "encoding_format": "float",
          "dimensions": 256}  # fmt: skip
    doc = openai_doc(unit_vectors(14, 2, 256), TWO, as_base64=False)
    yield "azure/v1_ok.yaml", [
        exchange(f"{AZURE}/openai/v1/embeddings", v1, 200, azure_headers(
            Ids(204), "Wed, 15 Oct 2025 07:10:44 GMT", (347, 349_680)),
            dump_json(doc, f32_numpy, 2))
    ]  # fmt: skip


def mistral_headers(ids: Ids, date: str, millis: int, remaining: tuple[int, int]) -> Json:
    """Mistral's gateway headers: correlation id (UUIDv7), Kong timings, per-minute limits."""
    correlation = ids.uuid(7, millis)
    return {
        "CF-RAY": ids.ray("CDG"), "Connection": "keep-alive", "Content-Type": "application/json",
        "Date": date, "Strict-Transport-Security": "max-age=15552000; includeSubDomains",
        "access-control-allow-origin": "*", "mistral-correlation-id": correlation,
        "x-envoy-upstream-service-time": "96", "x-kong-proxy-latency": "4",
        "x-kong-request-id": correlation, "x-kong-upstream-latency": "97",
        "x-ratelimit-limit-req-minute": "60", "x-ratelimit-limit-tokens-minute": "20000000",
        "x-ratelimit-limit-tokens-month": "200000000000",
        "x-ratelimit-remaining-req-minute": str(remaining[0]),
        "x-ratelimit-remaining-tokens-minute": str(remaining[1]),
        "x-ratelimit-remaining-tokens-month": str(199_999_000_000 + remaining[1] % 1_000_000),
        **CLOUDFLARE,
    }  # fmt: skip


def mistral_body(ids: Ids, vectors: np.ndarray, texts: list[str]) -> bytes:
    """Compact JSON (``id``, ``object, embedding, index`` items, null usage extras), gzipped."""
    used = tokens(texts)
    data = [
        {"object": "embedding", "embedding": list(v), "index": i} for i, v in enumerate(vectors)
    ]
    usage = {"prompt_audio_seconds": None, "prompt_tokens": used, "total_tokens": used,
             "completion_tokens": 0, "request_count": None, "prompt_tokens_details": None,
             "completion_tokens_details": None, "service_tier": None}  # fmt: skip
    doc = {
        "id": ids.hex(),
        "object": "list",
        "data": data,
        "model": "mistral-embed",
        "usage": usage,
    }
    return gzip_bytes(dump_json(doc, f16_exact))


def mistral_cassettes() -> Cassettes:
    two = {"input": TWO, "model": "mistral-embed", "encoding_format": "float"}
    ids = Ids(301)
    ok = mistral_headers(ids, "Thu, 16 Oct 2025 13:25:09 GMT", 1_760_621_109_000, (59, 19_999_972))
    body = mistral_body(ids, unit_vectors(21, 2, 1024, np.float16), TWO)
    yield (
        "mistral/embed_gzip.yaml",
        [exchange(MISTRAL, two, 200, {**ok, "x-ratelimit-tokens-query-cost": "28"}, body)],
    )
    ids = Ids(302)
    kong = ids.hex()
    gateway = {"CF-RAY": ids.ray("CDG"), "Connection": "keep-alive",
               "Content-Type": "application/json; charset=utf-8",
               "Date": "Thu, 16 Oct 2025 13:27:40 GMT", "WWW-Authenticate": 'Key realm="kong"',
               "x-kong-request-id": kong, "x-kong-response-latency": "0", **CLOUDFLARE}  # fmt: skip
    yield (
        "mistral/unauthorized_401.yaml",
        [
            exchange(
                MISTRAL, two, 401, gateway, compact({"message": "Unauthorized", "request_id": kong})
            )
        ],
    )

    ids, date = Ids(303), "Thu, 16 Oct 2025 13:30:12 GMT"
    one = {"input": ONE, "model": "mistral-embed", "encoding_format": "float"}
    limited = mistral_headers(ids, date, 1_760_621_412_000, (0, 19_999_120))
    error = {"object": "error", "message": "Rate limit exceeded", "type": "rate_limited",
             "param": None, "code": "1300", "raw_status_code": 429}  # fmt: skip
    ok = mistral_headers(ids, date, 1_760_621_412_300, (59, 19_999_108))
    body = mistral_body(ids, unit_vectors(23, 1, 1024, np.float16), ONE)
    yield (
        "mistral/rate_limited_then_ok.yaml",
        [
            exchange(MISTRAL, one, 429, limited, compact(error)),
            exchange(MISTRAL, one, 200, {**ok, "x-ratelimit-tokens-query-cost": "12"}, body),
        ],
    )


def local_cassettes() -> Cassettes:
    go = {
        "Content-Type": "application/json; charset=utf-8",
        "Date": "Fri, 17 Oct 2025 08:00:02 GMT",
    }
    doc = {"model": "all-minilm", "embeddings": [list(v) for v in unit_vectors(31, 2, 384)],
           "total_duration": 41_260_917, "load_duration": 1_019_500,
           "prompt_eval_count": tokens(TWO)}  # fmt: skip
    yield "ollama/embed_ok.yaml", [
        exchange(OLLAMA, {"input": TWO, "model": "all-minilm"}, 200,
                 {**go, "Transfer-Encoding": "chunked"}, dump_json(doc, f32_go)),
    ]  # fmt: skip
    missing = compact({"error": 'model "nomic-embed-txt" not found, try pulling it first'})
    yield (
        "ollama/model_not_found_404.yaml",
        [exchange(OLLAMA, {"input": TWO, "model": "nomic-embed-txt"}, 404, go, missing)],
    )

    model, ids = "BAAI/bge-small-en-v1.5", Ids(501)
    used = tokens(TWO) + 4  # BERT-style tokenizers add [CLS] and [SEP]
    data = [{"index": i, "object": "embedding", "embedding": b64(v)}
            for i, v in enumerate(unit_vectors(41, 2, 384))]  # fmt: skip
    usage = {"prompt_tokens": used, "total_tokens": used, "completion_tokens": 0,
             "prompt_tokens_details": None}  # fmt: skip
    vllm = {"id": f"embd-{ids.hex()}", "object": "list", "created": 1_760_688_210, "model": model,
            "data": data, "usage": usage}  # fmt: skip
    uvicorn = {"date": "Fri, 17 Oct 2025 08:03:30 GMT", "server": "uvicorn",
               "content-type": "application/json"}  # fmt: skip
    asked = {"input": TWO, "model": model, "encoding_format": "base64"}
    yield "openai_compatible/vllm_base64.yaml", [exchange(VLLM, asked, 200, uvicorn, compact(vllm))]
    refusal = (
        f'Model "{model}" does not support matryoshka representation, changing output dimensions '
        "will lead to poor results."
    )
    error = {"error": {"message": refusal, "type": "BadRequestError", "param": None, "code": 400}}
    yield (
        "openai_compatible/vllm_400.yaml",
        [exchange(VLLM, {**asked, "dimensions": 256}, 400, uvicorn, compact(error))],
    )

    nomic = "text-embedding-nomic-embed-text-v1.5"
    data = [{"object": "embedding", "embedding": list(v), "index": i}
            for i, v in enumerate(unit_vectors(51, 1, 768))]  # fmt: skip
    usage = {"prompt_tokens": 0, "total_tokens": 0}
    text = dump_json(
        {"object": "list", "data": data, "model": nomic, "usage": usage}, f32_double, 2
    )
    etag = base64.b64encode(sha1(text.encode()).digest()).decode()[:27]
    express = {"X-Powered-By": "Express", "Access-Control-Allow-Origin": "*",
               "Access-Control-Allow-Headers": "*",
               "Content-Type": "application/json; charset=utf-8",
               "ETag": f'W/"{len(text):x}-{etag}"', "Date": "Fri, 17 Oct 2025 08:05:51 GMT",
               "Connection": "keep-alive", "Keep-Alive": "timeout=5"}  # fmt: skip
    asked = {"input": ONE, "model": nomic, "encoding_format": "base64"}
    yield (
        "openai_compatible/lmstudio_float_for_base64.yaml",
        [exchange(LM_STUDIO, asked, 200, express, text)],
    )


# -- writing --------------------------------------------------------------------------------------
class _Dumper(yaml.SafeDumper):
    """Block style; multi-line strings (pretty JSON bodies) as literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def cassettes() -> dict[str, str]:
    """Every cassette: path relative to ``cassettes/`` -> YAML text."""
    out: dict[str, str] = {}
    for group in (openai_cassettes, azure_cassettes, mistral_cassettes, local_cassettes):
        for path, interactions in group():
            doc = {"interactions": interactions, "version": 1}
            out[path] = yaml.dump(
                doc, Dumper=_Dumper, sort_keys=True, allow_unicode=True, width=100
            )
    return out


def write_cassettes(
    written: Callable[[], dict[str, str]], argv: list[str] | None, doc: str | None
) -> int:
    """A generator's command line: write what ``written()`` returns under ``--out``."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "cassettes")
    args = parser.parse_args(argv)
    for path, text in written().items():
        target = args.out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Write every cassette under ``--out`` (default: the repository's ``cassettes/``)."""
    return write_cassettes(cassettes, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
