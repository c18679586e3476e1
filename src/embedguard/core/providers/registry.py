"""Which codec speaks which provider: :func:`make_codec`."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from embedguard.core.config import ProviderProfile
from embedguard.core.errors import ConfigurationError

from .base import Codec

__all__ = ["make_codec"]


def make_codec(
    profile: ProviderProfile,
    *,
    api_key: str | None = None,
    token_provider: Callable[[], str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Codec:
    """Build the codec for ``profile``.

    The key is ``api_key`` if given, else ``environ[profile.api_key_env]``, else the provider's
    default variable (``OPENAI_API_KEY``, ``AZURE_OPENAI_API_KEY``, ``MISTRAL_API_KEY``). The base
    URL is ``profile.base_url``, else the provider's variable (``OPENAI_BASE_URL``,
    ``AZURE_OPENAI_ENDPOINT``, ``MISTRAL_BASE_URL``, ``OLLAMA_HOST``), else the public default.

    Args:
        profile: What to talk to.
        api_key: The secret; never stored in ``repr``.
        token_provider: Azure only: returns a Microsoft Entra ID bearer token; called for every
            request and used instead of a key.
        environ: Where to read variables (default ``os.environ``).

    Raises:
        ConfigurationError: A required key, endpoint or API version is missing (``field`` names
            it), or the profile is ``local`` (an in-process model has no wire codec).
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    if token_provider is not None and profile.provider != "azure":
        raise ConfigurationError(
            "a token provider is supported for the azure provider only",
            field="token_provider",
            provider=profile.name,
        )
    if profile.provider == "openai":
        from .openai import OpenAICodec

        return OpenAICodec(profile, api_key=api_key, environ=env)
    if profile.provider == "azure":
        from .azure import AzureOpenAICodec

        return AzureOpenAICodec(
            profile, api_key=api_key, token_provider=token_provider, environ=env
        )
    if profile.provider == "mistral":
        from .mistral import MistralCodec

        return MistralCodec(profile, api_key=api_key, environ=env)
    if profile.provider == "ollama":
        from .ollama import OllamaCodec

        return OllamaCodec(profile, api_key=api_key, environ=env)
    if profile.provider == "bedrock":
        from .bedrock import make_bedrock_codec

        return make_bedrock_codec(profile, api_key=api_key, environ=env)
    if profile.provider == "openai_compatible":
        from .compatible import OpenAICompatibleCodec

        return OpenAICompatibleCodec(profile, api_key=api_key, environ=env)
    if profile.provider == "cohere":
        from .cohere import CohereCodec

        return CohereCodec(profile, api_key=api_key, environ=env)
    if profile.provider == "gemini":
        from .gemini import GeminiCodec

        return GeminiCodec(profile, api_key=api_key, environ=env)
    if profile.provider == "voyage":
        from .voyage import VoyageCodec

        return VoyageCodec(profile, api_key=api_key, environ=env)
    if profile.provider == "tei":
        from .tei import TEICodec

        return TEICodec(profile, api_key=api_key, environ=env)
    raise ConfigurationError(
        f"the {profile.provider!r} provider runs in-process and has no HTTP codec; "
        "in-process models are not available yet",
        field="provider",
        provider=profile.name,
    )
