"""The benchmark harness keeps working: its floor arithmetic, vector checks, targets, server
setups, a quick run of cheap scenarios and a smoke run of S8-S12.

Only embedguard (core and adapters) and the hand-written loop run here, so the peers (LangChain,
LlamaIndex, openai) need not be installed; a hidden peer must be reported as skipped.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
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


# -- S8-S12: vector checks, targets, server setup and a smoke run -------------------------------


def test_check_vectors_counts_lost_misordered_wrong_and_extra() -> None:
    """Swapped rows are misordered, a changed row wrong, a NaN or missing row lost."""
    from _verify import check_vectors

    from embedguard.testing import deterministic_vectors

    texts = [f"text {i}" for i in range(6)]
    right = deterministic_vectors(texts, 8)
    assert check_vectors(right, texts, 8) == {"lost": 0, "misordered": 0, "wrong": 0, "extra": 0}
    out = right.copy()
    out[[0, 1]] = out[[1, 0]]
    out[2] += 0.01
    out[3, 0] = float("nan")
    counts = check_vectors(np.vstack([out, right[:1]]), texts, 8)
    assert counts == {"lost": 1, "misordered": 2, "wrong": 1, "extra": 1}


def test_check_vectors_reads_lists_of_floats_and_missing_rows() -> None:
    """A list of float lists checks like an array; None and short rows count as lost."""
    from _verify import check_vectors, problems

    from embedguard.testing import deterministic_vectors

    texts = ["a", "b", "c", "d"]
    rows = deterministic_vectors(texts, 4).tolist()
    assert problems(check_vectors(rows, texts, 4)) is None
    damaged = [rows[0], None, rows[2][:3]]
    counts = check_vectors(damaged, texts, 4)
    assert counts == {"lost": 3, "misordered": 0, "wrong": 0, "extra": 0}
    assert problems(counts) == "vectors: 3 lost"


def _outcome(name: str, *walls: float, **fields: Any) -> Any:
    from _cells import Outcome

    return Outcome(name, runs=[{"ok": True, "wall": w, **fields} for w in walls])


def test_one_429_targets_compare_with_the_fault_free_run_and_every_peer() -> None:
    """S9 is met within 1.3x of the fault-free run and ahead of every peer, else missed."""
    from _targets import targets

    s9 = sc.by_key("S9", quick=True)
    runs = [_outcome(sc.EMBEDGUARD, 1.25), _outcome(sc.EMBEDGUARD_CLEAN, 1.0),
            _outcome(sc.LANGCHAIN, 3.0), _outcome(sc.FLOOR_LOOP, 1.3)]  # fmt: skip
    rows = {o.contender: o for o in runs}
    assert all("**met**" in line for line in targets(s9, rows))
    rows[sc.FLOOR_LOOP] = _outcome(sc.FLOOR_LOOP, 1.1)
    rows[sc.EMBEDGUARD] = _outcome(sc.EMBEDGUARD, 1.4)
    missed = targets(s9, rows)
    assert all("**missed**" in line for line in missed)
    assert "not faster than httpx-floor" in missed[1]


def test_flaky_target_needs_every_seed_complete_with_right_vectors() -> None:
    """S10's first target is missed by one failed seed or one wrong vector, met otherwise."""
    from _cells import Outcome
    from _targets import targets

    s10 = sc.by_key("S10", quick=True)
    good = {"ok": True, "wall": 1.0, "vectors": {"lost": 0, "misordered": 0, "wrong": 0}}
    clean = Outcome(sc.EMBEDGUARD_CLEAN, runs=[good] * s10.reps)
    rows = {sc.EMBEDGUARD: Outcome(sc.EMBEDGUARD, runs=[good] * s10.reps), clean.contender: clean}
    assert [("**met**" in line) for line in targets(s10, rows)] == [True, True]
    failed = {"ok": False, "error": "boom", "vectors": {"lost": 10}}
    rows[sc.EMBEDGUARD] = Outcome(sc.EMBEDGUARD, runs=[good] * (s10.reps - 1) + [failed])
    first = targets(s10, rows)[0]
    assert "**missed**" in first
    assert "10 lost" in first


def _post(server: Any, http: Any = httpx) -> httpx.Response:
    body = {"model": "text-embedding-3-small", "input": ["one text"], "dimensions": 8}
    response: httpx.Response = http.post(
        server.base_url("openai") + "/embeddings", json=body, timeout=10.0
    )
    return response


def test_one_429_setup_spares_only_the_fault_free_baseline() -> None:
    """S9's setup answers the first request 429 + Retry-After without rate-limit headers."""
    import run

    from embedguard.testing import EmbeddingServer

    s9 = sc.by_key("S9", quick=True)
    with EmbeddingServer(dimensions=8) as server:
        run._prepare(s9, server, sc.EMBEDGUARD, 0)
        refused = _post(server)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "0.05"
        assert not [h for h in refused.headers if h.startswith("x-ratelimit")]
        assert _post(server).status_code == 200
        run._prepare(s9, server, sc.EMBEDGUARD_CLEAN, 0)
        assert _post(server).status_code == 200


def test_chaos_setup_draws_the_same_faults_for_the_same_repetition() -> None:
    """S10's repetition k injects one seeded sequence of the mix, the same for every contender."""
    import run

    from embedguard.testing import EmbeddingServer

    s10 = sc.by_key("S10", quick=True)

    def faults(contender: str, rep: int) -> list[str | None]:
        run._prepare(s10, server, contender, rep)
        for _ in range(40):
            with contextlib.suppress(httpx.TransportError):  # a dropped connection
                _post(server, http)
        return [r.fault for r in server.requests]

    with EmbeddingServer(dimensions=8) as server, httpx.Client() as http:
        first = faults(sc.EMBEDGUARD, 0)
        assert first == faults(sc.FLOOR_LOOP, 0)
        assert first != faults(sc.EMBEDGUARD, 1)
        assert faults(sc.EMBEDGUARD_CLEAN, 0) == [None] * 40
    assert 0 < sum(f is not None for f in first) < 40
    assert {f for f in first if f is not None} <= set(sc.CHAOS_MIX)


def test_smoke_run_of_the_resilience_scenarios(tmp_path: Path) -> None:
    """A smoke run of S8-S12 checks every vector, writes each table and prints the targets."""
    cmd = [
        sys.executable, str(BENCH / "run.py"), "--smoke", "--scenario", "S8,S9,S10,S11,S12",
        "--contender", "embedguard,embedguard-fault-free,httpx-floor,embedguard-langchain,"
        "embedguard-llamaindex-pipeline", "--out", str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "FAILED" not in done.stdout, done.stdout
    report = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    sections = {part.split(" ")[0]: part for part in report.split("\n## ")[1:]}
    assert set(sections) == {"S8", "S9", "S10", "S11-seq", "S11-burst", "S12"}
    for key, text in sections.items():
        rows = {line.split("|")[1].strip(): line for line in text.splitlines()
                if line.startswith("| ")}  # fmt: skip
        for name in (sc.EMBEDGUARD, sc.FLOOR_LOOP):
            assert "all right" in rows[name], (key, rows[name])
        assert key == "S11-seq" or "- Target: " in text
    s10 = sections["S10"]
    assert "| embedguard | 2/2 | all right |" in s10
    burst = {line.split("|")[1].strip(): line.split("|")[2].strip()
             for line in sections["S11-burst"].splitlines() if line.startswith("| ")}  # fmt: skip
    assert int(burst[sc.FLOOR_LOOP]) == sc.SMOKE_TEXTS // 10  # one request per query
    assert int(burst[sc.EMBEDGUARD]) < int(burst[sc.FLOOR_LOOP])
