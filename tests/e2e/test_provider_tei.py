"""Text Embeddings Inference through the client, over real HTTP against the loopback server."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from embedguard import (
    AuthenticationError,
    BadRequestError,
    CircuitOpenError,
    CircuitState,
    ContextLengthError,
    EmbeddingClient,
    EmbedGuardError,
    EndpointNotFoundError,
    RateLimitError,
    ServerError,
    profiles,
)
from embedguard.adapters.langchain import GuardedEmbeddings
from embedguard.adapters.llamaindex import GuardedEmbedding
from embedguard.testing import EmbeddingServer, Fault, RecordedRequest, deterministic_vectors

from .conftest import KEY, fast

TEXTS = ["alpha", "beta", "gamma", "alpha"]
D = 64


def tei_client(
    server: EmbeddingServer, *, key: str | None = None, **changes: Any
) -> EmbeddingClient:
    """A TEI-profile client pointed at the server, with fast retries."""
    profile = fast(profiles.tei(base_url=server.base_url("tei")), **changes)
    return EmbeddingClient(profile, api_key=key, environ={}, coalesce_window=0)


def embeds(server: EmbeddingServer) -> list[RecordedRequest]:
    """The /embed requests the server received (the /info fetch left out)."""
    return [r for r in server.requests if r.path == "/tei/embed"]


def test_sync_returns_each_texts_vector_with_usage(server: EmbeddingServer) -> None:
    """Vectors come back in order, deduplicated on the wire, with x-compute-tokens as usage."""
    with tei_client(server) as client:
        vectors = client.embed(TEXTS)
        snap = client.metrics()
        assert client.dimensions == D
    np.testing.assert_array_equal(vectors, deterministic_vectors(TEXTS, D))
    [request] = embeds(server)
    assert sorted(request.inputs) == ["alpha", "beta", "gamma"]
    assert snap.successful_requests == snap.total_requests == 1
    assert snap.tokens_used == 3  # the server's count, from x-compute-tokens


async def test_async_returns_each_texts_vector(server: EmbeddingServer) -> None:
    """The async path speaks TEI too, /info included."""
    async with tei_client(server) as client:
        vectors = await client.aembed(TEXTS)
        query = await client.aembed_query("delta")
    np.testing.assert_array_equal(vectors, deterministic_vectors(TEXTS, D))
    np.testing.assert_array_equal(query, deterministic_vectors(["delta"], D)[0])
    assert [r.path for r in server.requests] == ["/tei/info", "/tei/embed", "/tei/embed"]


def test_wire_details(server: EmbeddingServer) -> None:
    """POST /tei/embed with inputs, normalize on, truncate off, no model, no auth without a key."""
    with tei_client(server) as client:
        client.embed(["x"])
    info, embed = server.requests
    assert (info.method, info.path, embed.method) == ("GET", "/tei/info", "POST")
    assert embed.body == {"inputs": ["x"], "normalize": True, "truncate": False}
    assert "authorization" not in embed.headers and "authorization" not in info.headers
    assert embed.headers["content-type"] == "application/json"


def test_a_key_from_the_environment_is_sent_to_every_route() -> None:
    """TEI_API_KEY is the bearer token on /info and /embed; a wrong key is a bare 401."""
    with EmbeddingServer(dimensions=D, require_key=KEY) as srv:
        profile = fast(profiles.tei(base_url=srv.base_url("tei")))
        with EmbeddingClient(profile, environ={"TEI_API_KEY": KEY}) as client:
            client.embed(["a"])
        assert {r.headers["authorization"] for r in srv.requests} == {f"Bearer {KEY}"}
        assert [r.status for r in srv.requests] == [200, 200]
        with tei_client(srv, key="wrong-key-1234") as client, pytest.raises(AuthenticationError):
            client.embed(["a"])
        assert [r.status for r in srv.requests[2:]] == [401, 401]  # /info, then /embed once


def test_base_url_from_tei_base_url(server: EmbeddingServer) -> None:
    """TEI_BASE_URL is read when the profile has no base_url."""
    env = {"TEI_BASE_URL": server.base_url("tei")}
    with EmbeddingClient(fast(profiles.tei()), environ=env) as client:
        client.embed(["a"])
    assert len(embeds(server)) == 1


# -- input types on the request body ------------------------------------------------------------
def typed(server: EmbeddingServer) -> EmbeddingClient:
    """A client whose queries use the model's "query" prompt and documents its "passage" one."""
    return tei_client(server, query_input_type="query", document_input_type="passage")


def test_query_and_document_prompts_on_the_body(server: EmbeddingServer) -> None:
    """embed_query sends prompt_name "query", embed "passage", a per-call type itself; the server
    embeds the prompt's text before each input, so the vectors differ accordingly."""
    with typed(server) as client:
        query = client.embed_query("what is tei")
        docs = client.embed(["tei serves models"])
        other = client.embed(["tei serves models"], input_type="classification")
    bodies = [r.body for r in embeds(server)]
    assert [b["prompt_name"] for b in bodies] == ["query", "passage", "classification"]
    assert all(b["inputs"] in (["what is tei"], ["tei serves models"]) for b in bodies)
    np.testing.assert_array_equal(query, deterministic_vectors(["query: what is tei"], D)[0])
    np.testing.assert_array_equal(docs, deterministic_vectors(["passage: tei serves models"], D))
    classified = deterministic_vectors(["classification: tei serves models"], D)
    np.testing.assert_array_equal(other, classified)


def test_prefixes_instead_of_prompts(server: EmbeddingServer) -> None:
    """Without prompt names, the profile's prefixes go on the texts and no prompt_name is sent."""
    with tei_client(server, query_prefix="query: ", document_prefix="passage: ") as client:
        client.embed_query("q")
        client.embed(["d"])
    bodies = [r.body for r in embeds(server)]
    assert [b["inputs"] for b in bodies] == [["query: q"], ["passage: d"]]
    assert not any("prompt_name" in b for b in bodies)


async def test_adapters_send_query_and_document_prompts(server: EmbeddingServer) -> None:
    """LangChain's and LlamaIndex's query and document calls reach the body as prompt names."""
    with typed(server) as client:
        lc = GuardedEmbeddings(client=client)
        li = GuardedEmbedding(client=client)
        lc.embed_query("lc q")
        lc.embed_documents(["lc d"])
        await lc.aembed_query("lc aq")
        li.get_query_embedding("li q")
        li.get_text_embedding("li d")
        await li.aget_query_embedding("li aq")
    sent = {r.body["inputs"][0]: r.body["prompt_name"] for r in embeds(server)}
    assert sent == {"lc q": "query", "lc d": "passage", "lc aq": "query",
                    "li q": "query", "li d": "passage", "li aq": "query"}  # fmt: skip


def test_an_unknown_prompt_name_is_a_bad_request(server: EmbeddingServer) -> None:
    """A prompt the model does not define: 422 Validation, not retried."""
    with tei_client(server) as client, pytest.raises(BadRequestError) as info:
        client.embed(["a"], input_type="clustering")
    assert (info.value.status_code, info.value.code) == (422, "Validation")
    assert len(embeds(server)) == 1


# -- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "kind", "code"),
    [
        (400, BadRequestError, "Empty"),
        (401, AuthenticationError, None),
        (404, EndpointNotFoundError, None),
        (429, RateLimitError, "Overloaded"),
        (424, ServerError, "Backend"),
        (503, ServerError, "Unhealthy"),
        (500, ServerError, "Backend"),
    ],
)
def test_errors_are_typed(
    server: EmbeddingServer, status: int, kind: type, code: str | None
) -> None:
    """Each TEI error status becomes its typed error, the request sent once (no retries)."""
    server.script(Fault.status(status))
    with tei_client(server, retry={"max_retries": 0}) as client, pytest.raises(kind) as info:
        client.embed(["a"])
    assert (info.value.status_code, info.value.code) == (status, code)
    assert len(embeds(server)) == 1


@pytest.mark.parametrize(
    "fault", [Fault.status(424), Fault.status(503), Fault.rate_limited(0.01)], ids=str
)
def test_transient_errors_are_retried(server: EmbeddingServer, fault: Fault) -> None:
    """Backend (424), Unhealthy (503) and Overloaded (429, no Retry-After) are retried."""
    server.script(fault)
    with tei_client(server) as client:
        vectors = client.embed(["a", "b"])
    np.testing.assert_array_equal(vectors, deterministic_vectors(["a", "b"], D))
    assert [r.status for r in embeds(server)] == [fault.status_code, 200]


def test_an_input_over_the_model_length_is_refused_by_the_server() -> None:
    """truncate is off: the server's 422 is a ContextLengthError for that text only; the batch
    holding it is split so the other text still gets its vector (in the error's partial)."""
    long_text = " ".join(f"w{i}" for i in range(20))
    with EmbeddingServer(dimensions=D, max_input_tokens=10) as srv:
        client = tei_client(srv, batching={"max_tokens_per_input": 100})  # explicit: kept
        with client, pytest.raises(ContextLengthError) as info:
            client.embed(["short text", long_text])
        statuses = [r.status for r in embeds(srv)]
    assert info.value.code == "Validation" and "less than 10 tokens" in info.value.message
    assert list(info.value.failed_indices) == [1]
    assert info.value.partial is not None
    np.testing.assert_array_equal(
        info.value.partial[0], deterministic_vectors(["short text"], D)[0]
    )
    assert statuses == [422, 200, 422]


def test_a_payload_refusal_splits_the_batch(server: EmbeddingServer) -> None:
    """A 413 (body over --payload-limit) halves the batch instead of failing the call."""
    server.script(
        Fault.status(413, body=b"Failed to buffer the request body: length limit exceeded")
    )
    texts = ["one", "two", "three", "four"]
    with tei_client(server) as client:
        vectors = client.embed(texts)
    np.testing.assert_array_equal(vectors, deterministic_vectors(texts, D))
    assert [(r.status, len(r.inputs)) for r in embeds(server)] == [(413, 4), (200, 2), (200, 2)]


@pytest.mark.parametrize(
    "fault",
    [
        Fault.nan(),
        Fault.wrong_count(),
        Fault.wrong_dimensions(),
        Fault.bad_index(),
        Fault.malformed(),
        Fault.error_body_200(),
    ],
    ids=str,
)
def test_a_bad_body_is_never_returned_as_vectors(server: EmbeddingServer, fault: Fault) -> None:
    """NaN, a missing or extra row, short rows, HTML or an error document under 200: typed
    errors, no vectors. (A reordered array cannot be detected: TEI's rows carry no index.)"""
    server.script(fault)
    client = tei_client(server, dimensions=D, retry={"max_retries": 0})
    with client, pytest.raises(EmbedGuardError) as info:
        client.embed(["a", "b"])
    assert info.value.partial is None and list(info.value.failed_indices) == [0, 1]


# -- limits -------------------------------------------------------------------------------------
def test_no_rate_limit_is_assumed_or_learned(server: EmbeddingServer) -> None:
    """TEI states no limits: none is assumed or learned, and its Overloaded 429s are retried."""
    assert profiles.assumed_rate_limit("tei") is None
    server.script(Fault.rate_limited(0.01), Fault.rate_limited(0.01))
    with tei_client(server) as client:
        vectors = client.embed(["a", "b"])
        assert client.rate_limit_status is None
        assert client.rate_limits == {
            "requests": (None, "unlimited"), "tokens": (None, "unlimited"),
        }  # fmt: skip
        snap = client.metrics()
    np.testing.assert_array_equal(vectors, deterministic_vectors(["a", "b"], D))
    assert [r.status for r in embeds(server)] == [429, 429, 200]
    assert snap.errors_by_kind == {"rate_limit": 2}


# -- resilience -----------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [1, 2])
def test_chaos_loses_no_vector(seed: int) -> None:
    """20% faults (424, 503, 429, drops, cut and empty bodies): every text gets its own vector and
    the breaker stays closed."""
    unique = [f"passage {i}" for i in range(600)]
    texts = unique + unique[:200]
    faults = [Fault.status(424), Fault.status(503), Fault.rate_limited(), Fault.drop(),
              Fault.truncate(), Fault.status(200, body=b"")]  # fmt: skip
    with EmbeddingServer(dimensions=16) as srv:
        srv.chaos(0.2, faults, seed=seed)
        profile = fast(profiles.tei(base_url=srv.base_url("tei"), batching={"max_inputs": 20}))
        with EmbeddingClient(profile, environ={}) as client:
            vectors = client.embed(texts)
            assert client.circuit_state is CircuitState.CLOSED
        faulted = sum(r.fault is not None for r in srv.requests)
    assert faulted >= 3
    np.testing.assert_array_equal(vectors, deterministic_vectors(texts, 16))


def test_the_breaker_opens_on_an_outage(server: EmbeddingServer) -> None:
    """A server down with 503 Unhealthy opens the breaker; later calls fail fast, unsent."""
    server.set_down(True, status=503)
    with tei_client(server, breaker={"failure_threshold": 3}, retry={"max_retries": 5}) as client:
        with pytest.raises((ServerError, CircuitOpenError)):
            client.embed(["a"])
        assert client.circuit_state is CircuitState.OPEN
        sent = len(embeds(server))
        with pytest.raises(CircuitOpenError):
            client.embed(["b"])
        assert len(embeds(server)) == sent == 3
