"""Tests for the event dataclasses and the Hooks fan-out."""

from __future__ import annotations

import dataclasses
import logging
import threading

import pytest

from embedguard.core.events import (
    CallRejected,
    CircuitChanged,
    Event,
    FailedOver,
    Hooks,
    RateLimitObserved,
    RequestFinished,
    RequestStarted,
    RetryScheduled,
    new_request_id,
)

ALL_EVENTS: list[Event] = [
    RequestStarted(
        provider="openai", model="m", server_address="api.openai.com", inputs=3, attempt=1,
        request_id=1,
    ),
    RequestFinished(
        provider="openai", model="m", server_address=None, inputs=3, attempt=1, request_id=1,
        duration=0.2, input_tokens=12, response_model="m-1", error_type=None, status_code=200,
    ),
    RetryScheduled(
        provider="openai", model="m", attempt=1, delay=0.5, reason="rate_limit", status_code=429
    ),
    RateLimitObserved(provider="openai", remaining_requests=10, remaining_tokens=None),
    CircuitChanged(provider="openai", old="closed", new="open"),
    CallRejected(provider="openai", model="m", reason="circuit_open"),
    FailedOver(from_provider="openai", to_provider="mistral", reason="circuit_open"),
]  # fmt: skip


class Recorder:
    """A hook that remembers what it was called with."""

    def __init__(self, name: str = "", log: list[tuple[str, Event]] | None = None) -> None:
        self.name = name
        self.log: list[tuple[str, Event]] = [] if log is None else log

    def __call__(self, event: Event) -> None:
        self.log.append((self.name, event))


class Exploding:
    """A hook that always raises."""

    def __call__(self, event: Event) -> None:
        raise RuntimeError("hook bug")


EVENT = ALL_EVENTS[2]


def test_empty_hooks_are_falsy_and_emit_does_nothing() -> None:
    """With no hooks, bool() is False and emit() returns quietly."""
    hooks = Hooks()
    assert not hooks
    assert len(hooks) == 0
    hooks.emit(EVENT)  # must not raise


def test_emit_calls_every_hook_in_order_with_the_same_event() -> None:
    """Hooks run in registration order (constructor first, then add) and get the event itself."""
    log: list[tuple[str, Event]] = []
    hooks = Hooks([Recorder("a", log), Recorder("b", log)])
    hooks.add(Recorder("c", log))
    assert hooks
    hooks.emit(EVENT)
    assert [name for name, _ in log] == ["a", "b", "c"]
    assert all(event is EVENT for _, event in log)


def test_removed_hook_is_no_longer_called() -> None:
    """remove() stops one hook; removing an unknown hook raises ValueError."""
    first, second = Recorder("a"), Recorder("b")
    hooks = Hooks([first, second])
    hooks.remove(first)
    hooks.emit(EVENT)
    assert first.log == []
    assert len(second.log) == 1
    with pytest.raises(ValueError):
        hooks.remove(first)


def test_adding_a_non_callable_is_a_type_error() -> None:
    """add() refuses objects that cannot be called with an event."""
    with pytest.raises(TypeError, match="callable"):
        Hooks().add(42)  # type: ignore[arg-type]


def test_failing_hook_never_breaks_the_others(caplog: pytest.LogCaptureFixture) -> None:
    """A hook that raises is skipped: the hooks after it still run and emit() returns."""
    after = Recorder("after")
    hooks = Hooks([Exploding(), after])
    with caplog.at_level(logging.ERROR, logger="embedguard"):
        hooks.emit(EVENT)
    assert len(after.log) == 1


def test_failing_hook_is_logged_once_per_hook_type(caplog: pytest.LogCaptureFixture) -> None:
    """The first failure of a hook type is logged with its traceback; repeats are silent."""
    hooks = Hooks([Exploding(), Exploding()])
    with caplog.at_level(logging.ERROR, logger="embedguard"):
        for _ in range(3):
            hooks.emit(EVENT)
    records = [r for r in caplog.records if r.name == "embedguard"]
    assert len(records) == 1
    assert "Exploding" in records[0].getMessage()
    assert records[0].exc_info is not None


def test_failing_functions_are_told_apart_by_name(caplog: pytest.LogCaptureFixture) -> None:
    """Two different failing functions are each logged once, though they share a type."""

    def first(event: Event) -> None:
        raise KeyError("x")

    def second(event: Event) -> None:
        raise KeyError("y")

    hooks = Hooks([first, second, first])
    with caplog.at_level(logging.ERROR, logger="embedguard"):
        hooks.emit(EVENT)
        hooks.emit(EVENT)
    messages = [r.getMessage() for r in caplog.records if r.name == "embedguard"]
    assert len(messages) == 2
    assert "first" in messages[0] and "second" in messages[1]


def test_base_exceptions_are_not_swallowed() -> None:
    """KeyboardInterrupt (not an Exception) raised by a hook propagates."""

    def interrupt(event: Event) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Hooks([interrupt]).emit(EVENT)


def test_hooks_nest() -> None:
    """A Hooks instance is itself a hook, so fan-outs can be composed."""
    inner_hook = Recorder()
    outer = Hooks([Hooks([inner_hook])])
    outer(EVENT)
    assert inner_hook.log == [("", EVENT)]


def test_concurrent_adds_lose_no_hook() -> None:
    """add() from many threads at once keeps every hook (copy-on-write under a lock)."""
    hooks = Hooks()
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        for _ in range(200):
            hooks.add(Recorder())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(hooks) == 1600


def test_emit_during_concurrent_changes_sees_a_consistent_list() -> None:
    """Emitting while other threads add and remove hooks neither fails nor skips stable hooks."""
    stable = Recorder("stable")
    hooks = Hooks([stable])
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            extra = Recorder()
            hooks.add(extra)
            hooks.remove(extra)

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        for _ in range(2000):
            hooks.emit(EVENT)
    finally:
        stop.set()
        thread.join()
    assert len(stable.log) == 2000


@pytest.mark.parametrize("event", ALL_EVENTS, ids=lambda e: type(e).__name__)
def test_events_are_frozen_and_slotted(event: Event) -> None:
    """Events cannot be changed after creation and have no per-instance __dict__."""
    first_field = dataclasses.fields(event)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(event, first_field, "changed")
    assert not hasattr(event, "__dict__")


def test_events_take_keyword_arguments_only() -> None:
    """Positional construction is refused, so counts and ids cannot be swapped by mistake."""
    with pytest.raises(TypeError):
        CircuitChanged("openai", "closed", "open")  # type: ignore[misc]


@pytest.mark.parametrize("event", ALL_EVENTS, ids=lambda e: type(e).__name__)
def test_events_have_no_field_for_texts_keys_or_headers(event: Event) -> None:
    """No event type has a field that could carry input text, a secret or raw headers."""
    names = {f.name for f in dataclasses.fields(event)}
    forbidden = ("text", "texts", "input", "api_key", "key", "headers", "token", "secret")
    assert names.isdisjoint(forbidden)
    for f in dataclasses.fields(event):
        assert isinstance(getattr(event, f.name), str | int | float | type(None))


def test_request_finished_ok_follows_error_type() -> None:
    """RequestFinished.ok is True exactly when error_type is None."""
    ok = ALL_EVENTS[1]
    assert isinstance(ok, RequestFinished)
    failed = dataclasses.replace(ok, error_type="timeout", status_code=None)
    assert ok.ok
    assert not failed.ok


def test_request_ids_are_unique_and_increasing_across_threads() -> None:
    """new_request_id() never hands the same id twice, even from many threads."""
    seen: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        ids = [new_request_id() for _ in range(500)]
        assert ids == sorted(ids)
        with lock:
            seen.extend(ids)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == 2000
