"""Check a contender's vectors against the server's: none lost, none misordered, none wrong.

The loopback server answers each text with ``deterministic_vector(text, d)``, so the worker
knows the right answer for every input without asking anyone. Run after the measured part.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

_TOLERANCE = 1e-6  # float32 values survive base64, JSON floats and list[float] exactly


def _rows(out: Any, n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """``out`` as an ``(n, d)`` float32 array and a mask of the rows that hold a vector."""
    got = np.full((n, d), np.nan, dtype=np.float32)
    present = np.zeros(n, dtype=bool)
    if isinstance(out, np.ndarray) and out.ndim == 2 and out.shape[1] == d:
        rows = min(n, out.shape[0])
        got[:rows] = out[:rows]
        present[:rows] = True
    else:
        for i, row in enumerate(list(out)[:n]):
            if row is None or len(row) != d:
                continue
            got[i] = np.asarray(row, dtype=np.float32)
            present[i] = True
    present &= np.isfinite(got).all(axis=1)
    return got, present


def check_vectors(out: Any, texts: Sequence[str], dimensions: int) -> dict[str, int]:
    """Count the inputs whose vector is lost, misordered or wrong.

    Args:
        out: What the contender returned: an array or a sequence of vectors, one per text.
        texts: The inputs, in order.
        dimensions: The vector size asked for.

    Returns:
        ``lost``: inputs without a (finite, full-length) vector, missing rows included;
        ``misordered``: inputs holding the vector of another input; ``wrong``: inputs holding
        a vector that belongs to no input; ``extra``: rows beyond the number of inputs.
    """
    from embedguard.testing import deterministic_vectors

    n = len(texts)
    got, present = _rows(out, n, dimensions)
    expected = deterministic_vectors(list(texts), dimensions)
    close = present & (np.abs(got - expected) <= _TOLERANCE).all(axis=1)
    misordered = wrong = 0
    for i in np.flatnonzero(present & ~close):
        # The vectors are pseudo-random unit vectors: the best match is the only candidate.
        j = int(np.argmax(expected @ got[i]))
        if np.abs(got[i] - expected[j]).max() <= _TOLERANCE:
            misordered += 1
        else:
            wrong += 1
    total = out.shape[0] if isinstance(out, np.ndarray) and out.ndim == 2 else len(out)
    return {
        "lost": int(n - present.sum()),
        "misordered": misordered,
        "wrong": wrong,
        "extra": max(0, int(total) - n),
    }


def problems(counts: dict[str, int]) -> str | None:
    """A one-line description of what is wrong, or None when every vector is right."""
    bad = [f"{v} {k}" for k, v in counts.items() if v]
    return None if not bad else "vectors: " + ", ".join(bad)
