"""What both adapters share: keywords to profile, key and client; the client's health and usage.

No framework imports here, so each adapter module stays a thin translation layer.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import SecretStr

from embedguard.core import profiles
from embedguard.core.breaker import CircuitState
from embedguard.core.client import EmbeddingClient
from embedguard.core.config import ProviderProfile
from embedguard.core.errors import ConfigurationError
from embedguard.core.metrics import MetricsSnapshot
from embedguard.core.usage import Usage, track_usage

from ._vocabulary import translate

__all__ = ["SETTINGS", "Built", "ClientHealth", "build"]

SETTINGS = ("provider", "model", "base_url", "dimensions", "api_key", "profile")
"""The adapter fields a profile and key are built from."""

# The variables the provider codecs read when no key is passed (see ``make_codec``), in order.
_KEY_ENV: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "azure": ("AZURE_OPENAI_API_KEY",),
    "mistral": ("MISTRAL_API_KEY",),
    "cohere": ("CO_API_KEY", "COHERE_API_KEY"),
    "voyage": ("VOYAGE_API_KEY",),
    "gemini": ("GOOGLE_API_KEY", "GEMINI_API_KEY"),
    "bedrock": ("AWS_BEARER_TOKEN_BEDROCK",),  # a Bedrock API key; without one: SigV4
    "tei": ("TEI_API_KEY",),  # optional: servers started with --api-key
}
# A variable that makes the codec read the key elsewhere (a file): the adapter leaves it to it.
_KEY_DEFERRED = {"voyage": "VOYAGE_API_KEY_PATH"}
_OVERRIDABLE = ("model", "base_url", "dimensions")


@dataclass
class Built:
    """An adapter's fields, its client, and the HTTP clients it opened (closed with it)."""

    fields: dict[str, Any]
    client: EmbeddingClient
    owned: tuple[httpx.Client, httpx.AsyncClient] | None = None
    show_progress: bool | None = None


def build(
    source: ProviderProfile | EmbeddingClient | None,
    client: EmbeddingClient | None,
    kwargs: dict[str, Any],
    *,
    known: Iterable[str],
    owner: str,
    environ: Mapping[str, str] | None = None,
) -> Built:
    """Build an adapter's client from its arguments; the keywords it does not own stay in kwargs.

    ``source`` is a profile or a client (positional). The keywords are embedguard's
    (:data:`SETTINGS`, ``token_provider``, ``http_client``, ``async_http_client``,
    ``context_policy``, ``empty``) or the peers' (see :mod:`._vocabulary`); with a ``profile`` they
    override it, else ``profiles.get(provider or "openai", ...)`` builds it (a partial policy
    keeps the provider's other values). A client brings its own profile and key. The key is
    ``api_key`` or else read now from the provider's variable (``OPENAI_API_KEY``...).

    Raises:
        ConfigurationError: unknown, refused or contradicting keywords; settings with a client.
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    peer = translate(kwargs, owner=owner, base=_base_of(source, client, kwargs), environ=env)
    unknown = set(kwargs) - set(known)
    if unknown:
        raise ConfigurationError(f"unknown settings: {', '.join(sorted(unknown))}")
    client = _sort_source(source, client, peer.settings)
    if client is not None:
        if not peer.empty():
            raise ConfigurationError(
                "a client already carries its profile and key; pass either a client or "
                f"settings, not both (got {', '.join(peer.given())})",
                field="client",
            )
        return Built(_fields(client.profile, None), client, show_progress=peer.show_progress)
    profile = _profile_of(peer.settings, peer.layer)
    options = dict(peer.options)
    if peer.environ is not None:  # AWS keywords: this client's own copy of the variables
        env = options["environ"] = peer.environ
    key = _key_of(profile, peer.settings.get("api_key"), env)
    owned = None
    if peer.http:
        if "http_client" in options or "async_http_client" in options:
            raise ConfigurationError(
                f"set {', '.join(sorted(peer.http))} on the http_client you pass", field="headers"
            )
        owned = _http_clients(profile, peer.http)
        options.update(http_client=owned[0], async_http_client=owned[1])
    made = EmbeddingClient(profile, api_key=key, **options)
    if owned is not None:
        weakref.finalize(made, owned[0].close)  # the sync pool; the async one closes in aclose()
    return Built(_fields(profile, key), made, owned, peer.show_progress)


def _base_of(source: Any, client: Any, kwargs: Mapping[str, Any]) -> ProviderProfile | None:
    """The profile the adapter is given (positionally, as ``profile=`` or with a client)."""
    for candidate in (source, client, kwargs.get("profile")):
        if isinstance(candidate, EmbeddingClient):
            return candidate.profile
        if isinstance(candidate, ProviderProfile):
            return candidate
        if isinstance(candidate, Mapping):
            try:
                return ProviderProfile.from_dict(candidate)
            except ConfigurationError:
                return None  # _profile_of raises it again, where it belongs
    return None


def _sort_source(
    source: ProviderProfile | EmbeddingClient | None,
    client: EmbeddingClient | None,
    settings: dict[str, Any],
) -> EmbeddingClient | None:
    if client is not None and not isinstance(client, EmbeddingClient):
        raise ConfigurationError(
            f"client must be an embedguard EmbeddingClient, got {type(client).__name__} "
            "(there is no SDK client underneath: pass http_client= for transport settings)",
            field="client",
        )
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


def _profile_of(data: Mapping[str, Any], layer: Mapping[str, Any]) -> ProviderProfile:
    given = data.get("profile")
    overrides = {k: data[k] for k in _OVERRIDABLE if data.get(k) is not None}
    provider = data.get("provider")
    if given is None:
        return profiles.get(provider or "openai", **overrides, **layer)
    profile = given if isinstance(given, ProviderProfile) else ProviderProfile.from_dict(given)
    if provider is not None and provider != profile.provider:
        raise ConfigurationError(
            f"provider {provider!r} contradicts the profile's {profile.provider!r}",
            field="provider",
        )
    changes = {k: v for k, v in overrides.items() if getattr(profile, k) != v} | dict(layer)
    return profile.evolve(**changes) if changes else profile


def _key_of(
    profile: ProviderProfile, api_key: str | SecretStr | None, environ: Mapping[str, str]
) -> SecretStr | None:
    if isinstance(api_key, SecretStr):
        api_key = api_key.get_secret_value()
    if api_key is not None and api_key.strip():
        return SecretStr(api_key.strip())
    if profile.api_key_env:
        names: tuple[str, ...] = (profile.api_key_env,)
    elif environ.get(_KEY_DEFERRED.get(profile.provider, ""), "").strip():
        return None
    else:
        names = _KEY_ENV.get(profile.provider, ())
    value = next((v for v in (environ.get(n, "").strip() for n in names) if v), "")
    return SecretStr(value) if value else None


def _fields(profile: ProviderProfile, key: SecretStr | None) -> dict[str, Any]:
    return {
        "provider": profile.provider,
        "model": profile.model,
        "base_url": profile.base_url,
        "dimensions": profile.dimensions,
        "profile": profile,
        "api_key": key,
    }


def _http_clients(
    profile: ProviderProfile, http: Mapping[str, Any]
) -> tuple[httpx.Client, httpx.AsyncClient]:
    """HTTP clients carrying the peer's headers, query parameters or proxy, sized as the core's.

    The async one serves one event loop (like any ``async_http_client`` passed in).
    """
    options: dict[str, Any] = {
        "timeout": httpx.Timeout(profile.timeouts.request, connect=profile.timeouts.connect),
        "limits": httpx.Limits(
            max_connections=profile.pool_size, max_keepalive_connections=profile.pool_size
        ),
        "follow_redirects": False,
        "headers": http.get("headers"),
        "params": http.get("params"),
        "proxy": http.get("proxy"),
    }
    try:
        return httpx.Client(**options), httpx.AsyncClient(**options)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"invalid headers, params or proxy: {exc}") from None


class ClientHealth:
    """The client's health and usage, for an adapter keeping ``_client`` and ``_owned``."""

    if TYPE_CHECKING:
        _client: EmbeddingClient
        _owned: tuple[httpx.Client, httpx.AsyncClient] | None

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
        """Count the tokens, requests and cost of this adapter's calls inside a ``with`` block::

            with embeddings.usage() as usage:
                store.add_documents(docs)
            print(usage.tokens, usage.requests, usage.cost)

        Every call made on this adapter (or a copy: they share the client) while the block is
        open counts, from any thread or task; calls on other adapters do not.
        """
        return track_usage(owner=self._client)

    def close(self) -> None:
        """Close the client's connection pools."""
        self._client.close()
        if self._owned is not None:
            self._owned[0].close()

    async def aclose(self) -> None:
        """Close the client's async pool for this event loop, then the sync one."""
        await self._client.aclose()
        if self._owned is not None:
            await self._owned[1].aclose()
            self._owned[0].close()
