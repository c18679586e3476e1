"""The unit of sharing: the texts one call sends (a group) and what came back for them.

Results travel as one :class:`Group` per sending call (not one object per vector), so the bulk path
stays cheap. Small calls merged into one request (:func:`merge`) get their rows back with
:func:`split_result`.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from ..planning import Batch

__all__ = ["Group", "GroupResult", "Part", "Ref", "combine", "merge", "split_result"]


@dataclass(slots=True)
class GroupResult:
    """Vectors for a group's texts; rows listed in ``failed`` have no vector.

    ``served`` maps rows a fallback embedded to that fallback's position in the chain (1, 2, ...);
    every other row with a vector came from the primary endpoint.
    """

    vectors: np.ndarray | None
    failed: dict[int, BaseException] = field(default_factory=dict)
    served: dict[int, int] = field(default_factory=dict)


@dataclass(slots=True)
class Group:
    """The texts one call sends, with the future its waiters read."""

    texts: list[str]
    tokens: list[int]
    kind: str = "document"
    future: Future[GroupResult] = field(default_factory=Future)


Ref = tuple[Future[GroupResult], int]
"""Where one text's vector will be: a group's future and the text's row in that group."""

Part = tuple[Batch, np.ndarray | BaseException]
"""One batch of a group, with its vectors or the error it ended with."""


def merge(groups: Sequence[Group]) -> Group:
    """One group holding every text of ``groups`` (each text once), for a merged send."""
    merged = Group([], [], groups[0].kind)
    seen: set[str] = set()
    for group in groups:
        for text, n in zip(group.texts, group.tokens, strict=True):
            if text not in seen:
                seen.add(text)
                merged.texts.append(text)
                merged.tokens.append(n)
    return merged


def split_result(groups: Sequence[Group], merged: Group, result: GroupResult) -> list[GroupResult]:
    """Cut a merged group's result back into one result per original group."""
    position = {text: i for i, text in enumerate(merged.texts)}
    out = []
    for group in groups:
        rows = [position[t] for t in group.texts]
        failed = {i: result.failed[r] for i, r in enumerate(rows) if r in result.failed}
        served = {i: result.served[r] for i, r in enumerate(rows) if r in result.served}
        vectors = None if result.vectors is None else result.vectors[rows]
        out.append(GroupResult(vectors, failed, served))
    return out


def combine(n: int, parts: list[Part], out: np.ndarray | None) -> GroupResult:
    """Put each batch's vectors at its rows; rows of failed batches carry their error.

    Batches that decoded straight into ``out`` (the usual case) need no copy at all.
    """
    if len(parts) == 1 and not isinstance(parts[0][1], BaseException):
        return GroupResult(parts[0][1])  # one batch covering every row
    vectors = out
    failed: dict[int, BaseException] = {}
    for batch, value in parts:
        if isinstance(value, BaseException):
            failed.update(dict.fromkeys(batch.units, value))
            continue
        if vectors is None or vectors.shape[1] != value.shape[1]:
            vectors = np.empty((n, value.shape[1]), dtype=np.float32)
        rows = slice(batch.units[0], batch.units[-1] + 1)  # a batch is a run of rows
        if not np.may_share_memory(vectors[rows], value):
            vectors[rows] = value
    if len(failed) == n:
        vectors = None
    return GroupResult(vectors, failed)
