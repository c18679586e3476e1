"""The benchmark harness keeps working: its floor arithmetic and a quick run of cheap scenarios.

Only embedguard and the hand-written loop run here, so the peers (LangChain, LlamaIndex, openai)
need not be installed; a hidden peer must be reported as skipped, not crash the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import _scenarios as sc  # noqa: E402


def test_floor_of_the_bulk_scenario() -> None:
    """20,000 inputs at 30 ms + 0.2 ms/input on 8 slots, <= 2048 per request: 16 x 1250, 0.56 s."""
    floor = sc.floor_seconds(20_000, latency=0.03, latency_per_input=0.0002, slots=8)
    assert floor == pytest.approx(0.56, abs=1e-6)
    assert sc.even_batch(20_000, 8) == 1250


def test_floor_without_a_per_request_cap_splits_evenly() -> None:
    """Without the 2048 cap the best plan is one request per slot: 30 ms + 20,000 x 0.2 ms / 8."""
    floor = sc.floor_seconds(
        20_000, latency=0.03, latency_per_input=0.0002, slots=8, max_inputs=10**9
    )
    assert floor == pytest.approx(0.03 + 20_000 * 0.0002 / 8, abs=1e-6)


def test_floor_with_zero_per_input_cost_counts_rounds() -> None:
    """With no per-input cost the floor is one latency per round of full slots."""
    one_round = sc.floor_seconds(4_096, latency=0.05, latency_per_input=0.0, slots=2)
    two_rounds = sc.floor_seconds(4_097, latency=0.05, latency_per_input=0.0, slots=2)
    assert one_round == pytest.approx(0.05)
    assert two_rounds == pytest.approx(0.10)


def test_texts_have_forty_words_and_the_asked_share_of_copies() -> None:
    """Inputs are deterministic, 40 words each, and 30% duplicates leave 70% distinct texts."""
    texts = sc.make_texts(1_000, duplicates=0.3)
    assert texts == sc.make_texts(1_000, duplicates=0.3)
    assert {len(t.split()) for t in texts} == {sc.WORDS_PER_TEXT}
    assert len(set(texts)) == 700


def test_quick_run_writes_the_report_and_skips_missing_peers(tmp_path: Path) -> None:
    """A quick S2-base64 + S4 run measures embedguard and the floor; a hidden peer is skipped."""
    env = {**os.environ, "EMBEDGUARD_BENCH_HIDE": "langchain_openai"}
    cmd = [
        sys.executable, str(BENCH / "run.py"), "--quick", "--scenario", "S2-base64,S4",
        "--contender", "embedguard,httpx-floor,langchain", "--out", str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    report = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    s2 = report.split("## S2-base64")[1].split("## S4")[0]
    rows = {line.split("|")[1].strip(): line for line in s2.splitlines() if line.startswith("| ")}
    assert "1.00x" in rows["httpx-floor"]  # the baseline of its own table
    assert "FAILED" not in done.stdout
    cpu = float(rows["embedguard"].split("|")[2])
    assert cpu > 0
    assert "skipped: langchain_openai is not installed" in rows["langchain"]
    s4 = report.split("## S4")[1]
    billed = {line.split("|")[1].strip(): line.split("|")[3].strip() for line in s4.splitlines()
              if line.startswith("| ")}  # fmt: skip
    assert billed["embedguard"] == "1.00x"  # duplicates are sent once
    assert billed["httpx-floor"] == "1.43x"  # 10 / 7: every copy is billed
