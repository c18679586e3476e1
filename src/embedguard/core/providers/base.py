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

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from embedguard.core.config import ProviderProfile
from embedguard.core.errors import ConfigurationError
from embedguard.core.ratelimit import RateLimitInfo

from ._decode import decode_openai_data
from ._errors import error_from_response

__all__ = [
    "Codec",
    "EmbeddingResult",
    "HttpRequest",
    "RateLimitInfo",
    "decode_openai_data",
    "error_from_response",
    "make_codec",
]


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
        vectors: float32, shape ``(n_inputs, d)``; row ``i`` is the vector of input ``i``.
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

    def build_request(self, texts: Sequence[str]) -> HttpRequest:
        """Describe the request that embeds ``texts`` (raw strings, in order)."""
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
        """
        ...


def make_codec(
    profile: ProviderProfile,
    *,
    api_key: str | None = None,
    token_provider: Callable[[], str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Codec:
    """Build the codec for ``profile``.

    The key is ``api_key`` if given, else ``environ[profile.api_key_env]``, else the provider's
    default variable (``OPENAI_API_KEY``, ``AZURE_OPENAI_API_KEY``, ``MISTRAL_API_KEY``). The base
    URL is ``profile.base_url``, else the provider's variable (``OPENAI_BASE_URL``,
    ``AZURE_OPENAI_ENDPOINT``, ``MISTRAL_BASE_URL``, ``OLLAMA_HOST``), else the public default.

    Args:
        profile: What to talk to.
        api_key: The secret; never stored in ``repr``.
        token_provider: Azure only: returns a Microsoft Entra ID bearer token; called for every
            request and used instead of a key.
        environ: Where to read variables (default ``os.environ``).

    Raises:
        ConfigurationError: A required key, endpoint or API version is missing (``field`` names
            it), or the profile is ``local`` (an in-process model has no wire codec).
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    if token_provider is not None and profile.provider != "azure":
        raise ConfigurationError(
            "a token provider is supported for the azure provider only",
            field="token_provider",
            provider=profile.name,
        )
    if profile.provider == "openai":
        from .openai import OpenAICodec

        return OpenAICodec(profile, api_key=api_key, environ=env)
    if profile.provider == "azure":
        from .azure import AzureOpenAICodec

        return AzureOpenAICodec(
            profile, api_key=api_key, token_provider=token_provider, environ=env
        )
    if profile.provider == "mistral":
        from .mistral import MistralCodec

        return MistralCodec(profile, api_key=api_key, environ=env)
    if profile.provider == "ollama":
        from .ollama import OllamaCodec

        return OllamaCodec(profile, api_key=api_key, environ=env)
    if profile.provider == "openai_compatible":
        from .compatible import OpenAICompatibleCodec

        return OpenAICompatibleCodec(profile, api_key=api_key, environ=env)
    raise ConfigurationError(
        f"the {profile.provider!r} provider runs in-process and has no HTTP codec; "
        "in-process models are not available yet",
        field="provider",
        provider=profile.name,
    )
