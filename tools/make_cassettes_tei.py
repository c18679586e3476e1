#!/usr/bin/env python3
"""Write the Text Embeddings Inference cassettes under ``cassettes/tei/``, deterministically.

No real TEI recording exists (none was found in any public repository searched), so these are
authored in the wire shape TEI's server source defines (huggingface/text-embeddings-inference,
router ``http/server.rs``, ``lib.rs``, core ``tokenization.rs``; version 1.9): ``GET /info``
with the served model and its limits, ``POST /embed`` answered by a bare JSON array of float32
values (serde_json writes each as its shortest decimal), the ``x-compute-*`` timing headers and
tower-http's CORS headers, and errors as ``{"error": "...", "error_type": "..."}`` (422
Validation, 424 Backend, 429 Overloaded, 503 Unhealthy) or an empty body (401 from the
``--api-key`` check, 404 from the router, both on every route ``/info`` included; 413 plain text
from the body-size limit). Every client call starts with ``GET /info``, as embedguard's does.
Request bodies are exactly what embedguard sends; no ``Authorization`` header is stored.

Usage::

    python tools/make_cassettes_tei.py              # rewrite cassettes/tei/
    python tools/make_cassettes_tei.py --out DIR    # write somewhere else
"""

from __future__ import annotations

import importlib.util
from http import HTTPStatus
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _base() -> ModuleType:
    """tools/make_cassettes.py, for its helpers (vectors, number formats, YAML layout)."""
    spec = importlib.util.spec_from_file_location(
        "make_cassettes", ROOT / "tools" / "make_cassettes.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


base = _base()
SERVER = "http://localhost:8080"
BGE = "BAAI/bge-small-en-v1.5"
ARCTIC = "Snowflake/snowflake-arctic-embed-m-v1.5"
DATE = "Mon, 20 Oct 2025 09:1{}:0{} GMT"
LONG = " ".join(["The ingestion worker retries each shard with exponential backoff."] * 40)

Json = dict[str, Any]


def info(model: str, *, max_input_length: int = 512, max_client_batch_size: int = 32) -> Json:
    """The /info document of a TEI 1.9 CPU server serving ``model``."""
    return {
        "model_id": model, "model_sha": None, "model_dtype": "float32",
        "model_type": {"embedding": {"pooling": "cls"}}, "max_concurrent_requests": 512,
        "max_input_length": max_input_length, "max_batch_tokens": 16384,
        "max_batch_requests": None, "max_client_batch_size": max_client_batch_size,
        "auto_truncate": True, "tokenization_workers": 4, "version": "1.9.3",
        "sha": "0d124dc9773b5d7a2c4e4bf1d02b0a34f4bb29f0", "docker_label": "sha-0d124dc",
    }  # fmt: skip


def cors(date: str, content_type: str | None = "application/json") -> dict[str, str]:
    """The headers every TEI reply carries (tower-http's CorsLayer, axum's content type)."""
    headers = {"date": date, "vary": "origin, access-control-request-method, "
               "access-control-request-headers", "access-control-allow-origin": "*"}  # fmt: skip
    if content_type:
        headers["content-type"] = content_type
    return headers


def compute(texts: list[str], millis: int, date: str) -> dict[str, str]:
    """A 200's headers: the x-compute-* timings and counts (tokens include [CLS] and [SEP])."""
    tokens = base.tokens(texts) + 2 * len(texts)
    return {
        **cors(date), "x-compute-type": "cpu", "x-compute-time": str(millis),
        "x-compute-characters": str(sum(len(t) for t in texts)),
        "x-compute-tokens": str(tokens), "x-total-time": str(millis),
        "x-tokenization-time": "0", "x-queue-time": "1", "x-inference-time": str(millis - 1),
    }  # fmt: skip


def vectors_json(vectors: np.ndarray) -> str:
    """A bare array of float32 rows, compact, each value its shortest decimal."""
    return base.dump_json([list(v) for v in vectors], base.f32_go)


def get_info(root: str, status: int, headers: dict[str, str], payload: str) -> Json:
    """embedguard's GET /info (no body) and the server's reply."""
    sent = {"accept": "application/json", "accept-encoding": "gzip, deflate",
            "connection": "keep-alive", "host": urlsplit(root).netloc,
            "user-agent": "embedguard/0.1.0"}  # fmt: skip
    headers = {**headers, "content-length": str(len(payload.encode()))}
    return {
        "request": {"body": None, "headers": base._listed(sent), "method": "GET",
                    "uri": f"{root}/info"},
        "response": {"body": {"string": payload}, "headers": base._listed(headers),
                     "status": {"code": status, "message": HTTPStatus(status).phrase}},
    }  # fmt: skip


def ok_info(root: str, date: str, **limits: Any) -> Json:
    return get_info(root, 200, cors(date), base.compact(info(**limits)))


def embed(texts: list[str], **fields: Any) -> Json:
    """The /embed body embedguard sends for ``texts``."""
    return {"inputs": texts, "normalize": True, "truncate": False, **fields}


def error(message: str, error_type: str) -> str:
    return base.compact({"error": message, "error_type": error_type})


def cassettes() -> dict[str, str]:
    """Every TEI cassette: path relative to ``cassettes/`` -> YAML text."""
    url = f"{SERVER}/embed"
    two, one = base.TWO, base.ONE
    bge2 = vectors_json(base.unit_vectors(61, 2, 384))
    four = [f"Ticket {n}: the nightly export stalled on shard {n}." for n in range(4)]
    by_half = [vectors_json(base.unit_vectors(62 + i, 2, 384)) for i in range(2)]
    d = DATE.format
    out: dict[str, list[Json]] = {
        "tei/embed_ok.yaml": [
            ok_info(SERVER, d(0, 0), model=BGE),
            base.exchange(url, embed(two), 200, compute(two, 14, d(0, 0)), bge2),
        ],
        "tei/query_prompt.yaml": [
            ok_info(SERVER, d(1, 0), model=ARCTIC),
            base.exchange(
                url,
                embed(one, prompt_name="query"),
                200,
                compute(one, 9, d(1, 0)),
                vectors_json(base.unit_vectors(63, 1, 768)),
            ),
        ],
        "tei/unauthorized_401.yaml": [
            get_info(SERVER, 401, cors(d(2, 0), None), ""),
            base.exchange(url, embed(one), 401, cors(d(2, 1), None), ""),
        ],
        "tei/not_found_404.yaml": [
            get_info(f"{SERVER}/v1", 404, cors(d(3, 0), None), ""),
            base.exchange(f"{SERVER}/v1/embed", embed(one), 404, cors(d(3, 1), None), ""),
        ],
        "tei/input_too_long_422.yaml": [
            ok_info(SERVER, d(4, 0), model=BGE),
            base.exchange(
                url,
                embed([LONG]),
                422,
                cors(d(4, 1)),
                error(
                    "Input validation error: `inputs` must have less than 512 tokens. Given: 561",
                    "Validation",
                ),
            ),
        ],
        "tei/batch_over_cap_422.yaml": [
            ok_info(SERVER, d(5, 0), model=BGE, max_client_batch_size=2),
            base.exchange(
                url,
                embed(four),
                422,
                cors(d(5, 1)),
                error("batch size 4 > maximum allowed batch size 2", "Validation"),
            ),
            base.exchange(url, embed(four[:2]), 200, compute(four[:2], 11, d(5, 1)), by_half[0]),
            base.exchange(url, embed(four[2:]), 200, compute(four[2:], 11, d(5, 1)), by_half[1]),
        ],
        "tei/payload_too_large_413.yaml": [
            ok_info(SERVER, d(6, 0), model=BGE),
            base.exchange(
                url,
                embed(four),
                413,
                cors(d(6, 1), "text/plain; charset=utf-8"),
                "Failed to buffer the request body: length limit exceeded",
            ),
            base.exchange(url, embed(four[:2]), 200, compute(four[:2], 10, d(6, 2)), by_half[0]),
            base.exchange(url, embed(four[2:]), 200, compute(four[2:], 10, d(6, 2)), by_half[1]),
        ],
        "tei/overloaded_429_then_ok.yaml": [
            ok_info(SERVER, d(7, 0), model=BGE),
            base.exchange(
                url, embed(two), 429, cors(d(7, 1)), error("Model is overloaded", "Overloaded")
            ),
            base.exchange(url, embed(two), 200, compute(two, 15, d(7, 2)), bge2),
        ],
        "tei/backend_424_then_ok.yaml": [
            ok_info(SERVER, d(8, 0), model=BGE),
            base.exchange(
                url,
                embed(two),
                424,
                cors(d(8, 1)),
                error(
                    "Backend error: Inference failed: DriverError(CUDA_ERROR_OUT_OF_MEMORY, "
                    '"out of memory")',
                    "Backend",
                ),
            ),
            base.exchange(url, embed(two), 200, compute(two, 16, d(8, 2)), bge2),
        ],
        "tei/unhealthy_503_then_ok.yaml": [
            get_info(SERVER, 503, cors(d(9, 0)), error("unhealthy", "Unhealthy")),
            base.exchange(url, embed(two), 503, cors(d(9, 1)), error("unhealthy", "Unhealthy")),
            base.exchange(url, embed(two), 200, compute(two, 13, d(9, 2)), bge2),
        ],
    }
    return {
        path: yaml.dump({"interactions": interactions, "version": 1}, Dumper=base._Dumper,
                        sort_keys=True, allow_unicode=True, width=100)
        for path, interactions in out.items()
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Write every TEI cassette under ``--out`` (default: the repository's ``cassettes/``)."""
    return base.write_cassettes(cassettes, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
