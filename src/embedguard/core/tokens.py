"""Token counting for batching and context limits, offline.

:func:`default_token_counter` returns a :class:`TiktokenCounter` (exact ``cl100k_base`` counts)
only when ``tiktoken`` is installed *and* its ``cl100k_base`` file is already in tiktoken's local
cache, so counting can never start a download; otherwise a :class:`HeuristicTokenCounter`, a
conservative estimate::

    tokens(text) = ceil(ascii_chars / 3) + non_ascii_chars

Every counter can also cut a text: :meth:`~TokenCounter.truncate` keeps the longest prefix within
a budget and :meth:`~TokenCounter.split` cuts it into consecutive pieces that join back to the
original text.

An in-process model counts with its own tokenizer instead (:class:`TokenizerCounter`): what the
model reads, special tokens included, so its ``max_seq_length`` is the exact per-input budget.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
import tempfile
from bisect import bisect_right
from collections.abc import Mapping
from itertools import accumulate
from pathlib import Path
from types import ModuleType
from typing import Protocol, runtime_checkable

import numpy as np

from ._tokenizer import TokenizerCounter

__all__ = [
    "HeuristicTokenCounter",
    "TiktokenCounter",
    "TokenCounter",
    "TokenizerCounter",
    "default_token_counter",
    "tiktoken_cache_file",
]

_CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
_CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
# Characters after which split() prefers to cut, so pieces end on a word boundary.
_BREAKS = (" ", "\n", "\t", "\r", "\u3000")


@runtime_checkable
class TokenCounter(Protocol):
    """Counts and cuts text by tokens (an exact tokenizer or an estimate)."""

    def count(self, text: str) -> int:
        """The number of tokens in ``text``."""
        ...

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of ``text`` with at most ``max_tokens`` tokens."""
        ...

    def split(self, text: str, max_tokens: int) -> list[str]:
        """Consecutive pieces of at most ``max_tokens`` tokens each; ``"".join(pieces) == text``."""
        ...


def _check_budget(max_tokens: int) -> None:
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")


def _splits_pair(text: str, cut: int) -> bool:
    """Whether cutting ``text`` at ``cut`` would separate a high surrogate from its low half."""
    return (
        0 < cut < len(text)
        and "\ud800" <= text[cut - 1] <= "\udbff"
        and "\udc00" <= text[cut] <= "\udfff"
    )


class HeuristicTokenCounter:
    """A conservative (over-)estimate of BPE token counts, without a tokenizer.

    ``count(text) = ceil(a / 3) + n`` where ``a`` is the number of ASCII characters and ``n`` the
    number of other characters. BPE tokenizers such as ``cl100k_base`` average about four ASCII
    characters per token on prose and code, and at most one token per common non-ASCII character,
    so the estimate is usually 10-40% high: safe for limits, a little wasteful for batching. It is
    not a strict bound for adversarial text (e.g. runs of unrelated punctuation).

    Cuts follow the same formula: :meth:`truncate` keeps the longest prefix within the budget;
    :meth:`split` moves each cut back to just after a whitespace when one lies within the last
    eighth of the piece (the last 16 characters of short pieces). No cut ever falls inside a
    surrogate pair.
    """

    def count(self, text: str) -> int:
        """Estimated tokens in ``text`` (see the class docstring for the formula)."""
        if text.isascii():
            return (len(text) + 2) // 3
        ascii_chars = len(text.encode("ascii", "ignore"))
        return (ascii_chars + 2) // 3 + len(text) - ascii_chars

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of ``text`` whose estimate is at most ``max_tokens``."""
        _check_budget(max_tokens)
        if self.count(text) <= max_tokens:
            return text
        return text[: _piece_end(text, 0, max_tokens)]

    def split(self, text: str, max_tokens: int) -> list[str]:
        """Cut ``text`` into consecutive pieces each estimated at most ``max_tokens``."""
        _check_budget(max_tokens)
        if self.count(text) <= max_tokens:
            return [text]
        pieces: list[str] = []
        start = 0
        while start < len(text):
            end = _piece_end(text, start, max_tokens)
            if end < len(text):
                end = _break_before(text, start, end)
            pieces.append(text[start:end])
            start = end
        return pieces


def _piece_end(text: str, start: int, max_tokens: int) -> int:
    """The largest ``end`` such that ``text[start:end]`` is estimated at most ``max_tokens``."""
    # Each character costs at least a third of a token, so no piece is longer than this window;
    # looking only at the window keeps memory bounded for very long texts.
    end = min(len(text), start + 3 * max_tokens)
    window = text[start:end]
    if not window.isascii():
        codes = np.frombuffer(window.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        ascii_run = np.concatenate(([0], np.cumsum(codes < 128, dtype=np.int64)))
        cost = (ascii_run + 2) // 3 + np.arange(len(window) + 1) - ascii_run  # non-decreasing
        end = start + int(np.searchsorted(cost, max_tokens, side="right")) - 1
    if _splits_pair(text, end) and end - 1 > start:
        end -= 1
    return max(end, start + 1)


def _break_before(text: str, start: int, end: int) -> int:
    """Move a cut back to just after a whitespace near the piece's end, if there is one.

    "Near" is the last eighth of the piece, or its last 16 characters for short pieces.
    """
    length = end - start
    lowest = end - max(length // 8, min(16, length // 2), 1)
    best = max(text.rfind(ch, lowest, end) for ch in _BREAKS)
    return best + 1 if best >= start else end


class _Encoding(Protocol):
    """The part of ``tiktoken.Encoding`` that :class:`TiktokenCounter` uses."""

    def encode_ordinary(self, text: str) -> list[int]: ...

    def decode_tokens_bytes(self, tokens: list[int]) -> list[bytes]: ...


class TiktokenCounter:
    """Exact counts with a ``tiktoken`` encoding (special-token text is counted as plain text).

    Cuts fall on token boundaries, moved back to the nearest UTF-8 character boundary when a token
    ends inside a character; every piece is re-counted, and shortened if re-encoding it on its own
    gives more tokens than the budget. A single character that alone needs more than
    ``max_tokens`` tokens (possible only for budgets below 4) becomes a piece of its own.
    """

    def __init__(self, encoding: _Encoding) -> None:
        self.encoding = encoding

    def __repr__(self) -> str:
        return f"TiktokenCounter({getattr(self.encoding, 'name', 'encoding')!r})"

    def count(self, text: str) -> int:
        """Exact tokens in ``text``."""
        return len(self.encoding.encode_ordinary(text))

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of ``text`` (cut at a token boundary) within ``max_tokens``."""
        _check_budget(max_tokens)
        if self.count(text) <= max_tokens:
            return text
        data, offsets = self._offsets(text)
        return data[: self._piece_end(data, offsets, 0, max_tokens)].decode("utf-8")

    def split(self, text: str, max_tokens: int) -> list[str]:
        """Cut ``text`` into consecutive pieces of at most ``max_tokens`` tokens each."""
        _check_budget(max_tokens)
        if self.count(text) <= max_tokens:
            return [text]
        data, offsets = self._offsets(text)
        pieces: list[str] = []
        start = 0
        while start < len(data):
            end = self._piece_end(data, offsets, start, max_tokens)
            pieces.append(data[start:end].decode("utf-8"))
            start = end
        return pieces

    def _offsets(self, text: str) -> tuple[bytes, list[int]]:
        """The UTF-8 bytes of ``text`` and the byte offset after each of its tokens."""
        data = text.encode("utf-8")  # raises UnicodeEncodeError on a lone surrogate
        token_bytes = self.encoding.decode_tokens_bytes(self.encoding.encode_ordinary(text))
        offsets = list(accumulate((len(b) for b in token_bytes), initial=0))
        if offsets[-1] != len(data):
            raise ValueError("the encoding's tokens do not cover the text's UTF-8 bytes")
        return data, offsets

    def _piece_end(self, data: bytes, offsets: list[int], start: int, max_tokens: int) -> int:
        """Byte offset where the piece starting at byte ``start`` ends (a character boundary)."""
        first = bisect_right(offsets, start) - 1  # the token holding byte ``start``
        last = len(offsets) - 1
        for budget in range(max_tokens, 0, -1):
            end = _char_floor(data, offsets[min(first + budget, last)])
            if end <= start:
                break
            if self.count(data[start:end].decode("utf-8")) <= max_tokens:
                return end
        else:
            # Even one token's worth re-encodes to too many tokens: shrink by characters.
            while end > start:
                end = _char_floor(data, end - 1)
                if end > start and self.count(data[start:end].decode("utf-8")) <= max_tokens:
                    return end
        # A single character needs more than the whole budget: it becomes a piece of its own.
        end = start + 1
        while end < len(data) and data[end] & 0xC0 == 0x80:
            end += 1
        return end


def _char_floor(data: bytes, offset: int) -> int:
    """``offset`` moved back to the start of the UTF-8 character it falls inside."""
    while offset < len(data) and data[offset] & 0xC0 == 0x80:
        offset -= 1
    return offset


def tiktoken_cache_file(
    tiktoken_module: ModuleType | None = None, environ: Mapping[str, str] | None = None
) -> Path | None:
    """Where tiktoken caches the ``cl100k_base`` file, or ``None`` when its cache is disabled.

    Mirrors tiktoken's own lookup: ``TIKTOKEN_CACHE_DIR``, else ``DATA_GYM_CACHE_DIR``, else its
    default directory (``<tempdir>/data-gym-cache`` in older releases; newer ones define
    ``tiktoken.load._default_cache_dir``). The file name is the SHA-1 of the blob URL.
    """
    env = os.environ if environ is None else environ
    if "TIKTOKEN_CACHE_DIR" in env:
        cache_dir = env["TIKTOKEN_CACHE_DIR"]
    elif "DATA_GYM_CACHE_DIR" in env:
        cache_dir = env["DATA_GYM_CACHE_DIR"]
    else:
        default = getattr(_tiktoken_load(tiktoken_module), "_default_cache_dir", None)
        cache_dir = (
            str(default())
            if callable(default)
            else os.path.join(tempfile.gettempdir(), "data-gym-cache")
        )
    if cache_dir == "":  # tiktoken reads straight from the network when the cache is disabled
        return None
    return Path(cache_dir) / hashlib.sha1(_CL100K_URL.encode()).hexdigest()


def _tiktoken_load(tiktoken_module: ModuleType | None) -> ModuleType | None:
    if tiktoken_module is None:
        return None
    load = getattr(tiktoken_module, "load", None)
    if isinstance(load, ModuleType):
        return load
    try:
        return importlib.import_module(f"{tiktoken_module.__name__}.load")
    except ImportError:
        return None


def _is_cached(path: Path | None) -> bool:
    """Whether ``path`` holds the genuine file (tiktoken would re-download a corrupt one)."""
    if path is None or not path.is_file():
        return False
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() == _CL100K_SHA256
    except OSError:
        return False


@functools.cache
def default_token_counter() -> TokenCounter:
    """The best counter available offline (computed once per process).

    A :class:`TiktokenCounter` for ``cl100k_base`` when ``tiktoken`` is importable and the
    encoding file is already in its cache (checked by SHA-256, so no download can start);
    otherwise a :class:`HeuristicTokenCounter`.
    """
    try:
        tiktoken = importlib.import_module("tiktoken")
    except ImportError:
        return HeuristicTokenCounter()
    if not _is_cached(tiktoken_cache_file(tiktoken)):
        return HeuristicTokenCounter()
    try:
        encoding: _Encoding = tiktoken.get_encoding("cl100k_base")
    except Exception:  # any failure to load degrades to the estimate, never fails the caller
        return HeuristicTokenCounter()
    return TiktokenCounter(encoding)
