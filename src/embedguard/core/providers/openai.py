"""OpenAI embeddings: ``POST {base}/embeddings`` (sans-IO codec)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar

from embedguard.core.config import ProviderProfile

from ._codec import NativeSize, check_native_dimensions, resolve_base_url, resolve_key
from ._json import JsonCodec

__all__ = ["OPENAI_NATIVE_DIMENSIONS", "OpenAICodec"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"

OPENAI_NATIVE_DIMENSIONS: Mapping[str, NativeSize] = {
    "text-embedding-3-small": NativeSize(1536, 1536),
    "text-embedding-3-large": NativeSize(3072, 3072),
    "text-embedding-ada-002": NativeSize(1536, 1536, fixed=True),
}
"""Native vector size of each known OpenAI model (ada-002 cannot change it)."""


def openai_fields(profile: ProviderProfile) -> dict[str, Any]:
    """The body fields OpenAI's wire format takes besides ``input`` (shared with Azure)."""
    fields: dict[str, Any] = {"model": profile.model, "encoding_format": profile.encoding_format}
    dimensions = check_native_dimensions(profile, OPENAI_NATIVE_DIMENSIONS, profile.model)
    if dimensions is not None:
        fields["dimensions"] = dimensions
    return fields


class OpenAICodec(JsonCodec):
    """Codec for the OpenAI API.

    Key from ``api_key`` or ``OPENAI_API_KEY`` (or the profile's ``api_key_env``); base URL from
    the profile, ``OPENAI_BASE_URL`` or ``https://api.openai.com/v1``; ``OPENAI_ORG_ID`` and
    ``OPENAI_PROJECT_ID``, when set, are sent as ``OpenAI-Organization`` / ``OpenAI-Project``.
    ``dimensions`` is sent only when the profile asks a known model for a size other than its
    native one (never for unknown models, which may not support it).

    Example::

        codec = OpenAICodec(ProviderProfile(provider="openai", model="text-embedding-3-small"),
                            api_key="sk-...")
        codec.build_request(["hello"]).url  # 'https://api.openai.com/v1/embeddings'
    """

    provider: ClassVar[str] = "openai"
    __slots__ = ()

    def __init__(
        self,
        profile: ProviderProfile,
        *,
        api_key: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        environ = os.environ if environ is None else environ
        key = resolve_key(profile, api_key, environ, "OPENAI_API_KEY", required=True)
        base = resolve_base_url(profile, environ, "OPENAI_BASE_URL", DEFAULT_BASE_URL)
        headers: dict[str, str] = {}
        if environ.get("OPENAI_ORG_ID"):
            headers["OpenAI-Organization"] = environ["OPENAI_ORG_ID"]
        if environ.get("OPENAI_PROJECT_ID"):
            headers["OpenAI-Project"] = environ["OPENAI_PROJECT_ID"]
        super().__init__(
            profile,
            url=f"{base}/embeddings",
            fields=openai_fields(profile),
            key=key,
            headers=headers,
        )
