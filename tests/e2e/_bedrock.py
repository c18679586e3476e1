"""Shared by the Bedrock end-to-end tests: planted credentials and clients aimed at the server."""

from __future__ import annotations

from typing import Any

from embedguard import EmbeddingClient, ProviderProfile, profiles
from embedguard.testing import EmbeddingServer

from .conftest import fast

KEY_ID = "AKIDPLANTEDBEDROCK01"
SECRET = "PLANTED/bedrock+secret/key0123456789abcdef"
TOKEN = "PLANTED-session-token-0123456789"
ENV = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}
REGION = "us-east-1"


def bedrock(server: EmbeddingServer, model: str = "amazon.titan-embed-text-v2:0",
            **changes: Any) -> ProviderProfile:  # fmt: skip
    """A Bedrock profile aimed at the server, with millisecond backoff."""
    profile = profiles.bedrock(model, base_url=server.base_url("bedrock"), region=REGION)
    return fast(profile, **changes)


def client(server: EmbeddingServer, model: str = "amazon.titan-embed-text-v2:0",
           env: dict[str, str] | None = None, **changes: Any) -> EmbeddingClient:  # fmt: skip
    """A client for ``model`` on the server, signing with the planted credentials."""
    return EmbeddingClient(bedrock(server, model, **changes), environ=ENV if env is None else env)
