"""Mistral embeddings: ``POST {base}/embeddings`` (sans-IO codec)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar

from embedguard.core.config import ProviderProfile

from ._codec import (
    NativeSize,
    check_native_dimensions,
    resolve_base_url,
    resolve_key,
)
from ._json import JsonCodec
from .base import RateLimitInfo
from .headers import mistral_rate_limit

__all__ = ["MISTRAL_NATIVE_DIMENSIONS", "MistralCodec", "mistral_rate_limit"]

DEFAULT_BASE_URL = "https://api.mistral.ai/v1"

MISTRAL_NATIVE_DIMENSIONS: Mapping[str, NativeSize] = {
    "mistral-embed": NativeSize(1024, 1024, fixed=True),
    "codestral-embed": NativeSize(1536, 3072),
}
"""Native vector sizes by model family (``codestral-embed-2505`` is ``codestral-embed``)."""


def _family(model: str) -> str:
    for family in MISTRAL_NATIVE_DIMENSIONS:
        if model == family or model.startswith(family + "-"):
            return family
    return model


class MistralCodec(JsonCodec):
    """Codec for the Mistral API.

    Key from ``api_key`` or ``MISTRAL_API_KEY`` (or the profile's ``api_key_env``); base URL from
    the profile, ``MISTRAL_BASE_URL`` or ``https://api.mistral.ai/v1``. Vectors are always asked
    for as JSON floats. ``output_dimension`` is sent only when the profile asks codestral-embed
    for a size other than its native 1536 (mistral-embed is fixed at 1024).
    """

    provider: ClassVar[str] = "mistral"
    __slots__ = ()

    def __init__(
        self,
        profile: ProviderProfile,
        *,
        api_key: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        environ = os.environ if environ is None else environ
        key = resolve_key(profile, api_key, environ, "MISTRAL_API_KEY", required=True)
        base = resolve_base_url(profile, environ, "MISTRAL_BASE_URL", DEFAULT_BASE_URL)
        family = _family(profile.model)
        fields: dict[str, Any] = {"model": profile.model, "encoding_format": "float"}
        dimension = check_native_dimensions(profile, MISTRAL_NATIVE_DIMENSIONS, family)
        if dimension is not None:
            fields["output_dimension"] = dimension
        if family == "codestral-embed":
            fields["output_dtype"] = "float"
        super().__init__(profile, url=f"{base}/embeddings", fields=fields, key=key)

    def _rate_limit(self, headers: Mapping[str, str]) -> RateLimitInfo | None:
        return mistral_rate_limit(headers)
