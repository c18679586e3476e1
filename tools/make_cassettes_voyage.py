#!/usr/bin/env python3
"""Write the Voyage AI cassettes under ``cassettes/voyage/``, deterministically.

Authored in Voyage's wire shape as its real recordings show it (traceloop/openllmetry and
pydantic/pydantic-ai, see ``shared/reference-cassettes/MORE_SOURCES.md``): compact JSON bodies
keyed ``object, data [object, embedding, index], model, usage {total_tokens}``; the headers of
Voyage's uvicorn servers behind Google's load balancer (``Alt-Svc``, ``Via: 1.1 google``,
``server: uvicorn``, a 32-hex ``x-request-id``), the free tier's ``x-api-warning``; errors as
FastAPI's ``{"detail": "..."}``. The 400 texts are Voyage's own (recorded, or quoted in public
issue threads); the 401, 404, 429 and 500 bodies are not recorded anywhere we looked, so they are
FastAPI's defaults or our wording (``Provided API key is invalid.``). Vectors are seeded unit
vectors: float32 as base64 little-endian bytes, ``int8`` as base64 of the signed bytes,
``ubinary`` as JSON integers of the packed sign bits. Request bodies are exactly what embedguard
sends; no credentials are stored.

Usage::

    python tools/make_cassettes_voyage.py              # rewrite cassettes/voyage/
    python tools/make_cassettes_voyage.py --out DIR    # write somewhere else
"""

from __future__ import annotations

import base64
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import yaml

_TOOLS = str(Path(__file__).resolve().parent)
if _TOOLS not in sys.path:
    sys.path.insert(0, _TOOLS)
import make_cassettes as shared  # noqa: E402  (the helpers of the other providers' generator)

ROOT = Path(__file__).resolve().parents[1]
VOYAGE = "https://api.voyageai.com/v1/embeddings"
QUERY = ["Which invoices are archived to cold storage?"]
DOCS = [
    "Invoices older than ninety days are archived to cold storage.",
    "Rotate the signing keys before the quarterly audit.",
    "The cache hit ratio fell after the schema migration.",
]
WARNING = (
    "You have not yet added your payment method in the billing page and will have reduced rate "
    "limits of 3 RPM and 10K TPM. To unlock our standard rate limits, please add a payment method "
    "in the billing page for the appropriate organization in the user dashboard "
    "(https://dashboard.voyageai.com/). Even with payment methods entered, the free tokens (200M "
    "tokens for Voyage series 3) will still apply. After adding a payment method, you should see "
    "your rate limits increase after several minutes. See our pricing docs "
    "(https://docs.voyageai.com/docs/pricing) for the free tokens for your model."
)

Json = dict[str, Any]
Cassettes = Iterator[tuple[str, list[Json]]]


def request(texts: list[str], input_type: str | None, **fields: Any) -> Json:
    """The body embedguard sends (voyageai-python's fields, nulls explicit)."""
    body: Json = {"input": texts, "model": "voyage-3.5", "input_type": input_type,
                  "truncation": False, "output_dtype": None, "output_dimension": None,
                  "encoding_format": "base64"}  # fmt: skip
    return {**body, **fields}


def headers(ids: shared.Ids, date: str, **extra: str) -> dict[str, str]:
    """Voyage's response headers: Google's front end, then uvicorn's (lower case)."""
    return {
        "Alt-Svc": 'h3=":443"; ma=2592000,h3-29=":443"; ma=2592000',
        "Via": "1.1 google",
        "content-type": "application/json",
        "date": date,
        "server": "uvicorn",
        **extra,
        "x-request-id": ids.hex(),
    }


def ok(body: Json, rows: list[Any], model: str, used: int, ids: shared.Ids, date: str,
       **extra: str) -> Json:  # fmt: skip
    """A 200 with ``rows`` (base64 strings or integer lists) in Voyage's compact body."""
    data = [{"object": "embedding", "embedding": row, "index": i} for i, row in enumerate(rows)]
    doc = {"object": "list", "data": data, "model": model, "usage": {"total_tokens": used}}
    return shared.exchange(VOYAGE, body, 200, headers(ids, date, **extra), shared.compact(doc))


def refused(uri: str, body: Json, status: int, detail: str, ids: shared.Ids, date: str) -> Json:
    """An error as FastAPI writes it: ``{"detail": "..."}``."""
    payload = shared.compact({"detail": detail})
    return shared.exchange(uri, body, status, headers(ids, date), payload)


def int8_rows(vectors: np.ndarray) -> list[str]:
    """Base64 of each row quantised to signed bytes (``round(127 v / max|v|)``)."""
    peak = np.abs(vectors).max(axis=1, keepdims=True)
    values = np.rint(vectors / peak * 127).astype(np.int8)
    return [base64.b64encode(row.tobytes()).decode("ascii") for row in values]


def ubinary_rows(vectors: np.ndarray) -> list[list[int]]:
    """The sign bits of each row packed 8 per unsigned byte, most significant first."""
    return [[int(v) for v in row] for row in np.packbits(vectors > 0, axis=1)]


def voyage_cassettes() -> Cassettes:
    ids, date = shared.Ids(601), "Mon, 20 Oct 2025 10:02:11 GMT"
    vectors = shared.unit_vectors(61, 1, 1024)
    yield (
        "voyage/query_base64.yaml",
        [ok(request(QUERY, "query"), [shared.b64(v) for v in vectors], "voyage-3.5", 9, ids, date)],
    )
    ids, date = shared.Ids(602), "Mon, 20 Oct 2025 10:04:37 GMT"
    vectors = shared.unit_vectors(62, 3, 512)
    docs = request(DOCS, "document", output_dimension=512)
    yield "voyage/documents_dims512_free_tier.yaml", [
        ok(docs, [shared.b64(v) for v in vectors], "voyage-3.5", 31, ids, date,
           **{"x-api-warning": WARNING}),
    ]  # fmt: skip
    ids, date = shared.Ids(603), "Mon, 20 Oct 2025 10:06:02 GMT"
    vectors = shared.unit_vectors(63, 2, 256)
    int8 = request(DOCS[:2], "document", model="voyage-3-large", output_dtype="int8",
                   output_dimension=256)  # fmt: skip
    yield "voyage/int8_base64.yaml", [ok(int8, int8_rows(vectors), "voyage-3-large", 21, ids, date)]
    ids, date = shared.Ids(604), "Mon, 20 Oct 2025 10:07:45 GMT"
    vectors = shared.unit_vectors(64, 2, 1024)
    ubinary = request(DOCS[1:], "document", model="voyage-code-3", output_dtype="ubinary",
                      encoding_format=None)  # fmt: skip
    yield (
        "voyage/ubinary_json.yaml",
        [ok(ubinary, ubinary_rows(vectors), "voyage-code-3", 19, ids, date)],
    )
    yield from error_cassettes()


def error_cassettes() -> Cassettes:
    one = request(DOCS[:1], "document")
    unknown = request(DOCS[:1], "document", model="voyage-3.6")
    names = "voyage-3.5 voyage-3.5-lite voyage-3-large voyage-code-3 voyage-finance-2 voyage-law-2"
    supported = ", ".join(f"'{name}'" for name in names.split())
    yield "voyage/model_not_supported_400.yaml", [
        refused(VOYAGE, unknown, 400,
                f"Model voyage-3.6 is not supported. Supported models are [{supported}].",
                shared.Ids(611), "Mon, 20 Oct 2025 10:11:03 GMT"),
    ]  # fmt: skip
    long_text = [" ".join(["The appendix lists every sensor reading."] * 12)]
    too_long = (
        "Request to model 'voyage-3.5' failed. The example at index 0 in your batch has too many "
        "tokens and does not fit into the model's context window of 32000 tokens. Please lower "
        "the number of tokens in the listed example(s) or use truncation."
    )
    yield "voyage/context_length_400.yaml", [
        refused(VOYAGE, request(long_text, "document"), 400, too_long, shared.Ids(612),
                "Mon, 20 Oct 2025 10:12:40 GMT"),
    ]  # fmt: skip
    yield "voyage/unauthorized_401.yaml", [
        refused(VOYAGE, one, 401, "Provided API key is invalid.", shared.Ids(613),
                "Mon, 20 Oct 2025 10:13:15 GMT"),
    ]  # fmt: skip
    yield "voyage/not_found_404.yaml", [
        refused("https://api.voyageai.com/embeddings", one, 404, "Not Found", shared.Ids(614),
                "Mon, 20 Oct 2025 10:13:58 GMT"),
    ]  # fmt: skip
    ids, date = shared.Ids(615), "Mon, 20 Oct 2025 10:15:21 GMT"
    limited = (
        "You have exceeded your rate limit. Please slow down your requests or request a rate "
        "limit increase."
    )
    yield "voyage/rate_limited_then_ok.yaml", [
        refused(VOYAGE, one, 429, limited, ids, date),
        ok(one, [shared.b64(v) for v in shared.unit_vectors(65, 1, 1024)], "voyage-3.5", 12, ids,
           date),
    ]  # fmt: skip
    ids, date = shared.Ids(616), "Mon, 20 Oct 2025 10:17:09 GMT"
    crashed = {"content-type": "text/plain; charset=utf-8", "date": date, "server": "uvicorn"}
    yield "voyage/server_error_then_ok.yaml", [
        shared.exchange(VOYAGE, one, 500, crashed, "Internal Server Error"),
        ok(one, [shared.b64(v) for v in shared.unit_vectors(66, 1, 1024)], "voyage-3.5", 12, ids,
           date),
    ]  # fmt: skip


def cassettes() -> dict[str, str]:
    """Every Voyage cassette: path relative to ``cassettes/`` -> YAML text."""
    return {
        path: yaml.dump({"interactions": interactions, "version": 1}, Dumper=shared._Dumper,
                        sort_keys=True, allow_unicode=True, width=100)
        for path, interactions in voyage_cassettes()
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Write every Voyage cassette under ``--out`` (default: the repository's ``cassettes/``)."""
    return shared.write_cassettes(cassettes, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
