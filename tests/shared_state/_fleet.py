"""Worker processes for the fleet tests (a module of its own so that "spawn" can import it)."""

from __future__ import annotations

import time
from typing import Any

import httpx

from embedguard.core.config import BreakerPolicy, RateLimit
from embedguard.core.errors import CircuitOpenError
from embedguard.core.shared_state import RedisCircuitBreaker, RedisRateLimiter, connect

BODY = {"model": "text-embedding-3-small", "input": ["fleet test"]}


def serve(index: int, tasks: Any, barrier: Any, stop: Any, out: Any) -> None:
    """A worker process: run the tasks it is given (``(name, kwargs)``) until ``None``.

    The processes live for the whole test module (spawning interpreters is the slow part);
    a task that fails reports ``("error", index, text)`` instead of leaving the test waiting.
    """
    out.put(("up", index))
    while (task := tasks.get()) is not None:
        name, kwargs = task
        try:
            _TASKS[name](index=index, barrier=barrier, stop=stop, out=out, **kwargs)
        except BaseException as exc:
            out.put(("error", index, repr(exc)))
            barrier.abort()


def rate_worker(redis_url: str, prefix: str, url: str, rpm: int, duration: float,
                barrier: Any, out: Any, **_: Any) -> None:  # fmt: skip
    """Send as fast as the shared limiter allows for ``duration`` seconds; report the count."""
    client = connect(redis_url)
    limiter = RedisRateLimiter(RateLimit(requests_per_minute=rpm, tokens_per_minute=None), client,
                               name="fleet", key_prefix=prefix)  # fmt: skip
    sent = 0
    with httpx.Client(timeout=10) as http:
        barrier.wait()  # everyone ready (the test then empties the bucket)...
        barrier.wait()  # ...go
        stop_at = time.monotonic() + duration
        while True:
            reservation = limiter.reserve(2)
            if time.monotonic() + reservation.delay >= stop_at:
                limiter.cancel(reservation)
                break
            time.sleep(reservation.delay)
            response = http.post(url, json=BODY)
            limiter.correct(reservation, response.json()["usage"]["prompt_tokens"])
            sent += 1
    out.put(("sent", sent, limiter.degraded))
    client.close()


def breaker_worker(redis_url: str, prefix: str, url: str, policy: dict[str, Any], index: int,
                   barrier: Any, stop: Any, out: Any) -> None:  # fmt: skip
    """Call the server through the shared breaker until told to stop; say what it saw.

    Each request carries its permit (``x-probe``, ``x-gen``) so the server's log shows which
    requests were half-open probes, and of which episode.
    """
    client = connect(redis_url)
    breaker = RedisCircuitBreaker(BreakerPolicy(**policy), client, name="fleet",
                                  key_prefix=prefix)  # fmt: skip
    saw_open = recovered = False
    with httpx.Client(timeout=10) as http:
        barrier.wait()
        while not stop.is_set():
            try:
                permit = breaker.allow_request()
            except CircuitOpenError as exc:
                if not saw_open:
                    saw_open = True
                    out.put(("open", index))
                time.sleep(min(0.02, exc.retry_in) or 0.005)
                continue
            headers = {"x-probe": str(int(permit.probe)), "x-gen": str(permit.generation),
                       "x-worker": str(index)}  # fmt: skip
            try:
                status = http.post(url, json=BODY, headers=headers).status_code
            except httpx.HTTPError:
                status = 0
            if status == 200:
                breaker.record_success(permit)
                if saw_open and not recovered:
                    recovered = True
                    out.put(("ok", index))
            else:
                breaker.record_failure(permit)
            time.sleep(0.005)  # leave the CPUs to the others on a small machine
    out.put(("done", index, breaker.degraded))
    client.close()


_TASKS = {"rate": rate_worker, "breaker": breaker_worker}
