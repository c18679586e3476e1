"""A token counter that is the model's own tokenizer (see :class:`TokenizerCounter`)."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

__all__ = ["TokenizerCounter"]


class TokenizerCounter:
    """Counts what a model reads, with its own (fast) Hugging Face tokenizer.

    ``count(text)`` includes the special tokens the model adds (``[CLS]`` and ``[SEP]`` for
    BERT-style models), so a budget of the model's ``max_seq_length`` is exactly what it reads.
    Long texts are counted without transformers' "sequence length is longer than..." warning.

    Cuts fall where a token starts (the tokenizer's offset mapping), so no word piece is split
    inside; :meth:`split` also moves a cut back to the start of a word (a token after a space)
    when one lies within the last eighth of the piece. Every piece is re-counted on its own and
    shortened, a token at a time, if it reads more than the budget (a character at a time when
    a single token does, which only tiny budgets meet).

    Args:
        tokenizer: A ``transformers`` fast tokenizer (``SentenceTransformer.tokenizer``).

    Raises:
        TypeError: The tokenizer cannot map tokens to text offsets (not a fast tokenizer).
    """

    def __init__(self, tokenizer: Any) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise TypeError("TokenizerCounter needs a fast tokenizer (one with offset mappings)")
        self.tokenizer = tokenizer
        self.special = len(self._encode("")["input_ids"])  # tokens the model adds to any text

    def __repr__(self) -> str:
        return f"TokenizerCounter({type(self.tokenizer).__name__}, special={self.special})"

    def _encode(self, text: str | list[str], **options: Any) -> Any:
        return self.tokenizer(
            text, verbose=False, return_attention_mask=False, return_token_type_ids=False, **options
        )

    def count(self, text: str) -> int:
        """Tokens the model reads for ``text``, special tokens included."""
        return len(self._encode(text)["input_ids"])

    def count_many(self, texts: Sequence[str]) -> list[int]:
        """:meth:`count` of each text, in one tokenizer call."""
        if not texts:
            return []
        return [len(ids) for ids in self._encode(list(texts))["input_ids"]]

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of ``text`` (cut where a token starts) within ``max_tokens``."""
        self._check(max_tokens)
        if self.count(text) <= max_tokens:
            return text
        return text[: self._cut(text, self._starts(text), 0, 0, max_tokens, words=False)[0]]

    def split(self, text: str, max_tokens: int) -> list[str]:
        """Cut ``text`` into consecutive pieces the model reads whole (``max_tokens`` each)."""
        self._check(max_tokens)
        if self.count(text) <= max_tokens:
            return [text]
        starts = self._starts(text)
        pieces: list[str] = []
        pos = first = 0
        while pos < len(text):
            end, first = self._cut(text, starts, pos, first, max_tokens, words=True)
            pieces.append(text[pos:end])
            pos = end
        return pieces

    def _check(self, max_tokens: int) -> None:
        if max_tokens <= self.special:
            raise ValueError(
                f"max_tokens must exceed the {self.special} special tokens, got {max_tokens}"
            )

    def _starts(self, text: str) -> list[tuple[int, int]]:
        """The (start, end) character offsets of the text's tokens, without special tokens."""
        offsets = self._encode(text, add_special_tokens=False, return_offsets_mapping=True)
        return [(int(s), int(e)) for s, e in offsets["offset_mapping"]]

    def _cut(
        self,
        text: str,
        offsets: list[tuple[int, int]],
        pos: int,
        first: int,
        max_tokens: int,
        *,
        words: bool,
    ) -> tuple[int, int]:
        """Where the piece starting at ``pos`` (token ``first``) ends: (character, next token)."""
        n = len(offsets)
        end = first + max_tokens - self.special  # the first token left out
        if end >= n and self.count(text[pos:]) <= max_tokens:
            return len(text), n
        end = min(end, n - 1)
        if words:  # prefer a token after a space within the last eighth
            lowest = max(first + 1, end - (end - first) // 8)
            end = next(
                (j for j in range(end, lowest - 1, -1) if offsets[j][0] > offsets[j - 1][1]), end
            )
        while end > first + 1 and (
            offsets[end][0] <= pos or self.count(text[pos : offsets[end][0]]) > max_tokens
        ):
            end -= 1  # the piece read on its own needs more tokens: give one back
        cut = offsets[end][0]
        if cut <= pos:  # tokens sharing a start (e.g. bytes of one character): take them all
            later = (j for j in range(end, n) if offsets[j][0] > pos)
            end = next(later, n)
            cut = offsets[end][0] if end < n else len(text)
        if cut > pos + 1 and self.count(text[pos:cut]) > max_tokens:
            # One token reads as more on its own ("##ly" alone is "b", "##ly"): cut inside it.
            while cut > pos + 1 and self.count(text[pos:cut]) > max_tokens:
                cut -= 1
            end = max(first, bisect_right(offsets, cut, key=lambda o: o[0]) - 1)
        return cut, end
