"""Deterministic fake embeddings and the server's token count (pure functions, no I/O)."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pybase64

__all__ = [
    "count_tokens",
    "deterministic_vector",
    "deterministic_vectors",
    "encode_base64_rows",
    "lexical_vectors",
]

# splitmix64 constants: a counter-based generator, so element j of a text's stream needs no state
# and a whole batch is produced with a handful of vectorised numpy operations.
_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_SHIFTS = (np.uint64(30), np.uint64(27), np.uint64(31))
_SCALE = np.float32(2.0**-23)
# Rows are generated in blocks so the uint64 temporaries stay small (a few MB) for huge batches.
_BLOCK_ELEMENTS = 1 << 20


def count_tokens(text: str) -> int:
    """The server's token count for one input: the number of words, at least 1."""
    return max(1, len(text.split()))


def _text_seeds(texts: Sequence[str]) -> npt.NDArray[np.uint64]:
    # A 64-bit seed per text: two different texts share a vector only on a 64-bit collision.
    return np.fromiter(
        (
            int.from_bytes(
                hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                "little",
            )
            for t in texts
        ),
        dtype=np.uint64,
        count=len(texts),
    )


def _fill(seeds: npt.NDArray[np.uint64], dimensions: int) -> npt.NDArray[np.float32]:
    # Each uint64 of the stream yields two float32 values, so half as many hashes are needed.
    half = (dimensions + 1) // 2
    steps = np.arange(1, half + 1, dtype=np.uint64) * _GAMMA
    z = seeds[:, None] + steps[None, :]
    z ^= z >> _SHIFTS[0]
    z *= _MIX1
    z ^= z >> _SHIFTS[1]
    z *= _MIX2
    z ^= z >> _SHIFTS[2]
    # Viewing little-endian uint64 as little-endian uint32 pairs is the same on every platform.
    words = z.astype("<u8", copy=False).view("<u4")[:, :dimensions]
    # 24 random bits per value give a float32 in [-1, 1) exactly, without rounding.
    values = (words >> np.uint32(8)).astype(np.float32)
    values *= _SCALE
    values -= np.float32(1.0)
    norms = np.sqrt(np.square(values, dtype=np.float64).sum(axis=1))
    norms[norms == 0.0] = 1.0
    values /= norms[:, None].astype(np.float32)
    return values


def deterministic_vectors(texts: Sequence[str], dimensions: int) -> npt.NDArray[np.float32]:
    """Fake embeddings for many texts at once: row ``i`` equals ``deterministic_vector(texts[i])``.

    Each text's vector depends only on the text and ``dimensions`` (never on the batch it came
    in, the server or the process), so a test can compute the vectors it expects. Element ``j``
    is drawn from a stream seeded by a 64-bit BLAKE2b hash of the UTF-8 text, and the first
    ``dimensions`` elements are L2-normalised: a shorter vector is the normalised prefix of a
    longer one, as with Matryoshka embeddings.

    Args:
        texts: the texts to embed.
        dimensions: the length of each vector (at least 1).

    Returns:
        A C-contiguous ``float32`` array of shape ``(len(texts), dimensions)``, rows of unit norm.

    Example:
        >>> deterministic_vectors(["a", "b"], 8).shape
        (2, 8)
    """
    if dimensions < 1:
        raise ValueError(f"dimensions must be at least 1, got {dimensions}")
    seeds = _text_seeds(texts)
    out = np.empty((len(texts), dimensions), dtype=np.float32)
    rows_per_block = max(1, _BLOCK_ELEMENTS // dimensions)
    for start in range(0, len(texts), rows_per_block):
        stop = start + rows_per_block
        out[start:stop] = _fill(seeds[start:stop], dimensions)
    return out


def deterministic_vector(text: str, dimensions: int) -> npt.NDArray[np.float32]:
    """The fake embedding of one text: ``float32``, L2-normalised, a pure function of its inputs.

    Args:
        text: the text to embed.
        dimensions: the length of the vector (at least 1).

    Returns:
        A ``float32`` array of shape ``(dimensions,)`` with unit L2 norm.

    Example:
        >>> v = deterministic_vector("hello", 4)
        >>> bool((v == deterministic_vector("hello", 4)).all())
        True
    """
    vector: npt.NDArray[np.float32] = deterministic_vectors([text], dimensions)[0]
    return vector


_WORD = re.compile(r"\w+")
# English function words carry no topic: with them, every English sentence shares "the", "a",
# "and"... and long texts look alike whatever they are about.
_STOP_WORD_TEXT = (
    "a an and are as at be but by can did do does for from had has have how i if in into is it"
    " its my not of on or our so such than that the their them then there these they this to"
    " was we were what when where which who why will with you your"
)
_STOP_WORDS = frozenset(_STOP_WORD_TEXT.split())
# Word vectors are cached per (word, dimensions); the bound keeps memory flat when a benchmark
# streams millions of distinct words through the server. Oldest entries are evicted first.
_WORD_CACHE_SIZE = 50_000
_word_cache: dict[tuple[str, int], npt.NDArray[np.float32]] = {}
_word_cache_lock = threading.Lock()


def _word_vectors(words: Sequence[str], dimensions: int) -> npt.NDArray[np.float32]:
    vectors: dict[str, npt.NDArray[np.float32]] = {}
    with _word_cache_lock:
        for word in words:
            cached = _word_cache.get((word, dimensions))
            if cached is not None:
                vectors[word] = cached
    missing = list(dict.fromkeys(w for w in words if w not in vectors))
    if missing:
        fresh = deterministic_vectors(missing, dimensions)
        with _word_cache_lock:
            for word, vector in zip(missing, fresh, strict=True):
                # A copy, so an evicted row does not keep its whole batch array alive.
                vectors[word] = _word_cache[(word, dimensions)] = vector.copy()
            while len(_word_cache) > _WORD_CACHE_SIZE:
                del _word_cache[next(iter(_word_cache))]
    return np.stack([vectors[w] for w in words])


def lexical_vectors(texts: Sequence[str], dimensions: int) -> npt.NDArray[np.float32]:
    """Fake embeddings in which texts sharing words are close (feature hashing).

    A text's vector is the L2-normalised sum of ``deterministic_vector(word, dimensions)`` over
    its lower-cased word tokens (``\\w+``; a repeated word counts each time), leaving out a
    short list of English function words ("the", "and", "how"...) unless the text has nothing
    else. Unrelated texts are nearly orthogonal, texts with words in common have a cosine
    similarity that grows with the words they share, so retrieval over these vectors gives
    meaningful winners. A text with no word characters gets
    ``deterministic_vector(text, dimensions)``. Like :func:`deterministic_vectors`, the result
    is a pure function of its inputs.

    Args:
        texts: the texts to embed.
        dimensions: the length of each vector (at least 1).

    Returns:
        A ``float32`` array of shape ``(len(texts), dimensions)``, rows of unit norm.

    Example:
        >>> a, b, c = lexical_vectors(["red apple pie", "apple pie recipe", "tax law"], 256)
        >>> bool(a @ b > a @ c)
        True
    """
    if dimensions < 1:
        raise ValueError(f"dimensions must be at least 1, got {dimensions}")
    out = np.empty((len(texts), dimensions), dtype=np.float32)
    for row, text in enumerate(texts):
        tokens = _WORD.findall(text.lower())
        words = [w for w in tokens if w not in _STOP_WORDS] or tokens
        if not words:
            out[row] = deterministic_vectors([text], dimensions)[0]
            continue
        total = _word_vectors(words, dimensions).sum(axis=0, dtype=np.float64)
        norm = float(np.sqrt(np.square(total).sum()))
        if norm == 0.0:  # only possible for 1-d vectors of cancelling words
            out[row] = deterministic_vectors([text], dimensions)[0]
        else:
            out[row] = (total / norm).astype(np.float32)
    return out


def encode_base64_rows(matrix: npt.NDArray[np.float32]) -> list[str]:
    """Each row as standard base64 of its little-endian float32 bytes (the OpenAI wire form)."""
    little = matrix.astype("<f4", copy=False)
    return [pybase64.b64encode(row.tobytes()).decode("ascii") for row in little]
