#!/usr/bin/env python3
"""Write the Amazon Bedrock vcrpy cassettes under ``cassettes/bedrock/``, deterministically.

Authored in Bedrock's InvokeModel wire shape, as ``API_SHAPES_MORE.md`` §4 and the real recordings
show it: compact JSON bodies (Titan's floats printed as float32 widened to double, Cohere's
half-precision values printed as float32); 200 headers ``x-amzn-RequestId``,
``X-Amzn-Bedrock-Invocation-Latency`` and ``X-Amzn-Bedrock-Input-Token-Count`` and nothing about
rate limits; errors ``{"message": ...}`` with the exception in ``x-amzn-ErrorType``. Requests are
what embedguard sends (the model id percent-encoded in the path, the SigV4 ``X-Amz-Date`` and
``X-Amz-Content-SHA256`` headers) without ``Authorization`` (the signature), as vcrpy's
``filter_headers`` leaves it out. Bedrock answers a bad or unknown credential with 403
(``UnrecognizedClientException``), never 401.

Usage::

    python tools/make_cassettes_bedrock.py              # rewrite cassettes/bedrock/
    python tools/make_cassettes_bedrock.py --out DIR    # write somewhere else
"""

from __future__ import annotations

import hashlib
import sys
from http import HTTPStatus
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_cassettes import (
    Ids,
    _Dumper,
    _listed,
    compact,
    dump_json,
    f32_double,
    f32_numpy,
    unit_vectors,
    write_cassettes,
)

HOST = "bedrock-runtime.us-east-1.amazonaws.com"
TITAN_V2 = f"https://{HOST}/model/amazon.titan-embed-text-v2%3A0/invoke"
TITAN_V1 = f"https://{HOST}/model/amazon.titan-embed-text-v1/invoke"
COHERE_V3 = f"https://{HOST}/model/cohere.embed-english-v3/invoke"
COHERE_V4 = f"https://{HOST}/model/us.cohere.embed-v4%3A0/invoke"
DATE = "Wed, 15 Oct 2025 10:02:11 GMT"
AMZ_DATE = "20251015T100211Z"
ONE = "Invoices older than ninety days are archived to cold storage."
TWO = [
    "Rotate the signing keys before the quarterly audit.",
    "The cache hit ratio fell after the schema migration.",
]
QUERY = "Which invoices go to cold storage?"
# A hex dump: about 6,000 tokens to embedguard's estimate, over 8,192 to Titan's tokenizer.
LONG = "".join(hashlib.sha256(str(i).encode()).hexdigest() for i in range(280))
CORAL = "http://internal.amazon.com/coral/com.amazon.bedrock/"
CORAL_SERVICE = "http://internal.amazon.com/coral/com.amazon.coral.service/"

Json = dict[str, Any]


def words(texts: list[str]) -> int:
    """A plausible token count for English sentences."""
    return sum(max(1, round(len(t.split()) * 1.3)) for t in texts)


def exchange(uri: str, body: Json, status: int, headers: dict[str, str], payload: str) -> Json:
    """One interaction: embedguard's signed request without ``Authorization``, and the reply."""
    text = compact(body)
    sent = {"accept": "application/json", "accept-encoding": "gzip, deflate",
            "connection": "keep-alive", "content-length": str(len(text.encode())),
            "content-type": "application/json", "host": HOST, "user-agent": "embedguard/0.1.0",
            "x-amz-content-sha256": hashlib.sha256(text.encode()).hexdigest(),
            "x-amz-date": AMZ_DATE}  # fmt: skip
    answered = {"Date": DATE, "Content-Type": "application/json",
                "Content-Length": str(len(payload.encode())), "Connection": "keep-alive",
                **headers}  # fmt: skip
    return {
        "request": {"body": text, "headers": _listed(sent), "method": "POST", "uri": uri},
        "response": {
            "body": {"string": payload},
            "headers": _listed(answered),
            "status": {"code": status, "message": HTTPStatus(status).phrase},
        },
    }


def ok(ids: Ids, tokens: int, latency: int) -> dict[str, str]:
    """A 200's headers after the framing ones (the order the recordings show)."""
    return {"x-amzn-RequestId": ids.uuid(), "X-Amzn-Bedrock-Invocation-Latency": str(latency),
            "X-Amzn-Bedrock-Input-Token-Count": str(tokens)}  # fmt: skip


def failed(ids: Ids, name: str, namespace: str = CORAL) -> dict[str, str]:
    """An error's headers: the request id and the exception name."""
    return {"x-amzn-RequestId": ids.uuid(), "x-amzn-ErrorType": f"{name}:{namespace}"}


def message(text: str) -> str:
    """Bedrock's error body."""
    return compact({"message": text})


def titan_body(vector: np.ndarray, tokens: int, *, by_type: bool = True) -> str:
    """Titan's answer: ``embedding`` (+ ``embeddingsByType.float`` on v2) and the token count."""
    doc: Json = {"embedding": list(vector)}
    if by_type:
        doc["embeddingsByType"] = {"float": list(vector)}
    doc["inputTextTokenCount"] = tokens
    return dump_json(doc, f32_double)


def titan_cassettes() -> Any:
    """Titan v2 floats (one text, two texts), v2 binary, v1, and the errors seen on Titan."""
    v2 = {"dimensions": 256, "normalize": True}
    ids = Ids(901)
    one = unit_vectors(901, 1, 256)[0]
    yield "bedrock/titan_v2_float_dims256.yaml", [
        exchange(TITAN_V2, {"inputText": ONE, **v2}, 200, ok(ids, words([ONE]), 71),
                 titan_body(one, words([ONE]))),
    ]  # fmt: skip
    ids = Ids(902)
    pair = unit_vectors(902, 2, 256)
    yield "bedrock/titan_v2_two_texts.yaml", [
        exchange(TITAN_V2, {"inputText": text, **v2}, 200, ok(ids, words([text]), 64 + i),
                 titan_body(vector, words([text])))
        for i, (text, vector) in enumerate(zip(TWO, pair, strict=True))
    ]  # fmt: skip
    ids = Ids(903)
    bits = (unit_vectors(903, 1, 256)[0] > 0).astype(int).tolist()
    body = compact({"embeddingsByType": {"binary": bits}, "inputTextTokenCount": words([ONE])})
    yield "bedrock/titan_v2_binary.yaml", [
        exchange(TITAN_V2, {"inputText": ONE, **v2, "embeddingTypes": ["binary"]}, 200,
                 ok(ids, words([ONE]), 69), body),
    ]  # fmt: skip
    ids = Ids(904)
    raw = unit_vectors(904, 1, 1536)[0] * np.float32(19.2)  # v1 vectors are not normalised
    yield "bedrock/titan_v1_ok.yaml", [
        exchange(TITAN_V1, {"inputText": ONE}, 200, ok(ids, words([ONE]), 88),
                 titan_body(raw, words([ONE]), by_type=False)),
    ]  # fmt: skip
    ids = Ids(905)
    slow = message("Too many requests, please wait before trying again.")
    yield "bedrock/titan_throttled_then_ok.yaml", [
        exchange(TITAN_V2, {"inputText": ONE, **v2}, 429, failed(ids, "ThrottlingException"),
                 slow),
        exchange(TITAN_V2, {"inputText": ONE, **v2}, 200, ok(ids, words([ONE]), 73),
                 titan_body(unit_vectors(905, 1, 256)[0], words([ONE]))),
    ]  # fmt: skip
    ids = Ids(906)
    too_long = ("400 Bad Request: Too many input tokens. Max input tokens: 8192, request input "
                "token count: 9012")  # fmt: skip
    yield "bedrock/titan_too_many_tokens_400.yaml", [
        exchange(TITAN_V2, {"inputText": LONG, **v2}, 400, failed(ids, "ValidationException"),
                 message(too_long)),
    ]  # fmt: skip
    ids = Ids(907)
    yield "bedrock/unrecognized_client_403.yaml", [
        exchange(TITAN_V2, {"inputText": ONE, **v2}, 403,
                 failed(ids, "UnrecognizedClientException", CORAL_SERVICE),
                 message("The security token included in the request is invalid.")),
    ]  # fmt: skip
    ids = Ids(908)
    yield "bedrock/access_denied_403.yaml", [
        exchange(TITAN_V1, {"inputText": ONE}, 403, failed(ids, "AccessDeniedException"),
                 message("You don't have access to the model with the specified model ID.")),
    ]  # fmt: skip


def cohere_cassettes() -> Any:
    """Cohere v3 documents (a bare float list), v4 by type, and the errors seen on Cohere."""
    ids = Ids(911)
    halves = unit_vectors(911, 2, 1024, np.float16).astype(np.float32)
    asked = {"texts": TWO, "input_type": "search_document", "truncate": "NONE"}
    doc = {"embeddings": [list(v) for v in halves], "id": ids.uuid(),
           "response_type": "embeddings_floats", "texts": [t.lower() for t in TWO]}  # fmt: skip
    yield "bedrock/cohere_v3_documents.yaml", [
        exchange(COHERE_V3, asked, 200, ok(ids, words(TWO), 271), dump_json(doc, f32_numpy)),
    ]  # fmt: skip
    ids = Ids(912)
    floats = unit_vectors(912, 1, 512)
    scaled = np.rint(floats / np.abs(floats).max(axis=1, keepdims=True) * 127).astype(int)
    asked = {"texts": [QUERY], "input_type": "search_query", "truncate": "NONE",
             "embedding_types": ["int8"], "output_dimension": 512}  # fmt: skip
    doc = {"id": ids.uuid(), "texts": [QUERY], "embeddings": {"int8": scaled.tolist()},
           "response_type": "embeddings_by_type"}  # fmt: skip
    yield "bedrock/cohere_v4_query_int8.yaml", [
        exchange(COHERE_V4, asked, 200, ok(ids, words([QUERY]), 108), compact(doc)),
    ]  # fmt: skip
    ids = Ids(913)
    asked = {"texts": [ONE], "input_type": "search_document", "truncate": "NONE"}
    halves = unit_vectors(913, 1, 1024, np.float16).astype(np.float32)
    doc = {"embeddings": [list(v) for v in halves], "id": ids.uuid(),
           "response_type": "embeddings_floats", "texts": [ONE.lower()]}  # fmt: skip
    yield "bedrock/cohere_model_not_ready_then_ok.yaml", [
        exchange(COHERE_V3, asked, 429, failed(ids, "ModelNotReadyException"),
                 message("Model is not ready for inference. Wait and try your request again.")),
        exchange(COHERE_V3, asked, 503, failed(ids, "ServiceUnavailableException"),
                 message("Bedrock is unable to process your request.")),
        exchange(COHERE_V3, asked, 500, failed(ids, "InternalServerException"),
                 message("The server encountered an internal error while processing the "
                         "request.")),
        exchange(COHERE_V3, asked, 200, ok(ids, words([ONE]), 240), dump_json(doc, f32_numpy)),
    ]  # fmt: skip
    ids = Ids(914)
    asked = {"texts": [QUERY], "input_type": "search_query", "truncate": "NONE"}
    yield "bedrock/service_quota_exceeded_400.yaml", [
        exchange(COHERE_V3, asked, 400, failed(ids, "ServiceQuotaExceededException"),
                 message("Your request exceeds the service quota for your account. You can view "
                         "your quotas at Viewing service quotas. You can resubmit your request "
                         "later.")),
    ]  # fmt: skip
    ids = Ids(915)
    asked = {"texts": [QUERY], "input_type": "search_query", "truncate": "NONE",
             "output_dimension": 512}  # fmt: skip
    yield "bedrock/resource_not_found_404.yaml", [
        exchange(COHERE_V4, asked, 404, failed(ids, "ResourceNotFoundException"),
                 message("Model not found.")),
    ]  # fmt: skip
    ids = Ids(916)
    unknown = f"https://{HOST}/model/amazon.titan-embed-text-v2%3A9/invoke"
    asked = {"inputText": ONE, "dimensions": 1024, "normalize": True}
    yield "bedrock/invalid_model_id_400.yaml", [
        exchange(unknown, asked, 400, failed(ids, "ValidationException"),
                 message("The provided model identifier is invalid.")),
    ]  # fmt: skip


def cassettes() -> dict[str, str]:
    """Every Bedrock cassette: path relative to ``cassettes/`` -> YAML text."""
    out: dict[str, str] = {}
    for group in (titan_cassettes, cohere_cassettes):
        for path, interactions in group():
            doc = {"interactions": interactions, "version": 1}
            out[path] = yaml.dump(doc, Dumper=_Dumper, sort_keys=True, allow_unicode=True,
                                  width=100)  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    """Write every Bedrock cassette under ``--out`` (default: the repository's ``cassettes/``)."""
    return write_cassettes(cassettes, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
