"""Ollama's native embeddings endpoint: ``POST {host}/api/embed`` (sans-IO codec)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import SplitResult, urlsplit

import numpy as np

from embedguard.core.config import ProviderProfile, check_url
from embedguard.core.errors import ConfigurationError

from ._codec import resolve_key
from ._decode import decode_float_rows, load_json_object
from ._errors import request_id_of
from ._json import DecodedBody, JsonCodec, echoed_model, token_count
from .base import RateLimitInfo

__all__ = ["OLLAMA_NATIVE_DIMENSIONS", "OllamaCodec", "ollama_host"]

DEFAULT_HOST = "http://localhost:11434"
_DEFAULT_PORT = 11434

OLLAMA_NATIVE_DIMENSIONS: Mapping[str, int] = {
    "nomic-embed-text": 768,
    "all-minilm": 384,
    "mxbai-embed-large": 1024,
}
"""Native sizes of common models (untagged or ``:latest``); asking for these sends nothing."""


def _port(parts: SplitResult) -> int | None:
    """The explicit port, ``None`` when absent, ``-1`` when malformed."""
    try:
        return parts.port
    except ValueError:
        return -1


def ollama_host(profile: ProviderProfile, environ: Mapping[str, str]) -> str:
    """The server root: ``profile.base_url``, else ``OLLAMA_HOST``, else localhost:11434.

    ``OLLAMA_HOST`` may omit the scheme (``http`` is assumed) and, then, the port (11434).

    Raises:
        ConfigurationError: ``OLLAMA_HOST`` is not a usable host.
    """
    if profile.base_url:
        return profile.base_url.rstrip("/")
    raw = environ.get("OLLAMA_HOST", "").strip().rstrip("/")
    if not raw:
        return DEFAULT_HOST
    if "://" not in raw:
        raw = f"http://{raw}"
        parts = urlsplit(raw)
        if parts.hostname and _port(parts) is None:
            raw = f"http://{parts.netloc}:{_DEFAULT_PORT}{parts.path}"
    parts = urlsplit(raw)
    try:
        check_url(raw)
    except ValueError:
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.hostname or _port(parts) == -1:
        raise ConfigurationError(
            f"OLLAMA_HOST is not a usable host: {raw!r}", field="base_url", provider=profile.name
        )
    return raw


def _wants_dimensions(profile: ProviderProfile) -> bool:
    if profile.dimensions is None:
        return False
    name, _, tag = profile.model.partition(":")
    native = OLLAMA_NATIVE_DIMENSIONS.get(name) if tag in ("", "latest") else None
    return native != profile.dimensions


class OllamaCodec(JsonCodec):
    """Codec for Ollama's ``/api/embed``.

    No key is needed; when one is given (``api_key``, or the variable the profile's
    ``api_key_env`` names, e.g. for a server behind an authenticating proxy) it is sent as a
    bearer token. ``dimensions`` is sent whenever the profile sets it, unless it is the known
    native size of the model. The profile's ``extra_body`` carries Ollama's other fields, such
    as ``truncate``, ``keep_alive`` and the nested ``options`` object
    (``{"options": {"num_ctx": 8192}}``). Token usage is read from ``prompt_eval_count``.
    """

    provider: ClassVar[str] = "ollama"
    __slots__ = ()

    def __init__(
        self,
        profile: ProviderProfile,
        *,
        api_key: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        environ = os.environ if environ is None else environ
        host = ollama_host(profile, environ)
        key = resolve_key(profile, api_key, environ, None, required=False)
        fields: dict[str, Any] = {"model": profile.model}
        if _wants_dimensions(profile):
            fields["dimensions"] = profile.dimensions
        super().__init__(profile, url=f"{host}/api/embed", fields=fields, key=key)

    def _decode_body(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        *,
        n_inputs: int,
        dimensions: int | None,
        out: np.ndarray | None,
    ) -> DecodedBody:
        from ._typed import decode_ollama_floats  # msgspec is imported at the first reply

        typed = decode_ollama_floats(body, n_inputs=n_inputs, dimensions=dimensions, out=out)
        if typed is not None:
            return typed
        secrets = self._secrets()
        doc = load_json_object(self.name, status, headers, body, secrets=secrets)
        vectors = decode_float_rows(
            doc.get("embeddings"), n_inputs=n_inputs, dimensions=dimensions, provider=self.name,
            status_code=status, request_id=request_id_of(headers, secrets), out=out,
        )  # fmt: skip
        return DecodedBody(vectors, token_count(doc.get("prompt_eval_count")), echoed_model(doc))

    def _rate_limit(self, headers: Mapping[str, str]) -> RateLimitInfo | None:
        return None
