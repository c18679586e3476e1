"""Learning a server's batching limits once, before the first call (TEI's ``GET /info``).

A codec that can describe such a request offers ``info_request() -> HttpRequest`` and
``batching_from_info(status, headers, body, profile) -> BatchPolicy``; :func:`discovery_for`
gives its endpoint a :class:`Discovery`, which the client runs before planning a call. The first
caller (a thread or a coroutine) fetches through the endpoint's own HTTP clients, everyone else
waits for that one fetch; the policy found replaces the endpoint's profile's batching (the
fields the user set explicitly stay, which ``batching_from_info`` decides). A fetch that fails (a
404, a refused connection, garbage) logs one warning and leaves the profile's values: it never
fails the call. A profile that sets every batching limit itself fetches nothing. A codec may
also learn a tighter cap from a refusal later (``batch_cap``); the next call plans with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import httpx

from .. import errors
from ..config import BatchPolicy, ProviderProfile
from ..providers._errors import safe_url
from ..providers.base import HttpRequest
from .drivers import HttpTransport

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .endpoint import Endpoint

__all__ = ["Discovery", "LimitsCodec", "discovery_for"]

logger = logging.getLogger(__name__)
_DEFAULTS = ("default", "provider default")  # sources of values a server's limits may replace
_INFO_TIMEOUT = 10.0  # seconds, at most, for the whole fetch after connecting


@runtime_checkable
class LimitsCodec(Protocol):
    """A codec that can ask its server for its limits."""

    def info_request(self) -> HttpRequest: ...

    def batching_from_info(
        self, status: int, headers: Mapping[str, str], body: bytes, profile: ProviderProfile
    ) -> BatchPolicy: ...


def discovery_for(ep: Endpoint) -> Discovery | None:
    """A :class:`Discovery` for ``ep`` when its codec states limits over HTTP, else ``None``
    (also when the profile set every batching limit itself: there is nothing to learn)."""
    if not (isinstance(ep.codec, LimitsCodec) and isinstance(ep.transport, HttpTransport)):
        return None
    sources = ep.profile.sources()
    if all(sources[f"batching.{name}"] not in _DEFAULTS for name in BatchPolicy.model_fields):
        return None
    return Discovery(ep, ep.codec, ep.transport)


class Discovery:
    """Fetches one endpoint's limits once and plans its calls with them (thread- and async-safe).

    The fetch gets the profile's connect timeout and at most 10 s to answer (the request timeout
    when shorter); callers that find it under way wait for it that long at most, then go on with
    the values in force.
    """

    def __init__(self, ep: Endpoint, codec: LimitsCodec, transport: HttpTransport) -> None:
        self._ep = ep
        self._codec = codec
        self._transport = transport
        self._lock = threading.Lock()
        self._fetch: Future[None] | None = None
        timeouts = ep.profile.timeouts
        read = min(timeouts.request, _INFO_TIMEOUT)  # a static document: no reason to wait long
        self._timeout = httpx.Timeout(read, connect=timeouts.connect)
        self._wait = read + timeouts.connect

    def __repr__(self) -> str:
        state = "pending" if self._fetch is None else "done" if self._fetch.done() else "running"
        return f"Discovery({self._ep.name!r}, {state})"

    def ensure(self) -> None:
        """Make sure the limits were fetched: fetch them on this thread, or wait for the fetch."""
        self._follow_cap()
        fetch, mine = self._claim()
        if not mine:
            with contextlib.suppress(FutureTimeoutError):
                fetch.result(self._wait)
            return
        done = False
        try:
            try:
                request = self._codec.info_request()
                response = self._transport.http.request(
                    request.method, request.url, headers=request.headers, timeout=self._timeout
                )
                self._apply(response.status_code, response.headers, response.content)
            except Exception as exc:  # any failure keeps the profile's values
                self._warn(exc)
            done = True
        finally:
            self._settle(fetch, done)

    async def aensure(self) -> None:
        """Async :meth:`ensure`: the fetch runs on this loop's connection pool."""
        self._follow_cap()
        fetch, mine = self._claim()
        if not mine:
            waiter = asyncio.shield(asyncio.wrap_future(fetch))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, self._wait)
            return
        done = False
        try:
            try:
                request = self._codec.info_request()
                http = self._transport._user_ahttp or await self._transport._loop_http()
                response = await http.request(
                    request.method, request.url, headers=request.headers, timeout=self._timeout
                )
                self._apply(response.status_code, response.headers, response.content)
            except Exception as exc:
                self._warn(exc)
            done = True
        finally:
            self._settle(fetch, done)

    # -- shared steps ---------------------------------------------------------------------------
    def _claim(self) -> tuple[Future[None], bool]:
        """The fetch, and whether this caller is the one to run it."""
        fetch = self._fetch
        if fetch is not None and fetch.done():
            return fetch, False  # the usual case: fetched long ago, no lock needed
        with self._lock:
            if self._fetch is None:
                self._fetch = Future()
                return self._fetch, True
            return self._fetch, False

    def _settle(self, fetch: Future[None], done: bool) -> None:
        """Release the waiters; an interrupted fetch (cancelled, Ctrl-C) is tried again later."""
        if not done:
            with self._lock:
                self._fetch = None
        fetch.set_result(None)

    def _apply(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        profile = self._ep.profile
        batching = self._codec.batching_from_info(status, headers, body, profile)
        if batching != profile.batching:
            logger.info(
                "provider=%s plans with the server's limits: %d inputs, %d tokens per request, "
                "%d per input", self._ep.name, batching.max_inputs,
                batching.max_tokens_per_request, batching.max_tokens_per_input,
            )  # fmt: skip
            with self._lock:
                self._ep.profile = self._ep.profile.evolve(batching=batching.to_dict())

    def _follow_cap(self) -> None:
        """Plan with a cap the codec learned from a refusal, when it is below the current one."""
        cap = getattr(self._codec, "batch_cap", None)
        if type(cap) is int and 0 < cap < self._ep.profile.batching.max_inputs:
            with self._lock:
                profile = self._ep.profile
                if cap < profile.batching.max_inputs:
                    self._ep.profile = profile.evolve(batching={"max_inputs": cap})

    def _warn(self, exc: Exception) -> None:
        """One warning naming the failure, without headers or the key."""
        if isinstance(exc, errors.EmbedGuardError):
            reason = str(exc)
        elif isinstance(exc, httpx.HTTPError | OSError | TimeoutError):
            reason = str(self._ep.transport_error(exc))
        else:
            reason = type(exc).__name__
        logger.warning(
            "provider=%s could not read the server's limits from %s (%s); batching keeps the "
            "profile's values", self._ep.name, safe_url(self._codec.info_request().url), reason,
        )  # fmt: skip
