"""Shared set-up of the JSON-over-HTTP codecs: key and URL resolution, native sizes, the user
agent, and OpenAI-style rate-limit headers. The codec base class, :class:`JsonCodec`, lives with
the response decoding in :mod:`._decode`, so a request's whole exchange runs in one module."""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Mapping
from typing import NamedTuple

from pydantic import SecretStr

from embedguard.core.config import ProviderProfile, check_url
from embedguard.core.errors import ConfigurationError
from embedguard.core.retry import parse_duration

from .base import RateLimitInfo

__all__ = [
    "NativeSize",
    "check_native_dimensions",
    "int_header",
    "openai_rate_limit",
    "rate_limit_or_none",
    "resolve_base_url",
    "resolve_key",
    "user_agent",
]


@functools.cache
def user_agent() -> str:
    """``embedguard/<installed version>`` (``embedguard/0`` when not installed)."""
    try:
        version = importlib.metadata.version("embedguard")
    except importlib.metadata.PackageNotFoundError:
        version = "0"
    return f"embedguard/{version}"


def resolve_key(
    profile: ProviderProfile,
    api_key: str | None,
    environ: Mapping[str, str],
    default_env: str | None,
    *,
    required: bool,
) -> SecretStr | None:
    """The key: ``api_key``, else ``environ[profile.api_key_env or default_env]``.

    Raises:
        ConfigurationError: ``required`` and no non-empty key was found (names the variable).
    """
    if api_key is not None and api_key.strip():
        return SecretStr(api_key.strip())
    env_name = profile.api_key_env or default_env
    value = environ.get(env_name, "").strip() if env_name else ""
    if value:
        return SecretStr(value)
    if required:
        where = f"set the {env_name} environment variable or pass api_key" if env_name else ""
        raise ConfigurationError(
            f"no API key for the {profile.provider} provider; {where}".rstrip("; "),
            field="api_key",
            provider=profile.name,
        )
    return None


def resolve_base_url(
    profile: ProviderProfile,
    environ: Mapping[str, str],
    env_name: str | None,
    default: str | None,
) -> str:
    """The base URL: ``profile.base_url``, else ``environ[env_name]``, else ``default``.

    Raises:
        ConfigurationError: No URL was found, or the variable's value is not an http(s) URL.
    """
    if profile.base_url:
        return profile.base_url.rstrip("/")
    value = environ.get(env_name, "").strip() if env_name else ""
    if value:
        try:
            return check_url(value)
        except ValueError:
            raise ConfigurationError(
                f"{env_name} is not an http(s) URL: {value!r}",
                field="base_url",
                provider=profile.name,
            ) from None
    if default is None:
        hint = f" or set {env_name}" if env_name else ""
        raise ConfigurationError(
            f"the {profile.provider} provider needs a base URL; set profile.base_url{hint}",
            field="base_url",
            provider=profile.name,
        )
    return default


class NativeSize(NamedTuple):
    """A model's native vector size, the largest it can produce, and whether it is fixed."""

    size: int
    maximum: int
    fixed: bool = False


def check_native_dimensions(
    profile: ProviderProfile, natives: Mapping[str, NativeSize], model_key: str
) -> int | None:
    """The output size to request, or ``None`` when the model's native size is wanted.

    Unknown models never get one (the server would reject it for models that cannot change
    their vector size).

    Raises:
        ConfigurationError: A fixed-size model was asked for another size, or a model was asked
            for more dimensions than it can produce.
    """
    wanted = profile.dimensions
    known = natives.get(model_key)
    if wanted is None or known is None or wanted == known.size:
        return None
    if known.fixed or wanted > known.maximum:
        allowed = f"exactly {known.size}" if known.fixed else f"at most {known.maximum}"
        raise ConfigurationError(
            f"{profile.model} produces {allowed} dimensions, not {wanted}",
            field="dimensions",
            provider=profile.name,
        )
    return wanted


def int_header(headers: Mapping[str, str], name: str) -> int | None:
    """A non-negative integer header (``-1`` and junk read as ``None``); names lower-case."""
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = int(float(raw.strip()))
    except (ValueError, OverflowError):
        return None
    return value if value >= 0 else None


def _seconds_header(headers: Mapping[str, str], name: str) -> float | None:
    raw = headers.get(name)
    return parse_duration(raw) if raw else None


def rate_limit_or_none(info: RateLimitInfo) -> RateLimitInfo | None:
    """``info``, or ``None`` when the provider sent no rate-limit value at all."""
    values = (
        info.limit_requests,
        info.remaining_requests,
        info.reset_requests,
        info.limit_tokens,
        info.remaining_tokens,
        info.reset_tokens,
    )
    return info if any(v is not None for v in values) else None


def openai_rate_limit(headers: Mapping[str, str]) -> RateLimitInfo | None:
    """Read ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` (lower-cased headers).

    Resets are Go-style durations (``6ms``, ``1m30s``) or seconds; Azure's
    ``x-rate-limit-reset-tokens`` (seconds) is read when the OpenAI name is absent. The
    ``*_usage_based`` variants are not used.
    """
    reset_tokens = _seconds_header(headers, "x-ratelimit-reset-tokens")
    if reset_tokens is None:
        reset_tokens = _seconds_header(headers, "x-rate-limit-reset-tokens")
    return rate_limit_or_none(
        RateLimitInfo(
            limit_requests=int_header(headers, "x-ratelimit-limit-requests"),
            remaining_requests=int_header(headers, "x-ratelimit-remaining-requests"),
            reset_requests=_seconds_header(headers, "x-ratelimit-reset-requests"),
            limit_tokens=int_header(headers, "x-ratelimit-limit-tokens"),
            remaining_tokens=int_header(headers, "x-ratelimit-remaining-tokens"),
            reset_tokens=reset_tokens,
        )
    )
