"""Drop-in: the peers' keyword arguments build an equivalent adapter (issue 15, part 1).

The table builds each peer class and ours from the same keywords against the loopback server,
and checks that both send the same requests and get the same vectors.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from langchain_openai import AzureOpenAIEmbeddings, OpenAIEmbeddings
from llama_index.embeddings.openai import OpenAIEmbedding

from embedguard import ConfigurationError, EmbeddingClient, profiles
from embedguard.adapters.langchain import GuardedEmbeddings
from embedguard.adapters.llamaindex import GuardedEmbedding
from embedguard.testing import EmbeddingServer

from .conftest import KEY

TEXTS = ["alpha beta", "gamma", "delta epsilon zeta", "eta", "theta iota", "kappa", "lambda mu"]
MODEL = "text-embedding-3-small"
# LangChain's peer tokenizes with tiktoken unless told not to (no network here): ours ignores it.
NO_TIKTOKEN = {"check_embedding_ctx_length": False}


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddingServer]:
    """One loopback server (1536-d by default, like the model) for the whole table."""
    with EmbeddingServer(dimensions=1536, require_key=KEY) as srv:
        yield srv


def _openai(s: EmbeddingServer) -> str:
    return s.base_url("openai")


# (peer class, ours, keywords built from the server, batch size the peer sends)
ROWS: dict[str, tuple[Any, Any, Callable[[EmbeddingServer], dict[str, Any]]]] = {
    "lc-basic": (OpenAIEmbeddings, GuardedEmbeddings, lambda s: {
        "model": MODEL, "api_key": KEY, "base_url": _openai(s), **NO_TIKTOKEN}),
    "lc-aliases-and-knobs": (OpenAIEmbeddings, GuardedEmbeddings, lambda s: {
        "model": MODEL, "openai_api_key": KEY, "openai_api_base": _openai(s), "dimensions": 64,
        "chunk_size": 3, "max_retries": 1, "request_timeout": 10, "retry_min_seconds": 1,
        "retry_max_seconds": 5, "embedding_ctx_length": 4000, "show_progress_bar": False,
        **NO_TIKTOKEN}),
    "lc-headers-body-org": (OpenAIEmbeddings, GuardedEmbeddings, lambda s: {
        "model": MODEL, "api_key": KEY, "base_url": _openai(s), "dimensions": 32,
        "default_headers": {"X-Team": "search"}, "organization": "org-42",
        "model_kwargs": {"user": "u1"}, "timeout": 12.5, "tiktoken_enabled": False,
        **NO_TIKTOKEN}),
    "lc-azure-endpoint": (AzureOpenAIEmbeddings, GuardedEmbeddings, lambda s: {
        "model": MODEL, "api_key": KEY, "azure_endpoint": s.url, "azure_deployment": "emb",
        "api_version": "2024-10-21", "dimensions": 48, "chunk_size": 4, **NO_TIKTOKEN}),
    "lc-azure-deployment-url": (AzureOpenAIEmbeddings, GuardedEmbeddings, lambda s: {
        "model": MODEL, "openai_api_key": KEY, "openai_api_version": "2024-10-21",
        "base_url": f"{s.url}/openai/deployments/emb", "dimensions": 48, **NO_TIKTOKEN}),
    "li-basic": (OpenAIEmbedding, GuardedEmbedding, lambda s: {
        "model": MODEL, "api_key": KEY, "api_base": _openai(s)}),
    "li-knobs": (OpenAIEmbedding, GuardedEmbedding, lambda s: {
        "model": MODEL, "api_key": KEY, "api_base": _openai(s), "dimensions": 64,
        "embed_batch_size": 3, "max_retries": 1, "timeout": 10.0, "api_version": "",
        "additional_kwargs": {"user": "u1"}, "default_headers": {"X-Team": "search"},
        "reuse_client": True, "mode": "similarity"}),
    "li-model-name-big-batch": (OpenAIEmbedding, GuardedEmbedding, lambda s: {
        "model_name": MODEL, "api_key": KEY, "api_base": _openai(s), "embed_batch_size": 2048}),
}  # fmt: skip


def _embed(adapter: Any) -> np.ndarray:
    if hasattr(adapter, "embed_documents"):
        return np.array(adapter.embed_documents(TEXTS))
    return np.array(adapter.get_text_embedding_batch(TEXTS))


def _seen(server: EmbeddingServer) -> list[tuple[Any, ...]]:
    """What each request carried that a keyword controls, in a comparable order."""
    seen = [
        (r.path, tuple(sorted(r.query.items())), r.body.get("dimensions"), r.body.get("user"),
         r.headers.get("x-team"), r.headers.get("openai-organization"), len(r.inputs))
        for r in server.requests
    ]  # fmt: skip
    server.reset()
    return sorted(seen, key=lambda row: -row[-1])


@pytest.mark.parametrize("row", list(ROWS))
def test_peer_and_ours_from_the_same_kwargs_agree(server: EmbeddingServer, row: str) -> None:
    """The same keywords give the same vectors and the same request settings as the peer."""
    peer_class, ours_class, make = ROWS[row]
    server.reset()
    expected = _embed(peer_class(**make(server)))
    sent = _seen(server)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = ours_class(**make(server))
    try:
        got = _embed(ours)
        received = _seen(server)
    finally:
        ours.close()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert got.shape[0] == len(TEXTS)
    # Same endpoint, query, dimensions, body extras and headers on every request; the peer's
    # batch size bounds ours (ours may balance a batch across the pool: 3+2+2 for 3+3+1).
    assert {r[:-1] for r in received} == {r[:-1] for r in sent}
    assert max(r[-1] for r in received) <= max(r[-1] for r in sent)
    ignored = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(ignored) <= 1  # one warning at most, naming every ignored keyword


def test_mapped_values_land_on_the_profile_and_keep_the_provider_rest() -> None:
    """max_retries, timeouts, chunk_size... change only those fields of the provider profile."""
    emb = GuardedEmbeddings(
        provider="mistral", api_key=KEY, max_retries=6, request_timeout=(2, 45),
        retry_min_seconds=3, chunk_size=16, model_kwargs={"encoding_format": "float"},
    )  # fmt: skip
    profile, base = emb.profile, profiles.mistral()
    assert (profile.retry.max_retries, profile.retry.initial_delay) == (6, 3)
    assert profile.retry.max_delay == base.retry.max_delay
    assert (profile.timeouts.connect, profile.timeouts.request) == (2, 45)
    assert profile.batching.max_inputs == 16
    assert profile.batching.max_tokens_per_request == base.batching.max_tokens_per_request
    assert profile.encoding_format == "float" and profile.extra_body == {}
    assert profile.sources()["retry.max_retries"] == "argument"
    t = GuardedEmbedding(api_key=KEY, timeout=httpx.Timeout(30, connect=3)).profile.timeouts
    assert (t.request, t.connect) == (30, 3)


def test_azure_keywords_select_the_azure_profile() -> None:
    """azure_endpoint / azure_deployment / deployment_name pick provider azure by themselves."""
    lc = GuardedEmbeddings(
        azure_endpoint="https://res.openai.azure.com", azure_deployment="emb",
        api_version="2024-10-21", api_key=KEY,
    )  # fmt: skip
    li = GuardedEmbedding(
        azure_endpoint="https://res.openai.azure.com", deployment_name="emb",
        api_version="2024-10-21", api_key=KEY,
    )  # fmt: skip
    for emb in (lc, li):
        assert (emb.provider, emb.profile.deployment) == ("azure", "emb")
        assert emb.profile.retry == profiles.azure().retry
    url = GuardedEmbeddings(
        base_url="https://res.openai.azure.com/openai/deployments/emb2",
        api_version="2024-10-21", api_key=KEY,
    )  # fmt: skip
    assert (url.profile.base_url, url.profile.deployment) == (
        "https://res.openai.azure.com",
        "emb2",
    )


def test_ignored_keywords_warn_once_saying_what_embedguard_does() -> None:
    """Tokenizer-only keywords are accepted with one warning naming each and the alternative."""
    with pytest.warns(UserWarning, match="GuardedEmbeddings ignores") as caught:
        GuardedEmbeddings(
            api_key=KEY, tiktoken_enabled=False, check_embedding_ctx_length=True,
            tiktoken_model_name="cl100k_base",
        )  # fmt: skip
    assert len(caught) == 1
    message = str(caught[0].message)
    for name in ("tiktoken_enabled", "check_embedding_ctx_length", "tiktoken_model_name"):
        assert name in message
    assert "context_policy='chunk'" in message


@pytest.mark.parametrize(
    ("kwargs", "equivalent"),
    [
        ({"skip_empty": True}, "InputValidationError"),
        ({"use_azure_ad": True}, "token_provider="),
        ({"azure_ad_async_token_provider": lambda: "t"}, "token_provider="),
        ({"async_client": object()}, "client=EmbeddingClient"),
        ({"client": object()}, "EmbeddingClient"),
        ({"openai_api_type": "open_source"}, "provider="),
        ({"api_key": lambda: KEY}, "token_provider="),
        ({"model": "a", "model_name": "b"}, "disagree"),
    ],
)
def test_refused_keywords_name_the_equivalent(kwargs: dict[str, Any], equivalent: str) -> None:
    """A peer keyword with no place here is refused in one line naming what to use instead."""
    for adapter in (GuardedEmbeddings, GuardedEmbedding):
        with pytest.raises(ConfigurationError, match=equivalent) as info:
            adapter(**{"api_key": KEY, **kwargs})
        assert "\n" not in str(info.value)


def test_llamaindex_batch_size_above_2048_lets_the_client_batch(server: EmbeddingServer) -> None:
    """embed_batch_size=5000 is accepted and the client splits by the profile's max_inputs."""
    server.reset()
    base = profiles.openai(base_url=_openai(server), batching={"max_inputs": 300})
    emb = GuardedEmbedding(base, api_key=KEY, embed_batch_size=5000)
    try:
        vectors = emb.get_text_embedding_batch([f"text {i}" for i in range(1000)])
    finally:
        emb.close()
    assert len(vectors) == 1000 and emb.profile.batching.max_inputs == 300
    assert max(len(r.inputs) for r in server.requests) <= 300
    with pytest.raises(ConfigurationError, match="embed_batch_size"):
        GuardedEmbedding(api_key=KEY, embed_batch_size=0)


def test_headers_and_query_reach_the_server_sync_and_async(server: EmbeddingServer) -> None:
    """default_headers, organization and default_query are sent by both paths."""
    import asyncio

    server.reset()
    emb = GuardedEmbeddings(
        api_key=KEY, base_url=_openai(server), default_headers={"X-Team": "t1"},
        organization="org-1", default_query={"trace": "on"},
    )  # fmt: skip

    async def both() -> None:
        emb.embed_query("sync")
        await emb.aembed_query("async")
        await emb.aclose()

    asyncio.run(both())
    assert len(server.requests) == 2
    for request in server.requests:
        assert request.headers["x-team"] == "t1"
        assert request.headers["openai-organization"] == "org-1"
        assert request.query["trace"] == "on"


def test_transport_keywords_go_to_the_client(server: EmbeddingServer) -> None:
    """http_client is used as given; headers with it must be set on it (refused otherwise)."""
    server.reset()
    with httpx.Client(headers={"X-Team": "mine"}) as http:
        emb = GuardedEmbeddings(api_key=KEY, base_url=_openai(server), http_client=http)
        emb.embed_query("q")
        assert server.requests[0].headers["x-team"] == "mine"
        with pytest.raises(ConfigurationError, match="http_client"):
            GuardedEmbeddings(api_key=KEY, http_client=http, default_headers={"X": "y"})
    with (
        EmbeddingClient(profiles.openai(base_url=_openai(server)), api_key=KEY) as client,
        pytest.raises(ConfigurationError, match="either a client or settings"),
    ):
        GuardedEmbedding(client, max_retries=2)


# LlamaIndex's AzureOpenAIEmbedding (llama-index-embeddings-azure-openai, not installed here):
# the keywords its __init__ adds to OpenAIEmbedding's.
LLAMA_AZURE = ["azure_endpoint", "azure_deployment", "azure_ad_token_provider", "use_azure_ad",
               "deployment_name", "api_base", "async_http_client", "http_client"]  # fmt: skip


def test_every_peer_keyword_has_a_translation() -> None:
    """Each keyword of the four peer classes is ours, the framework's, or in the README table."""
    import inspect

    from llama_index.core.base.embeddings.base import BaseEmbedding

    from embedguard.adapters._vocabulary import TABLE

    peers = set(LLAMA_AZURE) | set(inspect.signature(OpenAIEmbedding.__init__).parameters)
    peers |= set(OpenAIEmbedding.model_fields) | {"model_name"}
    for cls in (OpenAIEmbeddings, AzureOpenAIEmbeddings):
        for name, info in cls.model_fields.items():
            peers |= {name, *([info.alias] if info.alias else [])}
    ours = {"provider", "model", "base_url", "dimensions", "api_key", "profile", "client",
            "deployment", "api_version", "token_provider", "http_client", "async_http_client",
            "context_policy", *BaseEmbedding.model_fields}  # fmt: skip
    missing = peers - ours - {name for name, _ in TABLE} - {"self", "kwargs"}
    assert not missing
