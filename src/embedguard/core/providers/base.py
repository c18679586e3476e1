"""The codec protocol: providers describe requests and parse responses; they never open sockets.

A codec turns texts into an :class:`HttpRequest` (method, URL, headers, JSON body) and turns the
provider's reply (status, headers, body bytes) into an :class:`EmbeddingResult` or the typed
:class:`~embedguard.core.errors.ProviderError` it stands for. The client pipeline does the I/O,
so one pipeline (sync and async, with retries, limits and the breaker) serves every provider::

    codec = make_codec(ProviderProfile(provider="openai", model="text-embedding-3-small"))
    request = codec.build_request(["first text", "second text"])
    # ... send request.method / request.url / request.headers / request.body ...
    result = codec.parse_response(status, headers, body, n_inputs=2, dimensions=None)
    result.vectors.shape  # (2, 1536)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from embedguard.core.ratelimit import RateLimitInfo

__all__ = ["Codec", "EmbeddingResult", "HttpRequest", "RateLimitInfo"]


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A request to send, described as data.

    Attributes:
        method: HTTP method (``POST``).
        url: The full URL, query string included.
        headers: Headers to send; may hold the key, so they are left out of ``repr``.
        body: The JSON body (orjson-serialized, uncompressed); left out of ``repr``.
    """

    method: str
    url: str
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)


@dataclass(frozen=True, slots=True, eq=False)
class EmbeddingResult:
    """One successful response, validated.

    Attributes:
        vectors: float32, shape ``(n_inputs, d)``; row ``i`` is the vector of input ``i`` (for a
            compact dtype: its integer values, and ``d`` is the packed width for bit types).
        prompt_tokens: Input tokens the provider counted, ``None`` when it did not say.
        model: The model name the server echoed, when it did.
        rate_limit: The rate-limit headers, when the provider sent any.
    """

    vectors: np.ndarray
    prompt_tokens: int | None
    model: str | None
    rate_limit: RateLimitInfo | None


@runtime_checkable
class Codec(Protocol):
    """Builds requests for and parses responses from one provider (sans-IO)."""

    name: str
    """The profile's name, used in errors and metrics."""

    url: str
    """Where requests go (``local://MODEL`` for an in-process model); named in errors and events."""

    def build_request(self, texts: Sequence[str], kind: str = "document") -> HttpRequest:
        """Describe the request that embeds ``texts`` (raw strings, in order).

        ``kind`` is ``"document"`` or ``"query"`` (the codec sends the provider's input type and
        the profile's prefix for it), or a provider's own input type given per call, sent as is.
        """
        ...

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
        """Validate a response: return the vectors on 2xx, raise the typed error otherwise.

        ``dimensions=None`` accepts any vector size consistent within the response. ``out``, a
        float32 ``(n_inputs, dimensions)`` array, receives the vectors when given (no copy).

        A compact :attr:`~embedguard.ProviderProfile.dtype` still comes back as float32 rows,
        holding the integer values exactly: ``int8``/``uint8`` one per dimension, ``binary`` /
        ``ubinary`` one per packed byte (rows ``dimensions`` wide are then ``dimensions / 8``
        bytes: the caller passes that width). The client casts to the dtype once, at the end.
        """
        ...
