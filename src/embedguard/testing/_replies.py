"""Build the HTTP replies of the test server: successes, errors and injected faults."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence

from . import _wire_bedrock as wire_bedrock
from ._errors import ErrorSpec, context_length_error, quota_error, rate_limit_error, status_error
from ._faults import Fault
from ._http import HttpReply
from ._ratelimit import RateDecision, rate_headers, retry_headers
from ._routes import HTML_PAGE, EmbedCall, Route, error_200, error_body, render
from ._wire_cohere import cohere_ids, cohere_success_headers
from ._wire_tei import tei_headers, tei_spec

__all__ = ["STATUS_FAULTS", "Replies"]

_JSON = "application/json"
# Faults answered with an error status instead of embeddings.
STATUS_FAULTS = frozenset({"status", "rate_limited", "quota", "context_length"})


class Replies:
    """Reply factory; ``rng`` drives request ids and the random parts of data faults.

    Only the server's event-loop thread uses it, so ``rng`` needs no lock.
    """

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def ids(self, provider: str) -> list[tuple[str, str]]:
        """The request-id headers ``provider`` sends (OpenAI ``req_<hex>``, Azure a UUID...)."""
        bits = self._rng.getrandbits(128)
        if provider == "openai":
            return [("x-request-id", f"req_{bits:032x}")]
        if provider in ("ollama", "gemini", "tei"):  # none sends a request id
            return []
        if provider == "cohere":
            return cohere_ids(bits)
        if provider == "voyage":
            return [("x-request-id", f"{bits:032x}")]
        request_id = str(uuid.UUID(int=bits, version=4))
        if provider == "bedrock":
            return [("x-amzn-RequestId", request_id)]
        if provider == "azure":
            return [("x-request-id", request_id), ("apim-request-id", request_id)]
        return [("mistral-correlation-id", request_id)]

    def error(
        self,
        route: Route | None,
        spec: ErrorSpec,
        api_version: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes | None = None,
    ) -> HttpReply:
        """``spec`` in ``route``'s wire shape (OpenAI's for unknown routes), or ``body``."""
        provider = "openai" if route is None else route.provider
        if provider == "bedrock":
            spec, body, headers = wire_bedrock.error(spec, body, headers)
        if provider == "tei":
            spec = tei_spec(spec)
        all_headers = [("content-type", f"{_JSON}; charset=utf-8"), *self.ids(provider), *headers]
        if body is None:
            body = error_body(route, spec, api_version)
        return HttpReply(spec.status, body, all_headers)

    def rate_limited(self, call: EmbedCall, decision: RateDecision) -> HttpReply:
        """The 429 for a request the server's rate limiter refused."""
        requests = decision.unit == "requests"
        limit = (decision.limit_requests if requests else decision.limit_tokens) or 0
        remaining = decision.remaining_requests if requests else decision.remaining_tokens
        spec = rate_limit_error(
            call.model,
            unit=decision.unit,
            limit=limit,
            used=max(0, limit - remaining),
            requested=decision.requested,
            retry_after=decision.retry_after,
        )
        provider = call.route.provider
        headers = retry_headers(provider, decision.retry_after) + rate_headers(provider, decision)
        return self.error(call.route, spec, call.api_version, headers)

    def fault(self, call: EmbedCall, fault: Fault) -> HttpReply:
        """The error reply of a status fault (one of :data:`STATUS_FAULTS`)."""
        if fault.kind == "status":
            spec = status_error(fault.status_code or 500, call.model)
            return self.error(call.route, spec, call.api_version, fault.headers, fault.body)
        if fault.kind == "rate_limited":
            wait = fault.retry_after
            spec = rate_limit_error(
                call.model, unit="requests", limit=3, used=3, requested=1, retry_after=wait
            )
            provider = call.route.provider
            ms = fault.retry_after_ms
            headers = [] if wait is None else retry_headers(provider, wait, ms=ms)
            return self.error(call.route, spec, call.api_version, headers)
        spec = quota_error() if fault.kind == "quota" else context_length_error()
        return self.error(call.route, spec, call.api_version)

    def success(
        self,
        call: EmbedCall,
        fault: Fault | None,
        decision: RateDecision | None,
        elapsed: float,
    ) -> HttpReply:
        """The 200 for ``call``, damaged by ``fault`` if it is a body or byte-level fault."""
        if fault is not None and fault.kind in STATUS_FAULTS:
            return self.fault(call, fault)
        kind = None if fault is None else fault.kind
        provider = call.route.provider
        if kind == "malformed":
            return HttpReply(200, HTML_PAGE, [("content-type", "text/html")])
        if kind == "error_body_200":
            return HttpReply(200, error_200(call), [("content-type", _JSON), *self.ids(provider)])
        body = render(call, kind, self._rng, int(elapsed * 1e9))
        headers = [("content-type", _JSON), *self.ids(provider)]
        if provider == "openai":
            headers += [
                ("openai-model", call.model),
                ("openai-processing-ms", str(int(elapsed * 1000))),
                ("openai-version", "2020-10-01"),
            ]
        if provider == "cohere":
            headers += cohere_success_headers(call.inputs, call.tokens)
        elif provider == "bedrock":
            headers += wire_bedrock.success_headers(call, elapsed)
        elif provider == "tei":
            headers += tei_headers(call, elapsed)
        if decision is not None:
            headers += rate_headers(provider, decision)
        if kind == "truncate":
            body = body[: len(body) // 2]
        trickle = fault.seconds if fault is not None and kind == "trickle" else 0.0
        return HttpReply(200, body, headers, trickle=trickle)
