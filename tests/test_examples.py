"""The examples run as a user runs them: `python examples/X.py`, offline, in seconds."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run one example in a fresh interpreter; fail on a non-zero exit or a traceback."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=EXAMPLES.parent,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_corpus_is_well_formed() -> None:
    """The bundled corpus has about 40 passages with unique ids, a topic and text."""
    lines = (EXAMPLES / "data" / "passages.jsonl").read_text(encoding="utf-8").splitlines()
    passages = [json.loads(line) for line in lines]
    assert len(passages) == 40
    assert len({p["id"] for p in passages}) == 40
    assert all(set(p) == {"id", "topic", "text"} and len(p["text"]) > 50 for p in passages)
    assert len({p["topic"] for p in passages}) >= 15


def test_rag_chain_retrieves_the_right_passages() -> None:
    """rag_chain.py answers its four questions with the matching passage first, then metrics."""
    out = run_example("rag_chain.py").stdout
    assert "Indexed 40 passages" in out
    firsts = re.findall(r"^  1\. \[(\d\.\d+)\] (\w+) ", out, flags=re.MULTILINE)
    assert [name for _, name in firsts] == ["bees", "volcano", "python_gc", "compound_interest"]
    assert all(float(score) > 0.3 for score, _ in firsts)
    assert out.count("Q: ") == 4
    assert "embedguard metrics: local / all-MiniLM-L6-v2" in out  # the embedded model by default
    assert re.search(r"requests\s+\d+ total, \d+ ok \(100\.0%\), 0 failed", out)


def test_vector_store_ingestion_on_the_embedded_model() -> None:
    """By default the ingestion runs offline on the in-process model."""
    out = run_example("vector_store_ingestion.py").stdout
    assert "Ingested 40 documents into 40 nodes (384 dimensions)." in out
    assert "best node from coral" in out


def test_vector_store_ingestion_reports_its_metrics() -> None:
    """vector_store_ingestion.py ingests every document, retrieves, and shows the retried 429
    (on the loopback server, which scripts that 429)."""
    result = run_example("vector_store_ingestion.py", "--provider", "loopback")
    out = result.stdout
    assert "Ingested 40 documents into 40 nodes (256 dimensions)." in out
    assert "best node from coral" in out
    assert re.search(r"^tokens: [1-9]\d*$", out, flags=re.MULTILINE)
    assert re.search(r"^estimated cost: \$0\.\d+$", out, flags=re.MULTILINE)
    assert re.search(r"^p95 latency: \d+\.\d ms$", out, flags=re.MULTILINE)
    assert "retries: 1" in out
    assert "Applying transformations" in result.stderr  # the progress bar (tqdm is installed)


def test_agent_metrics_shows_the_breaker_reacting() -> None:
    """agent_metrics.py: the outage opens the breaker, batches are refused, probes close it."""
    out = run_example("agent_metrics.py").stdout
    assert "--- the provider goes down" in out and "--- the provider is back" in out
    assert re.search(r"circuit=open ", out)
    assert re.search(r"^  \d\.\d\d s  closed -> open$", out, flags=re.MULTILINE)
    assert re.search(r"^  \d\.\d\d s  half_open -> closed$", out, flags=re.MULTILINE)
    assert re.search(r"\(([1-9]\d*) batches\) without sending them", out)
    assert "final state closed" in out
    assert re.search(r"^Calls: 20\d finished: .*\d+ ok", out, flags=re.MULTILINE)
    assert "embedguard metrics: openai" in out


def test_agent_metrics_counts_rejected_calls_as_calls() -> None:
    """agent_metrics.py: the metrics' rejected calls equal the calls that got CircuitOpenError."""
    out = run_example("agent_metrics.py").stdout
    counted = re.search(r"rejected (\d+) calls \(\d+ batches\)", out)
    seen = re.search(r"; (\d+) rejected in all$", out, flags=re.MULTILINE)
    assert counted and seen, out
    assert int(counted.group(1)) == int(seen.group(1)) > 0


@pytest.mark.parametrize("name", ["rag_chain.py", "vector_store_ingestion.py", "agent_metrics.py"])
def test_examples_offer_real_providers(name: str) -> None:
    """Every example documents --provider local|loopback|openai|mistral|azure|ollama."""
    out = run_example(name, "--help").stdout
    assert "--provider {local,loopback,openai,mistral,azure,ollama}" in out
