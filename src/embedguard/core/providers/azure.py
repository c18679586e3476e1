"""Azure OpenAI embeddings: deployment URLs or the ``/openai/v1`` form (sans-IO codec)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import ClassVar
from urllib.parse import quote

from embedguard.core.config import ProviderProfile
from embedguard.core.errors import AuthenticationError, ConfigurationError

from ._codec import resolve_base_url, resolve_key
from ._json import JsonCodec
from .openai import openai_fields

__all__ = ["AzureOpenAICodec"]


def _resource_root(endpoint: str) -> str:
    """The resource URL without a trailing ``/openai/v1`` or ``/openai`` (both are accepted)."""
    for suffix in ("/openai/v1", "/openai"):
        if endpoint.endswith(suffix):
            return endpoint[: -len(suffix)]
    return endpoint


class AzureOpenAICodec(JsonCodec):
    """Codec for Azure OpenAI.

    The endpoint (``https://{resource}.openai.azure.com``) comes from the profile's ``base_url``
    or ``AZURE_OPENAI_ENDPOINT``; there is no default. With a deployment (the profile's, or
    ``AZURE_OPENAI_DEPLOYMENT``) requests go to
    ``{endpoint}/openai/deployments/{deployment}/embeddings?api-version={version}`` with the
    version from the profile or ``OPENAI_API_VERSION`` (required then). Without one they go to
    the GA ``{endpoint}/openai/v1/embeddings`` with ``model`` (the deployment name) in the body.

    Auth is ``api-key: <key>`` (``AZURE_OPENAI_API_KEY``) or, when ``token_provider`` is given,
    ``Authorization: Bearer <token>`` with a token fetched for every request; never both.
    """

    provider: ClassVar[str] = "azure"
    __slots__ = ("_last_token", "_token_provider")

    def __init__(
        self,
        profile: ProviderProfile,
        *,
        api_key: str | None = None,
        token_provider: Callable[[], str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        environ = os.environ if environ is None else environ
        root = _resource_root(resolve_base_url(profile, environ, "AZURE_OPENAI_ENDPOINT", None))
        fields = openai_fields(profile)
        deployment = profile.deployment or environ.get("AZURE_OPENAI_DEPLOYMENT", "").strip()
        if deployment:
            version = profile.api_version or environ.get("OPENAI_API_VERSION", "").strip()
            if not version:
                raise ConfigurationError(
                    "deployment URLs need an api-version; set profile.api_version "
                    "or the OPENAI_API_VERSION environment variable",
                    field="api_version",
                    provider=profile.name,
                )
            url = (
                f"{root}/openai/deployments/{quote(deployment, safe='')}/embeddings"
                f"?api-version={quote(version, safe='')}"
            )
            del fields["model"]  # the deployment in the URL selects the model
        else:
            url = f"{root}/openai/v1/embeddings"
            if profile.api_version:
                url += f"?api-version={quote(profile.api_version, safe='')}"
        key = None
        if token_provider is None:
            key = resolve_key(profile, api_key, environ, "AZURE_OPENAI_API_KEY", required=True)
        super().__init__(profile, url=url, fields=fields, key=key)
        self._token_provider = token_provider
        self._last_token: str | None = None

    def _auth_headers(self) -> dict[str, str]:
        if self._token_provider is None:
            return {"api-key": self._key.get_secret_value()} if self._key else {}
        try:
            token = self._token_provider()
        except Exception as exc:
            raise AuthenticationError(
                f"the token provider failed: {type(exc).__name__}", provider=self.name
            ) from exc
        if not isinstance(token, str) or not token:
            raise AuthenticationError("the token provider returned no token", provider=self.name)
        self._last_token = token
        return {"Authorization": f"Bearer {token}"}

    def _secrets(self) -> tuple[str | None, ...]:
        return (*super()._secrets(), self._last_token)
