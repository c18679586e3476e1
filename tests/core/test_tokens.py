"""Token counting: the heuristic, the tiktoken wrapper, and the offline-only default choice."""

from __future__ import annotations

import hashlib
import sys
import tempfile
import types
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embedguard.core import tokens
from embedguard.core.tokens import (
    HeuristicTokenCounter,
    TiktokenCounter,
    TokenCounter,
    default_token_counter,
    tiktoken_cache_file,
)

URL_SHA1 = hashlib.sha1(
    b"https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
).hexdigest()

# Text with ASCII words, accents, CJK, emoji (astral) and a NUL byte.
_alphabet = st.sampled_from([*list("ab cd\nxyz.,\t"), "é", "ж", "日", "本", "😀", "🚀", "\x00"])
texts = st.text(alphabet=_alphabet, max_size=300)


class ByteChunkEncoding:
    """A fake byte-level encoding: each token is 2 UTF-8 bytes (cuts through characters)."""

    name = "fake-2byte"

    def encode_ordinary(self, text: str) -> list[int]:
        data = text.encode("utf-8")
        return [int.from_bytes(b"\x01" + data[i : i + 2], "big") for i in range(0, len(data), 2)]

    def decode_tokens_bytes(self, tokens: list[int]) -> list[bytes]:
        return [t.to_bytes((t.bit_length() + 7) // 8, "big")[1:] for t in tokens]


@pytest.fixture(autouse=True)
def _fresh_default() -> object:
    default_token_counter.cache_clear()
    yield
    default_token_counter.cache_clear()


# -- heuristic ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [("", 0), ("a", 1), ("abc", 1), ("abcd", 2), ("hello world", 4), ("日本", 2), ("ab😀", 2)],
)
def test_heuristic_count_follows_the_documented_formula(text: str, expected: int) -> None:
    """count = ceil(ascii / 3) + non-ASCII characters."""
    assert HeuristicTokenCounter().count(text) == expected


def test_heuristic_is_a_token_counter() -> None:
    """Both counters satisfy the TokenCounter protocol."""
    assert isinstance(HeuristicTokenCounter(), TokenCounter)
    assert isinstance(TiktokenCounter(ByteChunkEncoding()), TokenCounter)


@settings(max_examples=150, deadline=None)
@given(text=texts, budget=st.integers(1, 40))
def test_heuristic_truncate_is_the_longest_prefix_within_budget(text: str, budget: int) -> None:
    """truncate keeps a prefix within the budget that one more character would exceed."""
    counter = HeuristicTokenCounter()
    prefix = counter.truncate(text, budget)
    assert text.startswith(prefix)
    assert counter.count(prefix) <= budget
    if prefix != text:
        assert counter.count(text[: len(prefix) + 1]) > budget


@settings(max_examples=150, deadline=None)
@given(text=texts, budget=st.integers(1, 40))
def test_heuristic_split_pieces_fit_and_join_back(text: str, budget: int) -> None:
    """split gives non-empty pieces within budget whose concatenation is the text."""
    counter = HeuristicTokenCounter()
    pieces = counter.split(text, budget)
    assert "".join(pieces) == text
    assert all(counter.count(p) <= budget for p in pieces)
    if text:
        assert all(pieces)


def test_heuristic_split_prefers_whitespace() -> None:
    """A cut moves back to just after a nearby space instead of splitting a word."""
    pieces = HeuristicTokenCounter().split("alpha beta gamma delta epsilon zeta", 5)
    assert "".join(pieces) == "alpha beta gamma delta epsilon zeta"
    assert all(p.endswith(" ") for p in pieces[:-1])


def test_heuristic_never_cuts_a_surrogate_pair() -> None:
    """A (pre-encoded) surrogate pair stays together across a cut."""
    text = "ab" + "\ud83d\ude00" + "cd"  # cost 1 + 2 + 1 = 4
    prefix = HeuristicTokenCounter().truncate(text, 2)
    assert prefix == "ab"
    assert HeuristicTokenCounter().split(text, 2)[1].startswith("\ud83d\ude00")


def test_heuristic_long_text_is_fast_and_exact() -> None:
    """A 1 MB mixed-script text splits into pieces within budget that rebuild it."""
    text = ("word " * 50 + "日本語テキスト😀 ") * 2000
    counter = HeuristicTokenCounter()
    pieces = counter.split(text, 8191)
    assert "".join(pieces) == text
    assert max(counter.count(p) for p in pieces) <= 8191
    assert len(pieces) >= counter.count(text) // 8191


@pytest.mark.parametrize("counter", [HeuristicTokenCounter(), TiktokenCounter(ByteChunkEncoding())])
def test_budget_below_one_is_rejected(counter: TokenCounter) -> None:
    """A budget of zero tokens is a ValueError, not an endless loop."""
    with pytest.raises(ValueError, match="at least 1"):
        counter.split("abc", 0)
    with pytest.raises(ValueError, match="at least 1"):
        counter.truncate("abc", 0)


# -- tiktoken wrapper (fake encoding) ----------------------------------------------------------
def test_tiktoken_counter_counts_tokens() -> None:
    """count is the number of token ids of the encoding."""
    counter = TiktokenCounter(ByteChunkEncoding())
    assert counter.count("abcde") == 3
    assert counter.count("日") == 2  # 3 bytes
    assert "fake-2byte" in repr(counter)


@settings(max_examples=150, deadline=None)
@given(text=texts, budget=st.integers(1, 30))
def test_tiktoken_split_respects_character_boundaries(text: str, budget: int) -> None:
    """Pieces decode cleanly, fit the budget (one character may exceed it alone) and rejoin."""
    counter = TiktokenCounter(ByteChunkEncoding())
    pieces = counter.split(text, budget)
    assert "".join(pieces) == text
    for piece in pieces:
        assert counter.count(piece) <= budget or len(piece) == 1


@settings(max_examples=100, deadline=None)
@given(text=texts, budget=st.integers(2, 30))
def test_tiktoken_truncate_is_a_prefix_within_budget(text: str, budget: int) -> None:
    """truncate returns a prefix within the budget (budgets >= 2 hold any character)."""
    counter = TiktokenCounter(ByteChunkEncoding())
    prefix = counter.truncate(text, budget)
    assert text.startswith(prefix)
    assert counter.count(prefix) <= budget
    if prefix != text:
        assert prefix


def test_tiktoken_cut_moves_back_out_of_a_character() -> None:
    """A token boundary inside a 3-byte character moves back to the character's start."""
    counter = TiktokenCounter(ByteChunkEncoding())
    # "a日" = 4 bytes = 2 tokens [a+0xE6][0x97 0xA5]; budget 1 would cut inside "日".
    assert counter.truncate("a日b", 1) == "a"
    assert counter.split("ab日cd", 2) == ["ab", "日c", "d"]
    assert counter.split("a日b", 1) == ["a", "日", "b"]  # "日" alone needs 2 tokens


def test_tiktoken_rejects_a_lone_surrogate() -> None:
    """Cutting text that cannot be UTF-8 encoded raises instead of returning garbage."""
    counter = TiktokenCounter(ByteChunkEncoding())
    with pytest.raises(UnicodeEncodeError):
        counter.split("ab\ud800" * 10, 2)


# -- default choice, offline -------------------------------------------------------------------
def test_default_is_heuristic_when_tiktoken_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without tiktoken the default counter is the heuristic."""
    monkeypatch.setitem(sys.modules, "tiktoken", None)  # makes `import tiktoken` fail
    assert isinstance(default_token_counter(), HeuristicTokenCounter)


def test_default_counter_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default counter is built once per process."""
    monkeypatch.setitem(sys.modules, "tiktoken", None)
    assert default_token_counter() is default_token_counter()


def _fake_tiktoken(monkeypatch: pytest.MonkeyPatch, *, default_dir: str | None = None) -> list[str]:
    """Install a fake tiktoken module that records get_encoding calls."""
    calls: list[str] = []
    module = types.ModuleType("tiktoken")
    load = types.ModuleType("tiktoken.load")
    if default_dir is not None:
        load._default_cache_dir = lambda: default_dir  # type: ignore[attr-defined]

    def get_encoding(name: str) -> ByteChunkEncoding:
        calls.append(name)
        return ByteChunkEncoding()

    module.get_encoding = get_encoding  # type: ignore[attr-defined]
    module.load = load  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tiktoken", module)
    monkeypatch.setitem(sys.modules, "tiktoken.load", load)
    return calls


def test_default_skips_tiktoken_when_file_not_cached(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An importable tiktoken without a cached file is never asked to load (no download)."""
    calls = _fake_tiktoken(monkeypatch)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    assert isinstance(default_token_counter(), HeuristicTokenCounter)
    assert calls == []


def test_default_skips_a_corrupt_cached_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A cached file with the wrong SHA-256 (tiktoken would re-download it) is not trusted."""
    calls = _fake_tiktoken(monkeypatch)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    (tmp_path / URL_SHA1).write_bytes(b"truncated")
    assert isinstance(default_token_counter(), HeuristicTokenCounter)
    assert calls == []


def test_default_uses_tiktoken_when_genuine_file_cached(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With the genuine file in the cache, the default counter wraps cl100k_base."""
    calls = _fake_tiktoken(monkeypatch)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    (tmp_path / URL_SHA1).write_bytes(b"genuine")
    monkeypatch.setattr(tokens, "_CL100K_SHA256", hashlib.sha256(b"genuine").hexdigest())
    counter = default_token_counter()
    assert isinstance(counter, TiktokenCounter)
    assert calls == ["cl100k_base"]


def test_default_survives_a_failing_loader(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """If tiktoken fails to load the encoding anyway, the heuristic is used."""
    _fake_tiktoken(monkeypatch)

    def broken(name: str) -> None:
        raise RuntimeError("network unreachable")

    monkeypatch.setattr(sys.modules["tiktoken"], "get_encoding", broken)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    (tmp_path / URL_SHA1).write_bytes(b"genuine")
    monkeypatch.setattr(tokens, "_CL100K_SHA256", hashlib.sha256(b"genuine").hexdigest())
    assert isinstance(default_token_counter(), HeuristicTokenCounter)


def test_cache_path_precedence() -> None:
    """TIKTOKEN_CACHE_DIR wins over DATA_GYM_CACHE_DIR; the file name is the URL's SHA-1."""
    both = {"TIKTOKEN_CACHE_DIR": "/a", "DATA_GYM_CACHE_DIR": "/b"}
    assert tiktoken_cache_file(None, both) == Path("/a") / URL_SHA1
    assert tiktoken_cache_file(None, {"DATA_GYM_CACHE_DIR": "/b"}) == Path("/b") / URL_SHA1


def test_cache_path_default_is_tempdir_data_gym_cache() -> None:
    """Without variables (and an older tiktoken), the cache is <tempdir>/data-gym-cache."""
    expected = Path(tempfile.gettempdir()) / "data-gym-cache" / URL_SHA1
    assert tiktoken_cache_file(None, {}) == expected
    old = types.ModuleType("tiktoken")
    old.load = types.ModuleType("tiktoken.load")  # type: ignore[attr-defined]
    assert tiktoken_cache_file(old, {}) == expected


def test_cache_path_follows_newer_tiktoken_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiktoken that defines its own default cache directory is followed."""
    _fake_tiktoken(monkeypatch, default_dir="/home/u/.cache/tiktoken")
    path = tiktoken_cache_file(sys.modules["tiktoken"], {})
    assert path == Path("/home/u/.cache/tiktoken") / URL_SHA1


def test_disabled_cache_means_no_tiktoken(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty cache dir makes tiktoken download every time, so it is not used."""
    calls = _fake_tiktoken(monkeypatch)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    assert tiktoken_cache_file(sys.modules["tiktoken"]) is None
    assert isinstance(default_token_counter(), HeuristicTokenCounter)
    assert calls == []
