"""Coalescing: identical texts in flight share one request, and small calls share batches.

* **Single-flight.** Each call *claims* the distinct texts of its plan. A text already in flight
  for another call is not sent again: the call waits for that call's result instead. A failure
  reaches every waiter; a cancelled waiter does not cancel the others (waiters never cancel the
  shared future).
* **Micro-batching.** Small calls (an agent's queries) made within ``window`` seconds of each
  other are merged into one request; each caller gets its own rows back.

Results travel as one :class:`Group` per sending call (not one object per vector), so the bulk path
stays cheap: a call that owns all its texts reads its vectors straight out of its own group.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Flights", "Group", "GroupResult", "MicroBatcher"]


@dataclass(slots=True)
class GroupResult:
    """Vectors for a group's texts; rows listed in ``failed`` have no vector."""

    vectors: np.ndarray | None
    failed: dict[int, BaseException] = field(default_factory=dict)


@dataclass(slots=True)
class Group:
    """The texts one call sends, with the future its waiters read."""

    texts: list[str]
    tokens: list[int]
    kind: str = "document"
    future: Future[GroupResult] = field(default_factory=Future)


Ref = tuple[Future[GroupResult], int]


class Flights:
    """The registry of texts in flight (thread-safe; shared by sync and async callers)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inflight: dict[str, Ref] = {}

    def claim(
        self, texts: Sequence[str], tokens: Sequence[int], kind: str = "document"
    ) -> tuple[list[Ref], Group | None]:
        """Register the texts not already in flight; returns each text's ref and the new group."""
        group = Group([], [], kind)
        refs: list[Ref] = []
        with self._lock:
            inflight = self._inflight
            for text, n in zip(texts, tokens, strict=True):
                ref = inflight.get(text)
                if ref is None:
                    ref = inflight[text] = (group.future, len(group.texts))
                    group.texts.append(text)
                    group.tokens.append(n)
                refs.append(ref)
        return refs, (group if group.texts else None)

    def resolve(self, group: Group, result: GroupResult) -> None:
        """Publish a group's result and take its texts out of the registry."""
        with self._lock:
            for text in group.texts:
                ref = self._inflight.get(text)
                if ref is not None and ref[0] is group.future:
                    del self._inflight[text]
        group.future.set_result(result)

    def __len__(self) -> int:
        with self._lock:
            return len(self._inflight)


def gather(refs: Sequence[Ref], results: dict[int, GroupResult], d: int) -> np.ndarray:
    """Fill an ``(len(refs), d)`` array from finished groups (``results`` keyed by id(future))."""
    first = refs[0][0]
    if all(ref[0] is first for ref in refs):  # one group, e.g. a call that sent everything itself
        vectors = results[id(first)].vectors
        assert vectors is not None
        rows = np.fromiter((row for _, row in refs), dtype=np.intp, count=len(refs))
        if len(rows) == len(vectors) and (rows == np.arange(len(rows))).all():
            return vectors
        return vectors[rows]
    out = np.empty((len(refs), d), dtype=np.float32)
    by_group: dict[int, tuple[list[int], list[int]]] = {}
    for i, (future, row) in enumerate(refs):
        mine, theirs = by_group.setdefault(id(future), ([], []))
        mine.append(i)
        theirs.append(row)
    for key, (mine, theirs) in by_group.items():
        source = results[key].vectors
        assert source is not None
        out[mine] = source[theirs]
    return out


class MicroBatcher:
    """Merges the groups of small calls made within ``window`` seconds into one send (threads).

    The first caller of a window waits ``window`` seconds, then sends every group queued
    meanwhile through ``send``; later callers just wait for their futures.
    """

    def __init__(self, window: float, send: Callable[[list[Group]], None]) -> None:
        self.window = window
        self._send = send
        self._lock = threading.Lock()
        self._queue: list[Group] = []

    def submit(self, group: Group, sleep: Callable[[float], None]) -> None:
        """Queue ``group``; the caller that opens a window sends it when it closes."""
        with self._lock:
            self._queue.append(group)
            leader = len(self._queue) == 1
        if not leader:
            return
        sleep(self.window)
        with self._lock:
            groups, self._queue = self._queue, []
        self._send(groups)

    def take(self) -> list[Group]:
        """Everything queued now (for an async timer that fires)."""
        with self._lock:
            groups, self._queue = self._queue, []
        return groups

    def enqueue(self, group: Group) -> bool:
        """Queue ``group`` without waiting; ``True`` when it opened a new window."""
        with self._lock:
            self._queue.append(group)
            return len(self._queue) == 1


def merge(groups: Sequence[Group]) -> Group:
    """One group holding every text of ``groups`` (each text once), for a merged send."""
    merged = Group([], [])
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
        vectors = None if result.vectors is None else result.vectors[rows]
        out.append(GroupResult(vectors, failed))
    return out
