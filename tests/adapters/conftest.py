"""Fixtures for the adapter tests: a loopback server and fast-retrying profiles pointed at it."""

from collections.abc import Iterator
from typing import Any

import pytest

from embedguard import ProviderProfile, profiles
from embedguard.testing import EmbeddingServer

KEY = "sk-test-PLANTED-ADAPTER-SECRET-4242"
D = 32


@pytest.fixture
def server() -> Iterator[EmbeddingServer]:
    """A loopback server with pseudo-random vectors."""
    with EmbeddingServer(dimensions=D) as srv:
        yield srv


@pytest.fixture
def lexical_server() -> Iterator[EmbeddingServer]:
    """A loopback server whose vectors make texts sharing words close."""
    with EmbeddingServer(dimensions=256, vectors="lexical") as srv:
        yield srv


def fast_profile(server: EmbeddingServer, **changes: Any) -> ProviderProfile:
    """An OpenAI profile aimed at ``server`` with millisecond backoff."""
    retry = {"initial_delay": 0.001, "max_delay": 0.01, **changes.pop("retry", {})}
    profile = profiles.openai(base_url=server.base_url("openai"), dimensions=server.dimensions)
    return profile.evolve(retry={**profile.retry.to_dict(), **retry}, **changes)
