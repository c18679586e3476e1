"""The circuit breaker's parts: its value types, the COUNT_BASED window, the words of a refusal.

Public names are re-exported by :mod:`embedguard.core.breaker`; import them from there.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from .errors import CircuitOpenError, EmbedGuardError

_NOTE_LIMIT = 300  # characters of a failure kept for messages (bounded: it may go to Redis)


class CircuitState(enum.StrEnum):
    """The breaker state: ``closed`` (normal), ``open`` (failing fast), ``half_open`` (probing)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


Listener = Callable[[CircuitState, CircuitState], None]
"""Called with ``(old, new)`` on every state transition."""


@dataclass(frozen=True, slots=True)
class Permit:
    """An opaque admission ticket returned by :meth:`CircuitBreaker.allow_request`.

    It remembers the episode it was issued in, so a report that arrives after the breaker has
    moved on is ignored. Report each permit once.

    Attributes:
        generation: The breaker episode that issued the permit.
        probe: Whether the request is a half-open probe.
        ticket: The probe's number within the breaker (0 for ordinary requests).
    """

    generation: int
    probe: bool = False
    ticket: int = 0


@dataclass(frozen=True, slots=True)
class BreakerStats:
    """A consistent snapshot of a breaker.

    Attributes:
        state: The effective state now (an open breaker whose timeout elapsed reads half-open).
        consecutive_failures: Failures in a row while closed (kept while open, cleared on
            closing).
        half_open_successes: Probe successes in the current half-open episode.
        probes_admitted: Probe slots taken in the current episode (released ones excluded).
        probes_in_flight: Probes admitted and not yet reported.
        opened_count: Transitions into ``open`` since the breaker was made.
        closed_count: Transitions into ``closed`` (recoveries and resets) since it was made.
        rejected_count: Requests refused with :class:`CircuitOpenError` since it was made.
        retry_in: Seconds until an open breaker admits a probe (0 otherwise).
        window_calls: Requests counted in the sliding window (kept while open, cleared on
            closing).
        window_failures: The failed ones among them.
        failure_rate: ``window_failures / window_calls`` (0 for an empty window).
    """

    state: CircuitState
    consecutive_failures: int
    half_open_successes: int
    probes_admitted: int
    probes_in_flight: int
    opened_count: int
    closed_count: int
    rejected_count: int
    retry_in: float
    window_calls: int
    window_failures: int
    failure_rate: float


def failure_note(error: BaseException) -> str:
    """A one-line description of a failure: its class and message, bounded in length.

    The provider prefix of an embedguard error is left out (the refusal carries it).
    """
    text = str(error)
    if isinstance(error, EmbedGuardError) and error.provider:
        text = text.removeprefix(f"[{error.provider}] ")
    note = f"{type(error).__name__}: {text}" if text else type(error).__name__
    note = " ".join(note.split()).encode("utf-8", "backslashreplace").decode("utf-8")
    return note if len(note) <= _NOTE_LIMIT else note[: _NOTE_LIMIT - 3] + "..."


def refusal(
    name: str,
    *,
    retry_in: float,
    reason: str,
    note: str | None,
    last_failure: BaseException | None,
) -> CircuitOpenError:
    """The :class:`CircuitOpenError` of a refused request, saying why the circuit opened.

    Args:
        name: The breaker's provider name.
        retry_in: Seconds until a probe is admitted (0: half-open, every probe slot taken).
        reason: Why it opened, e.g. ``"10 of 12 recent requests failed"``.
        note: The last failure's :func:`failure_note`, when known.
        last_failure: The last failure itself, when this process holds it.
    """
    why = f"{reason}; last: {note}" if note else reason
    if retry_in > 0:
        message = f"circuit open: {why}; next probe in {retry_in:.3g}s"
    else:
        message = f"circuit half-open and every probe slot is taken (opened: {why})"
    return CircuitOpenError(
        message, provider=name or None, retry_in=retry_in, last_failure=last_failure
    )
