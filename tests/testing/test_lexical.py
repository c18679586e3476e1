"""Lexical fake embeddings: texts sharing words are close, and the server can serve them."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from embedguard.testing import (
    EmbeddingServer,
    _vectors,
    deterministic_vector,
    deterministic_vectors,
    lexical_vectors,
)

D = 256


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_texts_sharing_words_are_closer_than_unrelated_ones() -> None:
    """A text is closer to one sharing its words than to an unrelated one."""
    cat, cat2, tax = lexical_vectors(
        [
            "the cat sat on the warm mat",
            "a cat slept on a mat",
            "income tax returns are due in april",
        ],
        D,
    )
    # cat and mat shared among {cat, sat, warm, mat} and {cat, slept, mat}: cosine near 0.58.
    assert cos(cat, cat2) > 0.4
    assert abs(cos(cat, tax)) < 0.2
    assert cos(cat, cat2) > cos(cat, tax) + 0.15


def test_similarity_grows_with_shared_words() -> None:
    """More shared words give a higher cosine similarity."""
    base, two, one, zero = lexical_vectors(
        ["alpha beta gamma delta", "alpha beta omega sigma", "alpha kappa omega sigma", "x y z w"],
        D,
    )
    assert cos(base, two) > cos(base, one) > cos(base, zero)


def test_deterministic_and_batch_independent() -> None:
    """The same text gets the same vector whatever the batch, call or cache state."""
    texts = ["Solar panels convert light", "wind turbines", "solar wind"]
    first = lexical_vectors(texts, D)
    _vectors._word_cache.clear()
    again = lexical_vectors(list(reversed(texts)), D)[::-1]
    alone = np.stack([lexical_vectors([t], D)[0] for t in texts])
    assert np.array_equal(first, again)
    assert np.array_equal(first, alone)


def test_shape_dtype_and_unit_norm() -> None:
    """Rows are float32 with unit L2 norm, one per text."""
    out = lexical_vectors(["one two", "three", "four four four"], 32)
    assert out.shape == (3, 32)
    assert out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)


def test_tokens_are_lower_cased_words() -> None:
    """Case and punctuation do not change the vector; one word equals its word vector."""
    a, b = lexical_vectors(["Apple, PIE!", "apple pie"], D)
    assert np.array_equal(a, b)
    (word,) = lexical_vectors(["Apple"], D)
    assert np.allclose(word, deterministic_vector("apple", D), atol=1e-6)


def test_function_words_are_left_out() -> None:
    """Shared words like "the" and "how" do not make texts close; alone they still count."""
    cat, dog, only = lexical_vectors(["how is the cat", "how is the dog", "The"], D)
    assert np.allclose(cat, deterministic_vector("cat", D), atol=1e-6)
    assert abs(cos(cat, dog)) < 0.25
    assert np.allclose(only, deterministic_vector("the", D), atol=1e-6)


def test_repeated_words_weigh_more() -> None:
    """A repeated word counts each time it occurs."""
    once, twice = lexical_vectors(["red blue", "red red blue"], D)
    red = deterministic_vector("red", D)
    assert cos(twice, red) > cos(once, red)


def test_text_without_words_falls_back_to_its_own_vector() -> None:
    """A text with no word characters gets deterministic_vector(text)."""
    (v,) = lexical_vectors(["?!"], 8)
    assert np.array_equal(v, deterministic_vector("?!", 8))


def test_bad_dimensions_raise() -> None:
    """Dimensions below 1 are refused."""
    with pytest.raises(ValueError, match="dimensions"):
        lexical_vectors(["a"], 0)


def test_word_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The word-vector cache never grows past its bound, and evicted words recompute equal."""
    monkeypatch.setattr(_vectors, "_WORD_CACHE_SIZE", 5)
    _vectors._word_cache.clear()
    first = lexical_vectors([f"w{i}" for i in range(20)], 8)
    assert len(_vectors._word_cache) == 5
    assert np.array_equal(first, lexical_vectors([f"w{i}" for i in range(20)], 8))


def embed_over_http(server: EmbeddingServer, texts: list[str]) -> np.ndarray:
    body = {"input": texts, "model": "m", "encoding_format": "float"}
    reply = httpx.post(server.url + "/v1/embeddings", json=body, timeout=5.0)
    reply.raise_for_status()
    return np.array([row["embedding"] for row in reply.json()["data"]], dtype=np.float32)


def test_server_serves_lexical_vectors_when_asked() -> None:
    """EmbeddingServer(vectors="lexical") answers with lexical_vectors."""
    texts = ["rivers flow to the sea", "the sea is salty"]
    with EmbeddingServer(dimensions=16, vectors="lexical") as server:
        got = embed_over_http(server, texts)
        assert "vectors='lexical'" in repr(server)
    assert np.allclose(got, lexical_vectors(texts, 16), atol=1e-6)


def test_server_default_stays_random() -> None:
    """Without the option the server still answers with deterministic_vectors."""
    texts = ["rivers flow to the sea", "the sea is salty"]
    with EmbeddingServer(dimensions=16) as server:
        got = embed_over_http(server, texts)
    assert np.allclose(got, deterministic_vectors(texts, 16), atol=1e-6)


def test_server_refuses_unknown_vector_mode() -> None:
    """An unknown vectors mode is a ValueError at construction."""
    with pytest.raises(ValueError, match="vectors"):
        EmbeddingServer(vectors="semantic")  # type: ignore[arg-type]
