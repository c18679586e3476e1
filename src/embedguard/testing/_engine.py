"""The request engine of the test server: state shared with the test thread, and handling."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import itertools
import random
import threading
import time
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson

from ._errors import ErrorSpec, status_error
from ._faults import Fault
from ._http import HttpReply, HttpRequest, Respond
from ._ratelimit import TokenBuckets
from ._replies import Replies
from ._routes import EmbedCall, Limits, Route, extract_inputs, match_route, parse_call
from ._wire_bedrock_auth import auth_error as bedrock_auth_error
from ._wire_gemini import bad_key_error
from ._wire_tei import INFO_PATH as TEI_INFO
from ._wire_tei import info_reply as tei_info

__all__ = ["Engine", "RecordedRequest", "decode_body"]


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received, as the request log keeps it.

    Attributes:
        method: the HTTP method.
        path: the URL path, without the query.
        query: the query parameters.
        headers: the request headers, names in lower case.
        body: the parsed JSON body after gunzip (``{}`` when it was not a JSON object).
        raw_size: the body size in bytes after decompression.
        wire_size: the body size in bytes as sent (compressed when ``gzip``).
        gzip: whether the body came with ``Content-Encoding: gzip``.
        inputs: the string inputs found in the body.
        status: the status answered; 0 while in flight or when the connection was dropped.
        fault: the injected fault's name (``"outage"`` during ``set_down``), or ``None``.
        received_at: arrival time on the ``time.monotonic()`` clock (to measure gaps).
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any]
    raw_size: int
    wire_size: int
    gzip: bool
    inputs: tuple[str, ...]
    status: int
    fault: str | None
    received_at: float


@dataclass(frozen=True)
class _Plan:
    """What to do with a request, decided synchronously on arrival."""

    route: Route | None
    reply: HttpReply | None = None  # an immediate answer (errors, outage)
    drop: bool = False
    call: EmbedCall | None = None
    fault: Fault | None = None
    fault_name: str | None = None


def decode_body(request: HttpRequest, *, accept_gzip: bool) -> tuple[Any, bytes, ErrorSpec | None]:
    """The body after gunzip, parsed as JSON, with the error to answer if any."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    raw, refused = request.body, None
    if encoding in {"gzip", "x-gzip"}:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error):
            return None, raw, ErrorSpec(400, "The request body is not valid gzip.")
        if not accept_gzip:
            # Still decoded, so the request log shows what was sent.
            refused = ErrorSpec(415, f"Unsupported Content-Encoding: {encoding}.")
    elif encoding not in {"", "identity"}:
        return None, raw, ErrorSpec(415, f"Unsupported Content-Encoding: {encoding}.")
    try:
        return orjson.loads(raw), raw, refused
    except orjson.JSONDecodeError:
        bad_json = ErrorSpec(400, "We could not parse the JSON body of your request.")
        return None, raw, refused or bad_json


class Engine:
    """Handles requests on the server's loop; its controls are safe to call from any thread."""

    def __init__(
        self,
        *,
        limits: Limits,
        latency: float,
        latency_per_input: float,
        accept_gzip: bool,
        buckets: TokenBuckets,
        require_key: str | None,
        seed: int,
    ) -> None:
        self._limits, self._latency, self._latency_per_input = limits, latency, latency_per_input
        self._accept_gzip, self._buckets, self._require_key = accept_gzip, buckets, require_key
        self._replies = Replies(random.Random(seed))
        self._slots: asyncio.Semaphore | None = None
        self._lock = threading.Lock()  # guards everything below: both threads touch it
        self._script: deque[Fault] = deque()
        self._chaos: tuple[float, tuple[Fault, ...], random.Random] | None = None
        self._down: int | None = None
        self._log: dict[int, RecordedRequest] = {}
        self._sequence = itertools.count()
        self._in_flight = self._max_in_flight = 0

    def bind(self, max_concurrency: int | None) -> None:
        """Create the concurrency slots; call on the loop that will run :meth:`handle`."""
        self._slots = None if max_concurrency is None else asyncio.Semaphore(max_concurrency)

    # -- controls (any thread) ---------------------------------------------------------------

    def script(self, faults: Sequence[Fault]) -> None:
        """Queue faults for the next valid requests."""
        with self._lock:
            self._script.extend(faults)

    def chaos(self, rate: float, faults: Sequence[Fault], seed: int) -> None:
        """Give each request a random fault with probability ``rate``."""
        with self._lock:
            self._chaos = (rate, tuple(faults), random.Random(seed)) if rate > 0 else None

    def set_down(self, status: int | None) -> None:
        """Fail every request with ``status`` (0: drop it); ``None`` ends the outage."""
        with self._lock:
            self._down = status

    def reset(self) -> None:
        """Clear the script, chaos, outage, request log and ``max_in_flight``."""
        with self._lock:
            self._script.clear()
            self._chaos = None
            self._down = None
            self._log.clear()
            self._max_in_flight = 0
        self._buckets.reset()

    def requests(self) -> list[RecordedRequest]:
        """A copy of the request log, in arrival order."""
        with self._lock:
            return list(self._log.values())

    def max_in_flight(self) -> int:
        """The highest number of requests processed at once."""
        with self._lock:
            return self._max_in_flight

    # -- handling (server thread) ------------------------------------------------------------

    async def handle(self, request: HttpRequest, respond: Respond) -> bool:
        """Answer one request (the server's app); False means the connection is dropped."""
        received_at = time.monotonic()
        plan, record = self._plan(request, received_at)
        record = replace(record, fault=plan.fault_name)
        with self._lock:
            key = next(self._sequence)
            self._log[key] = record

        def finish(status: int) -> None:
            with self._lock:
                if key in self._log:  # absent when reset() ran meanwhile
                    self._log[key] = replace(record, status=status)

        async def respond_logged(reply: HttpReply) -> None:
            # Logged before the bytes go out: a client that has the response sees it logged.
            finish(reply.status)
            await respond(reply)

        status = await self._execute(plan, respond_logged, received_at)
        return status != 0

    def _authorized(self, headers: dict[str, str]) -> bool:
        key = self._require_key
        if key is None:
            return True
        return (
            headers.get("authorization") == f"Bearer {key}"
            or headers.get("api-key") == key
            or headers.get("x-goog-api-key") == key  # Gemini
        )

    def _plan(self, request: HttpRequest, received_at: float) -> tuple[_Plan, RecordedRequest]:
        route = match_route(request.path)
        body, raw, decode_error = decode_body(request, accept_gzip=self._accept_gzip)
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            query=request.query,
            headers=request.headers,
            body=body if isinstance(body, dict) else {},
            raw_size=len(raw),
            wire_size=len(request.body),
            gzip="gzip" in request.headers.get("content-encoding", "").lower(),
            inputs=extract_inputs(route, body) if route is not None else (),
            status=0,
            fault=None,
            received_at=received_at,
        )
        model = body.get("model") if isinstance(body, dict) else None
        model = model if isinstance(model, str) else "text-embedding-3-small"
        api_version = request.query.get("api-version")
        with self._lock:
            down = self._down
        if down is not None:
            if down == 0:
                return _Plan(route, drop=True, fault_name="outage"), record
            reply = self._replies.error(route, status_error(down, model), api_version)
            return _Plan(route, reply=reply, fault_name="outage"), record
        if route is None:
            spec = ErrorSpec(404, f"Invalid URL ({request.method} {request.path})")
            return _Plan(None, reply=self._replies.error(None, spec)), record
        if request.path == TEI_INFO:
            info = tei_info(self._limits, request.method, self._authorized(request.headers))
            return _Plan(route, reply=info), record
        error: ErrorSpec | None = None
        if request.method != "POST":
            error = ErrorSpec(405, f"Method {request.method} not allowed; use POST.")
        elif route.provider == "bedrock":  # SigV4 or a Bedrock API key, checked as AWS does
            error = bedrock_auth_error(request, self._require_key) or decode_error
        elif not self._authorized(request.headers):
            error = status_error(401, model)
            if route.provider == "gemini":
                error = bad_key_error(request.headers)
        elif decode_error is not None:
            error = decode_error
        if error is None:
            call = parse_call(route, request.query, body, self._limits)
            if isinstance(call, EmbedCall):
                fault = self._next_fault()
                name = None if fault is None else fault.name
                return _Plan(route, call=call, fault=fault, fault_name=name), record
            error = call
        return _Plan(route, reply=self._replies.error(route, error, api_version)), record

    def _next_fault(self) -> Fault | None:
        with self._lock:
            if self._script:
                return self._script.popleft()
            if self._chaos is not None:
                rate, faults, rng = self._chaos
                if rng.random() < rate:
                    return rng.choice(faults)
        return None

    async def _execute(self, plan: _Plan, respond: Respond, received_at: float) -> int:
        if plan.drop:
            return 0
        if plan.reply is not None:
            await respond(plan.reply)
            return plan.reply.status
        call, fault = plan.call, plan.fault
        assert call is not None
        decision = None
        if fault is None and self._buckets.enabled:
            decision = self._buckets.acquire(call.tokens)
            if not decision.allowed:
                reply = self._replies.rate_limited(call, decision)
                await respond(reply)
                return reply.status
        async with self._slots if self._slots is not None else contextlib.nullcontext():
            with self._lock:
                self._in_flight += 1
                self._max_in_flight = max(self._max_in_flight, self._in_flight)
            try:
                wait = self._latency + self._latency_per_input * len(call.inputs)
                if fault is not None and fault.kind == "delay":
                    wait += fault.seconds
                if wait > 0:
                    await asyncio.sleep(wait)
                if fault is not None and fault.kind == "drop":
                    return 0
                reply = self._replies.success(call, fault, decision, time.monotonic() - received_at)
                await respond(reply)
                return reply.status
            finally:
                with self._lock:
                    self._in_flight -= 1
