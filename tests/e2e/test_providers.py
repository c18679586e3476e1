"""Every HTTP provider through the client, over real HTTP against the loopback server."""

import asyncio

import numpy as np
import pytest

from embedguard import (
    AuthenticationError,
    ConfigurationError,
    EmbeddingClient,
    InputValidationError,
    ModelNotFoundError,
    ProviderProfile,
    profiles,
)
from embedguard.testing import EmbeddingServer, Fault, deterministic_vectors

from .conftest import KEY, fast

TEXTS = ["alpha", "beta", "gamma", "alpha"]


def _clients(server: EmbeddingServer) -> dict[str, EmbeddingClient]:
    url = server.url
    built: dict[str, tuple[ProviderProfile, str | None]] = {
        "openai": (profiles.openai(base_url=server.base_url("openai"), dimensions=64), KEY),
        "openai-float": (
            profiles.openai(
                base_url=server.base_url("openai"), dimensions=64, encoding_format="float"
            ),
            KEY,
        ),
        "azure-deployment": (
            profiles.azure(base_url=url, deployment="emb", api_version="2024-10-21", dimensions=64),
            KEY,
        ),
        "azure-v1": (profiles.azure(base_url=url, dimensions=64), KEY),
        "mistral": (
            profiles.mistral("codestral-embed", base_url=server.base_url("mistral"), dimensions=64),
            KEY,
        ),
        "ollama": (profiles.ollama("all-minilm", base_url=url, dimensions=64), None),
        "compatible": (
            profiles.openai_compatible("bge-m3", base_url=server.base_url("openai_compatible")),
            None,
        ),
    }
    return {
        name: EmbeddingClient(fast(profile), api_key=key, environ={})
        for name, (profile, key) in built.items()
    }


PROVIDERS = [
    "openai",
    "openai-float",
    "azure-deployment",
    "azure-v1",
    "mistral",
    "ollama",
    "compatible",
]


@pytest.mark.parametrize("name", PROVIDERS)
def test_each_provider_sync(server: EmbeddingServer, name: str) -> None:
    """Each wire format returns each text's own vector, in order, with usage counted."""
    client = _clients(server)[name]
    with client:
        vectors = client.embed(TEXTS)
        snap = client.metrics()
    np.testing.assert_allclose(vectors, deterministic_vectors(TEXTS, 64), rtol=1e-6, atol=1e-7)
    assert len(server.requests) == 1
    assert sorted(server.requests[0].inputs) == ["alpha", "beta", "gamma"]
    assert snap.successful_requests == 1 and snap.tokens_used > 0
    assert client.dimensions == 64


@pytest.mark.parametrize("name", PROVIDERS)
async def test_each_provider_async(server: EmbeddingServer, name: str) -> None:
    """The async path speaks every wire format too."""
    async with _clients(server)[name] as client:
        vectors = await client.aembed(TEXTS)
    np.testing.assert_allclose(vectors, deterministic_vectors(TEXTS, 64), rtol=1e-6, atol=1e-7)


def test_wire_details(server: EmbeddingServer) -> None:
    """URLs, auth headers and bodies follow each provider's API."""
    for client in _clients(server).values():
        with client:
            client.embed(["x"])
    by_path = {(r.path, tuple(sorted(r.query.items()))): r for r in server.requests}
    openai = server.requests[0]
    assert (openai.path, openai.body["encoding_format"]) == ("/v1/embeddings", "base64")
    assert openai.headers["authorization"] == f"Bearer {KEY}"
    assert server.requests[1].body["encoding_format"] == "float"
    deployment = by_path[("/openai/deployments/emb/embeddings", (("api-version", "2024-10-21"),))]
    assert deployment.headers["api-key"] == KEY and "authorization" not in deployment.headers
    assert by_path[("/openai/v1/embeddings", ())].body["model"] == "text-embedding-3-small"
    assert by_path[("/mistral/v1/embeddings", ())].body["output_dimension"] == 64
    ollama = by_path[("/api/embed", ())]
    assert "authorization" not in ollama.headers and ollama.body["input"] == ["x"]
    compatible = [r for r in server.requests if r.body.get("model") == "bge-m3"]
    assert compatible and "dimensions" not in compatible[0].body
    assert all(isinstance(t, str) for t in compatible[0].body["input"])  # text, never token ids


def test_azure_bearer_token_provider(server: EmbeddingServer) -> None:
    """An Entra ID token provider is called per request and sent as a bearer token."""
    calls: list[int] = []

    def token() -> str:
        calls.append(1)
        return f"entra-token-{len(calls)}"

    profile = fast(profiles.azure(base_url=server.url, deployment="d", api_version="2024-10-21"))
    with EmbeddingClient(profile.evolve(dimensions=64), token_provider=token, environ={}) as c:
        c.embed(["a"])
        c.embed(["b"])
    assert [r.headers["authorization"] for r in server.requests] == [
        "Bearer entra-token-1",
        "Bearer entra-token-2",
    ]


def test_missing_configuration_is_a_typed_error() -> None:
    """A missing key or endpoint fails at construction, naming what to set."""
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY") as info:
        EmbeddingClient(profiles.openai(), environ={})
    assert info.value.field == "api_key"
    with pytest.raises(ConfigurationError) as azure:
        EmbeddingClient(profiles.azure(), api_key="k", environ={})
    assert azure.value.field == "base_url"
    with pytest.raises(ConfigurationError) as compatible:
        EmbeddingClient(profiles.openai_compatible("m"), environ={})
    assert compatible.value.field == "base_url"


def test_keys_and_urls_from_the_environment(server: EmbeddingServer) -> None:
    """OPENAI_API_KEY and OPENAI_BASE_URL are read when the profile leaves them out."""
    env = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.base_url("openai")}
    with EmbeddingClient(fast(profiles.openai(dimensions=64)), environ=env) as client:
        client.embed(["a"])
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_provider_errors_are_typed(server: EmbeddingServer) -> None:
    """Error bodies of each wire format become the same typed errors."""
    clients = _clients(server)
    server.script(Fault.status(401), Fault.status(404))
    with pytest.raises(AuthenticationError):
        clients["azure-deployment"].embed(["a"])
    with pytest.raises(ModelNotFoundError):
        clients["ollama"].embed(["a"])
    for client in clients.values():
        client.close()


@pytest.mark.parametrize("policy", ["truncate", "chunk"])
def test_context_policies(server: EmbeddingServer, policy: str) -> None:
    """Long texts are truncated, or chunked and averaged, before sending; 'error' refuses them."""
    profile = fast(
        profiles.openai(
            base_url=server.base_url("openai"),
            dimensions=64,
            batching={"max_inputs": 64, "max_tokens_per_request": 1000, "max_tokens_per_input": 50},
        )
    )
    long_text = " ".join(f"word{i}" for i in range(200))
    with EmbeddingClient(profile, api_key=KEY, context_policy=policy) as client:  # type: ignore[arg-type]
        vectors = client.embed(["short", long_text])
    sent = [t for r in server.requests for t in r.inputs]
    assert all(client._counter.count(t) <= 50 for t in sent)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors[0], deterministic_vectors(["short"], 64)[0])
    if policy == "truncate":
        assert len(sent) == 2 and long_text.startswith(sent[1])
    else:
        pieces = [t for t in sent if t != "short"]
        assert len(pieces) > 1 and "".join(pieces) == long_text
        weights = np.array([client._counter.count(p) for p in pieces], dtype=np.float64)
        mixed = (deterministic_vectors(pieces, 64) * weights[:, None]).sum(axis=0)
        np.testing.assert_allclose(vectors[1], mixed / np.linalg.norm(mixed), atol=1e-5)
    with (
        EmbeddingClient(profile, api_key=KEY) as strict,
        pytest.raises(InputValidationError) as info,
    ):
        strict.embed(["short", long_text])
    assert info.value.index == 1


def test_many_threads_share_one_client(server: EmbeddingServer) -> None:
    """32 threads embedding through one client get their own vectors, with exact metrics."""
    from concurrent.futures import ThreadPoolExecutor

    with EmbeddingClient(
        fast(profiles.openai(base_url=server.base_url("openai"), dimensions=64)), api_key=KEY
    ) as client:

        def work(i: int) -> bool:
            texts = [f"thread {i} text {j}" for j in range(20)]
            return bool(np.array_equal(client.embed(texts), deterministic_vectors(texts, 64)))

        with ThreadPoolExecutor(32) as pool:
            assert all(pool.map(work, range(64)))
        snap = client.metrics()
    assert snap.items_embedded == 64 * 20
    assert snap.total_requests == snap.successful_requests == len(server.requests)


async def test_many_tasks_share_one_client(server: EmbeddingServer) -> None:
    """1,000 concurrent asyncio tasks get their own vectors, merged into few requests."""
    profile = fast(profiles.openai(base_url=server.base_url("openai"), dimensions=64))
    async with EmbeddingClient(profile, api_key=KEY) as client:
        texts = [f"task {i}" for i in range(1000)]
        results = await asyncio.gather(*(client.aembed_query(t) for t in texts))
        snap = client.metrics()
    np.testing.assert_array_equal(np.stack(results), deterministic_vectors(texts, 64))
    assert snap.items_embedded == 1000
    assert snap.successful_requests == snap.total_requests == len(server.requests) < 100
    assert server.max_in_flight <= profile.pool_size


def test_rate_limit_headers_reach_the_client() -> None:
    """The provider's x-ratelimit-* headers are read into the client's state."""
    with EmbeddingServer(dimensions=64, rate_limit_rpm=600, rate_limit_tpm=100_000) as srv:
        profile = fast(profiles.openai(base_url=srv.base_url("openai"), dimensions=64))
        with EmbeddingClient(profile, api_key=KEY) as client:
            assert client.rate_limit_status is None
            client.embed(["a b c"])
            status = client.rate_limit_status
    assert status is not None
    assert (status.limit_requests, status.limit_tokens) == (600, 100_000)
    assert status.remaining_requests is not None and status.remaining_requests < 600
    assert status.reset_requests is not None and status.reset_requests >= 0
