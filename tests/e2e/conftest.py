"""Fixtures for end-to-end tests: a real loopback server and fast-retrying profiles."""

from collections.abc import Iterator
from typing import Any

import pytest

from embedguard import EmbeddingClient, ProviderProfile, profiles
from embedguard.testing import EmbeddingServer

KEY = "sk-test-PLANTED-SECRET-0123456789"


@pytest.fixture
def server() -> Iterator[EmbeddingServer]:
    """A loopback embedding server (OpenAI, Azure, Mistral and Ollama routes)."""
    with EmbeddingServer(dimensions=64) as srv:
        yield srv


def fast(profile: ProviderProfile, **changes: Any) -> ProviderProfile:
    """The profile with millisecond backoff, so retry tests take no time."""
    retry = {**profile.retry.to_dict(), "initial_delay": 0.001, "max_delay": 0.01}
    retry.update(changes.pop("retry", {}))
    return profile.evolve(retry=retry, **changes)


def openai_client(server: EmbeddingServer, **changes: Any) -> EmbeddingClient:
    """An OpenAI-profile client pointed at the server, with fast retries."""
    profile = fast(profiles.openai(base_url=server.base_url("openai"), dimensions=64), **changes)
    return EmbeddingClient(profile, api_key=KEY)
