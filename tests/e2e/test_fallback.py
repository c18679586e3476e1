"""Failover to another deployment of the same model, and the events the pipeline emits."""

import logging

import numpy as np
import pytest

from embedguard import BadRequestError, ConfigurationError, EmbeddingClient, profiles
from embedguard.core.events import (
    CircuitChanged,
    Event,
    FailedOver,
    RequestFinished,
    RequestStarted,
    RetryScheduled,
)
from embedguard.testing import EmbeddingServer, Fault, deterministic_vectors

from .conftest import KEY, fast


@pytest.fixture
def backup() -> EmbeddingServer:
    with EmbeddingServer(dimensions=64) as srv:
        yield srv  # type: ignore[misc]


def _chain(primary: EmbeddingServer, backup: EmbeddingServer, **kwargs: object) -> EmbeddingClient:
    main = fast(profiles.openai(base_url=primary.base_url("openai"), dimensions=64),
                retry={"max_retries": 1}, breaker={"failure_threshold": 2})  # fmt: skip
    azure = fast(
        profiles.azure(
            "text-embedding-3-small", base_url=backup.url, deployment="emb",
            api_version="2024-10-21", dimensions=64,
        )
    )  # fmt: skip
    return EmbeddingClient(main, api_key=KEY, fallbacks=[(azure, "azure-key")], **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_fails_over_when_retries_are_exhausted(
    server: EmbeddingServer, backup: EmbeddingServer, mode: str
) -> None:
    """With the primary down, every text is served by the fallback, in order."""
    server.set_down(True, status=503)
    texts = [f"f{i}" for i in range(30)]
    async with _chain(server, backup) as client:
        vectors = client.embed(texts) if mode == "sync" else await client.aembed(texts)
        snap = client.metrics()
    np.testing.assert_array_equal(vectors, deterministic_vectors(texts, 64))
    assert sorted(t for r in backup.requests for t in r.inputs) == sorted(texts)
    assert backup.requests[0].headers["api-key"] == "azure-key"
    assert snap.items_by_provider == {"azure": 30}
    assert snap.requests_by_provider["azure"] == len(backup.requests)


def test_fails_over_while_the_breaker_is_open(
    server: EmbeddingServer, backup: EmbeddingServer
) -> None:
    """Once the primary's breaker is open, calls go straight to the fallback."""
    server.set_down(True, status=500)
    with _chain(server, backup) as client:
        client.embed(["a"])
        client.embed(["b"])
        seen = len(server.requests)
        client.embed(["c"])
        assert len(server.requests) == seen  # primary skipped: its breaker is open
        assert client.metrics().rejected_requests >= 1


def test_no_failover_for_caller_errors(server: EmbeddingServer, backup: EmbeddingServer) -> None:
    """A 400 (the caller's fault) is not retried elsewhere."""
    server.script(Fault.status(400))
    with _chain(server, backup) as client, pytest.raises(BadRequestError):
        client.embed(["x"])
    assert backup.requests == []


def test_refuses_to_mix_vector_spaces(server: EmbeddingServer) -> None:
    """A fallback of another model or dimension is refused unless forced."""
    main = profiles.openai(base_url=server.base_url("openai"))
    other = profiles.openai("text-embedding-3-large", base_url=server.base_url("openai"))
    with pytest.raises(ConfigurationError) as info:
        EmbeddingClient(main, api_key=KEY, fallbacks=[(other, KEY)])
    assert info.value.field == "fallbacks[0]"
    with pytest.raises(ConfigurationError):
        EmbeddingClient(main, api_key=KEY, fallbacks=[(main.evolve(dimensions=256), KEY)])
    EmbeddingClient(main, api_key=KEY, fallbacks=[(other, KEY)], allow_mixed_models=True).close()


def test_events_reach_hooks(server: EmbeddingServer, backup: EmbeddingServer) -> None:
    """Requests, retries, breaker changes and failovers are emitted to hooks, without texts."""
    seen: list[Event] = []
    server.set_down(True, status=503)
    with _chain(server, backup, hooks=[seen.append]) as client:
        client.embed(["secret text one"])
        client.embed(["secret text two"])
    kinds = {type(e) for e in seen}
    assert {RequestStarted, RequestFinished, RetryScheduled, CircuitChanged, FailedOver} <= kinds
    started = next(e for e in seen if isinstance(e, RequestStarted))
    assert (started.server_address, started.server_port) == (
        "127.0.0.1",
        int(server.url.rsplit(":", 1)[1]),
    )
    failed = [e for e in seen if isinstance(e, RequestFinished) and e.error_type]
    assert failed and failed[0].status_code == 503
    assert all("secret" not in repr(e) and KEY not in repr(e) for e in seen)


def test_default_logging(server: EmbeddingServer, caplog: pytest.LogCaptureFixture) -> None:
    """By default one line per retry is logged under 'embedguard', none per success at INFO."""
    caplog.set_level(logging.INFO, logger="embedguard")
    server.script(Fault.status(500))
    profile = fast(profiles.openai(base_url=server.base_url("openai"), dimensions=64))
    with EmbeddingClient(profile, api_key=KEY) as client:
        client.embed(["a"])
        client.embed(["b"])
    lines = [r for r in caplog.records if r.name == "embedguard"]
    assert len(lines) == 1 and "retry" in lines[0].getMessage()
    assert KEY not in caplog.text
