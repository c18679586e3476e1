"""Tests for the metrics collector, its snapshot and the price table."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import random
import threading

import pytest

from embedguard.core.errors import ConfigurationError
from embedguard.core.metrics import MetricsCollector, MetricsSnapshot, default_prices


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class BreakerState(enum.StrEnum):
    """Stand-in for the breaker's str Enum."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


def make(**kwargs: object) -> MetricsCollector:
    """A collector for provider 'openai' / text-embedding-3-small with a fake clock."""
    kwargs.setdefault("clock", FakeClock())
    return MetricsCollector(provider="openai", model="text-embedding-3-small", **kwargs)  # type: ignore[arg-type]


def assert_identities(snap: MetricsSnapshot) -> None:
    """The accounting identities that must hold in every snapshot."""
    assert snap.total_requests == snap.successful_requests + snap.failed_requests
    assert sum(snap.errors_by_kind.values()) == snap.failed_requests
    assert snap.retried_requests <= snap.total_requests
    assert sum(snap.tokens_by_model.values()) == snap.tokens_used
    assert sum(snap.requests_by_provider.values()) == snap.successful_requests
    assert snap.latency_count == snap.total_requests


def test_success_and_failure_are_counted_field_by_field() -> None:
    """Successes and failures update requests, items, tokens, bytes, errors and retries."""
    m = make()
    m.record_success(items=4, tokens=100, latency=0.5, bytes_raw=1000, bytes_sent=400)
    m.record_success(items=2, tokens=50, latency=0.25, bytes_raw=500, bytes_sent=500, retry=True)
    m.record_failure(kind="rate_limit", latency=0.125, bytes_raw=300, bytes_sent=100)
    m.record_failure(kind="server", latency=1.0, retry=True)
    s = m.snapshot()
    assert (s.total_requests, s.successful_requests, s.failed_requests) == (4, 2, 2)
    assert s.retried_requests == 2
    assert (s.items_embedded, s.tokens_used) == (6, 150)
    assert (s.bytes_raw, s.bytes_sent, s.bytes_saved) == (1800, 1000, 800)
    assert dict(s.errors_by_kind) == {"rate_limit": 1, "server": 1}
    assert (s.latency_count, s.latency_sum, s.latency_max) == (4, 1.875, 1.0)
    assert (s.success_rate, s.failure_rate, s.retry_rate) == (0.5, 0.5, 0.5)
    assert s.average_batch_size == 3.0
    assert s.average_latency == 1.875 / 4
    assert s.compression_ratio == pytest.approx(1000 / 1800)
    assert_identities(s)


def test_rejected_calls_are_counted_apart_from_requests() -> None:
    """A call refused by the breaker is not an HTTP attempt: total_requests is unchanged."""
    m = make()
    m.record_rejected()
    m.record_rejected("circuit_open")
    m.record_rejected("budget")
    s = m.snapshot()
    assert s.rejected_requests == 3
    assert (s.total_requests, s.failed_requests) == (0, 0)
    assert dict(s.rejected_by_kind) == {"circuit_open": 2, "budget": 1}
    assert not s.errors_by_kind


def test_breaker_transitions_are_counted_by_state_entered() -> None:
    """Transitions count by new state; str, Enum and dashed names work; non-changes are ignored."""
    m = make()
    m.on_breaker_transition("closed", "open")
    m.on_breaker_transition(BreakerState.OPEN, BreakerState.HALF_OPEN)
    m.on_breaker_transition("half-open", "OPEN")
    m.on_breaker_transition(BreakerState.OPEN, "half_open")
    m.on_breaker_transition("half_open", BreakerState.CLOSED)
    m.on_breaker_transition("closed", "closed")  # not a change
    m.on_breaker_transition("closed", "exploded")  # unknown state: ignored, never raises
    s = m.snapshot()
    assert (s.breaker_opens, s.breaker_half_opens, s.breaker_closes) == (2, 2, 1)


def test_provider_and_model_overrides_feed_the_per_provider_maps() -> None:
    """Batches served by a fallback provider/model are attributed to it, not to the defaults."""
    m = make()
    m.record_success(items=3, tokens=30, latency=0.1, bytes_raw=1, bytes_sent=1)
    m.record_success(
        items=5, tokens=70, latency=0.1, bytes_raw=1, bytes_sent=1,
        provider="mistral", model="mistral-embed",
    )  # fmt: skip
    m.record_failure(kind="server", latency=0.1, provider="mistral")
    s = m.snapshot()
    assert dict(s.requests_by_provider) == {"openai": 1, "mistral": 1}
    assert dict(s.items_by_provider) == {"openai": 3, "mistral": 5}
    assert dict(s.failures_by_provider) == {"mistral": 1}
    assert dict(s.tokens_by_model) == {"text-embedding-3-small": 30, "mistral-embed": 70}
    assert (s.provider, s.model) == ("openai", "text-embedding-3-small")


def test_32_threads_times_10000_updates_give_exact_totals_and_identities() -> None:
    """Concurrent updates lose nothing, and every concurrent snapshot satisfies the identities."""
    m = make(reservoir_size=256)
    threads_n, per_thread = 32, 10_000
    start = threading.Barrier(threads_n + 1)
    done = threading.Event()
    seen: list[MetricsSnapshot] = []

    def work() -> None:
        start.wait()
        for j in range(per_thread):
            step = j % 4
            if step == 0:
                m.record_success(items=2, tokens=3, latency=0.25, bytes_raw=10, bytes_sent=4)
            elif step == 1:
                m.record_success(
                    items=1, tokens=1, latency=0.5, bytes_raw=10, bytes_sent=10, retry=True
                )
            elif step == 2:
                m.record_failure(kind="server", latency=0.75, bytes_raw=10, bytes_sent=4)
            else:
                m.record_failure(kind="rate_limit", latency=1.0, retry=True)

    def watch() -> None:
        while not done.is_set():
            seen.append(m.snapshot())  # checked in the main thread, where failures are reported

    workers = [threading.Thread(target=work) for _ in range(threads_n)]
    watcher = threading.Thread(target=watch)
    for t in workers:
        t.start()
    watcher.start()
    start.wait()
    for t in workers:
        t.join()
    done.set()
    watcher.join()

    quarter = threads_n * per_thread // 4
    s = m.snapshot()
    assert_identities(s)
    assert s.total_requests == threads_n * per_thread
    assert (s.successful_requests, s.failed_requests) == (2 * quarter, 2 * quarter)
    assert s.retried_requests == 2 * quarter
    assert dict(s.errors_by_kind) == {"server": quarter, "rate_limit": quarter}
    assert (s.items_embedded, s.tokens_used) == (3 * quarter, 4 * quarter)
    assert (s.bytes_raw, s.bytes_sent) == (30 * quarter, 18 * quarter)
    assert s.latency_sum == 2.5 * quarter  # exact: binary fractions add without rounding
    assert s.latency_max == 1.0
    assert any(0 < snap.total_requests < s.total_requests for snap in seen), "no mid-run snapshot"
    for snap in seen:
        assert_identities(snap)


async def test_1000_asyncio_tasks_record_concurrently() -> None:
    """Interleaved asyncio tasks sharing one collector give exact totals."""
    m = make()

    async def task(i: int) -> None:
        for _ in range(5):
            await asyncio.sleep(0)  # yield to the other tasks between records
            if i % 2:
                m.record_success(items=1, tokens=2, latency=0.5, bytes_raw=1, bytes_sent=1)
            else:
                m.record_failure(kind="timeout", latency=0.5, retry=True)

    await asyncio.gather(*(task(i) for i in range(1000)))
    s = m.snapshot()
    assert (s.total_requests, s.successful_requests, s.failed_requests) == (5000, 2500, 2500)
    assert (s.items_embedded, s.tokens_used, s.retried_requests) == (2500, 5000, 2500)
    assert dict(s.errors_by_kind) == {"timeout": 2500}
    assert_identities(s)


def test_percentiles_on_1_to_100_ms_are_nearest_rank() -> None:
    """Shuffled latencies 1..100 ms give p50=50, p95=95, p99=99 ms, max 100, mean 50.5 ms."""
    m = make()
    values = [ms / 1000 for ms in range(1, 101)]
    random.Random(7).shuffle(values)
    for v in values:
        m.record_success(items=1, tokens=1, latency=v, bytes_raw=1, bytes_sent=1)
    s = m.snapshot()
    assert (s.latency_p50, s.latency_p95, s.latency_p99) == (0.050, 0.095, 0.099)
    assert s.latency_max == 0.1
    assert s.average_latency == pytest.approx(0.0505)


def test_percentiles_with_one_sample_and_with_none() -> None:
    """One sample is every percentile; no sample gives 0.0 everywhere."""
    assert make().snapshot().latency_p99 == 0.0
    m = make()
    m.record_failure(kind="timeout", latency=2.0)
    s = m.snapshot()
    assert (s.latency_p50, s.latency_p95, s.latency_p99) == (2.0, 2.0, 2.0)


def test_latency_window_is_bounded_to_recent_samples() -> None:
    """Percentiles use only the last `reservoir_size` latencies; sum/count/max stay lifetime."""
    m = make(reservoir_size=10)
    for ms in range(1, 101):
        m.record_success(items=1, tokens=1, latency=ms / 1000, bytes_raw=1, bytes_sent=1)
    s = m.snapshot()
    assert (s.latency_p50, s.latency_p99) == (0.095, 0.1)  # window holds 91..100 ms
    assert s.latency_count == 100
    assert s.average_latency == pytest.approx(0.0505)
    m.record_success(items=1, tokens=1, latency=0.001, bytes_raw=1, bytes_sent=1)
    assert m.snapshot().latency_p50 == 0.095  # 91 ms dropped out, 1 ms came in: window 1,92..100


def test_cost_comes_from_the_bundled_price_table() -> None:
    """Tokens per model are priced from prices.json, summed over models."""
    m = make()
    m.record_success(items=1, tokens=1_000_000, latency=0.1, bytes_raw=1, bytes_sent=1)
    m.record_success(
        items=1, tokens=500_000, latency=0.1, bytes_raw=1, bytes_sent=1,
        model="text-embedding-3-large",
    )  # fmt: skip
    s = m.snapshot()
    assert s.estimated_cost == pytest.approx(0.02 + 0.065)
    assert s.cost_known is True


def test_price_table_holds_the_documented_prices_and_skips_notes() -> None:
    """The bundled table lists the documented models; `_source`/`_date` notes are not prices."""
    table = default_prices()
    assert "_source" not in table and "_date" not in table
    documented = {
        "text-embedding-3-small": 0.02,
        "text-embedding-3-large": 0.13,
        "text-embedding-ada-002": 0.10,
        "mistral-embed": 0.10,
        "codestral-embed": 0.15,
    }
    assert table.items() >= documented.items()
    with pytest.raises(TypeError):
        table["x"] = 1.0  # type: ignore[index]


def test_per_client_price_overrides_win_over_the_table() -> None:
    """price_per_million_tokens prices the client's model; `prices` overrides and extends."""
    m = make(price_per_million_tokens=1.0, prices={"my-deployment": 2.0, "mistral-embed": 0.5})
    m.record_success(items=1, tokens=2_000_000, latency=0.1, bytes_raw=1, bytes_sent=1)
    m.record_success(
        items=1, tokens=1_000_000, latency=0.1, bytes_raw=1, bytes_sent=1, model="my-deployment"
    )
    m.record_success(
        items=1, tokens=1_000_000, latency=0.1, bytes_raw=1, bytes_sent=1, model="mistral-embed"
    )
    assert m.snapshot().estimated_cost == pytest.approx(2.0 + 2.0 + 0.5)
    assert m.prices["text-embedding-3-small"] == 1.0
    assert default_prices()["text-embedding-3-small"] == 0.02  # the shared table is untouched


def test_unknown_model_costs_nothing_and_is_flagged() -> None:
    """Tokens of an unpriced model add no cost and set cost_known=False."""
    m = MetricsCollector(provider="azure", model="corp-embed-prod")
    m.record_success(items=1, tokens=0, latency=0.1, bytes_raw=1, bytes_sent=1)
    assert m.snapshot().cost_known is True  # no tokens billed yet: nothing unknown
    m.record_success(items=1, tokens=1000, latency=0.1, bytes_raw=1, bytes_sent=1)
    s = m.snapshot()
    assert (s.estimated_cost, s.cost_known) == (0.0, False)
    assert "unpriced" in s.format()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"reservoir_size": 0}, "reservoir_size"),
        ({"price_per_million_tokens": -1.0}, None),
        ({"prices": {"m": float("nan")}}, None),
    ],
)
def test_invalid_settings_are_rejected(kwargs: dict[str, object], field: str | None) -> None:
    """A non-positive window or a negative/NaN price raises ConfigurationError."""
    with pytest.raises(ConfigurationError) as info:
        make(**kwargs)
    assert info.value.field == field


def test_reset_zeroes_everything_and_restarts_uptime() -> None:
    """After reset() every counter, map and the latency window are empty; uptime counts anew."""
    clock = FakeClock(100.0)
    m = make(clock=clock)
    m.record_success(items=1, tokens=5, latency=0.3, bytes_raw=9, bytes_sent=9)
    m.record_failure(kind="server", latency=0.2)
    m.record_rejected()
    m.on_breaker_transition("closed", "open")
    clock.now = 160.0
    assert m.snapshot().uptime == 60.0
    m.reset()
    clock.now = 175.0
    s = m.snapshot()
    assert s == dataclasses.replace(make().snapshot(), uptime=15.0)
    assert s.latency_p50 == 0.0
    assert not s.errors_by_kind
    assert not s.tokens_by_model


def test_disabled_collector_records_nothing() -> None:
    """With enabled=False every record_* is a no-op and the snapshot is all zeros."""
    clock = FakeClock()
    m = make(enabled=False, clock=clock)
    m.record_success(items=1, tokens=5, latency=0.3, bytes_raw=9, bytes_sent=9)
    m.record_failure(kind="server", latency=0.2)
    m.record_rejected()
    m.on_breaker_transition("closed", "open")
    clock.now += 50
    s = m.snapshot()
    assert m.enabled is False
    assert s.total_requests == s.rejected_requests == s.breaker_opens == s.latency_count == 0
    assert (s.uptime, s.estimated_cost) == (0.0, 0.0)
    assert not s.errors_by_kind
    assert not s.tokens_by_model
    assert not s.requests_by_provider
    assert s == dataclasses.replace(make().snapshot(), uptime=0.0)


def test_empty_snapshot_derived_values_are_zero_safe() -> None:
    """With nothing recorded, rates and averages are 0.0 and the compression ratio is 1.0."""
    s = make().snapshot()
    assert (s.success_rate, s.failure_rate, s.retry_rate) == (0.0, 0.0, 0.0)
    assert (s.average_batch_size, s.average_latency, s.bytes_saved) == (0.0, 0.0, 0)
    assert s.compression_ratio == 1.0
    assert s.cost_known is True


def _busy_snapshot() -> MetricsSnapshot:
    clock = FakeClock()
    m = make(clock=clock)
    m.record_success(items=10, tokens=1234, latency=0.042, bytes_raw=20_000, bytes_sent=5_000)
    m.record_success(
        items=6, tokens=600, latency=0.017, bytes_raw=9_000, bytes_sent=3_000, retry=True
    )
    m.record_failure(kind="rate_limit", latency=0.003)
    m.record_rejected()
    m.on_breaker_transition("closed", "open")
    clock.now += 12.5
    return m.snapshot()


def test_to_dict_from_dict_and_json_round_trip() -> None:
    """to_dict -> JSON -> from_dict rebuilds an equal snapshot; derived values are included."""
    snap = _busy_snapshot()
    data = json.loads(snap.to_json())
    assert data["success_rate"] == pytest.approx(2 / 3)
    assert data["compression_ratio"] == pytest.approx(8_000 / 29_000)
    assert data["errors_by_kind"] == {"rate_limit": 1}
    back = MetricsSnapshot.from_dict(data)
    assert back == snap
    assert back.to_dict() == snap.to_dict()
    assert json.loads(snap.to_json(indent=2)) == data


def test_from_dict_reports_missing_fields_and_tolerates_older_data() -> None:
    """Missing required fields raise ValueError naming them; optional maps default to empty."""
    data = _busy_snapshot().to_dict()
    for optional in ("items_by_provider", "failures_by_provider", "rejected_by_kind"):
        del data[optional]
    assert not MetricsSnapshot.from_dict(data).items_by_provider
    del data["tokens_used"]
    with pytest.raises(ValueError, match="tokens_used"):
        MetricsSnapshot.from_dict(data)


def test_format_mentions_the_key_numbers() -> None:
    """The summary shows requests, success %, retries, percentiles in ms, tokens, cost, bytes."""
    text = _busy_snapshot().format()
    for expected in (
        "openai / text-embedding-3-small",
        "3 total",
        "2 ok (66.7%)",
        "1 failed",
        "1 retries",
        "1 rejected",
        "rate_limit=1",
        "p50 17.0 ms",
        "p95 42.0 ms",
        "p99 42.0 ms",
        "tokens    1834",
        "$0.000037",
        "21000 saved",
        "1 opened",
        "uptime 12.5 s",
    ):
        assert expected in text, expected


def test_snapshot_is_immutable_and_detached_from_the_collector() -> None:
    """Fields cannot be assigned, mappings cannot be written, later records do not leak in."""
    m = make()
    m.record_failure(kind="server", latency=0.1)
    s = m.snapshot()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.total_requests = 99  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.errors_by_kind["server"] = 99  # type: ignore[index]
    m.record_failure(kind="server", latency=0.1)
    m.record_failure(kind="timeout", latency=0.1)
    assert s.total_requests == 1
    assert dict(s.errors_by_kind) == {"server": 1}


def test_snapshot_copies_mappings_passed_to_it() -> None:
    """A snapshot built from a caller's dict is not changed when that dict is."""
    data = _busy_snapshot().to_dict()
    kinds = {"server": 1}
    data["errors_by_kind"] = kinds
    snap = MetricsSnapshot.from_dict(data)
    kinds["server"] = 5
    assert snap.errors_by_kind["server"] == 1


def test_repr_shows_live_counts() -> None:
    """The collector's repr names provider/model and the current outcome counts."""
    m = make()
    m.record_success(items=1, tokens=1, latency=0.1, bytes_raw=1, bytes_sent=1)
    m.record_failure(kind="server", latency=0.1)
    text = repr(m)
    for part in ("provider='openai'", "ok=1", "failed=1"):
        assert part in text


# -- issue 15.6: rejected calls counted as calls; the header names who served -----------------
def test_rejected_calls_are_counted_per_call_not_per_batch() -> None:
    """Three calls sharing one refused batch count 3 rejected calls and 1 rejected request."""
    m = make()
    m.record_rejected()  # the batch, once
    for _ in range(3):
        m.record_rejected_call()  # each caller that got CircuitOpenError
    s = m.snapshot()
    assert (s.rejected_calls, s.rejected_requests) == (3, 1)
    assert s.total_requests == 0
    lines = s.format().splitlines()
    assert lines[1].endswith(", 1 rejected")  # requests: the one batch
    assert "  calls     3 rejected by the open breaker (nothing sent)" in lines


def test_rejected_calls_survive_json_and_reset_and_older_data() -> None:
    """rejected_calls round-trips through JSON, resets to 0, and is 0 in older saved data."""
    m = make()
    m.record_rejected_call()
    data = m.snapshot().to_dict()
    assert MetricsSnapshot.from_dict(data).rejected_calls == 1
    del data["rejected_calls"]
    assert MetricsSnapshot.from_dict(data).rejected_calls == 0
    m.reset()
    assert m.snapshot().rejected_calls == 0
    off = make(enabled=False)
    off.record_rejected_call()
    assert off.snapshot().rejected_calls == 0


def test_header_names_the_primary_when_it_served() -> None:
    """Without a failover the header is 'provider / model', as before."""
    m = make()
    m.record_success(items=3, tokens=30, latency=0.1, bytes_raw=1, bytes_sent=1)
    s = m.snapshot()
    assert s.served_by == ("openai",)
    assert s.format().splitlines()[0].startswith("embedguard metrics: openai / text-embedding-3")


def test_header_names_who_served_after_a_failover() -> None:
    """After a failover the header names the providers that served, most vectors first."""
    m = make()
    m.record_failure(kind="server", latency=0.1)
    m.record_success(
        items=5, tokens=50, latency=0.1, bytes_raw=1, bytes_sent=1, provider="azure-eu"
    )
    only_fallback = m.snapshot()
    assert only_fallback.served_by == ("azure-eu",)
    header = only_fallback.format().splitlines()[0]
    assert header.startswith("embedguard metrics: azure-eu / text-embedding-3-small")
    assert "primary openai" in header
    m.record_success(items=2, tokens=20, latency=0.1, bytes_raw=1, bytes_sent=1)
    mixed = m.snapshot()
    assert mixed.served_by == ("azure-eu", "openai")
    assert (
        mixed.format()
        .splitlines()[0]
        .startswith(
            "embedguard metrics: azure-eu (5 vectors) + openai (2 vectors) / text-embedding-3-small"
        )
    )


def test_header_names_the_models_that_served_when_they_differ() -> None:
    """A fallback on another model (allow_mixed_models) shows both models in the header."""
    m = make()
    m.record_success(
        items=5, tokens=70, latency=0.1, bytes_raw=1, bytes_sent=1,
        provider="mistral", model="mistral-embed",
    )  # fmt: skip
    header = m.snapshot().format().splitlines()[0]
    assert header.startswith("embedguard metrics: mistral / mistral-embed (primary openai / ")
