#!/usr/bin/env python3
"""Write the Gemini API cassettes under ``cassettes/gemini/``, deterministically.

Authored in the Gemini API's documented wire shape (API_SHAPES_MORE.md §3): the
``batchEmbedContents`` request embedguard sends (the model repeated in every entry, ``taskType``
and ``outputDimensionality`` per entry), the reply pretty-printed with two-space indents as
Google's front end writes it, its header set (``server: scaffolding on HTTPServer2``, no request
id, no rate-limit header, no ``Retry-After``), and Google RPC error envelopes: a bad key as a 400
``INVALID_ARGUMENT`` with ``ErrorInfo.reason: API_KEY_INVALID``, the 429 wait in
``google.rpc.RetryInfo``. gemini-embedding-001 vectors below 3072 dimensions are not unit-length
(about 0.58 at 768, as measured on real replies); gemini-embedding-2 adds ``usageMetadata``.
Requests carry no ``x-goog-api-key`` (a recorder filters it). Helpers come from
``make_cassettes.py``.

Usage::

    python tools/make_cassettes_gemini.py              # rewrite cassettes/gemini/
    python tools/make_cassettes_gemini.py --out DIR    # write somewhere else
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _helpers() -> Any:
    """tools/make_cassettes.py, loaded by path (tools/ is not a package)."""
    path = ROOT / "tools" / "make_cassettes.py"
    spec = importlib.util.spec_from_file_location("make_cassettes", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_cassettes", module)
    spec.loader.exec_module(module)
    return module


mc = _helpers()

API = "https://generativelanguage.googleapis.com/v1beta/models"
MODEL = "gemini-embedding-001"
TWO = mc.TWO
ONE = mc.ONE
QUERY = "Which invoices are archived to cold storage?"
TYPE = "type.googleapis.com/google.rpc."
SERVICE = "generativelanguage.googleapis.com"
Json = dict[str, Any]


def url(model: str = MODEL) -> str:
    """The batch endpoint of ``model``."""
    return f"{API}/{model}:batchEmbedContents"


def batch(texts: list[str], task: str, dims: int | None, model: str = MODEL) -> Json:
    """The body embedguard sends for ``texts``."""
    extra = {"taskType": task, **({} if dims is None else {"outputDimensionality": dims})}
    return {
        "requests": [
            {"model": f"models/{model}", "content": {"parts": [{"text": t}]}, **extra}
            for t in texts
        ]
    }


def headers(date: str, millis: int, *, tier: bool = False) -> dict[str, str]:
    """Google front-end headers (lower-case, as httpx records them)."""
    out = {
        "content-type": "application/json; charset=UTF-8",
        "vary": "Origin, X-Origin, Referer",
        "date": date,
        "server": "scaffolding on HTTPServer2",
        "x-xss-protection": "0",
        "x-frame-options": "SAMEORIGIN",
        "x-content-type-options": "nosniff",
        "server-timing": f"gfet4t7; dur={millis}",
        "alt-svc": 'h3=":443"; ma=2592000,h3-29=":443"; ma=2592000',
    }
    if tier:
        out["x-gemini-service-tier"] = "standard"
    return out


def values(seed: int, n: int, d: int, norm: float = 1.0) -> np.ndarray:
    """``n`` seeded float32 vectors of length ``norm`` (Gemini's reply precision)."""
    return (mc.unit_vectors(seed, n, d, np.float64) * norm).astype(np.float32)


def reply(vectors: np.ndarray, usage: int | None = None) -> str:
    """``{"embeddings": [{"values": [...]}]}`` pretty-printed, as the API sends it."""
    doc: Json = {"embeddings": [{"values": list(v)} for v in vectors]}
    if usage is not None:
        details = [{"modality": "TEXT", "tokenCount": usage}]
        doc["usageMetadata"] = {"promptTokenCount": usage, "promptTokenDetails": details}
    return str(mc.dump_json(doc, mc.f32_numpy, indent=2)) + "\n"


def rpc(code: int, status: str, message: str, *details: Json) -> str:
    """A Google RPC error envelope, pretty-printed."""
    error: Json = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = list(details)
    return str(mc.dump_json({"error": error}, mc.f32_numpy, indent=2)) + "\n"


def error_info(reason: str, **metadata: str) -> Json:
    """A ``google.rpc.ErrorInfo`` detail."""
    return {"@type": TYPE + "ErrorInfo", "reason": reason, "domain": "googleapis.com",
            "metadata": {"service": SERVICE, **metadata}}  # fmt: skip


def quota(retry_delay: str) -> list[Json]:
    """Help, QuotaFailure (per-minute requests) and RetryInfo details of a 429."""
    violation = {
        "quotaMetric": f"{SERVICE}/embed_content_requests",
        "quotaId": "EmbedContentRequestsPerMinutePerProjectPerModel",
        "quotaDimensions": {"model": MODEL, "location": "global"},
        "quotaValue": "3000",
    }
    links = [{"description": "Learn more about Gemini API quotas",
              "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]  # fmt: skip
    return [
        {"@type": TYPE + "Help", "links": links},
        {"@type": TYPE + "QuotaFailure", "violations": [violation]},
        {"@type": TYPE + "RetryInfo", "retryDelay": retry_delay},
    ]


def exceeded(hint: str) -> str:
    """The 429 message, with the precise wait the RetryInfo rounds down."""
    return (
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. "
        "To monitor your current usage, head to: https://ai.dev/rate-limit. \n* Quota exceeded "
        f"for metric: {SERVICE}/embed_content_requests, limit: 3000, model: {MODEL}\n"
        f"Please retry in {hint}."
    )


def cassettes_of() -> Any:
    """Every Gemini cassette: (path under cassettes/, interactions)."""
    docs = batch(TWO, "RETRIEVAL_DOCUMENT", 768)
    yield "gemini/embed_dims768.yaml", [
        mc.exchange(url(), docs, 200, headers("Mon, 20 Oct 2025 10:02:11 GMT", 187),
                    reply(values(61, 2, 768, 0.58))),
    ]  # fmt: skip
    query = batch([QUERY], "RETRIEVAL_QUERY", 128)
    yield "gemini/query_dims128.yaml", [
        mc.exchange(url(), query, 200, headers("Mon, 20 Oct 2025 10:03:40 GMT", 96),
                    reply(values(62, 1, 128, 0.36))),
    ]  # fmt: skip
    second = "gemini-embedding-2"
    used = mc.tokens(TWO)
    yield "gemini/embedding2_usage.yaml", [
        mc.exchange(url(second), batch(TWO, "RETRIEVAL_DOCUMENT", 128, second), 200,
                    headers("Mon, 20 Oct 2025 10:05:02 GMT", 233), reply(values(63, 2, 128), used)),
    ]  # fmt: skip

    one = batch(ONE, "RETRIEVAL_DOCUMENT", 768)
    bad_key = "API key not valid. Please pass a valid API key."
    localized = {"@type": TYPE + "LocalizedMessage", "locale": "en-US", "message": bad_key}
    yield "gemini/bad_key_400.yaml", [
        mc.exchange(url(), one, 400, headers("Mon, 20 Oct 2025 10:07:45 GMT", 16),
                    rpc(400, "INVALID_ARGUMENT", bad_key, error_info("API_KEY_INVALID"),
                        localized)),
    ]  # fmt: skip
    blocked = (
        f"Requests to this API {SERVICE} method "
        "google.ai.generativelanguage.v1beta.GenerativeService.BatchEmbedContents are blocked."
    )
    method = "google.ai.generativelanguage.v1beta.GenerativeService.BatchEmbedContents"
    yield "gemini/key_blocked_403.yaml", [
        mc.exchange(url(), one, 403, headers("Mon, 20 Oct 2025 10:08:30 GMT", 14),
                    rpc(403, "PERMISSION_DENIED", blocked,
                        error_info("API_KEY_SERVICE_BLOCKED", methodName=method,
                                   consumer="projects/471904817285"))),
    ]  # fmt: skip
    typo = "gemini-embeding-001"
    missing = (
        f"models/{typo} is not found for API version v1beta, or is not supported for "
        "embedContent. Call ListModels to see the list of available models and their supported "
        "methods."
    )
    yield "gemini/model_not_found_404.yaml", [
        mc.exchange(url(typo), batch(ONE, "RETRIEVAL_DOCUMENT", None, typo), 404,
                    headers("Mon, 20 Oct 2025 10:10:02 GMT", 77), rpc(404, "NOT_FOUND", missing)),
    ]  # fmt: skip

    limited = headers("Mon, 20 Oct 2025 10:12:19 GMT", 2499, tier=True)
    yield "gemini/rate_limited_48s.yaml", [
        mc.exchange(url(), one, 429, limited,
                    rpc(429, "RESOURCE_EXHAUSTED", exceeded("48.939935699s"), *quota("48s"))),
    ]  # fmt: skip
    small = batch(ONE, "RETRIEVAL_DOCUMENT", 128)
    date = "Mon, 20 Oct 2025 10:14:59 GMT"
    yield "gemini/rate_limited_then_ok.yaml", [
        mc.exchange(url(), small, 429, headers(date, 31, tier=True),
                    rpc(429, "RESOURCE_EXHAUSTED", exceeded("0.412803511s"), *quota("0s"))),
        mc.exchange(url(), small, 200, headers(date, 102), reply(values(64, 1, 128, 0.36))),
    ]  # fmt: skip
    internal = (
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting"
    )
    date = "Mon, 20 Oct 2025 10:16:40 GMT"
    yield "gemini/server_errors_then_ok.yaml", [
        mc.exchange(url(), small, 500, headers(date, 5012), rpc(500, "INTERNAL", internal)),
        mc.exchange(url(), small, 503, headers(date, 41),
                    rpc(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")),
        mc.exchange(url(), small, 200, headers(date, 118), reply(values(65, 1, 128, 0.36))),
    ]  # fmt: skip


def cassettes() -> dict[str, str]:
    """Every Gemini cassette: path relative to ``cassettes/`` -> YAML text."""
    out: dict[str, str] = {}
    for path, interactions in cassettes_of():
        doc = {"interactions": interactions, "version": 1}
        out[path] = yaml.dump(doc, Dumper=mc._Dumper, sort_keys=True, allow_unicode=True, width=100)
    return out


def main(argv: list[str] | None = None) -> int:
    """Write every Gemini cassette under ``--out`` (default: the repository's ``cassettes/``)."""
    return mc.write_cassettes(cassettes, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
