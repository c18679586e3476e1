"""No cassette holds a secret: keys, bearer tokens, JWTs, credentials headers, planted test keys."""

import gzip
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import CASSETTES, PLANTED_KEYS

_TEXT_PATTERNS = {
    "OpenAI key": re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"),
    "JWT": re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
    "bearer token": re.compile(r"\bBearer\s+(?!<[^>\s]*>)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE),
}
# Headers that carry credentials; in a cassette they may only hold an obvious placeholder.
_CREDENTIAL_HEADERS = frozenset(
    {"authorization", "api-key", "x-api-key", "ocp-apim-subscription-key", "x-goog-api-key"}
)
_PLACEHOLDER = re.compile(r"(?:Bearer\s+)?(?:<[A-Za-z_ -]*>|\*+|REDACTED|redacted|DUMMY)")
_HEX32 = re.compile(r"[0-9a-fA-F]{32}")


def find_secrets(text: str, headers: Iterable[tuple[str, str]] = ()) -> list[str]:
    """Describe every secret-looking thing in ``text`` and in the ``(name, value)`` headers."""
    found = [f"{what}: {m.group(0)[:12]}..." for what, p in _TEXT_PATTERNS.items()
             for m in p.finditer(text)]  # fmt: skip
    for name, value in headers:
        lowered = name.lower()
        if lowered in _CREDENTIAL_HEADERS and not _PLACEHOLDER.fullmatch(value.strip()):
            found.append(f"credential header {name} with a real-looking value")
        elif "key" in lowered and _HEX32.fullmatch(value.strip()):
            found.append(f"header {name} holds a 32-hex key")
    found += [f"planted test key {key[:8]}..." for key in PLANTED_KEYS if key in text]
    return found


def _headers(interaction: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for part in ("request", "response"):
        for name, values in (interaction[part].get("headers") or {}).items():
            for value in [values] if isinstance(values, str) else values:
                yield name, str(value)


def _texts(raw: str, doc: dict[str, Any]) -> Iterator[str]:
    """The file as written plus every body decoded (a gzip body hides its text from a grep)."""
    yield raw
    for interaction in doc["interactions"]:
        for body in (interaction["request"]["body"], interaction["response"]["body"]["string"]):
            if isinstance(body, bytes):
                yield (gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body).decode(
                    "utf-8", errors="replace"
                )


def _cassette_files() -> list[Path]:
    return sorted(p for p in CASSETTES.rglob("*") if p.suffix in (".yaml", ".yml"))


def test_every_cassette_is_free_of_secrets():
    """Every YAML under cassettes/ (bodies gunzipped) is free of keys, tokens and planted keys."""
    files = _cassette_files()
    assert len(files) >= 20, f"expected the cassettes under {CASSETTES}"
    problems = []
    for path in files:
        raw = path.read_text("utf-8")
        doc = yaml.safe_load(raw)
        headers = [h for interaction in doc["interactions"] for h in _headers(interaction)]
        for i, text in enumerate(_texts(raw, doc)):
            for finding in find_secrets(text, headers if i == 0 else ()):
                problems.append(f"{path.relative_to(CASSETTES)}: {finding}")
    assert not problems, "\n".join(problems)


def test_cassettes_carry_no_credentials_headers():
    """Requests were stored without Authorization / api-key headers (as filter_headers does)."""
    for path in _cassette_files():
        doc = yaml.safe_load(path.read_text("utf-8"))
        names = {name.lower() for i in doc["interactions"] for name, _ in _headers(i)}
        assert not names & {"authorization", "api-key"}, path


@pytest.mark.parametrize(
    ("text", "headers"),
    [
        ("key sk-proj-Ab12Cd34Ef56Gh78Ij90Kl12Mn34", ()),
        ("old key sk-Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56", ()),
        ("token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3In0.c2lnbmF0dXJl", ()),
        ("Authorization: Bearer ya29.a0AfH6SMBx4example", ()),
        ("", [("authorization", "Bearer abcdefgh12345678")]),
        ("", [("api-key", "0123456789abcdef0123456789abcdef")]),
        ("", [("Ocp-Apim-Subscription-Key", "not-a-placeholder")]),
        ("", [("x-custom-key", "0123456789ABCDEF0123456789ABCDEF")]),
        *((f"echoed {key} back", ()) for key in PLANTED_KEYS),
    ],
)
def test_scanner_flags_secrets(text, headers):
    """The scanner itself catches each kind of secret it promises to."""
    assert find_secrets(text, headers)


@pytest.mark.parametrize(
    ("text", "headers"),
    [
        ("Incorrect API key provided: sk-proj-********************************Xk9Q.", ()),
        ("Authorization: Bearer <redacted>", ()),
        ("", [("authorization", "Bearer <redacted>"), ("api-key", "REDACTED")]),
        ("", [("x-request-id", "0123456789abcdef0123456789abcdef")]),
        ("", [("mistral-correlation-id", "019942a1-634e-70b1-b771-1115f59f287a")]),
        ('{"usage": {"prompt_tokens": 8}, "embedding": "YgrOPM8NprvrIWC7cnVvvOldXTx4"}', ()),
    ],
)
def test_scanner_ignores_placeholders_and_ids(text, headers):
    """Masked keys, placeholders, request ids and base64 vectors are not reported."""
    assert find_secrets(text, headers) == []
