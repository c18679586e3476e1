"""Pieces the cache backends share: stats, key checks and the vector blob format."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ConfigurationError

__all__ = ["CacheStats"]

CHUNK = 500  # keys per SELECT, well under SQLite's bound-parameter limit
_LE_F4 = np.dtype("<f4")


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counts since the cache object was created (``entries`` is the size now).

    Attributes:
        hits: Keys found by ``get_many``.
        misses: Keys not found (or found unreadable).
        entries: Vectors stored now.
        evictions: Vectors removed to respect the bounds.
    """

    hits: int
    misses: int
    entries: int
    evictions: int

    @property
    def hit_rate(self) -> float:
        """``hits / (hits + misses)``, or 0.0 before any lookup."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


def check_key(key: object) -> bytes:
    if not isinstance(key, bytes):
        raise TypeError(f"cache keys are bytes, got {type(key).__name__}")
    return key


def encode(key: object, vector: object) -> tuple[bytes, int, bytes]:
    """``(key, dims, little-endian float32 bytes)`` of one item; raises on a non-1-d vector."""
    array = np.asarray(vector)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"cache vectors are non-empty and 1-d, got shape {array.shape}")
    blob = np.ascontiguousarray(array, dtype=_LE_F4).tobytes()
    return check_key(key), array.size, blob


def decode(blob: bytes) -> np.ndarray:
    # A vector backed by immutable bytes: read-only, and it cannot be made writeable again.
    vector = np.frombuffer(blob, dtype=_LE_F4)
    if vector.dtype != np.float32:  # big-endian host: a native copy
        vector = vector.astype(np.float32)
        vector.setflags(write=False)
    return vector


def positive(value: object, name: str, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if type(value) is not int or value < 1:
        raise ConfigurationError(f"must be a positive int, got {value!r}", field=name)
