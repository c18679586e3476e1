"""OpenAI-compatible servers: vLLM, LM Studio, llama.cpp server, TEI ``/v1``, LocalAI, Ollama
``/v1`` (sans-IO codec)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import ClassVar

from embedguard.core.config import ProviderProfile

from ._codec import resolve_base_url, resolve_key
from ._json import JsonCodec

__all__ = ["OpenAICompatibleCodec"]


class OpenAICompatibleCodec(JsonCodec):
    """Codec for servers that speak OpenAI's ``/v1/embeddings`` format.

    The profile's ``base_url`` is required (e.g. ``http://localhost:8000/v1``; a URL that already
    ends in ``/embeddings`` is used as is). The key is optional: ``api_key``, or the variable the
    profile's ``api_key_env`` names; without one no ``Authorization`` header is sent.

    Inputs are always sent as raw text, never token ids. ``encoding_format`` follows the profile,
    but float vectors are accepted whatever was asked (LM Studio ignores the field). The
    ``dimensions`` field is never sent: servers such as vLLM reject it for models that cannot
    shorten their vectors. Put ``dimensions`` in the profile's ``extra_body`` to send it anyway.
    """

    provider: ClassVar[str] = "openai_compatible"
    __slots__ = ()

    def __init__(
        self,
        profile: ProviderProfile,
        *,
        api_key: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        environ = os.environ if environ is None else environ
        base = resolve_base_url(profile, environ, None, None)
        key = resolve_key(profile, api_key, environ, None, required=False)
        url = base if base.endswith("/embeddings") else f"{base}/embeddings"
        fields = {"model": profile.model, "encoding_format": profile.encoding_format}
        super().__init__(profile, url=url, fields=fields, key=key)
