"""Ray Data integration: every row kept in order, exact vectors, failed rows marked exactly."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("ray.data", reason="ray is not installed (pip install 'embedguard[ray]')")

import ray
import ray.data

import embedguard
from embedguard import ConfigurationError, profiles
from embedguard.core.metrics import MetricsCollector
from embedguard.integrations.ray import (
    EmbedBatches,
    MetricsSink,
    combine_snapshots,
    embed_dataset,
)
from embedguard.testing import EmbeddingServer, deterministic_vectors

pytestmark = pytest.mark.filterwarnings(
    # Ray Data's DataContext warns about its own deprecated settings when it is created.
    "ignore::DeprecationWarning:ray.data.context"
)

D = 16
MAX_TOKENS = 20  # the server counts one token per word
KEY_VAR = "EMBEDGUARD_RAY_TEST_KEY"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ray_bulk_ingestion.py"


def _texts(n: int, long_rows: set[int]) -> list[str]:
    """Distinct texts; the ``long_rows`` ones are over the server's context limit."""
    return [f"row {i} " + ("word " * 30 if i in long_rows else "short text") for i in range(n)]


def _profile(server: EmbeddingServer, **changes: Any) -> Any:
    return profiles.openai(
        base_url=server.base_url("openai"),
        dimensions=D,
        api_key_env=KEY_VAR,
        batching={"max_inputs": 16},
        retry={"initial_delay": 0.001, "max_delay": 0.01},
        **changes,
    )


@pytest.fixture
def server() -> Iterator[EmbeddingServer]:
    """A loopback server that rejects inputs over MAX_TOKENS words with a 400."""
    with EmbeddingServer(dimensions=D, max_input_tokens=MAX_TOKENS) as srv:
        yield srv


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """A local 2-CPU Ray cluster whose workers see the key variable; order preserved."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_VAR, "sk-ray-test")  # workers inherit the driver's environment
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.execution_options.preserve_order = True
        try:
            yield
        finally:
            ray.shutdown()


# -- the example, first: it starts its own cluster, so none runs in this process meanwhile ------
def test_example_embeds_and_reports_failed_rows() -> None:
    """ray_bulk_ingestion.py --n 500 keeps every row, marks the one long text, prints metrics."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--n", "500", "--batch-size", "100"],
        capture_output=True,
        text=True,
        timeout=80,
        cwd=EXAMPLE.parent.parent,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert re.search(r"^Embedded 499 of 500 rows in [\d.]+ s with 2 actors$", out, re.MULTILINE)
    assert re.search(r"^Throughput: \d+ rows/s", out, re.MULTILINE)
    assert "Failed rows: 1\n  id 250: context_length: " in out
    assert re.search(r"requests\s+\d+ total", out)
    assert "items     499 embedded" in out
    assert "Every row kept, in order: True; vectors match the server: True" in out


# -- EmbedBatches called directly (no cluster) --------------------------------------------------
def test_batch_call_marks_exactly_the_failed_rows(
    server: EmbeddingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A numpy batch gets exact vectors; long, empty and None rows are marked, zero-filled."""
    monkeypatch.setenv(KEY_VAR, "sk-ray-test")
    texts: list[Any] = _texts(40, long_rows={2, 17, 39})
    texts[5], texts[30] = "", None
    embed = EmbedBatches(_profile(server).to_dict())
    out = embed({"id": np.arange(40), "text": np.array(texts, dtype=object)})

    assert out["id"].tolist() == list(range(40))
    assert out["embedding"].dtype == np.float32 and out["embedding"].shape == (40, D)
    failed = {2, 5, 17, 30, 39}
    assert [i for i in range(40) if not out["embedding_ok"][i]] == sorted(failed)
    assert [str(e).split(":")[0] for e in out["embedding_error"][sorted(failed)]] == [
        "context_length", "input", "context_length", "input", "context_length"
    ]  # fmt: skip
    good = [i for i in range(40) if i not in failed]
    assert all(out["embedding_error"][i] is None for i in good)
    assert (out["embedding"][good] == deterministic_vectors([texts[i] for i in good], D)).all()
    assert not out["embedding"][sorted(failed)].any()
    assert embed._client.metrics().cache_hits > 0  # the good rows came back from the cache
    embed.close()


def test_batch_call_without_cache_sends_the_good_rows_again(
    server: EmbeddingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With cache=None the rows around a failure are re-sent, and still come out exact."""
    monkeypatch.setenv("OTHER_KEY_VAR", "sk-other")
    texts = _texts(10, long_rows={4})
    embed = EmbedBatches(
        _profile(server), api_key_env="OTHER_KEY_VAR", client_kwargs={"cache": None}
    )
    out = embed({"text": np.array(texts)})
    embed.close()
    assert out["embedding_ok"].tolist() == [i != 4 for i in range(10)]
    sent = [t for r in server.requests if r.status == 200 for t in r.inputs]
    assert sorted(sent) == sorted([t for i, t in enumerate(texts) if i != 4] * 2)
    good = [i for i in range(10) if i != 4]
    assert (out["embedding"][good] == deterministic_vectors([texts[i] for i in good], D)).all()


def test_batch_in_which_every_row_fails_is_zero_filled(
    server: EmbeddingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An outage marks every row with its error kind; vectors are zeros of the profile's size."""
    monkeypatch.setenv(KEY_VAR, "sk-ray-test")
    server.set_down(status=401)
    embed = EmbedBatches(_profile(server))
    out = embed({"text": np.array(_texts(6, set()))})
    embed.close()
    assert out["embedding"].shape == (6, D) and not out["embedding"].any()
    assert not out["embedding_ok"].any()
    assert all(str(e).startswith("authentication: ") for e in out["embedding_error"])


def test_unknown_dimensions_and_total_failure_raise(
    server: EmbeddingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no known vector size an all-failed batch cannot be zero-filled: its error is raised."""
    monkeypatch.setenv(KEY_VAR, "sk-ray-test")
    server.set_down(status=401)
    profile = _profile(server).evolve(dimensions=None)
    embed = EmbedBatches(profile)
    with pytest.raises(embedguard.AuthenticationError):
        embed({"text": np.array(["a text"])})
    embed.close()


def test_options_are_checked(server: EmbeddingServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key in client_kwargs, a missing key variable or an unknown column is refused."""
    monkeypatch.delenv(KEY_VAR, raising=False)
    with pytest.raises(ConfigurationError, match="api_key_env"):
        EmbedBatches(_profile(server))
    monkeypatch.setenv(KEY_VAR, "sk-ray-test")
    with pytest.raises(ConfigurationError, match=r"client_kwargs\.api_key"):
        EmbedBatches(_profile(server), client_kwargs={"api_key": "sk-x"})
    embed = EmbedBatches(_profile(server))
    with pytest.raises(ConfigurationError, match="text_column"):
        embed({"body": np.array(["a"])})
    embed.close()
    with pytest.raises(ConfigurationError, match="batch_format"):
        embed_dataset(None, _profile(server), batch_format="pyarrow")  # refused before any use


def test_shared_state_reaches_each_actors_client(
    server: EmbeddingServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """shared_state gives each actor's client the Redis-backed breaker and limiter; with Redis
    unreachable the actor still embeds every row on local state."""
    from embedguard.core.shared_state import RedisCircuitBreaker

    monkeypatch.setenv(KEY_VAR, "sk-ray-test")
    embed = EmbedBatches(_profile(server), shared_state="redis://127.0.0.1:1/0")  # nobody there
    try:
        assert isinstance(embed._client._breaker, RedisCircuitBreaker)
        texts = [f"fleet text {i}" for i in range(8)]
        out = embed({"text": np.array(texts, dtype=object)})
        np.testing.assert_array_equal(out["embedding"], deterministic_vectors(texts, D))
        assert out["embedding_ok"].all()
    finally:
        embed.close()
    assert "shared state unavailable" in caplog.text


def test_combine_snapshots_sums_counters_and_takes_worst_percentiles() -> None:
    """Counters and mappings add up; percentiles and maxima are the worst actor's."""
    a = MetricsCollector(provider="openai", model="m")
    b = MetricsCollector(provider="openai", model="m")
    a.record_success(items=10, tokens=100, latency=0.01, bytes_raw=50, bytes_sent=40)
    b.record_success(items=5, tokens=30, latency=0.2, bytes_raw=20, bytes_sent=20)
    b.record_failure(kind="server", latency=0.05)
    fleet = combine_snapshots([a.snapshot(), b.snapshot()])
    assert (fleet.total_requests, fleet.successful_requests, fleet.failed_requests) == (3, 2, 1)
    assert (fleet.items_embedded, fleet.tokens_used, fleet.bytes_sent) == (15, 130, 60)
    assert fleet.errors_by_kind == {"server": 1}
    assert fleet.latency_sum == pytest.approx(0.26)
    assert fleet.latency_max == fleet.latency_p99 == pytest.approx(0.2)
    assert (fleet.provider, fleet.model) == ("openai", "m")
    assert combine_snapshots([]).total_requests == 0


# -- on a local cluster --------------------------------------------------------------------------
@pytest.mark.usefixtures("cluster")
def test_embed_dataset_keeps_every_row_and_marks_failures(server: EmbeddingServer) -> None:
    """An actor pool embeds 300 rows in order, exactly, with the 3 long rows marked."""
    long_rows = {3, 150, 299}
    texts = _texts(300, long_rows)
    ds = ray.data.from_items([{"id": i, "text": t} for i, t in enumerate(texts)])
    sink = MetricsSink()
    out = embed_dataset(ds, _profile(server), concurrency=2, batch_size=50, metrics=sink)
    rows = out.take_all()

    assert [r["id"] for r in rows] == list(range(300))
    assert [r["text"] for r in rows] == texts
    assert {i for i, r in enumerate(rows) if not r["embedding_ok"]} == long_rows
    assert all(str(rows[i]["embedding_error"]).startswith("context_length: ") for i in long_rows)
    vectors = np.stack([r["embedding"] for r in rows])
    good = [i for i in range(300) if i not in long_rows]
    assert (vectors[good] == deterministic_vectors([texts[i] for i in good], D)).all()
    assert not vectors[sorted(long_rows)].any()
    assert str(out.schema().types[out.schema().names.index("embedding")]).startswith("ArrowTensor")

    fleet = sink.collect()
    assert 1 <= len(sink.snapshots()) <= 2
    assert fleet.items_embedded == len(good)  # distinct texts: each good one sent once, counted
    assert fleet.errors_by_kind["context_length"] >= len(long_rows)


@pytest.mark.usefixtures("cluster")
def test_pandas_batches_and_custom_columns(server: EmbeddingServer) -> None:
    """batch_format="pandas" with renamed columns gives the same exact, ordered result."""
    texts = _texts(120, long_rows={60})
    ds = ray.data.from_items([{"body": t} for t in texts])
    rows = embed_dataset(
        ds,
        _profile(server),
        text_column="body",
        vector_column="vec",
        ok_column="ok",
        error_column="why",
        batch_format="pandas",
        batch_size=40,
    ).take_all()  # not to_pandas(): Ray's own concatenation warns under pandas 3
    assert [r["body"] for r in rows] == texts
    assert [r["ok"] for r in rows] == [i != 60 for i in range(120)]
    assert str(rows[60]["why"]).startswith("context_length: ")
    assert sum(r["why"] is None for r in rows) == 119
    vectors = np.stack([r["vec"] for r in rows])
    good = [i for i in range(120) if i != 60]
    assert vectors.dtype == np.float32 and vectors.shape == (120, D)
    assert (vectors[good] == deterministic_vectors([texts[i] for i in good], D)).all()
