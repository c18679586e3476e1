"""GuardedEmbeddings passes LangChain's own standard test suites.

The integration suite runs over real HTTP against the loopback server, started once for the class.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from embedguard import EmbeddingClient, profiles
from embedguard.adapters.langchain import GuardedEmbeddings
from embedguard.testing import EmbeddingServer

from .conftest import KEY


class TestGuardedEmbeddingsUnit(EmbeddingsUnitTests):
    """LangChain's EmbeddingsUnitTests (no network)."""

    @property
    def embeddings_class(self) -> type[GuardedEmbeddings]:
        return GuardedEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": "text-embedding-3-small", "api_key": KEY}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return (
            {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"},
            {"model": "text-embedding-3-large"},
            {"api_key": KEY, "model": "text-embedding-3-large", "dimensions": 3072},
        )


class TestGuardedEmbeddingsIntegration(EmbeddingsIntegrationTests):
    """LangChain's EmbeddingsIntegrationTests against the loopback OpenAI-shaped server."""

    server: EmbeddingServer

    @pytest.fixture(autouse=True, scope="class")
    @classmethod
    def _live_server(cls) -> Iterator[None]:
        """Start one server for the whole class; embedding_model_params points at it."""
        with EmbeddingServer(dimensions=48, require_key=KEY) as server:
            cls.server = server
            yield

    @property
    def embeddings_class(self) -> type[GuardedEmbeddings]:
        return GuardedEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        server = self.server
        return {"model": "text-embedding-3-small", "api_key": KEY,
                "base_url": server.base_url("openai"), "dimensions": server.dimensions}  # fmt: skip


class TestGuardedEmbeddingsLocalIntegration(EmbeddingsIntegrationTests):
    """LangChain's EmbeddingsIntegrationTests against the in-process model (offline)."""

    model_instance: Any = None

    @pytest.fixture(autouse=True, scope="class")
    @classmethod
    def _loaded_model(cls) -> None:
        """Load all-MiniLM-L6-v2 once; each test's client shares it."""
        from embedguard.core.providers.local import LocalModel

        cls.model_instance = LocalModel(profiles.local()).load()

    @property
    def embeddings_class(self) -> type[GuardedEmbeddings]:
        return GuardedEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        client = EmbeddingClient(profiles.local(), local_model=self.model_instance)
        return {"client": client}
