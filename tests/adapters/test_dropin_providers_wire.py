"""Drop-in for the new providers' peers, over real HTTP: an adapter built with only a peer's own
keywords talks to the loopback server, and the request bodies, headers and signatures show
each keyword took effect (issue 17). The keyword-to-profile checks are in
test_dropin_providers.py.
"""

from __future__ import annotations

import asyncio
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embedguard.adapters.langchain import GuardedEmbeddings
from embedguard.adapters.llamaindex import GuardedEmbedding
from embedguard.testing import EmbeddingServer, deterministic_vectors
from embedguard.testing._wire_cohere import compact_rows
from embedguard.testing._wire_voyage import voyage_vectors

from .conftest import KEY
from .test_dropin_providers import KEY_ID, SECRET
from .test_dropin_providers import _clean_env as _clean_env  # the autouse fixture


@pytest.fixture
def server() -> Iterator[EmbeddingServer]:
    """A loopback server that wants the planted key (the secret key, for SigV4), 1024-d."""
    with EmbeddingServer(dimensions=1024, require_key=KEY) as srv:
        yield srv


def _bodies(server: EmbeddingServer, *fields: str) -> list[tuple[Any, ...]]:
    """The given body fields of every request, in order; the log is then cleared."""
    seen = [tuple(r.body.get(f) for f in fields) for r in server.requests]
    assert all(r.status == 200 for r in server.requests)
    server.reset()
    return seen


# -- Cohere --------------------------------------------------------------------------------------
def test_langchain_cohere_keywords_reach_the_wire(server: EmbeddingServer) -> None:
    """CohereEmbeddings' keywords: int8 vectors, the cut, the client name, the key, per kind."""
    emb = GuardedEmbeddings(
        model="embed-english-v3.0", cohere_api_key=KEY, base_url=server.base_url("cohere"),
        embedding_types=["int8"], truncate="END", user_agent="my-app",
    )  # fmt: skip
    docs = emb.embed_documents(["d1", "d2"])
    query = emb.embed_query("q1")
    assert server.requests[0].headers["x-client-name"] == "my-app"
    assert _bodies(server, "input_type", "embedding_types", "truncate") == [
        ("search_document", ["int8"], "END"), ("search_query", ["int8"], "END"),
    ]  # fmt: skip
    want = compact_rows(deterministic_vectors(["d1", "d2", "q1"], 1024), "int8")
    np.testing.assert_array_equal([*docs, query], want)
    emb.close()


def test_llamaindex_cohere_keywords_reach_the_wire(server: EmbeddingServer) -> None:
    """CohereEmbedding: input_type on every text, ubinary packed vectors, batches of 2."""
    emb = GuardedEmbedding(
        model_name="embed-english-v3.0", api_key=KEY, base_url=server.base_url("cohere"),
        input_type="clustering", embedding_type="ubinary", embed_batch_size=2, truncate="NONE",
    )  # fmt: skip
    texts = emb.get_text_embedding_batch(["t1", "t2", "t3"])
    query = asyncio.run(emb.aget_query_embedding("q1"))
    sizes = [len(r.inputs) for r in server.requests]
    assert sorted(sizes) == [1, 1, 2]
    assert (
        _bodies(server, "input_type", "embedding_types", "truncate")
        == [("clustering", ["ubinary"], "NONE")] * 3
    )
    want = compact_rows(deterministic_vectors(["t1", "t2", "t3", "q1"], 1024), "ubinary")
    np.testing.assert_array_equal([*texts, query], want)
    emb.close()


# -- Voyage AI -----------------------------------------------------------------------------------
def test_langchain_voyage_keywords_reach_the_wire(server: EmbeddingServer) -> None:
    """VoyageAIEmbeddings: batch_size, output_dimension, truncation; document vs query."""
    emb = GuardedEmbeddings(
        model="voyage-3.5", voyage_api_key=KEY, base_url=server.base_url("voyage"),
        batch_size=2, output_dimension=512, truncation=True,
    )  # fmt: skip
    docs = emb.embed_documents(["d1", "d2", "d3"])
    query = asyncio.run(emb.aembed_query("q1"))
    assert max(len(r.inputs) for r in server.requests) == 2
    assert sorted(_bodies(server, "input_type", "output_dimension", "truncation")) == [
        ("document", 512, True), ("document", 512, True), ("query", 512, True),
    ]  # fmt: skip
    np.testing.assert_allclose([*docs, query], voyage_vectors(["d1", "d2", "d3", "q1"], 512))
    emb.close()


def test_llamaindex_voyage_keywords_reach_the_wire(server: EmbeddingServer) -> None:
    """VoyageEmbedding: output_dtype int8 and output_dimension, no truncation; both kinds."""
    emb = GuardedEmbedding(
        model_name="voyage-3.5", voyage_api_key=KEY, base_url=server.base_url("voyage"),
        output_dtype="int8", output_dimension=256, truncation=False,
    )  # fmt: skip
    text = emb.get_text_embedding("t1")
    query = emb.get_query_embedding("q1")
    fields = ("input_type", "output_dtype", "output_dimension", "truncation")
    assert _bodies(server, *fields) == [("document", "int8", 256, False),
                                        ("query", "int8", 256, False)]  # fmt: skip
    np.testing.assert_array_equal([text, query], voyage_vectors(["t1", "q1"], 256, "int8"))
    emb.close()


# -- Gemini --------------------------------------------------------------------------------------
def _entries(server: EmbeddingServer) -> list[tuple[Any, ...]]:
    """(taskType, outputDimensionality) of every entry of every request; the log is cleared."""
    seen = [(e.get("taskType"), e.get("outputDimensionality"))
            for r in server.requests for e in r.body["requests"]]  # fmt: skip
    assert all(r.status == 200 for r in server.requests)
    server.reset()
    return seen


def test_langchain_google_keywords_reach_the_wire(server: EmbeddingServer) -> None:
    """GoogleGenerativeAIEmbeddings: task_type for every text, dimensionality, headers, key."""
    emb = GuardedEmbeddings(
        model="models/gemini-embedding-001", google_api_key=KEY,
        base_url=server.base_url("gemini"), task_type="SEMANTIC_SIMILARITY",
        output_dimensionality=768, additional_headers={"X-Team": "search"},
    )  # fmt: skip
    docs = emb.embed_documents(["d1", "d2"])
    query = emb.embed_query("q1")
    request = server.requests[0]
    assert request.path.endswith("/models/gemini-embedding-001:batchEmbedContents")
    assert (request.headers["x-goog-api-key"], request.headers["x-team"]) == (KEY, "search")
    assert _entries(server) == [("SEMANTIC_SIMILARITY", 768)] * 3
    np.testing.assert_allclose([*docs, query], deterministic_vectors(["d1", "d2", "q1"], 768))
    emb.close()


def test_llamaindex_google_genai_keywords_reach_the_wire(server: EmbeddingServer) -> None:
    """GoogleGenAIEmbedding: embedding_config's size and http_options' URL and headers; the
    task type is the kind's (the config's is replaced, as the peer does)."""
    with pytest.warns(UserWarning, match="task_type"):
        emb = GuardedEmbedding(
            model_name="text-embedding-004", api_key=KEY,
            embedding_config={"output_dimensionality": 256, "task_type": "CLUSTERING"},
            http_options={"base_url": server.base_url("gemini"), "headers": {"X-Team": "li"}},
        )  # fmt: skip
    text = emb.get_text_embedding("t1")
    query = emb.get_query_embedding("q1")
    assert emb.provider == "gemini" and server.requests[0].headers["x-team"] == "li"
    assert _entries(server) == [("RETRIEVAL_DOCUMENT", 256), ("RETRIEVAL_QUERY", 256)]
    np.testing.assert_allclose([text, query], deterministic_vectors(["t1", "q1"], 256))
    emb.close()


def test_llamaindex_gemini_keywords_reach_the_wire() -> None:
    """GeminiEmbedding: api_base, one task_type for queries and texts, the fixed 768 size."""
    with EmbeddingServer(dimensions=768, require_key=KEY) as server:
        emb = GuardedEmbedding(
            model_name="models/embedding-001", api_key=KEY, task_type="retrieval_query",
            api_base=server.base_url("gemini"),
        )  # fmt: skip
        vectors = [emb.get_text_embedding("t1"), emb.get_query_embedding("q1")]
        assert _entries(server) == [("RETRIEVAL_QUERY", None)] * 2
        emb.close()
    np.testing.assert_allclose(vectors, deterministic_vectors(["t1", "q1"], 768))


# -- Bedrock -------------------------------------------------------------------------------------
def _signed_by(server: EmbeddingServer) -> set[str]:
    """The SigV4 credential scopes (key id/date/region/service) the requests were signed with."""
    scopes = set()
    for request in server.requests:
        credential = request.headers["authorization"].split("Credential=")[1].split(",")[0]
        key_id, _, region, service, _ = credential.split("/")
        scopes.add(f"{key_id}/{region}/{service}")
    return scopes


def test_langchain_bedrock_keywords_reach_the_wire() -> None:
    """BedrockEmbeddings: the keys sign (the server verifies with the secret), region_name and
    endpoint_url route, model_kwargs' truncate is sent; Cohere's types by kind."""
    with EmbeddingServer(require_key=SECRET) as server, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # langchain-aws's `provider` is ignored, with a warning
        emb = GuardedEmbeddings(
            model_id="cohere.embed-english-v3", region_name="us-east-1", provider="cohere",
            endpoint_url=server.base_url("bedrock"), aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET, model_kwargs={"truncate": "END"},
        )  # fmt: skip
        docs = emb.embed_documents(["d1", "d2"])
        query = emb.embed_query("q1")
        assert _signed_by(server) == {f"{KEY_ID}/us-east-1/bedrock"}
        assert _bodies(server, "input_type", "truncate") == [
            ("search_document", "END"), ("search_query", "END"),
        ]  # fmt: skip
        emb.close()
    np.testing.assert_allclose([*docs, query], deterministic_vectors(["d1", "d2", "q1"], 1024))
    assert "AWS_ACCESS_KEY_ID" not in os.environ  # this client's copy only


def test_llamaindex_bedrock_profile_name_reaches_the_wire(tmp_path: Path) -> None:
    """BedrockEmbedding: profile_name's credentials sign and its region routes; Titan gets one
    text per request with additional_kwargs' dimensions and normalize."""
    (tmp_path / "credentials").write_text(
        f"[dev]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n"
    )
    (tmp_path / "config").write_text("[profile dev]\nregion = eu-west-1\n")
    env = {"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
           "AWS_CONFIG_FILE": str(tmp_path / "config")}  # fmt: skip
    with EmbeddingServer(require_key=SECRET) as server, pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        emb = GuardedEmbedding(
            model_name="amazon.titan-embed-text-v2:0", profile_name="dev",
            base_url=server.base_url("bedrock"), embed_batch_size=10,
            additional_kwargs={"dimensions": 256, "normalize": True},
        )  # fmt: skip
        vectors = emb.get_text_embedding_batch(["a", "b", "c"])
        assert _signed_by(server) == {f"{KEY_ID}/eu-west-1/bedrock"}
        assert sorted(_bodies(server, "inputText", "dimensions", "normalize")) == [
            ("a", 256, True), ("b", 256, True), ("c", 256, True),
        ]  # fmt: skip
        emb.close()
    np.testing.assert_allclose(vectors, deterministic_vectors(["a", "b", "c"], 256), rtol=1e-6)
    assert "AWS_PROFILE" not in os.environ


# -- TEI -----------------------------------------------------------------------------------------
def _embeds(server: EmbeddingServer) -> list[Any]:
    """The /embed requests (the client fetched /info once before them)."""
    assert [r.path for r in server.requests][:1] == ["/tei/info"]
    return [r for r in server.requests if r.path == "/tei/embed"]


def test_langchain_huggingface_endpoint_keywords_reach_the_wire(server: EmbeddingServer) -> None:
    """HuggingFaceEndpointEmbeddings pointed at a TEI URL: the token is the server's key and
    model_kwargs' prompt_name and truncate are sent for every text, as the peer sends them."""
    emb = GuardedEmbeddings(
        model=server.base_url("tei"), huggingfacehub_api_token=KEY, task="feature-extraction",
        model_kwargs={"prompt_name": "passage", "truncate": True},
    )  # fmt: skip
    docs = emb.embed_documents(["d1", "d2"])
    query = emb.embed_query("q1")
    requests = _embeds(server)
    assert emb.provider == "tei" and emb.base_url == server.base_url("tei")
    assert {r.headers["authorization"] for r in requests} == {f"Bearer {KEY}"}
    sent = [(r.body["prompt_name"], r.body["truncate"]) for r in requests]
    assert sent == [("passage", True)] * 2
    want = deterministic_vectors(["passage: d1", "passage: d2", "passage: q1"], 1024)
    np.testing.assert_allclose([*docs, query], want, rtol=1e-6)
    emb.close()


def test_llamaindex_text_embeddings_inference_keywords_reach_the_wire() -> None:
    """TextEmbeddingsInference: instructions before each text, the auth token, batches of
    embed_batch_size; truncate_text cuts an over-long text (without it, it is refused)."""
    from embedguard import InputValidationError

    long_text = " ".join(f"w{i}" for i in range(200))
    with EmbeddingServer(dimensions=64, require_key=KEY, max_input_tokens=64) as server:
        base = {"model_name": "BAAI/bge-small-en-v1.5", "base_url": server.base_url("tei"),
                "query_instruction": "Q:", "text_instruction": "D:", "auth_token": KEY}  # fmt: skip
        emb = GuardedEmbedding(**base, truncate_text=True, embed_batch_size=2, timeout=30.0)
        texts = emb.get_text_embedding_batch(["t1", "t2", "t3"])
        query = emb.get_query_embedding("q1")
        cut = emb.get_text_embedding(long_text)
        requests = _embeds(server)
        batches = sorted(r.inputs for r in requests[:2])  # sent side by side: either order
        assert (batches, requests[2].inputs) == ([("D: t1", "D: t2"), ("D: t3",)], ("Q: q1",))
        assert all(r.body["truncate"] is True for r in requests)
        sent = requests[3].inputs[0]
        assert long_text.startswith(sent[3:]) and len(sent) < len(long_text)
        assert emb.metrics().inputs_adjusted["truncated"] == 1
        emb.close()
        refusing = GuardedEmbedding(**base)
        with pytest.raises(InputValidationError):
            refusing.get_text_embedding(long_text)
        refusing.close()
    want = deterministic_vectors(["D: t1", "D: t2", "D: t3", "Q: q1", sent], 64)
    np.testing.assert_allclose([*texts, query, cut], want, rtol=1e-6)
