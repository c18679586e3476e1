"""Mistral embeddings: ``POST {base}/embeddings`` (sans-IO codec)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from embedguard.core.config import ProviderProfile

from ._codec import (
    NativeSize,
    check_native_dimensions,
    rate_limit_or_none,
    resolve_base_url,
    resolve_key,
)
from ._json import JsonCodec
from .base import RateLimitInfo

__all__ = ["MISTRAL_NATIVE_DIMENSIONS", "MistralCodec", "mistral_rate_limit"]

DEFAULT_BASE_URL = "https://api.mistral.ai/v1"

MISTRAL_NATIVE_DIMENSIONS: Mapping[str, NativeSize] = {
    "mistral-embed": NativeSize(1024, 1024, fixed=True),
    "codestral-embed": NativeSize(1536, 3072),
}
"""Native vector sizes by model family (``codestral-embed-2505`` is ``codestral-embed``)."""

_RATE_HEADER = re.compile(r"x-ratelimit-(limit|remaining)-(req|tokens)-([a-z0-9-]+)")


def _family(model: str) -> str:
    for family in MISTRAL_NATIVE_DIMENSIONS:
        if model == family or model.startswith(family + "-"):
            return family
    return model


def mistral_rate_limit(headers: Mapping[str, str]) -> RateLimitInfo | None:
    """Read Mistral's ``x-ratelimit-(limit|remaining)-(req|tokens)-<window>`` headers.

    Header names vary by plan (``req-minute``, ``req-10-second``, ``tokens-minute``,
    ``tokens-month``...). Limits are the per-minute ones. A remaining count is the smallest over
    all windows sent, since the tightest window is the one that stops the next request.
    """
    found: dict[tuple[str, str], dict[str, int]] = {}
    for name, raw in headers.items():
        match = _RATE_HEADER.fullmatch(name)
        if match is None:
            continue
        try:
            value = int(float(raw.strip()))
        except (ValueError, OverflowError):
            continue
        if value >= 0:
            found.setdefault((match[1], match[2]), {})[match[3]] = value

    def remaining(kind: str) -> int | None:
        windows = found.get(("remaining", kind))
        return min(windows.values()) if windows else None

    return rate_limit_or_none(
        RateLimitInfo(
            limit_requests=found.get(("limit", "req"), {}).get("minute"),
            remaining_requests=remaining("req"),
            limit_tokens=found.get(("limit", "tokens"), {}).get("minute"),
            remaining_tokens=remaining("tokens"),
        )
    )


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
