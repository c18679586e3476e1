"""Retry decisions: which failures are retried, and how long to wait (pure, no I/O)."""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping

__all__ = ["parse_duration", "parse_retry_after"]

_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None and not hasattr(headers, "get_list"):  # plain dicts are case-sensitive
        lowered = {k.lower(): v for k, v in headers.items()}
        value = lowered.get(name)
    return value


def parse_duration(text: str) -> float | None:
    """Parse a rate-limit reset value into seconds.

    Accepts Go-style durations as OpenAI sends them (``6ms``, ``1s``, ``6m0s``, ``23h55m16.126s``)
    and bare numbers of seconds (``55``, ``0.5``). Returns ``None`` when the text is neither.
    """
    text = text.strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    match = _DURATION.fullmatch(text)
    if match is None or not any(match.groups()):
        return None
    hours, minutes, seconds, millis = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """The server's requested wait in seconds, or ``None`` when it gave none.

    Looks at ``retry-after-ms`` (milliseconds) first, then ``retry-after`` as seconds or as an
    HTTP-date (relative to ``now``, epoch seconds, default the current time). Negative waits
    become 0. Header names are matched case-insensitively.
    """
    raw_ms = _header(headers, "retry-after-ms")
    if raw_ms is not None:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = _header(headers, "retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    parsed = email.utils.parsedate_tz(raw)
    if parsed is None:
        return None
    when = email.utils.mktime_tz(parsed)
    return max(0.0, float(when) - (time.time() if now is None else now))
