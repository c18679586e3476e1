"""Shared set-up of the JSON-over-HTTP codecs: key and URL resolution, native sizes and the user
agent. The codec base class, :class:`JsonCodec`, lives with the fast response path in
:mod:`._json`; response headers are read by :mod:`.headers`."""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Mapping
from typing import NamedTuple

from pydantic import SecretStr

from embedguard.core.config import ProviderProfile, check_url
from embedguard.core.errors import ConfigurationError

__all__ = [
    "NativeSize",
    "check_native_dimensions",
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
