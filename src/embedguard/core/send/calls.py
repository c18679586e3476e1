"""What happens to a call: cache, sharing, batching, sending (with failover), and the answer.

The client validates and plans a call (:mod:`embedguard.core.planning`); :class:`Calls` then

1. takes the texts the cache holds out (:mod:`~embedguard.core.send.cached`);
2. claims the rest: texts another call has in flight are awaited, not sent again, and small calls
   share one request through a :class:`Lane` (below);
3. cuts what this call must send into batches, once (the one place batches are planned), and
   sends them (:mod:`~embedguard.core.send.drivers`, which run the attempt flow of
   :mod:`~embedguard.core.send.attempt`), first to the primary endpoint, then what it could not
   embed to each fallback in turn;
4. publishes the group's result to everyone waiting on it, stores it in the cache, and gives the
   caller an array of its own in input order, or raises the call's error carrying what it did
   get (``partial``) and the inputs without a vector (``failed_indices``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np

from .. import errors
from ..planning import Plan, split_units
from .cached import CacheView
from .drivers import Lists, arun_batches, run_batches
from .endpoint import Endpoint
from .failover import announce, failover_rows, patch, pick
from .groups import Group, GroupResult, Ref, merge, split_result

__all__ = ["Calls", "Flights", "Lane", "gather"]

_MICRO_MAX = 16  # calls with at most this many distinct texts may be merged with others
_KINDS = ("document", "query")


class Calls:
    """Runs the calls of one client (shared by its threads and event loops)."""

    def __init__(self, endpoints: list[Endpoint], cache: CacheView | None, window: float) -> None:
        self._endpoints = endpoints
        self._primary = endpoints[0]
        self._cache = cache
        self._window = window
        self._flights = Flights()
        self._lanes = {k: Lane(window, self._send) for k in _KINDS}
        self._alanes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Lane]]
        self._alanes = weakref.WeakKeyDictionary()
        self._tasks: set[asyncio.Task[None]] = set()

    def run(self, plan: Plan, kind: str, lists: Lists | None = None) -> np.ndarray:
        """Embed a plan's units on this thread (waiting for any shared with other calls).

        ``lists`` (one item per unit) receives rows as Python lists as batches arrive, when
        this call sends every unit itself, in order (see :func:`run_batches`); else it is left.
        """
        refs, group = self._claim(plan, kind)
        if group is not None:
            if self._coalesce(plan):
                self._lane(self._lanes, kind).submit(group, time.sleep)
            else:
                self._send([group], _own(refs, group, lists))
        results = {id(f): f.result() for f, _ in refs}
        return self._answer(plan, refs, results, group)

    async def arun(self, plan: Plan, kind: str, lists: Lists | None = None) -> np.ndarray:
        """Async :meth:`run`; sends run as tasks, so a cancelled caller cancels no one else."""
        refs, group = self._claim(plan, kind)
        if group is not None:
            if self._coalesce(plan):
                self._enqueue(group)
            else:
                self._spawn(self._asend([group], _own(refs, group, lists)))
        results: dict[int, GroupResult] = {}
        for future, _ in refs:
            if id(future) not in results:  # shield: a cancelled caller leaves others waiting
                results[id(future)] = await asyncio.shield(asyncio.wrap_future(future))
        return self._answer(plan, refs, results, group)

    async def drain(self) -> None:
        """Wait for every send of this loop (queued small calls included)."""
        loop = asyncio.get_running_loop()
        mine = [t for t in self._tasks if t.get_loop() is loop]
        if mine:
            await asyncio.gather(*mine, return_exceptions=True)

    # -- before sending ------------------------------------------------------------------------
    def _claim(self, plan: Plan, kind: str) -> tuple[list[Ref], Group | None]:
        """Refs for every unit: cached ones, ones in flight for other calls, and a new group."""
        cached = self._cache.lookup(plan.units, plan.unit_tokens, kind) if self._cache else {}
        if not cached:
            return self._flights.claim(plan.units, plan.unit_tokens, kind)
        missing = [i for i in range(len(plan.units)) if i not in cached]
        refs, group = self._flights.claim(
            [plan.units[i] for i in missing], [plan.unit_tokens[i] for i in missing], kind
        )
        merged = dict(cached)
        merged.update(zip(missing, refs, strict=True))
        return [merged[i] for i in range(len(plan.units))], group

    def _coalesce(self, plan: Plan) -> bool:
        """Whether a small call may share a request with others.

        Only while the breaker is closed (or a fallback could serve it): an open breaker must
        fail the call at once, and half-open admits only its probes, one caller each.
        """
        if self._window <= 0 or len(plan.units) > _MICRO_MAX:
            return False
        return len(self._endpoints) > 1 or self._primary.circuit_closed

    # -- sending: one or more groups, merged when several small calls share a window ----------
    def _send(self, groups: list[Group], lists: Lists | None = None) -> None:
        merged = groups[0] if len(groups) == 1 else merge(groups)
        n = len(merged.texts)
        try:
            batches, order = _primary_batches(self._primary, merged)
            result = run_batches(self._primary, batches, n, lists if order is None else None)
            if order is not None:
                result = patch(GroupResult(None), order, result, n, 0)
            for i, ep in enumerate(self._endpoints[1:], 1):
                if not (rows := self._failover(ep, result)):
                    break
                part = pick(merged, rows)
                retried = run_batches(ep, _batches(ep, part), len(rows))
                result = patch(result, rows, retried, n, i)
        except BaseException as exc:
            self._publish(groups, merged, _all_failed(merged, exc))
            raise
        self._publish(groups, merged, result)

    async def _asend(self, groups: list[Group], lists: Lists | None = None) -> None:
        merged = groups[0] if len(groups) == 1 else merge(groups)
        n = len(merged.texts)
        try:
            batches, order = _primary_batches(self._primary, merged)
            result = await arun_batches(self._primary, batches, n, lists if order is None else None)
            if order is not None:
                result = patch(GroupResult(None), order, result, n, 0)
            for i, ep in enumerate(self._endpoints[1:], 1):
                if not (rows := self._failover(ep, result)):
                    break
                part = pick(merged, rows)
                retried = await arun_batches(ep, _batches(ep, part), len(rows))
                result = patch(result, rows, retried, n, i)
        except BaseException as exc:
            self._publish(groups, merged, _all_failed(merged, exc))
            raise
        self._publish(groups, merged, result)

    def _failover(self, ep: Endpoint, result: GroupResult) -> list[int]:
        """The rows to send to ``ep`` next (announced), or none when nothing can fail over."""
        rows = failover_rows(result)
        if rows:
            announce(self._primary.hooks, self._primary.name, ep.name, result.failed[rows[0]])
        return rows

    def _publish(self, groups: list[Group], merged: Group, result: GroupResult) -> None:
        results = [result] if len(groups) == 1 else split_result(groups, merged, result)
        for group, each in zip(groups, results, strict=True):
            if self._cache is not None:
                self._cache.store(group, each)
            self._flights.resolve(group, each)

    def _lane(self, lanes: dict[str, Lane], kind: str) -> Lane:
        lane = lanes.get(kind)
        if lane is None:  # a provider's input type given per call
            lane = lanes.setdefault(kind, Lane(self._window, self._send))
        return lane

    def _spawn(self, coroutine: Any) -> None:
        # Sends run as their own tasks so that a cancelled caller does not cancel the waiters
        # that share its texts.
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _enqueue(self, group: Group) -> None:
        loop = asyncio.get_running_loop()
        lanes = self._alanes.get(loop)
        if lanes is None:
            lanes = self._alanes[loop] = {k: Lane(self._window, self._send) for k in _KINDS}
        lane = self._lane(lanes, group.kind)
        if lane.open(group):
            self._spawn(self._alane(lane))

    async def _alane(self, lane: Lane) -> None:
        """Send the lane's queue, again and again, until nothing more has queued meanwhile."""
        groups = lane.take()  # the caller that found the lane idle: sent at once
        while groups:
            with contextlib.suppress(Exception):  # each group's waiters get any failure
                await self._asend(groups)
            if (wait := lane.linger()) > 0:
                await asyncio.sleep(wait)  # a burst: gather what arrives within the window
            groups = lane.take()

    # -- the answer ----------------------------------------------------------------------------
    def _answer(
        self, plan: Plan, refs: list[Ref], results: dict[int, GroupResult], group: Group | None
    ) -> np.ndarray:
        """The call's own vectors in input order, or its error carrying what it did get."""
        own = None if group is None else group.future
        failed = [i for i, (f, row) in enumerate(refs) if row in results[id(f)].failed]
        d = next((r.vectors.shape[1] for r in results.values() if r.vectors is not None), None)
        if not failed:
            assert d is not None
            vectors = gather(refs, results, d, own)
            return vectors if plan.identity else plan.assemble(vectors)
        errors_seen = [results[id(refs[i][0])].failed[refs[i][1]] for i in failed]
        # The failure that explains the others: a breaker that opened mid-call is a consequence.
        error = next(
            (e for e in errors_seen if not isinstance(e, errors.CircuitOpenError)), errors_seen[0]
        )
        if not isinstance(error, errors.EmbedGuardError):
            raise error  # not ours (e.g. a test double's exception): unchanged
        if isinstance(error, errors.CircuitOpenError):
            self._primary.metrics.record_rejected_call()
        error = error.copy()  # the same error may reach several concurrent callers
        error.with_failed_indices(plan.inputs_of(failed))
        if d is not None:
            error.partial = plan.assemble(gather(refs, results, d, None))
        raise error


def _batches(ep: Endpoint, group: Group) -> list[Any]:
    profile = ep.profile
    return split_units(
        group.texts, group.tokens, profile.batching, concurrency=profile.pool_size, kind=group.kind
    )


def _own(refs: list[Ref], group: Group, lists: Lists | None) -> Lists | None:
    """``lists`` when the group's rows are the call's units, in order (nothing cached or shared
    with another call), else ``None``."""
    if lists is None or len(group.texts) != len(refs):
        return None
    own = group.future
    return lists if all(f is own and row == i for i, (f, row) in enumerate(refs)) else None


def _primary_batches(ep: Endpoint, group: Group) -> tuple[list[Any], list[int] | None]:
    """The primary endpoint's batches for ``group``, and the row order they follow when it is
    not the group's (texts sorted by length: their result goes back with ``patch``)."""
    order = _by_length(ep, group)
    return _batches(ep, group if order is None else pick(group, order)), order


def _by_length(ep: Endpoint, group: Group) -> list[int] | None:
    """For an endpoint that pads each batch to its longest text (an in-process model), the
    group's rows from shortest to longest, so batches hold texts of like length; ``None`` when
    the order is already that, or the endpoint does not pad."""
    tokens = group.tokens
    if not ep.pads_batches or all(a <= b for a, b in itertools.pairwise(tokens)):
        return None
    return sorted(range(len(tokens)), key=tokens.__getitem__)


def _all_failed(group: Group, exc: BaseException) -> GroupResult:
    return GroupResult(None, dict.fromkeys(range(len(group.texts)), exc))


# -- sharing between concurrent calls -------------------------------------------------------------
class Flights:
    """The registry of texts in flight (thread-safe; shared by sync and async callers)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inflight: dict[tuple[str, str], Ref] = {}

    def claim(
        self, texts: Sequence[str], tokens: Sequence[int], kind: str = "document"
    ) -> tuple[list[Ref], Group | None]:
        """Register the texts not already in flight; returns each text's ref and the new group."""
        group = Group([], [], kind)
        refs: list[Ref] = []
        with self._lock:
            inflight = self._inflight
            for text, n in zip(texts, tokens, strict=True):
                ref = inflight.get((kind, text))
                if ref is None:
                    ref = inflight[kind, text] = (group.future, len(group.texts))
                    group.texts.append(text)
                    group.tokens.append(n)
                refs.append(ref)
        return refs, (group if group.texts else None)

    def resolve(self, group: Group, result: GroupResult) -> None:
        """Publish a group's result and take its texts out of the registry."""
        with self._lock:
            for text in group.texts:
                key = (group.kind, text)
                ref = self._inflight.get(key)
                if ref is not None and ref[0] is group.future:
                    del self._inflight[key]
        group.future.set_result(result)

    def __len__(self) -> int:
        with self._lock:
            return len(self._inflight)


def gather(
    refs: Sequence[Ref], results: dict[int, GroupResult], d: int, own: Future[GroupResult] | None
) -> np.ndarray:
    """Fill a new ``(len(refs), d)`` array from finished groups (``results`` keyed by id(future)).

    Rows without a vector are NaN. When every ref is a row of ``own`` (the caller's own group), in
    order, that group's array is returned as it is: nobody else reads it.
    """
    if own is not None and refs[0][0] is own:
        own_result = results[id(own)]
        vectors = own_result.vectors
        if (
            vectors is not None
            and len(vectors) == len(refs)
            and not own_result.failed
            and all(f is own and row == i for i, (f, row) in enumerate(refs))
        ):
            return vectors
    out = np.empty((len(refs), d), dtype=np.float32)
    by_group: dict[int, tuple[list[int], list[int]]] = {}
    for i, (future, row) in enumerate(refs):
        mine, theirs = by_group.setdefault(id(future), ([], []))
        mine.append(i)
        theirs.append(row)
    for key, (mine, theirs) in by_group.items():
        result = results[key]
        if result.vectors is None:
            out[mine] = np.nan
            continue
        out[mine] = result.vectors[theirs]  # fancy indexing: a copy, never a view
        if result.failed:
            missing = [m for m, t in zip(mine, theirs, strict=True) if t in result.failed]
            out[missing] = np.nan
    return out


class Lane:
    """Small calls of one kind share requests without waiting for a timer (group commit).

    A call that finds the lane idle is sent at once. Calls that arrive while a lane's request is
    in flight queue up; when it ends, the first of them sends every queued call as one request
    (after waiting, if need be, until ``window`` seconds have passed since the queue opened, to
    gather a burst). So a lone query pays no wait, and a burst of concurrent queries costs about
    two requests. Thread-safe; the sync callers' lane is driven with :meth:`submit`, an event
    loop's with :meth:`open`, :meth:`take` and :meth:`linger`.
    """

    def __init__(self, window: float, send: Callable[[list[Group]], None]) -> None:
        self.window = window
        self._send = send
        self._lock = threading.Lock()
        self._busy = False
        self._queue: list[Group] = []
        self._opened = 0.0
        self._turn: Future[None] | None = None  # done when the request in flight has ended

    # -- threads -------------------------------------------------------------------------------
    def submit(self, group: Group, sleep: Callable[[float], None]) -> None:
        """Send ``group`` now, or queue it; returns once the caller has nothing more to send."""
        with self._lock:
            if self._busy:
                self._queue.append(group)
                if len(self._queue) > 1:
                    return  # the first queued caller sends this group too
                self._opened = time.monotonic()
                turn = self._turn = Future()
            else:
                self._busy = True
                turn = None
        if turn is None:
            self._flight([group])
            return
        try:
            turn.result()  # the request in flight has ended: this caller sends the queue
            if (left := self._opened + self.window - time.monotonic()) > 0:
                sleep(left)
        except BaseException:
            # Interrupted while it held the queue's turn: a thread takes over, so the other
            # callers (and later calls sharing their texts) still get their answers.
            threading.Thread(
                target=self._take_over, args=(turn,), name="embedguard-lane", daemon=True
            ).start()
            raise
        self._flight(self._take())

    def _take_over(self, turn: Future[None]) -> None:
        turn.result()
        with contextlib.suppress(Exception):  # each group's waiters get any failure
            self._flight(self._take())

    def _take(self) -> list[Group]:
        with self._lock:  # the lane stays busy: the caller sends these
            groups, self._queue = self._queue, []
        return groups

    def _flight(self, groups: list[Group]) -> None:
        try:
            self._send(groups)
        finally:
            with self._lock:
                turn, self._turn = self._turn, None
                if turn is None:
                    self._busy = False
            if turn is not None:
                turn.set_result(None)  # hands the lane to the first queued caller

    # -- an event loop: the driver spawns one task per run of requests ---------------------------
    def open(self, group: Group) -> bool:
        """Queue ``group``; ``True`` when the lane was idle and the caller must start a run."""
        with self._lock:
            self._queue.append(group)
            if self._busy:
                if len(self._queue) == 1:
                    self._opened = time.monotonic()
                return False
            self._busy = True
            return True

    def take(self) -> list[Group]:
        """Every queued group; none: the lane is idle from now on."""
        with self._lock:
            groups, self._queue = self._queue, []
            if not groups:
                self._busy = False
        return groups

    def linger(self) -> float:
        """Seconds left before a queue that opened during a request is sent (0 when empty)."""
        with self._lock:
            if not self._queue:
                return 0.0
            return max(0.0, self._opened + self.window - time.monotonic())
