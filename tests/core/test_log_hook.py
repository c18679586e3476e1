"""Tests for the logging hook, driven by hand-made events."""

from __future__ import annotations

import json
import logging

import pytest

from embedguard.core.events import (
    CallRejected,
    CircuitChanged,
    FailedOver,
    RateLimitObserved,
    RequestFinished,
    RequestStarted,
    RetryScheduled,
)
from embedguard.core.export.logs import LoggingHook

RETRY = RetryScheduled(
    provider="openai", model="text-embedding-3-small", attempt=2, delay=1.25,
    reason="rate_limit", status_code=429, request_id=9,
)  # fmt: skip
OK = RequestFinished(
    provider="openai", model="text-embedding-3-small", server_address="api.openai.com",
    inputs=16, attempt=1, request_id=9, duration=0.12, input_tokens=420,
    response_model="text-embedding-3-small", error_type=None, status_code=200,
)  # fmt: skip


def records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The records the hook wrote on the embedguard logger."""
    return [r for r in caplog.records if r.name == "embedguard"]


def test_retry_is_one_info_line_with_structured_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A retry logs one INFO line (a retry is routine) naming provider, retry, wait, reason."""
    caplog.set_level(logging.DEBUG, logger="embedguard")
    LoggingHook()(RETRY)
    [record] = records(caplog)
    assert record.levelno == logging.INFO
    message = record.getMessage()
    for part in ("provider=openai", "retry=2", "wait=1.250s", "reason=rate_limit", "status=429"):
        assert part in message
    assert record.embedguard == {  # type: ignore[attr-defined]
        "event": "retry", "provider": "openai", "model": "text-embedding-3-small",
        "attempt": 2, "delay": 1.25, "reason": "rate_limit", "status_code": 429,
        "request_id": 9,
    }  # fmt: skip


def test_retry_without_status_says_so(caplog: pytest.LogCaptureFixture) -> None:
    """A retry after a transport error (no HTTP status) prints status=- rather than None."""
    caplog.set_level(logging.DEBUG, logger="embedguard")
    event = RetryScheduled(
        provider="ollama", model="nomic", attempt=1, delay=0.1, reason="connection",
        status_code=None,
    )  # fmt: skip
    LoggingHook()(event)
    [record] = records(caplog)
    assert "status=-" in record.getMessage()
    assert record.embedguard["status_code"] is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("old", "new", "level"),
    [
        ("closed", "open", logging.WARNING),
        ("open", "half_open", logging.INFO),
        ("half_open", "closed", logging.INFO),
    ],
)
def test_breaker_transition_is_one_line_old_to_new(
    caplog: pytest.LogCaptureFixture, old: str, new: str, level: int
) -> None:
    """A transition logs 'old -> new' once: WARNING when opening, INFO otherwise."""
    caplog.set_level(logging.DEBUG, logger="embedguard")
    LoggingHook()(CircuitChanged(provider="mistral", old=old, new=new))
    [record] = records(caplog)
    assert record.levelno == level
    assert f"provider=mistral {old} -> {new}" in record.getMessage()
    assert record.embedguard == {  # type: ignore[attr-defined]
        "event": "circuit", "provider": "mistral", "old": old, "new": new,
    }  # fmt: skip


def test_failover_is_one_warning_line(caplog: pytest.LogCaptureFixture) -> None:
    """A failover logs the provider left, the one tried next and why."""
    caplog.set_level(logging.DEBUG, logger="embedguard")
    LoggingHook()(FailedOver(from_provider="openai", to_provider="azure", reason="circuit_open"))
    [record] = records(caplog)
    assert record.levelno == logging.WARNING
    assert "openai -> azure" in record.getMessage()
    assert "reason=circuit_open" in record.getMessage()
    assert record.embedguard["to_provider"] == "azure"  # type: ignore[attr-defined]


def test_successful_requests_are_silent_at_info(caplog: pytest.LogCaptureFixture) -> None:
    """At INFO, successes, starts, rejections and rate-limit news write nothing."""
    caplog.set_level(logging.INFO, logger="embedguard")
    hook = LoggingHook()
    hook(OK)
    hook(
        RequestStarted(
            provider="openai", model="m", server_address=None, inputs=1, attempt=1, request_id=1
        )
    )
    hook(CallRejected(provider="openai", model="m", reason="circuit_open"))
    hook(RateLimitObserved(provider="openai", remaining_requests=1, remaining_tokens=2))
    assert records(caplog) == []


def test_requests_are_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    """With DEBUG on, each finished attempt logs one DEBUG line with its outcome."""
    caplog.set_level(logging.DEBUG, logger="embedguard")
    hook = LoggingHook()
    hook(OK)
    failed = RequestFinished(
        provider="openai", model="m", server_address=None, inputs=2, attempt=2, request_id=3,
        duration=30.0, input_tokens=None, response_model=None, error_type="timeout",
        status_code=None,
    )  # fmt: skip
    hook(failed)
    first, second = records(caplog)
    assert first.levelno == second.levelno == logging.DEBUG
    assert "outcome=success" in first.getMessage() and "tokens=420" in first.getMessage()
    assert "outcome=timeout" in second.getMessage() and "attempt=2" in second.getMessage()


def test_levels_and_logger_are_configurable(caplog: pytest.LogCaptureFixture) -> None:
    """level_* change each line's level and records go to the logger passed in."""
    caplog.set_level(logging.DEBUG)
    logger = logging.getLogger("myapp.embeddings")
    hook = LoggingHook(logger, level_retry=logging.INFO, level_rejected=logging.ERROR)
    hook(RETRY)
    hook(CallRejected(provider="openai", model="m", reason="circuit_open"))
    mine = [r for r in caplog.records if r.name == "myapp.embeddings"]
    assert [r.levelno for r in mine] == [logging.INFO, logging.ERROR]
    assert records(caplog) == []


def test_disabled_levels_write_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """When the logger is above a line's level, nothing is written at all."""
    caplog.set_level(logging.ERROR, logger="embedguard")
    hook = LoggingHook()
    hook(RETRY)
    hook(CircuitChanged(provider="openai", old="closed", new="open"))
    assert records(caplog) == []


def test_structured_fields_serialise_to_json(caplog: pytest.LogCaptureFixture) -> None:
    """Every record's embedguard fields are plain JSON values (for JSON log handlers)."""
    caplog.set_level(logging.DEBUG, logger="embedguard")
    hook = LoggingHook()
    for event in (
        RETRY,
        OK,
        CircuitChanged(provider="openai", old="closed", new="open"),
        FailedOver(from_provider="a", to_provider="b", reason="server"),
        CallRejected(provider="openai", model="m", reason="circuit_open"),
    ):
        hook(event)
    logged = records(caplog)
    assert len(logged) == 5
    for record in logged:
        fields = record.embedguard  # type: ignore[attr-defined]
        assert json.loads(json.dumps(fields)) == fields
