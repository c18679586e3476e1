"""make_codec dispatch, and secrets kept out of every repr, str and error."""

from __future__ import annotations

import pickle

import pytest

from embedguard.core.config import ProviderProfile
from embedguard.core.errors import ConfigurationError, EmbedGuardError
from embedguard.core.providers import (
    AzureOpenAICodec,
    Codec,
    MistralCodec,
    OllamaCodec,
    OpenAICodec,
    OpenAICompatibleCodec,
    make_codec,
)

SECRET = "sk-PLANTED-secret-value-7f3a9c"

PROFILES = {
    "openai": ProviderProfile(provider="openai", model="text-embedding-3-small"),
    "azure": ProviderProfile(
        provider="azure",
        model="text-embedding-3-small",
        base_url="https://res.openai.azure.com",
        deployment="emb",
        api_version="2024-10-21",
    ),
    "mistral": ProviderProfile(provider="mistral", model="mistral-embed"),
    "ollama": ProviderProfile(provider="ollama", model="nomic-embed-text"),
    "openai_compatible": ProviderProfile(
        provider="openai_compatible", model="bge", base_url="http://127.0.0.1:8080/v1"
    ),
}
CLASSES = {
    "openai": OpenAICodec,
    "azure": AzureOpenAICodec,
    "mistral": MistralCodec,
    "ollama": OllamaCodec,
    "openai_compatible": OpenAICompatibleCodec,
}


@pytest.mark.parametrize("provider", PROFILES)
def test_make_codec_picks_the_class(provider: str) -> None:
    """Each provider kind gets its codec, which satisfies the Codec protocol."""
    codec = make_codec(PROFILES[provider], api_key=SECRET, environ={})
    assert type(codec) is CLASSES[provider]
    assert isinstance(codec, Codec)
    assert codec.name == provider


def test_local_profile_is_not_available_yet() -> None:
    """The in-process provider has no codec and says so."""
    profile = ProviderProfile(provider="local", model="all-MiniLM-L6-v2")
    with pytest.raises(ConfigurationError, match="in-process") as info:
        make_codec(profile, environ={})
    assert info.value.field == "provider"


def test_token_provider_only_for_azure() -> None:
    """A token provider given for another provider is a configuration error."""
    with pytest.raises(ConfigurationError) as info:
        make_codec(PROFILES["openai"], api_key=SECRET, token_provider=lambda: "t", environ={})
    assert info.value.field == "token_provider"


def test_make_codec_reads_the_given_environment() -> None:
    """Keys and URLs come from the environ mapping passed in, not from os.environ."""
    codec = make_codec(
        PROFILES["openai"], environ={"OPENAI_API_KEY": SECRET, "OPENAI_BASE_URL": "http://h:1/v1"}
    )
    request = codec.build_request(["a"])
    assert request.url == "http://h:1/v1/embeddings"
    assert request.headers["Authorization"] == f"Bearer {SECRET}"


def test_default_environment_is_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without environ, os.environ is read."""
    monkeypatch.setenv("MISTRAL_API_KEY", SECRET)
    codec = make_codec(PROFILES["mistral"])
    assert codec.build_request(["a"]).headers["Authorization"] == f"Bearer {SECRET}"


@pytest.mark.parametrize("provider", ["openai", "azure", "mistral"])
def test_missing_key_is_configuration_error(provider: str) -> None:
    """Hosted providers without a key fail at construction on field api_key."""
    with pytest.raises(ConfigurationError) as info:
        make_codec(PROFILES[provider], environ={})
    assert info.value.field == "api_key"


@pytest.mark.parametrize("provider", PROFILES)
def test_planted_key_never_leaks(provider: str) -> None:
    """The key is absent from the codec's and request's repr/str and from parsed errors."""
    codec = make_codec(PROFILES[provider], api_key=SECRET, environ={})
    request = codec.build_request(["text"])
    echoed = (
        b'{"error":{"message":"Incorrect API key provided: ' + SECRET.encode() + b'",'
        b'"type":"invalid_request_error","code":"' + SECRET.encode() + b'"}}'
    )
    texts = [repr(codec), str(codec), repr(request), str(request)]
    for status in (401, 429, 500, 200):
        try:
            codec.parse_response(status, {}, echoed, n_inputs=1, dimensions=None)
        except EmbedGuardError as exc:
            texts += [str(exc), repr(exc), exc.message, str(exc.args), str(vars(exc))]
        else:
            pytest.fail("an error body must raise")
    for text in texts:
        assert SECRET not in text
    assert SECRET in str(dict(request.headers))  # it is sent, just never shown


def test_configuration_errors_do_not_echo_keys() -> None:
    """Config errors raised after a key was given do not contain it."""
    with pytest.raises(ConfigurationError) as info:
        make_codec(PROFILES["openai"].evolve(dimensions=9999), api_key=SECRET, environ={})
    assert SECRET not in str(info.value)


def test_request_repr_hides_headers_and_body() -> None:
    """HttpRequest's repr shows method and URL only."""
    request = make_codec(PROFILES["openai"], api_key=SECRET, environ={}).build_request(["a"])
    assert repr(request) == (
        "HttpRequest(method='POST', url='https://api.openai.com/v1/embeddings')"
    )


def test_codecs_pickle_without_exposing_the_key_in_repr() -> None:
    """A codec survives pickling (for worker processes) and still works."""
    codec = make_codec(PROFILES["openai"], api_key=SECRET, environ={})
    clone = pickle.loads(pickle.dumps(codec))
    assert clone.build_request(["a"]).headers["Authorization"] == f"Bearer {SECRET}"
    assert SECRET not in repr(clone)
