"""Dispatch: cache lookups, coalescing, sending (with failover) and publishing results.

The client plans a call; the dispatcher decides what must actually be sent, sends it through
the routes (primary first, then fallbacks for what the primary could not embed), and returns
each call its own vectors.
"""

from __future__ import annotations

import asyncio
import copy
import time
import weakref
from typing import Any

import numpy as np

from . import errors
from ._cacheview import CacheView
from ._flight import Flights, Group, GroupResult, MicroBatcher, Ref, gather, merge, split_result
from ._routes import Route, announce_failover, failover_rows, patch
from .breaker import CircuitState
from .planning import Plan

__all__ = ["Dispatcher"]

_MICRO_MAX = 16  # calls with at most this many distinct texts may be merged with others


class Dispatcher:
    """Shared by all calls of one client."""

    def __init__(self, routes: list[Route], cache: CacheView | None, window: float) -> None:
        self._routes = routes
        self._profile = routes[0].profile
        self._cache = cache
        self._window = window
        self._flights = Flights()
        self._micro = MicroBatcher(window, self._send_groups)
        self._amicro: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, MicroBatcher]
        self._amicro = weakref.WeakKeyDictionary()
        self._tasks: set[asyncio.Task[None]] = set()

    def run(self, plan: Plan, kind: str) -> np.ndarray:
        """Embed a plan's units on this thread (waiting for any shared with other calls)."""
        refs, group = self._claim(plan, kind)
        if group is not None:
            if self._coalesce(plan):
                self._micro.submit(group, time.sleep)
            else:
                self._send_groups([group])
        futures = {id(f): f for f, _ in refs}
        return self._finish(plan, refs, {key: f.result() for key, f in futures.items()})

    async def arun(self, plan: Plan, kind: str) -> np.ndarray:
        """Async :meth:`run`; sends run as tasks, so a cancelled caller cancels no one else."""
        refs, group = self._claim(plan, kind)
        if group is not None:
            if self._coalesce(plan):
                self._enqueue_async(group)
            else:
                self._spawn(self._asend_groups([group]))
        results: dict[int, GroupResult] = {}
        for future, _ in refs:
            if id(future) not in results:  # shield: a cancelled caller leaves others waiting
                results[id(future)] = await asyncio.shield(asyncio.wrap_future(future))
        return self._finish(plan, refs, results)

    def _coalesce(self, plan: Plan) -> bool:
        """Whether a call should wait for others to share its request.

        Not when the breaker is open and nothing could serve the call: it must fail at once.
        """
        if self._window <= 0 or len(plan.units) > _MICRO_MAX:
            return False
        return len(self._routes) > 1 or self._routes[0].shared.breaker.state != CircuitState.OPEN

    async def drain(self) -> None:
        """Send what waits in this loop's window now, then wait for every send of this loop."""
        loop = asyncio.get_running_loop()
        micro = self._amicro.get(loop)
        if micro is not None and (queued := micro.take()):
            self._spawn(self._asend_groups(queued))
        mine = [t for t in self._tasks if t.get_loop() is loop]
        if mine:
            await asyncio.gather(*mine, return_exceptions=True)

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

    def _finish(self, plan: Plan, refs: list[Ref], results: dict[int, GroupResult]) -> np.ndarray:
        """The call's vectors in input order, or its first real error naming failed inputs."""
        failed = [i for i, (f, row) in enumerate(refs) if row in results[id(f)].failed]
        if failed:
            future, row = refs[failed[0]]
            error = results[id(future)].failed[row]
            error = copy.copy(error)  # the same error may reach several concurrent callers
            if isinstance(error, errors.EmbedGuardError):
                error.with_failed_indices(plan.inputs_of(failed))
            raise error
        d = next(r.vectors.shape[1] for r in results.values() if r.vectors is not None)
        return plan.assemble(gather(refs, results, d))

    # -- sending: one or more groups, merged when several small calls share a window ----------
    def _send_groups(self, groups: list[Group]) -> None:
        merged = groups[0] if len(groups) == 1 else merge(groups)
        try:
            result = self._routes[0].engine.send(merged.texts, merged.tokens)
            for route in self._routes[1:]:
                if not (rows := self._failover(route, result)):
                    break
                retried = route.engine.send(*_pick(merged, rows))
                result = patch(result, rows, retried, len(merged.texts))
        except BaseException as exc:
            self._publish(groups, merged, _all_failed(merged, exc))
            raise
        self._publish(groups, merged, result)

    async def _asend_groups(self, groups: list[Group]) -> None:
        merged = groups[0] if len(groups) == 1 else merge(groups)
        try:
            result = await self._routes[0].engine.asend(merged.texts, merged.tokens)
            for route in self._routes[1:]:
                if not (rows := self._failover(route, result)):
                    break
                retried = await route.engine.asend(*_pick(merged, rows))
                result = patch(result, rows, retried, len(merged.texts))
        except BaseException as exc:
            self._publish(groups, merged, _all_failed(merged, exc))
            raise
        self._publish(groups, merged, result)

    def _failover(self, route: Route, result: GroupResult) -> list[int]:
        """The rows to send to ``route`` next (logged), or none when nothing can fail over."""
        rows = failover_rows(result)
        if rows:
            hooks = self._routes[0].shared.hooks
            announce_failover(hooks, self._profile.name, route.profile.name, result.failed[rows[0]])
        return rows

    def _publish(self, groups: list[Group], merged: Group, result: GroupResult) -> None:
        results = [result] if len(groups) == 1 else split_result(groups, merged, result)
        for group, each in zip(groups, results, strict=True):
            if self._cache is not None:
                self._cache.store(group, each)
            self._flights.resolve(group, each)

    def _spawn(self, coroutine: Any) -> None:
        # Sends run as their own tasks so that a cancelled caller does not cancel the waiters
        # that share its texts.
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _enqueue_async(self, group: Group) -> None:
        loop = asyncio.get_running_loop()
        micro = self._amicro.get(loop)
        if micro is None:
            micro = self._amicro[loop] = MicroBatcher(self._window, self._send_groups)
        if micro.enqueue(group):
            loop.call_later(self._window, self._flush, micro)

    def _flush(self, micro: MicroBatcher) -> None:
        if queued := micro.take():  # empty when aclose() already sent them
            self._spawn(self._asend_groups(queued))


def _pick(group: Group, rows: list[int]) -> tuple[list[str], list[int]]:
    return [group.texts[i] for i in rows], [group.tokens[i] for i in rows]


def _all_failed(group: Group, exc: BaseException) -> GroupResult:
    return GroupResult(None, dict.fromkeys(range(len(group.texts)), exc))
