"""The metrics summary names who served (issue 15.6), over real HTTP on loopback."""

from collections.abc import Iterator

import pytest

from embedguard import EmbeddingClient, profiles
from embedguard.testing import EmbeddingServer

from .conftest import KEY, fast


@pytest.fixture
def backup() -> Iterator[EmbeddingServer]:
    """A second loopback server, standing for another deployment."""
    with EmbeddingServer(dimensions=64) as srv:
        yield srv


def _chain(primary: EmbeddingServer, backup: EmbeddingServer) -> EmbeddingClient:
    main = fast(profiles.openai(base_url=primary.base_url("openai"), dimensions=64),
                retry={"max_retries": 0})  # fmt: skip
    second = fast(profiles.openai(base_url=backup.base_url("openai"), dimensions=64,
                                  name="openai-backup"))  # fmt: skip
    return EmbeddingClient(main, api_key=KEY, fallbacks=[(second, KEY)])


def test_header_names_the_fallback_that_served(
    server: EmbeddingServer, backup: EmbeddingServer
) -> None:
    """With the primary down, the header names the fallback first and the primary as such."""
    server.set_down(True, status=503)
    with _chain(server, backup) as client:
        client.embed(["a", "b", "c"])
        header = client.metrics().format().splitlines()[0]
        assert header.startswith("embedguard metrics: openai-backup / text-embedding-3-small")
        assert "(primary openai / text-embedding-3-small;" in header
        server.set_down(False)
        client.embed(["d"])
        header = client.metrics().format().splitlines()[0]
    assert header.startswith(
        "embedguard metrics: openai-backup (3 vectors) + openai (1 vector) / text-embedding-3"
    )


def test_header_is_unchanged_when_the_primary_served(
    server: EmbeddingServer, backup: EmbeddingServer
) -> None:
    """Without a failover the header is the primary's, as before."""
    with _chain(server, backup) as client:
        client.embed(["a"])
        snap = client.metrics()
    assert snap.served_by == ("openai",)
    assert snap.format().startswith("embedguard metrics: openai / text-embedding-3-small (uptime")
