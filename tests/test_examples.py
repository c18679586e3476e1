"""The examples run as a user runs them: `python examples/X.py`, offline, in seconds."""

from __future__ import annotations

import json
import re
import shutil
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


def ingestion_numbers(out: str) -> dict[str, int]:
    """What one run of vector_store_ingestion.py reports: index() counts, requests, items."""
    patterns = {
        "documents": r"^Split (\d+) documents into \d+ chunks",
        "chunks": r"^Split \d+ documents into (\d+) chunks",
        "new": r"; (\d+) new or changed",
        "added": r"^Indexed: (\d+) added",
        "updated": r" (\d+) updated",
        "skipped": r" (\d+) skipped",
        "deleted": r" (\d+) deleted",
        "stored": r"The collection holds (\d+) chunks",
        "requests": r"^  requests  (\d+) total",
        "items": r"^  items     (\d+) embedded",
        "served": r"^The loopback server received (\d+) embedding requests",
        "served_inputs": r"^The loopback server received \d+ embedding requests \((\d+) texts\)",
    }
    found = {key: re.search(pattern, out, flags=re.MULTILINE) for key, pattern in patterns.items()}
    return {key: int(match.group(1)) for key, match in found.items() if match is not None}


def test_vector_store_ingestion_reruns_send_no_requests(tmp_path: Path) -> None:
    """vector_store_ingestion.py into Qdrant with a SQLRecordManager: the first run embeds every
    chunk, a rerun sends 0 requests, and after one document changes only its chunks are re-sent."""
    corpus = tmp_path / "passages.jsonl"
    shutil.copy(EXAMPLES / "data" / "passages.jsonl", corpus)
    args = ("--provider", "loopback", "--store", str(tmp_path / "store"), "--corpus", str(corpus))

    first = run_example("vector_store_ingestion.py", *args)
    one = ingestion_numbers(first.stdout)
    chunks = one["chunks"]
    assert one["documents"] == 40 and chunks > 40  # every passage is split into chunks
    assert one["new"] == one["added"] == one["stored"] == chunks
    assert one["updated"] == one["skipped"] == one["deleted"] == 0
    assert one["items"] == one["served_inputs"] == chunks  # each chunk embedded once, no probe
    assert one["requests"] == one["served"] >= 1
    assert re.search(r"Indexing: 100%.*\b" + str(chunks) + "/" + str(chunks), first.stderr)

    second = ingestion_numbers(run_example("vector_store_ingestion.py", *args).stdout)
    assert second["requests"] == second["served"] == 0  # nothing was sent: the rerun is free
    assert second["items"] == second["added"] == second["deleted"] == second["new"] == 0
    assert second["skipped"] == second["stored"] == chunks

    passages = [json.loads(line) for line in corpus.read_text(encoding="utf-8").splitlines()]
    for passage in passages:
        if passage["id"] == "coral":
            passage["text"] = "Coral reefs recover from bleaching when the water cools again."
    corpus.write_text("".join(json.dumps(p) + "\n" for p in passages), encoding="utf-8")
    third_run = run_example("vector_store_ingestion.py", *args).stdout
    third = ingestion_numbers(third_run)
    assert "(1 document: coral)" in third_run
    assert third["new"] == third["added"] == third["items"] == third["served_inputs"] == 1
    assert third["requests"] == third["served"] == 1  # the new chunk, in one request
    assert third["deleted"] >= 1  # coral's old chunks left the store
    assert third["skipped"] == chunks - third["deleted"]
    assert third["stored"] == chunks - third["deleted"] + 1


def test_vector_store_ingestion_on_the_embedded_model(tmp_path: Path) -> None:
    """By default the ingestion runs offline on the in-process model, embedding each chunk once."""
    out = run_example("vector_store_ingestion.py", "--store", str(tmp_path / "store")).stdout
    assert "all-MiniLM-L6-v2" in out and "(384 dimensions)" in out
    numbers = ingestion_numbers(out)
    assert numbers["documents"] == 40 and numbers["chunks"] > 40
    assert numbers["added"] == numbers["items"] == numbers["stored"] == numbers["chunks"]
    assert numbers["requests"] >= 1


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
