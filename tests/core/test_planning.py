"""Planning: validation, dedupe, context policy, batching and reassembly in input order."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embedguard.core.config import BatchPolicy
from embedguard.core.errors import ConfigurationError, InputValidationError
from embedguard.core.planning import Batch, Plan, plan_units, split_units, validate_texts
from embedguard.core.tokens import HeuristicTokenCounter

COUNTER = HeuristicTokenCounter()
DIM = 8


def vector_of(text: str) -> np.ndarray:
    """A deterministic float32 vector per text."""
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)


def unit_vectors(plan: Any) -> np.ndarray:
    return np.stack([vector_of(u) for u in plan.units]) if plan.units else np.empty((0, DIM))


@dataclass
class Planned:
    """A plan and the batches the send path would cut from all of its units."""

    plan: Plan
    batches: list[Batch]

    def __getattr__(self, name: str) -> object:
        return getattr(self.plan, name)


def plan(texts: Sequence[str], **kwargs: object) -> Planned:
    batching = kwargs.setdefault("batching", BatchPolicy())
    kwargs.setdefault("counter", COUNTER)
    split = {k: kwargs.pop(k) for k in ("concurrency", "min_batch_inputs") if k in kwargs}
    p = plan_units(texts, **kwargs)  # type: ignore[arg-type]
    return Planned(p, split_units(p.units, p.unit_tokens, batching, **split))  # type: ignore[arg-type]


def check_batches(p: Planned, policy: BatchPolicy) -> None:
    """Batches cover every unit exactly once, in order, within the limits."""
    covered = [u for b in p.batches for u in b.units]
    assert covered == list(range(len(p.units)))
    for b in p.batches:
        assert 1 <= len(b.units) <= policy.max_inputs
        assert b.texts == tuple(p.units[u] for u in b.units)
        assert b.tokens == sum(p.unit_tokens[u] for u in b.units)
        assert b.tokens <= policy.max_tokens_per_request


# -- validation ---------------------------------------------------------------------------------
def test_empty_list_is_valid_and_plans_nothing() -> None:
    """An empty list validates and yields a plan with no units and no batches."""
    p = plan(validate_texts([]))
    assert (p.n_inputs, p.units, p.batches, p.estimated_tokens) == (0, [], [], 0)
    assert p.assemble(np.empty((0, DIM), np.float32)).shape == (0, DIM)


@pytest.mark.parametrize("single", ["hello", b"hello", bytearray(b"hi")])
def test_single_string_is_rejected(single: object) -> None:
    """A bare str/bytes is not silently treated as a list of characters."""
    with pytest.raises(InputValidationError, match="wrap it in a list") as info:
        validate_texts(single)
    assert info.value.index is None


def test_non_sequence_is_rejected() -> None:
    """A generator or set is rejected with a hint to pass a list."""
    with pytest.raises(InputValidationError, match="got generator"):
        validate_texts(t for t in ["a"])
    with pytest.raises(InputValidationError, match="got set"):
        validate_texts({"a"})


@pytest.mark.parametrize(
    ("texts", "index", "match"),
    [
        (["ok", 3, "x"], 1, "got int"),
        (["ok", None], 1, "got NoneType"),
        (["ok", "ok", ""], 2, "empty"),
        (["ok", " \n\t"], 1, "whitespace only"),
        (["ok", "a\ud800b"], 1, "lone surrogate.*U\\+D800 at position 1"),
        ([b"bytes"], 0, "got bytes"),
    ],
)
def test_bad_item_is_rejected_with_its_index(texts: list[object], index: int, match: str) -> None:
    """Each kind of bad item raises InputValidationError naming its index."""
    with pytest.raises(InputValidationError, match=match) as info:
        validate_texts(texts, provider="openai")
    assert info.value.index == index
    assert info.value.provider == "openai"
    assert f"input {index}" in str(info.value)


def test_validation_accepts_nul_emoji_and_str_subclasses() -> None:
    """NUL bytes, emoji and str subclasses are valid; subclasses become plain str."""

    class Sub(str):
        pass

    out = validate_texts(("a\x00b", "😀 日本", Sub("x")))
    assert out == ["a\x00b", "😀 日本", "x"]
    assert type(out[2]) is str


def test_validation_of_100k_texts_is_fast() -> None:
    """Validating and planning 100,000 short texts takes well under a second (printed)."""
    texts = [f"document number {i} — ünïcode" if i % 3 else f"doc {i}" for i in range(100_000)]
    started = time.perf_counter()
    p = plan(validate_texts(texts), concurrency=8)
    elapsed = time.perf_counter() - started
    print(f"validate + plan 100k texts: {elapsed * 1000:.0f} ms, {len(p.batches)} batches")
    assert len(p.units) == 100_000


# -- dedupe and reassembly ----------------------------------------------------------------------
def test_duplicates_are_sent_once_and_fan_out() -> None:
    """Identical texts share one unit and each input gets its vector back in order."""
    texts = ["a", "b", "a", "c", "b", "a"]
    p = plan(texts)
    assert p.units == ["a", "b", "c"]
    assert p.inverse.tolist() == [0, 1, 0, 2, 1, 0]
    out = p.assemble(unit_vectors(p))
    assert out.dtype == np.float32
    assert np.array_equal(out, np.stack([vector_of(t) for t in texts]))


def test_identity_plan_returns_unit_vectors_without_copy() -> None:
    """With nothing deduped or chunked, assemble returns the unit array itself."""
    p = plan(["a", "b"])
    vectors = unit_vectors(p)
    assert p.assemble(vectors) is vectors


def test_assemble_rejects_wrong_row_count() -> None:
    """assemble refuses an array that does not have one row per unit."""
    p = plan(["a", "b", "a"])
    with pytest.raises(ValueError, match=r"shape \(2, d\)"):
        p.assemble(np.zeros((3, DIM), np.float32))


def test_failed_units_map_back_to_all_their_inputs() -> None:
    """inputs_of lists every input that needs a failed unit, including duplicates."""
    p = plan(["a", "b", "a", "c"])
    assert p.inputs_of([0]) == [0, 2]
    assert p.inputs_of([1, 2]) == [1, 3]
    assert p.inputs_of([]) == []
    assert p.units_of([3, 0, 2]) == [0, 2]


# -- context policy ---------------------------------------------------------------------------
SMALL = BatchPolicy(max_inputs=4, max_tokens_per_request=40, max_tokens_per_input=10)
LONG = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod"  # 23 tokens


def test_over_limit_text_is_rejected_before_any_request() -> None:
    """Under "error", the first over-limit text raises with its index, tokens and the fixes."""
    with pytest.raises(InputValidationError) as info:
        plan(["short", LONG, LONG + "!"], batching=SMALL, provider="openai")
    err = info.value
    assert err.index == 1
    assert "23 tokens" in str(err)
    assert "limit of 10" in str(err)
    assert "context_policy='truncate'" in str(err)
    assert "context_policy='chunk'" in str(err)


def test_truncate_cuts_to_limit_and_dedupes_after() -> None:
    """Truncated texts fit the limit; two long texts with the same prefix share a unit."""
    p = plan(["short", LONG, LONG + " and more"], batching=SMALL, context_policy="truncate")
    assert p.units == ["short", LONG[:30]]
    assert p.inverse.tolist() == [0, 1, 1]
    assert p.truncated == (1, 2)
    assert max(p.unit_tokens) <= SMALL.max_tokens_per_input
    out = p.assemble(unit_vectors(p))
    assert np.array_equal(out[2], vector_of(LONG[:30]))


def test_chunk_pieces_rebuild_the_text_and_average_by_tokens() -> None:
    """Chunked input = token-weighted average of its pieces, L2-renormalised."""
    p = plan(["short", LONG, LONG], batching=SMALL, context_policy="chunk")
    pieces = p.pieces[1]
    assert p.pieces[2] == pieces
    assert p.inverse.tolist() == [0, -1, -1]
    assert p.chunked == (1, 2)
    assert "".join(p.units[u] for u, _ in pieces) == LONG
    assert [w for _, w in pieces] == [COUNTER.count(p.units[u]) for u, _ in pieces]
    assert all(w <= 10 for _, w in pieces)
    vectors = unit_vectors(p)
    out = p.assemble(vectors)
    expected = sum(w * vectors[u].astype(np.float64) for u, w in pieces)
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(out[1], expected, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out[1]), 1.0, rtol=1e-6)
    assert np.array_equal(out[0], vectors[0])  # 1:1 rows are untouched (not renormalised)
    assert p.inputs_of([pieces[-1][0]]) == [1, 2]
    assert p.units_of([1]) == sorted({u for u, _ in pieces})


class BatchCounter(HeuristicTokenCounter):
    """The heuristic counts, with ``count_many`` (as a model's own tokenizer has); records calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def count(self, text: str) -> int:
        self.calls.append("count")
        return super().count(text)

    def count_many(self, texts: Sequence[str]) -> list[int]:
        self.calls.append(f"count_many {len(texts)}")
        return [super(BatchCounter, self).count(t) for t in texts]


def test_a_counter_with_count_many_counts_distinct_texts_in_chunks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Distinct non-blank texts are counted in count_many calls of at most 1,024 texts; the plan
    is the one counting text by text gives; an over-limit text is still cut (counted alone)."""
    import embedguard.core.planning as planning

    monkeypatch.setattr(planning, "_COUNT_CHUNK", 3)
    texts = ["a b", "c d e", "a b", "", "f", "g h i j", "k", LONG]
    counter = BatchCounter()
    p = plan(texts, counter=counter, batching=SMALL, context_policy="truncate", empty="skip")
    expected = plan(texts, batching=SMALL, context_policy="truncate", empty="skip")
    assert (p.units, p.unit_tokens, p.inverse.tolist()) == (
        expected.units,
        expected.unit_tokens,
        expected.inverse.tolist(),
    )
    assert counter.calls[:2] == ["count_many 3", "count_many 3"]  # 6 distinct non-blank texts
    assert all(call == "count" for call in counter.calls[2:])  # cutting LONG, counting its prefix


def test_chunk_pieces_are_deduped_with_other_units() -> None:
    """A piece equal to another input (or another piece) is sent only once."""
    text = "abcdefghijklmnopqrstuvwxyz01234" * 2  # 62 chars, limit 10 tokens = 30 chars
    p = plan([text[:30], text], batching=SMALL, context_policy="chunk")
    assert len(p.units) == len(set(p.units))
    assert p.pieces[1][0][0] == 0  # first piece is input 0's unit


# -- batching ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n", "concurrency", "sizes"),
    [
        (20_000, 8, [1250] * 16),  # two whole rounds of 8, not 8 + 2 batches of 2,000
        (5_000, 20, [250] * 20),
        (10, 8, [10]),
        (2049, 1, [1025, 1024]),
        (21, 4, [6, 5, 5, 5]),
    ],
)
def test_batch_counts_spread_over_concurrency(n: int, concurrency: int, sizes: list[int]) -> None:
    """Batches are balanced, within max_inputs, and numerous enough for the concurrency."""
    p = plan(
        [f"t{i}" for i in range(n)], concurrency=concurrency, min_batch_inputs=5 if n == 21 else 32
    )
    assert [len(b.units) for b in p.batches] == sizes
    check_batches(p, BatchPolicy())


def test_a_small_call_is_one_batch_unless_its_tokens_overflow() -> None:
    """A few texts within the budget go in one batch; over it, they are cut by tokens."""
    one = split_units(["a", "b", "c"], [3, 4, 5], BatchPolicy(), concurrency=8, kind="query")
    assert [(b.units, b.texts, b.tokens, b.kind) for b in one] == [
        ((0, 1, 2), ("a", "b", "c"), 12, "query")
    ]
    policy = BatchPolicy(max_inputs=10, max_tokens_per_request=8, max_tokens_per_input=8)
    cut = split_units(["a", "b", "c"], [3, 4, 5], policy, concurrency=8)
    assert [b.units for b in cut] == [(0, 1), (2,)]
    assert [b.tokens for b in cut] == [7, 5]


def test_token_budget_splits_batches() -> None:
    """A small max_tokens_per_request forces more, smaller batches."""
    policy = BatchPolicy(max_inputs=100, max_tokens_per_request=10, max_tokens_per_input=5)
    p = plan([f"text{i:02d}" for i in range(30)], batching=policy)  # 2 tokens each
    assert len(p.batches) == 6
    assert all(b.tokens == 10 for b in p.batches)
    check_batches(p, policy)


def test_uneven_token_sizes_stay_within_budget() -> None:
    """Big and small units mixed never overflow the request budget."""
    policy = BatchPolicy(max_inputs=8, max_tokens_per_request=20, max_tokens_per_input=20)
    texts = [("x" * (3 * (i % 7 * 3 + 1)))[:-1] + str(i) for i in range(50)]
    p = plan(texts, batching=policy, concurrency=3)
    assert len(p.batches) >= math.ceil(p.estimated_tokens / 20)
    check_batches(p, policy)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"context_policy": "drop"}, "context_policy"),
        ({"concurrency": 0}, "concurrency"),
        ({"min_batch_inputs": 0}, "min_batch_inputs"),
    ],
)
def test_invalid_options_raise_configuration_error(kwargs: dict[str, object], field: str) -> None:
    """A bad option names its field."""
    with pytest.raises(ConfigurationError) as info:
        plan(["a"], **kwargs)
    assert info.value.field == field


def test_batch_repr_hides_texts() -> None:
    """Batch and Plan reprs show sizes, never the texts."""
    p = plan(["secret text", "other"])
    assert "secret" not in repr(p.batches[0])
    assert "secret" not in repr(p)
    assert repr(Batch((), (), 0)) == "Batch(units=-, size=0, tokens=0)"


# -- properties ---------------------------------------------------------------------------------
_pieces = [*"abc xyz.\n", "é", "ж", "日本", "😀", "👩\u200d👩\u200d👧", "\x00", "ن"]
_chars = st.sampled_from(_pieces)
_normal = st.lists(_chars, min_size=1, max_size=8).map("".join).filter(lambda s: not s.isspace())
_long = st.lists(_chars, min_size=30, max_size=120).map("".join).filter(lambda s: not s.isspace())
_pool = st.lists(st.one_of(_normal, _long), min_size=1, max_size=6)
_texts = _pool.flatmap(lambda pool: st.lists(st.sampled_from(pool), max_size=40))
_policies = st.builds(
    lambda max_inputs, per_request, per_input: BatchPolicy(
        max_inputs=max_inputs,
        max_tokens_per_request=max(per_request, per_input),
        max_tokens_per_input=per_input,
    ),
    st.integers(1, 10),
    st.integers(1, 200),
    st.integers(1, 60),
)


@settings(max_examples=200, deadline=None)
@given(texts=_texts, policy=_policies, concurrency=st.integers(1, 8))
def test_property_no_cut_plan_is_exact(
    texts: list[str], policy: BatchPolicy, concurrency: int
) -> None:
    """Without cutting: dedupe is exact, batches cover units once, rows match their texts."""
    texts = [t for t in texts if COUNTER.count(t) <= policy.max_tokens_per_input]
    p = plan(validate_texts(texts), batching=policy, concurrency=concurrency, min_batch_inputs=2)
    assert len(p.units) == len(set(texts))
    assert [p.units[u] for u in p.inverse.tolist()] == texts
    check_batches(p, policy)
    out = p.assemble(unit_vectors(p))
    expected = np.stack([vector_of(t) for t in texts]) if texts else np.empty((0, DIM))
    assert np.array_equal(out, expected)


@settings(max_examples=200, deadline=None)
@given(texts=_texts, policy=_policies, cut=st.sampled_from(["truncate", "chunk"]))
def test_property_cut_policies(texts: list[str], policy: BatchPolicy, cut: str) -> None:
    """Every input maps to a unit or to pieces that rebuild it; units are distinct and fit."""
    p = plan(texts, batching=policy, context_policy=cut)
    assert len(p.units) == len(set(p.units))
    assert all(n <= policy.max_tokens_per_input for n in p.unit_tokens)
    check_batches(p, policy)
    vectors = unit_vectors(p)
    out = p.assemble(vectors)
    assert out.shape == (len(texts), DIM)
    for i, text in enumerate(texts):
        unit = int(p.inverse[i])
        if unit >= 0:
            assert i not in p.pieces
            assert text.startswith(p.units[unit])
            assert (p.units[unit] == text) == (i not in p.truncated)
            assert np.array_equal(out[i], vectors[unit])
        else:
            assert cut == "chunk"
            assert "".join(p.units[u] for u, _ in p.pieces[i]) == text
            np.testing.assert_allclose(np.linalg.norm(out[i]), 1.0, rtol=1e-5)
        assert i in p.inputs_of(p.units_of([i]))


_bad = st.sampled_from(["", " ", "\t\n", "a\udc00", 7, None, b"x", 1.5])


@settings(max_examples=200, deadline=None)
@given(items=st.lists(st.one_of(_normal, _bad), min_size=1, max_size=20))
def test_property_first_bad_index_is_reported(items: list[object]) -> None:
    """Invalid inputs raise InputValidationError naming the first bad index."""

    def bad(x: object) -> bool:
        if not isinstance(x, str) or not x.strip():
            return True
        return any("\ud800" <= ch <= "\udfff" for ch in x)

    first = next((i for i, x in enumerate(items) if bad(x)), None)
    if first is None:
        assert validate_texts(items) == items
    else:
        with pytest.raises(InputValidationError) as info:
            validate_texts(items)
        assert info.value.index == first
