"""Response-header parsing: wait hints, rate limits and request ids, every value bounded."""

from __future__ import annotations

import httpx
import pytest

from embedguard.core.config import ProviderProfile
from embedguard.core.errors import RateLimitError
from embedguard.core.providers import make_codec
from embedguard.core.providers.headers import (
    int_header,
    mistral_rate_limit,
    openai_rate_limit,
    parse_duration,
    parse_retry_after,
    rate_limit_info,
    request_id_of,
)
from embedguard.core.ratelimit import MAX_HINT_SECONDS, RateLimitInfo

DAY = MAX_HINT_SECONDS
HOSTILE = ["inf", "1e400", "1e300", "-5", "nan", "garbage", "1000000000s", "-inf", ""]


# -- parse_retry_after ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"retry-after-ms": "200", "retry-after": "9"}, 0.2),
        ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
        ({"retry-after-ms": "nan", "retry-after": "9"}, 9.0),
        ({"Retry-After": "3"}, 3.0),
        ({"RETRY-AFTER-MS": "10"}, 0.01),
        ({"retry-after": "-5"}, 0.0),
        ({"retry-after": "whenever"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "inf"}, DAY),
        ({"retry-after": "1e400"}, DAY),
        ({"retry-after": "1e300"}, DAY),
        ({"retry-after-ms": "1e400"}, DAY),
        ({"retry-after-ms": "1e9"}, DAY),
        ({"retry-after-ms": "86399000"}, 86_399.0),
        ({"content-type": "application/json"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after_plain_dict(headers: dict[str, str], expected: float | None) -> None:
    """Milliseconds win over seconds; names are case-insensitive; garbage is None; a day at most."""
    assert parse_retry_after(headers) == expected


def test_parse_retry_after_http_date() -> None:
    """An HTTP-date is turned into seconds from now; a past date into 0; a far one into a day."""
    headers = {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}
    moment = 1445412480.0  # that date, in epoch seconds
    assert parse_retry_after(headers, now=moment - 30) == pytest.approx(30.0)
    assert parse_retry_after(headers, now=moment + 30) == 0.0
    assert parse_retry_after(headers, now=0.0) == DAY
    assert parse_retry_after({"retry-after": "Mon, 99 Foo 99999 99:99:99 GMT"}, now=0.0) is None


def test_parse_retry_after_httpx_headers() -> None:
    """httpx.Headers are matched case-insensitively too."""
    headers = httpx.Headers({"Retry-After-Ms": "250", "Content-Type": "application/json"})
    assert parse_retry_after(headers) == 0.25
    assert parse_retry_after(httpx.Headers({"RETRY-AFTER": "4"})) == 4.0
    assert parse_retry_after(httpx.Headers({})) is None


# -- parse_duration -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0s", 0.0),
        ("6ms", 0.006),
        ("17ms", 0.017),
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("23h55m16.126s", 23 * 3600 + 55 * 60 + 16.126),
        ("1m30s", 90.0),
        ("2h", 7200.0),
        ("1.5s", 1.5),
        ("55", 55.0),
        ("0.5", 0.5),
        (" 12ms ", 0.012),
        ("1000000000s", DAY),
        ("99999h", DAY),
        ("9" * 400 + "h", DAY),
        ("inf", DAY),
        ("1e400", DAY),
        ("1e300", DAY),
        ("-5", 0.0),
        ("nan", None),
        ("", None),
        ("soon", None),
        ("5x", None),
        ("s", None),
        ("1s2h", None),
        ("-5s", None),
    ],
)
def test_parse_duration(text: str, expected: float | None) -> None:
    """Go-style durations and bare seconds parse, bounded to [0, a day]; anything else is None."""
    result = parse_duration(text)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected)


# -- counts ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("10000", 10_000),
        (" 42 ", 42),
        ("100.0", 100),
        ("0", 0),
        ("1000000000000", 10**12),
        ("1000000000001", None),
        ("1e300", None),
        ("1e400", None),
        ("inf", None),
        ("nan", None),
        ("-1", None),
        ("2.5", None),
        ("junk", None),
        ("", None),
    ],
)
def test_int_header_bounds(raw: str, expected: int | None) -> None:
    """A count is a whole number from 0 to 10^12; anything else reads as absent."""
    assert int_header({"x-ratelimit-limit-tokens": raw}, "x-ratelimit-limit-tokens") == expected


# -- the providers' formats ---------------------------------------------------------------------
def test_openai_headers() -> None:
    """All six OpenAI headers, Go-duration resets included."""
    headers = {
        "x-ratelimit-limit-requests": "10000",
        "x-ratelimit-remaining-requests": "9999",
        "x-ratelimit-reset-requests": "6ms",
        "x-ratelimit-limit-tokens": "10000000",
        "x-ratelimit-remaining-tokens": "9999990",
        "x-ratelimit-reset-tokens": "6m0s",
    }
    assert openai_rate_limit(headers) == RateLimitInfo(10_000, 9_999, 0.006, 10**7, 9_999_990, 360)


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_openai_headers_are_bounded_or_dropped(value: str) -> None:
    """Garbage in any rate-limit header never raises; counts drop out, resets stay within a day."""
    names = [f"x-ratelimit-{k}-{u}" for k in ("limit", "remaining", "reset")
             for u in ("requests", "tokens")]  # fmt: skip
    info = openai_rate_limit(dict.fromkeys(names, value))
    if info is None:
        return
    for count in (info.limit_requests, info.remaining_requests, info.limit_tokens,
                  info.remaining_tokens):  # fmt: skip
        assert count is None
    for reset in (info.reset_requests, info.reset_tokens):
        assert reset is None or 0.0 <= reset <= DAY


def test_mistral_headers_take_the_tightest_window() -> None:
    """Per-minute limits; the smallest remaining over every window; garbage windows dropped."""
    headers = {
        "x-ratelimit-limit-req-minute": "60",
        "x-ratelimit-remaining-req-minute": "59",
        "x-ratelimit-remaining-req-10-second": "inf",
        "x-ratelimit-limit-tokens-minute": "1e400",
        "x-ratelimit-remaining-tokens-minute": "1000",
        "x-ratelimit-remaining-tokens-month": "5",
    }
    assert mistral_rate_limit(headers) == RateLimitInfo(
        limit_requests=60, remaining_requests=59, remaining_tokens=5
    )


@pytest.mark.parametrize(
    ("provider", "expected"),
    [
        ("openai", RateLimitInfo(limit_requests=60)),
        ("azure", RateLimitInfo(limit_requests=60)),
        ("openai_compatible", RateLimitInfo(limit_requests=60)),
        ("mistral", RateLimitInfo(limit_requests=30)),
        ("ollama", None),
        ("local", None),
    ],
)
def test_rate_limit_info_reads_each_providers_format(
    provider: str, expected: RateLimitInfo | None
) -> None:
    """One entry point for any response (a 429 included), any header case."""
    headers = {"X-RateLimit-Limit-Requests": "60", "x-ratelimit-limit-req-minute": "30"}
    assert rate_limit_info(provider, headers) == expected


def test_request_id_is_redacted_and_cut() -> None:
    """The first request-id header wins; secrets in it are redacted; it is at most 100 chars."""
    secret = "sk-test-0123456789"
    headers = {"apim-request-id": f"id-{secret}-" + "x" * 200, "mistral-correlation-id": "m"}
    rid = request_id_of(headers, [secret])
    assert rid is not None and secret not in rid and len(rid) == 100
    assert request_id_of({"mistral-correlation-id": "m"}) == "m"
    assert request_id_of({}) is None


# -- through a codec ------------------------------------------------------------------------------
@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("provider", ["openai", "azure", "mistral"])
def test_codecs_never_raise_on_hostile_headers(provider: str, value: str) -> None:
    """A 200 and a 429 carrying garbage in every hint header parse, and the 429's wait hint
    is absent or within a day."""
    azure = provider == "azure"
    profile = ProviderProfile.from_dict({
        "provider": provider, "model": "text-embedding-3-small",
        "base_url": "https://example.test/v1", "api_key_env": "K",
        "deployment": "d" if azure else None, "api_version": "2024-10-21" if azure else None,
    })  # fmt: skip
    codec = make_codec(profile, api_key="k", environ={})
    names = ["retry-after", "retry-after-ms", "x-ratelimit-limit-requests",
             "x-ratelimit-reset-tokens", "x-ratelimit-remaining-req-minute"]  # fmt: skip
    headers = dict.fromkeys(names, value)
    body = b'{"data":[{"index":0,"embedding":[1.0]}]}'
    codec.parse_response(200, headers, body, n_inputs=1, dimensions=None)
    with pytest.raises(RateLimitError) as info:
        codec.parse_response(429, headers, b'{"error":{"message":"slow down"}}', n_inputs=1,
                             dimensions=None)  # fmt: skip
    hint = info.value.retry_after
    assert hint is None or 0.0 <= hint <= DAY
