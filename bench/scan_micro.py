"""Micro-benchmark of response decoding: the bulk scanner against the current orjson path.

Run: ``PYTHONPATH=src .venv/bin/python bench/scan_micro.py [--repeats N] [--float]``.

Decodes OpenAI-shaped base64 responses of 2,000 and 10,000 vectors of 1536 dimensions, written
compact (vLLM, the loopback server) and indented (OpenAI), into a preallocated array, with:

- ``current``: ``OpenAICodec.parse_response`` as it is (orjson tree, then pybase64);
- ``scanner``: the same codec answering through ``decode_openai_body`` (the proposed wiring);
- ``hand-opt``: a hand-written decoder without any validation: ``orjson.loads`` then pybase64
  per item into the preallocated array (the "optimised hand-written loop" of issue 16);
- ``floor``: ``bytes.find`` + pybase64 per item, no JSON parse and no check at all (the
  issue's quick check; nothing that validates can be faster).

Contenders run interleaved in every repeat (the machine is shared); medians are printed with
ratios, all measured in this one run. ``--float`` adds float-format bodies (2,000 vectors): the
current path against ``orjson.loads`` alone, the bound for any orjson-based float fast path.
Asserts nothing about time; it only checks that every contender decodes the same array.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import orjson
import pybase64

from embedguard.core.config import ProviderProfile
from embedguard.core.providers import EmbeddingResult, OpenAICodec
from embedguard.core.providers._errors import lower_headers
from embedguard.core.providers._json import decode_openai_body

HEADERS = {"content-type": "application/json", "x-request-id": "req_bench"}


class ScannedCodec(OpenAICodec):
    """The OpenAI codec with the bulk scanner wired into ``parse_response``."""

    __slots__ = ()

    def parse_response(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        *,
        n_inputs: int,
        dimensions: int | None,
        out: np.ndarray | None = None,
    ) -> EmbeddingResult:
        """As the base class, decoding 2xx bodies with ``decode_openai_body``."""
        if not 200 <= status < 300:
            return super().parse_response(
                status, headers, body, n_inputs=n_inputs, dimensions=dimensions, out=out
            )
        lowered = lower_headers(headers)
        decoded = decode_openai_body(
            self.name,
            status,
            lowered,
            body,
            n_inputs=n_inputs,
            dimensions=dimensions,
            secrets=self._secrets(),
            out=out,
        )
        return EmbeddingResult(
            vectors=decoded.vectors,
            prompt_tokens=decoded.prompt_tokens,
            model=decoded.model,
            rate_limit=self._rate_limit(lowered),
        )


def response(vectors: np.ndarray, *, indent: bool, base64: bool = True) -> bytes:
    """An OpenAI embeddings response holding ``vectors``."""
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": pybase64.b64encode(row.tobytes()).decode() if base64 else row.tolist(),
        }
        for i, row in enumerate(vectors)
    ]
    doc = {
        "object": "list",
        "data": data,
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 7 * len(vectors), "total_tokens": 7 * len(vectors)},
    }
    return json.dumps(doc, indent=2).encode() if indent else orjson.dumps(doc)


def hand_optimised(body: bytes, out: np.ndarray) -> None:
    """orjson, then pybase64 per item straight into ``out`` (no validation)."""
    flat = out.data.cast("B")
    row_bytes = out.shape[1] * 4
    for item in orjson.loads(body)["data"]:
        start = item["index"] * row_bytes
        flat[start : start + row_bytes] = pybase64.b64decode(item["embedding"])


def floor(body: bytes, out: np.ndarray) -> None:
    """The issue's quick check: find each string, decode it, nothing else."""
    flat = out.data.cast("B")
    row_bytes = out.shape[1] * 4
    view = memoryview(body)
    key = b'"embedding": ' if b'"embedding": ' in body[:1024] else b'"embedding":'
    pos, row = 0, 0
    while (pos := body.find(key, pos)) >= 0:
        start = pos + len(key) + 1
        end = body.find(b'"', start)
        flat[row * row_bytes : (row + 1) * row_bytes] = pybase64.b64decode(view[start:end])
        pos, row = end, row + 1


def medians(contenders: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median seconds of each contender, run interleaved ``repeats`` times."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def base64_case(n: int, indent: bool, repeats: int) -> None:
    """Time every contender on one base64 body and print medians and ratios."""
    vectors = np.random.default_rng(n).standard_normal((n, 1536)).astype("<f4")
    body = response(vectors, indent=indent)
    out = np.empty((n, 1536), np.float32)
    profile = ProviderProfile(provider="openai", model="text-embedding-3-small")
    current, scanned = (
        cls(profile, api_key="sk-bench", environ={}) for cls in (OpenAICodec, ScannedCodec)
    )

    def parse(codec: OpenAICodec) -> Callable[[], Any]:
        return lambda: codec.parse_response(
            200, HEADERS, body, n_inputs=n, dimensions=1536, out=out
        )

    contenders: dict[str, Callable[[], Any]] = {
        "current": parse(current),
        "scanner": parse(scanned),
        "hand-opt": lambda: hand_optimised(body, out),
        "floor": lambda: floor(body, out),
    }
    for run in contenders.values():  # each one decodes the same array
        out.fill(np.nan)
        run()
        assert out.tobytes() == vectors.tobytes()
    got = medians(contenders, repeats)
    shape = "indented" if indent else "compact"
    print(f"\n{n:,} x 1536 base64, {shape}, {len(body) / 1e6:.0f} MB, median of {repeats}")
    for name, seconds in got.items():
        print(
            f"  {name:9} {seconds * 1e3:8.1f} ms   x{seconds / got['current']:.2f} current   "
            f"x{seconds / got['hand-opt']:.2f} hand-opt   x{seconds / got['floor']:.2f} floor"
        )


def float_case(n: int, repeats: int) -> None:
    """The current float path against orjson.loads alone (any orjson-based path's bound)."""
    vectors = np.random.default_rng(n).standard_normal((n, 1536)).astype("<f4")
    body = response(vectors, indent=False, base64=False)
    out = np.empty((n, 1536), np.float32)
    profile = ProviderProfile(provider="openai", model="m", encoding_format="float")
    codec = OpenAICodec(profile, api_key="sk-bench", environ={})
    got = medians(
        {
            "current": lambda: codec.parse_response(
                200, HEADERS, body, n_inputs=n, dimensions=1536, out=out
            ),
            "loads": lambda: orjson.loads(body),
        },
        repeats,
    )
    print(f"\n{n:,} x 1536 float, compact, {len(body) / 1e6:.0f} MB, median of {repeats}")
    for name, seconds in got.items():
        print(f"  {name:9} {seconds * 1e3:8.1f} ms   x{seconds / got['current']:.2f} current")


def main() -> None:
    """Run the cases the command line asks for."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--float", action="store_true", help="also time float-format bodies")
    args = parser.parse_args()
    print(f"pybase64 {pybase64.get_version()}")
    for n in (2_000, 10_000):
        for indent in (False, True):
            base64_case(n, indent, args.repeats)
    if args.float:
        float_case(2_000, args.repeats)


if __name__ == "__main__":
    main()
