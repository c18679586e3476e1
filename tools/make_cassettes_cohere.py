#!/usr/bin/env python3
"""Write the Cohere cassettes under ``cassettes/cohere/``, deterministically.

Authored in the shape of Cohere's v2 ``/embed`` API as real recordings show it (see
``../shared/API_SHAPES_MORE.md`` §1): compact JSON with keys ``id, texts, embeddings, meta,
response_type``; float32 values written shortest-first (``0.02832291``); ``num_chars`` and
``num_tokens`` headers; ``x-debug-trace-id`` on successes; the trial-key headers
``x-trial-endpoint-call-limit`` / ``-remaining`` and ``x-endpoint-monthly-call-limit`` where a
trial key is used; an envoy/Google front end (``server: envoy``, ``Via: 1.1 google``); errors
as flat ``{"id", "message"}`` bodies. The 401, 404 and trial 429 wordings are Cohere's recorded
ones; the ``TOO_MANY_TOKENS`` 400 follows Cohere's recorded chat 400 (the embed wording was
never recorded); the 500 wording was not recorded either. Request bodies are exactly what
embedguard sends; no credentials are stored. Helpers come from ``tools/make_cassettes.py``.

Usage::

    python tools/make_cassettes_cohere.py              # rewrite cassettes/cohere/
    python tools/make_cassettes_cohere.py --out DIR    # write somewhere else
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import yaml


def _helpers() -> ModuleType:
    """tools/make_cassettes.py, loaded by path (this script may be loaded the same way)."""
    path = Path(__file__).resolve().with_name("make_cassettes.py")
    spec = importlib.util.spec_from_file_location("make_cassettes", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_cassettes", module)
    spec.loader.exec_module(module)
    return module


mc = _helpers()
ROOT = mc.ROOT
URL = "https://api.cohere.com/v2/embed"
TRIAL = (
    " You can continue to use the Trial key for free or upgrade to a Production key with higher"
    " rate limits at 'https://dashboard.cohere.com/api-keys'. Contact us on"
    " 'https://discord.gg/XW44jPfYJu' or email us at support@cohere.com with any questions"
)
LONG = " ".join(["The inspection log lists every valve, gasket and pressure reading."] * 40)

Json = dict[str, Any]


def request(texts: list[str], input_type: str, embedding_type: str = "float",
            model: str = "embed-v4.0", **extra: Any) -> Json:  # fmt: skip
    """The body embedguard's codec sends, in its key order."""
    return {"model": model, "texts": texts, "input_type": input_type,
            "embedding_types": [embedding_type], "truncate": "NONE", **extra}  # fmt: skip


def front(date: str, ms: int) -> dict[str, str]:
    """Headers every Cohere response carries (Google front end, envoy, no caching)."""
    return {
        "Alt-Svc": 'h3=":443"; ma=2592000,h3-29=":443"; ma=2592000',
        "Via": "1.1 google",
        "cache-control": "no-cache, no-store, no-transform, must-revalidate, private, max-age=0",
        "content-type": "application/json",
        "date": date,
        "expires": "Thu, 01 Jan 1970 00:00:00 UTC",
        "pragma": "no-cache",
        "server": "envoy",
        "vary": "Origin",
        "x-accel-expires": "0",
        "x-envoy-upstream-service-time": str(ms),
    }


def trial(remaining: int) -> dict[str, str]:
    """A trial key's per-endpoint limits (100 embed calls a minute, 1,000 a month)."""
    return {"x-endpoint-monthly-call-limit": "1000", "x-trial-endpoint-call-limit": "100",
            "x-trial-endpoint-call-remaining": str(remaining)}  # fmt: skip


def ok(
    ids: Any, texts: list[str], name: str, rows: Any, date: str, *, v4: bool = True,
    ms: int = 58, **headers: str,
) -> tuple[int, dict[str, str], str]:  # fmt: skip
    """A by-type 200: body in Cohere's key order, num_chars/num_tokens, a trace id."""
    used = mc.tokens(texts)
    billed: Json = {"input_tokens": used, **({"image_tokens": 0} if v4 else {})}
    doc = {"id": ids.uuid(), "texts": texts, "embeddings": {name: rows},
           "meta": {"api_version": {"version": "2"}, "billed_units": billed},
           "response_type": "embeddings_by_type"}  # fmt: skip
    sent = {**front(date, ms), "access-control-expose-headers": "X-Debug-Trace-ID",
            "num_chars": str(sum(len(t) for t in texts)), "num_tokens": str(used),
            "x-debug-trace-id": ids.hex(), **headers}  # fmt: skip
    return (
        200,
        dict(sorted(sent.items(), key=lambda kv: kv[0].lower())),
        mc.dump_json(doc, mc.f32_numpy),
    )


def failed(
    ids: Any, status: int, message: str, date: str, headers: dict[str, str] | None = None,
    **extra: Any,
) -> tuple[int, dict[str, str], str]:  # fmt: skip
    """An error: flat ``{"id", "message"}`` (``error_type`` first when there is one)."""
    doc = {**extra, "id": ids.uuid(), "message": message}
    headers = {**front(date, 3), "vary": "Origin,Accept-Encoding", **(headers or {})}
    return status, dict(sorted(headers.items(), key=lambda kv: kv[0].lower())), mc.compact(doc)


def int8_rows(vectors: np.ndarray) -> list[list[int]]:
    """Each row scaled so its largest magnitude is 127, rounded (a plausible quantizer)."""
    peak = np.abs(vectors).max(axis=1, keepdims=True)
    return [[int(x) for x in row] for row in np.rint(vectors / peak * 127).astype(np.int8)]


def ubinary_rows(vectors: np.ndarray) -> list[list[int]]:
    """Sign bits packed 8 per byte, most significant first, as unsigned bytes."""
    return [[int(x) for x in row] for row in np.packbits(vectors > 0, axis=1)]


def cohere_cassettes() -> Any:
    """Every Cohere cassette: (path under ``cassettes/``, interactions)."""
    two, one = mc.TWO, mc.ONE

    def x(body: Json, reply: tuple[int, dict[str, str], str]) -> Json:
        status, headers, payload = reply
        return mc.exchange(URL, body, status, headers, payload)

    ids = mc.Ids(601)
    floats = [list(v) for v in mc.unit_vectors(61, 2, 256)]
    yield "cohere/embed_float_dims256.yaml", [
        x(request(two, "search_document", output_dimension=256),
          ok(ids, two, "float", floats, "Mon, 20 Oct 2025 10:02:11 GMT")),
    ]  # fmt: skip
    ids, query = mc.Ids(602), ["Which valves were replaced last quarter?"]
    light = mc.unit_vectors(62, 1, 384)
    yield "cohere/query_int8_trial.yaml", [
        x(request(query, "search_query", "int8", model="embed-english-light-v3.0"),
          ok(ids, query, "int8", int8_rows(light), "Mon, 20 Oct 2025 10:04:40 GMT", v4=False,
             ms=24, **trial(99))),
    ]  # fmt: skip
    ids, packed = mc.Ids(603), ubinary_rows(mc.unit_vectors(63, 2, 512))
    yield "cohere/document_ubinary_dims512.yaml", [
        x(request(two, "search_document", "ubinary", output_dimension=512),
          ok(ids, two, "ubinary", packed, "Mon, 20 Oct 2025 10:06:05 GMT", ms=41)),
    ]  # fmt: skip

    ids, date = mc.Ids(604), "Mon, 20 Oct 2025 10:10:17 GMT"
    minute = f"You are using a Trial key, which is limited to 100 API calls / minute.{TRIAL}"
    yield "cohere/trial_rate_limited_then_ok.yaml", [
        x(request(one, "search_query"), failed(ids, 429, minute, date, trial(0))),
        x(request(one, "search_query"),
          ok(ids, one, "float", [list(v) for v in mc.unit_vectors(64, 1, 1536)], date, ms=63,
             **trial(99))),
    ]  # fmt: skip
    month = f"You are using a Trial key, which is limited to 1000 API calls / month.{TRIAL}"
    yield "cohere/trial_monthly_quota_429.yaml", [
        x(request(one, "search_document"),
          failed(mc.Ids(605), 429, month, "Mon, 20 Oct 2025 10:12:30 GMT")),
    ]  # fmt: skip
    too_many = (
        "too many tokens: size limit exceeded by 188 tokens. Try using shorter or fewer inputs, "
        "or setting truncate to START or END."
    )
    yield "cohere/too_many_tokens_400.yaml", [
        x(request([LONG], "search_document", model="embed-english-v3.0"),
          failed(mc.Ids(606), 400, too_many, "Mon, 20 Oct 2025 10:14:02 GMT",
                 error_type="TOO_MANY_TOKENS")),
    ]  # fmt: skip
    wrong_key = (
        "Incorrect API key provided: ***********. You can find your API key at "
        "https://dashboard.cohere.com/api-keys."
    )
    yield "cohere/invalid_api_key_401.yaml", [
        x(request(two, "search_document"),
          failed(mc.Ids(607), 401, wrong_key, "Mon, 20 Oct 2025 10:15:44 GMT")),
    ]  # fmt: skip
    typo = "embed-englsh-v3.0"
    missing = (
        f"model '{typo}' not found, make sure the correct model ID was used and that you have "
        "access to the model."
    )
    yield "cohere/model_not_found_404.yaml", [
        x(request(one, "search_query", model=typo),
          failed(mc.Ids(608), 404, missing, "Mon, 20 Oct 2025 10:17:09 GMT")),
    ]  # fmt: skip
    ids, date = mc.Ids(609), "Mon, 20 Oct 2025 10:20:51 GMT"
    yield "cohere/server_error_then_ok.yaml", [
        x(request(one, "search_document", output_dimension=256),
          failed(ids, 500, "internal server error, this has been reported to our developers",
                 date)),
        x(request(one, "search_document", output_dimension=256),
          ok(ids, one, "float", [list(v) for v in mc.unit_vectors(69, 1, 256)], date, ms=47)),
    ]  # fmt: skip


def cassettes() -> dict[str, str]:
    """Every Cohere cassette: path relative to ``cassettes/`` -> YAML text."""
    out: dict[str, str] = {}
    for path, interactions in cohere_cassettes():
        doc = {"interactions": interactions, "version": 1}
        out[path] = yaml.dump(doc, Dumper=mc._Dumper, sort_keys=True, allow_unicode=True,
                              width=100)  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    """Write every Cohere cassette under ``--out`` (default: the repository's ``cassettes/``)."""
    return mc.write_cassettes(cassettes, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
