"""Faults the test server can inject: wrong statuses, broken connections and broken bodies."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["DATA_FAULTS", "Fault"]

# Faults that keep status 200 and damage the embeddings themselves: they need a valid request.
DATA_FAULTS = frozenset(
    {"wrong_count", "shuffle", "bad_index", "nan", "wrong_dimensions"},
)


def _non_negative(name: str, value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Fault:
    """One injected failure, applied to one request by :class:`EmbeddingServer`.

    Build faults with the constructors (``Fault.status(503)``, ``Fault.drop()``, ...) and hand
    them to ``EmbeddingServer.script`` or ``EmbeddingServer.chaos``. Error bodies default to the
    realistic body of the route's provider (OpenAI's nested ``error`` object, Azure's
    ``{"error": {"code": "429", ...}}``, Mistral's ``{"object": "error", ...}``, Ollama's
    ``{"error": "..."}``).

    Attributes:
        kind: what goes wrong (``"status"``, ``"rate_limited"``, ``"drop"``, ``"nan"``, ...).
        status_code: the HTTP status sent, for faults that choose one.
        body: an exact response body replacing the provider's default error body.
        headers: extra response headers, as ``(name, value)`` pairs.
        seconds: the extra delay (``delay``) or the send duration (``trickle``).
        retry_after: the wait advertised by ``rate_limited``, in seconds.
        retry_after_ms: advertise the wait as ``retry-after-ms`` instead of ``retry-after``.
    """

    kind: str
    status_code: int | None = None
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0
    retry_after: float | None = None
    retry_after_ms: bool = False

    @property
    def name(self) -> str:
        """A short label: the kind, or ``status_<code>`` for :meth:`status` faults."""
        return f"status_{self.status_code}" if self.kind == "status" else self.kind

    def __str__(self) -> str:
        return self.name

    @classmethod
    def status(
        cls,
        code: int,
        *,
        body: bytes | Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """Answer with HTTP ``code`` (200-599) and the provider's error body, or ``body``.

        Example:
            ``Fault.status(429, headers={"retry-after": "0.05"})``
        """
        if not 200 <= code <= 599:
            raise ValueError(f"status code must be in 200..599, got {code}")
        raw = orjson.dumps(dict(body)) if isinstance(body, Mapping) else body
        pairs = tuple((k.lower(), str(v)) for k, v in (headers or {}).items())
        return cls("status", status_code=code, body=raw, headers=pairs)

    @classmethod
    def rate_limited(cls, retry_after: float | None = None, *, ms: bool = False) -> Fault:
        """429 ``rate_limit_exceeded``, advertising ``retry_after`` seconds when given.

        The wait is sent as ``retry-after`` (seconds), or as ``retry-after-ms`` when ``ms`` is
        true; Azure routes always get both, as Azure sends them.
        """
        wait = None if retry_after is None else _non_negative("retry_after", retry_after)
        return cls("rate_limited", status_code=429, retry_after=wait, retry_after_ms=ms)

    @classmethod
    def quota(cls) -> Fault:
        """429 ``insufficient_quota``: billing exhausted, which no retry can fix."""
        return cls("quota", status_code=429)

    @classmethod
    def context_length(cls) -> Fault:
        """400 "Invalid 'input': maximum context length is 8192 tokens."."""
        return cls("context_length", status_code=400)

    @classmethod
    def drop(cls) -> Fault:
        """Close the connection without sending any response."""
        return cls("drop")

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Respond normally after an extra ``seconds`` (to trigger read timeouts)."""
        return cls("delay", seconds=_non_negative("seconds", seconds))

    @classmethod
    def trickle(cls, seconds: float) -> Fault:
        """Send the headers at once, then the body in small pieces spread over ``seconds``."""
        return cls("trickle", seconds=_non_negative("seconds", seconds))

    @classmethod
    def truncate(cls) -> Fault:
        """200 with the first half of the body only (valid HTTP framing, invalid JSON)."""
        return cls("truncate", status_code=200)

    @classmethod
    def malformed(cls) -> Fault:
        """200 with a non-JSON body: an HTML page from a misbehaving proxy."""
        return cls("malformed", status_code=200)

    @classmethod
    def wrong_count(cls) -> Fault:
        """200 with the last vector missing."""
        return cls("wrong_count", status_code=200)

    @classmethod
    def shuffle(cls) -> Fault:
        """200 with ``data[]`` out of order; each item keeps its correct ``index``.

        With two or more inputs the order always differs from the request's. Ollama responses
        carry no index, so there the vectors are simply reordered (undetectable by a client).
        """
        return cls("shuffle", status_code=200)

    @classmethod
    def bad_index(cls) -> Fault:
        """200 where the last item repeats the first item's index (out of range for one input).

        Ollama responses carry no index: there an extra copy of the first vector is appended.
        """
        return cls("bad_index", status_code=200)

    @classmethod
    def nan(cls) -> Fault:
        """200 with one NaN in one vector (a ``NaN`` literal in JSON, NaN bytes in base64)."""
        return cls("nan", status_code=200)

    @classmethod
    def wrong_dimensions(cls) -> Fault:
        """200 with every vector one element short."""
        return cls("wrong_dimensions", status_code=200)

    @classmethod
    def error_body_200(cls) -> Fault:
        """200 whose body is the provider's 500 error body instead of embeddings."""
        return cls("error_body_200", status_code=200)
