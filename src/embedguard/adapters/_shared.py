"""What both adapters share: settings to profile and key, the source argument, the client's health.

No framework imports here, so each adapter module stays a thin translation layer.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from embedguard.core import profiles
from embedguard.core.breaker import CircuitState
from embedguard.core.client import EmbeddingClient
from embedguard.core.config import ProviderProfile
from embedguard.core.errors import ConfigurationError
from embedguard.core.metrics import MetricsSnapshot
from embedguard.core.usage import Usage, track_usage

__all__ = ["SETTINGS", "ClientHealth", "resolve", "take_source"]

SETTINGS = ("provider", "model", "base_url", "dimensions", "api_key", "profile")
"""The keyword arguments :func:`resolve` understands."""

# The variables the provider codecs read when no key is passed (see ``make_codec``).
_KEY_ENV = {
    "openai": "OPENAI_API_KEY",
    "azure": "AZURE_OPENAI_API_KEY",
    "mistral": "MISTRAL_API_KEY",
}
_OVERRIDABLE = ("model", "base_url", "dimensions")


def _profile_of(data: Mapping[str, Any]) -> ProviderProfile:
    given = data.get("profile")
    overrides = {k: data[k] for k in _OVERRIDABLE if data.get(k) is not None}
    provider = data.get("provider")
    if given is None:
        return profiles.get(provider or "openai", **overrides)
    profile = given if isinstance(given, ProviderProfile) else ProviderProfile.from_dict(given)
    if provider is not None and provider != profile.provider:
        raise ConfigurationError(
            f"provider {provider!r} contradicts the profile's {profile.provider!r}",
            field="provider",
        )
    changed = {k: v for k, v in overrides.items() if getattr(profile, k) != v}
    return profile.evolve(**changed) if changed else profile


def _key_of(
    profile: ProviderProfile, api_key: str | SecretStr | None, environ: Mapping[str, str]
) -> SecretStr | None:
    if isinstance(api_key, SecretStr):
        api_key = api_key.get_secret_value()
    if api_key is not None and api_key.strip():
        return SecretStr(api_key.strip())
    name = profile.api_key_env or _KEY_ENV.get(profile.provider)
    value = environ.get(name, "").strip() if name else ""
    return SecretStr(value) if value else None


def resolve(
    data: Mapping[str, Any],
    client: EmbeddingClient | None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The adapter's settings: the effective profile, its main fields, and the key.

    ``data`` holds any of :data:`SETTINGS`. With a ``profile`` the other fields override it
    (``provider`` must agree); without one, ``profiles.get(provider or "openai", ...)`` builds
    it. A ``client`` brings its own profile and key, so no setting may come with it. The key
    is ``api_key`` or else read now from the provider's variable (``OPENAI_API_KEY``...).

    Raises:
        ConfigurationError: settings that contradict each other or the client.
    """
    given = {k: v for k, v in data.items() if k in SETTINGS and v is not None}
    if client is not None:
        if given:
            raise ConfigurationError(
                "a client already carries its profile and key; pass either a client or "
                f"settings, not both (got {', '.join(sorted(given))})",
                field="client",
            )
        profile, key = client.profile, None
    else:
        profile = _profile_of(given)
        key = _key_of(profile, given.get("api_key"), os.environ if environ is None else environ)
    return {
        "provider": profile.provider,
        "model": profile.model,
        "base_url": profile.base_url,
        "dimensions": profile.dimensions,
        "profile": profile,
        "api_key": key,
    }


def take_source(
    source: ProviderProfile | EmbeddingClient | None,
    client: EmbeddingClient | None,
    settings: dict[str, Any],
    known: Iterable[str],
) -> EmbeddingClient | None:
    """Sort the positional ``source`` into ``client`` or ``settings["profile"]``; the client.

    Raises:
        ConfigurationError: ``source`` is neither a profile nor a client, or ``settings`` has
            a name outside :data:`SETTINGS` and ``known`` (a setting nothing would read).
    """
    unknown = set(settings) - set(SETTINGS) - set(known)
    if unknown:
        raise ConfigurationError(f"unknown settings: {', '.join(sorted(unknown))}")
    if isinstance(source, EmbeddingClient):
        return source
    if isinstance(source, ProviderProfile):
        settings["profile"] = source
    elif source is not None:
        raise ConfigurationError(
            f"expected a ProviderProfile or an EmbeddingClient, got {type(source).__name__}",
            field="source",
        )
    return client


class ClientHealth:
    """The client and its health, exposed on an adapter that keeps it in ``_client``."""

    if TYPE_CHECKING:
        _client: EmbeddingClient

    @property
    def client(self) -> EmbeddingClient:
        """The :class:`~embedguard.EmbeddingClient` doing the work."""
        return self._client

    @property
    def circuit_state(self) -> CircuitState:
        """The breaker's state now: ``CLOSED``, ``OPEN`` or ``HALF_OPEN``."""
        return self._client.circuit_state

    def metrics(self) -> MetricsSnapshot:
        """An immutable snapshot of the client's metrics (tokens, cost, latency, retries...)."""
        return self._client.metrics()

    def reset_circuit_breaker(self) -> None:
        """Close the breaker and clear its counts."""
        self._client.reset_circuit_breaker()

    def usage(self) -> AbstractContextManager[Usage]:
        """Count the tokens, requests and cost of the calls made inside a ``with`` block::

        with embeddings.usage() as usage:
            store.add_documents(docs)
        print(usage.tokens, usage.requests, usage.cost)
        """
        return track_usage()

    def close(self) -> None:
        """Close the client's connection pools."""
        self._client.close()

    async def aclose(self) -> None:
        """Close the client's async pool for this event loop, then the sync one."""
        await self._client.aclose()
