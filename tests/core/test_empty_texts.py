"""The empty-text policy in planning: refuse, or keep empty texts out of requests (zero / NaN)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from embedguard.core.config import BatchPolicy
from embedguard.core.errors import ConfigurationError, InputValidationError
from embedguard.core.metrics import MetricsCollector, MetricsSnapshot
from embedguard.core.planning import EmptyPolicy, Plan, plan_units, split_units, validate_texts
from embedguard.core.tokens import HeuristicTokenCounter

COUNTER = HeuristicTokenCounter()
D = 4


def _plan(texts: list[str], *, empty: EmptyPolicy = "error", **kwargs: Any) -> Plan:
    kwargs.setdefault("batching", BatchPolicy())
    return plan_units(validate_texts(texts, empty=empty), counter=COUNTER, empty=empty, **kwargs)


def _rows(plan: Plan) -> np.ndarray:
    """One distinct row per unit: row u is filled with u + 1."""
    n = len(plan.units)
    return np.repeat(np.arange(1, n + 1, dtype=np.float32)[:, None], D, axis=1)


@pytest.mark.parametrize("empty", ["skip", "zero"])
def test_validate_keeps_empty_texts_under_skip_and_zero(empty: EmptyPolicy) -> None:
    """validate_texts lets empty and whitespace-only texts through when a policy keeps them."""
    assert validate_texts(["a", "", " \n"], empty=empty) == ["a", "", " \n"]


def test_error_is_the_default_and_names_the_option() -> None:
    """By default an empty text is refused, naming its index and the options that keep it."""
    with pytest.raises(InputValidationError, match="empty='zero'") as caught:
        validate_texts(["a", "  "])
    assert caught.value.index == 1
    with pytest.raises(InputValidationError, match="whitespace only"):
        plan_units(["a", "\t"], batching=BatchPolicy(), counter=COUNTER)


@pytest.mark.parametrize("call", [validate_texts, plan_units])
def test_an_unknown_policy_is_a_configuration_error(call: object) -> None:
    """empty='drop' is refused as a ConfigurationError naming the field."""
    kwargs = {"batching": BatchPolicy()} if call is plan_units else {}
    with pytest.raises(ConfigurationError) as caught:
        call(["a"], empty="drop", **kwargs)  # type: ignore[operator]
    assert caught.value.field == "empty"


def test_empty_texts_become_no_unit_and_no_request() -> None:
    """Empty texts are in no unit and no batch; the others are planned as usual."""
    p = _plan(["a", "", "b", "   ", "a"], empty="zero")
    assert p.units == ["a", "b"] and p.blank == (1, 3)
    assert not p.identity
    assert [t for b in split_units(p.units, p.unit_tokens, BatchPolicy()) for t in b.texts] == [
        "a",
        "b",
    ]


@pytest.mark.parametrize(("empty", "fill"), [("zero", 0.0), ("skip", np.nan)])
def test_assemble_fills_empty_rows(empty: EmptyPolicy, fill: float) -> None:
    """Zero rows under 'zero', NaN rows under 'skip'; every other row is its unit's."""
    p = _plan(["", "a", "b", "\n", "a"], empty=empty)
    out = p.assemble(_rows(p))
    assert out.shape == (5, D) and out.dtype == np.float32
    np.testing.assert_array_equal(out[[0, 3]], np.full((2, D), fill, np.float32))
    np.testing.assert_array_equal(out[[1, 2, 4], 0], [1.0, 2.0, 1.0])


def test_empty_texts_beside_chunked_ones() -> None:
    """Empty inputs stay apart from chunked ones (both have no single unit)."""
    long_a, long_b = "alpha " * 40, "beta " * 40
    p = _plan([long_a, "", long_b, " "], batching=BatchPolicy(max_tokens_per_input=30),
              context_policy="chunk", empty="zero")  # fmt: skip
    assert p.chunked == (0, 2) and p.blank == (1, 3)
    out = p.assemble(_rows(p))
    assert not out[[1, 3]].any()
    assert np.isfinite(out).all() and (np.linalg.norm(out[[0, 2]], axis=1) > 0).all()
    assert p.units_of([1, 3]) == []
    every = set(range(len(p.units)))
    assert p.inputs_of(every) == [0, 2]  # the failed units never name an empty input


def test_inputs_of_the_last_unit_is_not_an_empty_input() -> None:
    """A failed last unit names its own inputs, not the empty ones."""
    p = _plan(["a", "", "b"], empty="skip")
    assert p.inputs_of([1]) == [2]
    assert p.inputs_of([0]) == [0]


@pytest.mark.parametrize(("empty", "fill"), [("zero", 0.0), ("skip", np.nan)])
def test_only_empty_texts_need_no_request(empty: EmptyPolicy, fill: float) -> None:
    """A call of empty texts only has no units; its result is one filled row per input."""
    p = _plan(["", " "], empty=empty)
    assert p.units == []
    out = p.assemble_nothing_sent(D)
    np.testing.assert_array_equal(out, np.full((2, D), fill, np.float32))
    assert _plan([], empty=empty).assemble_nothing_sent(None).shape == (0, 0)


def test_only_empty_texts_without_a_known_size_are_refused() -> None:
    """With no vector size known, rows cannot be made: InputValidationError names the first."""
    with pytest.raises(InputValidationError, match="dimensions") as caught:
        _plan(["", " "], empty="zero").assemble_nothing_sent(None)
    assert caught.value.index == 0


def test_adjusted_counts_what_the_plan_changes() -> None:
    """adjusted() counts empty, truncated and chunked inputs (for metrics)."""
    policy = BatchPolicy(max_tokens_per_input=10)
    p = _plan(["", "x " * 40, "x " * 40, "ok"], batching=policy, context_policy="truncate",
              empty="skip")  # fmt: skip
    assert p.adjusted() == {"truncated": 2, "chunked": 0, "empty_skipped": 1}
    q = _plan(["x " * 40, " "], batching=policy, context_policy="chunk", empty="zero")
    assert q.adjusted() == {"truncated": 0, "chunked": 1, "empty_zero": 1}


def test_metrics_count_adjusted_inputs_and_round_trip() -> None:
    """record_inputs adds up by kind, skips zeros, shows in format() and survives to_dict."""
    metrics = MetricsCollector(provider="p", model="m")
    metrics.record_inputs({"truncated": 2, "chunked": 0, "empty_zero": 1})
    metrics.record_inputs({"truncated": 1, "chunked": 0, "empty_zero": 0})
    snap = metrics.snapshot()
    assert dict(snap.inputs_adjusted) == {"truncated": 3, "empty_zero": 1}
    assert "inputs    empty_zero=1, truncated=3" in snap.format()
    assert MetricsSnapshot.from_dict(snap.to_dict()) == snap
    older = snap.to_dict()
    del older["inputs_adjusted"]
    assert not MetricsSnapshot.from_dict(older).inputs_adjusted
    metrics.reset()
    assert not metrics.snapshot().inputs_adjusted
