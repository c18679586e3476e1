"""Reading providers' response headers: rate limits, wait hints and request ids (pure, no I/O).

Every response header the codecs and the error mapping read is parsed here, and every value is
bounded: a wait (``retry-after``, ``retry-after-ms``, ``x-ratelimit-reset-*``) that is NaN or
not a number reads as absent, a negative one as 0, and anything above a day (``inf``,
``1e400``, ``1000000000s``) as a day (:data:`~embedguard.core.ratelimit.MAX_HINT_SECONDS`); a
count (``x-ratelimit-limit-*``, ``x-ratelimit-remaining-*``) must be a whole number from 0 to
:data:`~embedguard.core.ratelimit.MAX_COUNT`, else it reads as absent. Nothing here raises.
What the limiter and the retry policy then do with a hint is bounded again on their side.

Formats read:

* OpenAI (and Azure, OpenAI-compatible servers): ``x-ratelimit-{limit,remaining,reset}-
  {requests,tokens}``, resets as Go durations (``6ms``, ``1m30s``) or seconds; Azure's
  ``x-rate-limit-reset-tokens`` when the OpenAI name is absent.
* Mistral: ``x-ratelimit-(limit|remaining)-(req|tokens)-<window>``.
* ``retry-after-ms`` (milliseconds), then ``Retry-After`` (seconds or an HTTP-date).
* Request ids: ``x-request-id``, ``apim-request-id``, ``mistral-correlation-id``,
  ``x-amzn-requestid`` (AWS).
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping, Sequence

from embedguard.core.errors import redact
from embedguard.core.ratelimit import RateLimitInfo, bound_count, bound_seconds

__all__ = [
    "int_header",
    "lower_headers",
    "mistral_rate_limit",
    "openai_rate_limit",
    "parse_duration",
    "parse_retry_after",
    "rate_limit_info",
    "rate_limit_or_none",
    "request_id_of",
]

_MAX_ID = 100
_REQUEST_ID_HEADERS = (
    "x-request-id",
    "apim-request-id",
    "mistral-correlation-id",
    "x-amzn-requestid",
)
_DURATION = re.compile(
    r"(?:(\d+(?:\.\d+)?)h)?"  # hours
    r"(?:(\d+(?:\.\d+)?)m(?!s))?"  # minutes (not the "m" of "ms")
    r"(?:(\d+(?:\.\d+)?)s)?"  # seconds
    r"(?:(\d+(?:\.\d+)?)ms)?"  # milliseconds
)
_MISTRAL_HEADER = re.compile(r"x-ratelimit-(limit|remaining)-(req|tokens)-([a-z0-9-]+)")


def lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Return ``headers`` as a plain dict with lower-cased names (HTTP names are case-blind)."""
    return {key.lower(): value for key, value in headers.items()}


def request_id_of(headers: Mapping[str, str], secrets: Sequence[str | None] = ()) -> str | None:
    """The provider's request id from lower-cased ``headers`` (secrets redacted), or ``None``."""
    for name in _REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return redact(value, secrets)[:_MAX_ID]
    return None


def int_header(headers: Mapping[str, str], name: str) -> int | None:
    """A count header (names lower-case): a whole number in ``[0, MAX_COUNT]``, else ``None``.

    ``-1``, ``1e300``, ``inf`` and junk read as ``None``.
    """
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    return bound_count(value)


def parse_duration(text: str) -> float | None:
    """Parse a rate-limit reset or wait into seconds (bounded; ``None`` when unreadable).

    Accepts Go-style durations as OpenAI sends them (``6ms``, ``1s``, ``6m0s``, ``23h55m16.126s``)
    and bare numbers of seconds (``55``, ``0.5``). Negative numbers read as 0, values above a day
    as a day, NaN and anything else as ``None``.
    """
    text = text.strip()
    if not text:
        return None
    try:
        return bound_seconds(float(text))
    except ValueError:
        pass
    match = _DURATION.fullmatch(text)
    if match is None or not any(match.groups()):
        return None
    hours, minutes, seconds, millis = (float(g) if g else 0.0 for g in match.groups())
    return bound_seconds(hours * 3600 + minutes * 60 + seconds + millis / 1000)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None and not hasattr(headers, "get_list"):  # plain dicts are case-sensitive
        lowered = {k.lower(): v for k, v in headers.items()}
        value = lowered.get(name)
    return value


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """The server's requested wait in seconds (bounded), or ``None`` when it gave none.

    Looks at ``retry-after-ms`` (milliseconds) first, then ``retry-after`` as seconds or as an
    HTTP-date (relative to ``now``, epoch seconds, default the current time). Negative waits
    become 0, waits above a day a day; NaN and junk are skipped. Names are matched
    case-insensitively.
    """
    raw_ms = _header(headers, "retry-after-ms")
    if raw_ms is not None:
        try:
            seconds = bound_seconds(float(raw_ms) / 1000.0)
        except ValueError:
            seconds = None
        if seconds is not None:
            return seconds
    raw = _header(headers, "retry-after")
    if raw is None:
        return None
    try:
        return bound_seconds(float(raw))
    except ValueError:
        pass
    parsed = email.utils.parsedate_tz(raw)
    if parsed is None:
        return None
    try:
        when = email.utils.mktime_tz(parsed)
    except (OverflowError, ValueError):
        return None
    return bound_seconds(float(when) - (time.time() if now is None else now))


def rate_limit_or_none(info: RateLimitInfo) -> RateLimitInfo | None:
    """``info``, or ``None`` when the provider sent no rate-limit value at all."""
    values = (
        info.limit_requests,
        info.remaining_requests,
        info.reset_requests,
        info.limit_tokens,
        info.remaining_tokens,
        info.reset_tokens,
    )
    return info if any(v is not None for v in values) else None


def _seconds_header(headers: Mapping[str, str], name: str) -> float | None:
    raw = headers.get(name)
    return parse_duration(raw) if raw else None


def openai_rate_limit(headers: Mapping[str, str]) -> RateLimitInfo | None:
    """Read ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` (lower-cased headers).

    Resets are Go-style durations (``6ms``, ``1m30s``) or seconds; Azure's
    ``x-rate-limit-reset-tokens`` (seconds) is read when the OpenAI name is absent. The
    ``*_usage_based`` variants are not used.
    """
    reset_tokens = _seconds_header(headers, "x-ratelimit-reset-tokens")
    if reset_tokens is None:
        reset_tokens = _seconds_header(headers, "x-rate-limit-reset-tokens")
    return rate_limit_or_none(
        RateLimitInfo(
            limit_requests=int_header(headers, "x-ratelimit-limit-requests"),
            remaining_requests=int_header(headers, "x-ratelimit-remaining-requests"),
            reset_requests=_seconds_header(headers, "x-ratelimit-reset-requests"),
            limit_tokens=int_header(headers, "x-ratelimit-limit-tokens"),
            remaining_tokens=int_header(headers, "x-ratelimit-remaining-tokens"),
            reset_tokens=reset_tokens,
        )
    )


def mistral_rate_limit(headers: Mapping[str, str]) -> RateLimitInfo | None:
    """Read Mistral's ``x-ratelimit-(limit|remaining)-(req|tokens)-<window>`` headers.

    Header names vary by plan (``req-minute``, ``req-10-second``, ``tokens-minute``,
    ``tokens-month``...). Limits are the per-minute ones. A remaining count is the smallest over
    all windows sent, since the tightest window is the one that stops the next request.
    """
    found: dict[tuple[str, str], dict[str, int]] = {}
    for name in headers:
        match = _MISTRAL_HEADER.fullmatch(name)
        if match is None:
            continue
        value = int_header(headers, name)
        if value is not None:
            found.setdefault((match[1], match[2]), {})[match[3]] = value

    def remaining(kind: str) -> int | None:
        windows = found.get(("remaining", kind))
        return min(windows.values()) if windows else None

    return rate_limit_or_none(
        RateLimitInfo(
            limit_requests=found.get(("limit", "req"), {}).get("minute"),
            remaining_requests=remaining("req"),
            limit_tokens=found.get(("limit", "tokens"), {}).get("minute"),
            remaining_tokens=remaining("tokens"),
        )
    )


def rate_limit_info(provider: str, headers: Mapping[str, str]) -> RateLimitInfo | None:
    """The rate-limit headers of any response (a 429 included) in ``provider``'s format.

    Args:
        provider: The profile's wire format (``ProviderProfile.provider``).
        headers: The response headers, in any case.

    Returns:
        What they say, or ``None`` when they say nothing (Ollama and local models never do).
    """
    if provider in ("ollama", "local"):
        return None
    lowered = lower_headers(headers)
    if provider == "cohere":
        from ._cohere import cohere_rate_limit  # imports this module: import when used

        return cohere_rate_limit(lowered)
    if provider == "mistral":
        return mistral_rate_limit(lowered)
    if provider == "voyage":
        from .voyage import voyage_rate_limit  # its free-tier warning header

        return voyage_rate_limit(lowered)
    return openai_rate_limit(lowered)
