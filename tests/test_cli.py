"""The ``embedguard`` command, run as a real subprocess against the loopback server."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from embedguard import MetricsSnapshot, ProviderProfile, profiles
from embedguard.testing import EmbeddingServer, Fault, deterministic_vectors

KEY = "sk-test-PLANTED-CLI-SECRET-77665544"
D = 16
Completed = subprocess.CompletedProcess[str]
_CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}


@pytest.fixture
def server() -> Iterator[EmbeddingServer]:
    """A loopback server with pseudo-random vectors."""
    with EmbeddingServer(dimensions=D) as srv:
        yield srv


def _start(
    *args: str, key: str | None = KEY, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    env = {**_CLEAN_ENV, **({"OPENAI_API_KEY": key} if key else {}), **(env or {})}
    command = [sys.executable, "-m", "embedguard", *args]
    # A test run started in the background (nohup, CI) ignores SIGINT, and children inherit
    # that: give the command the default disposition, as in a terminal.
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip


def run(
    *args: str, key: str | None = KEY, env: dict[str, str] | None = None, timeout: float = 60
) -> Completed:
    """Run ``python -m embedguard ARGS``; checks that the key is never printed."""
    process = _start(*args, key=key, env=env)
    stdout, stderr = process.communicate(timeout=timeout)
    assert KEY not in stdout + stderr
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def openai_args(server: EmbeddingServer, *extra: str) -> list[str]:
    """Flags aiming the openai profile at the server, with D-dimensional vectors."""
    url = server.base_url("openai")
    return ["--profile", "openai", "--base-url", url, "--dimensions", str(D), *extra]


def assert_one_error_line(result: subprocess.CompletedProcess[str], status: int) -> str:
    """The run failed with ``status`` and exactly one 'embedguard: error:' line on stderr."""
    assert result.returncode == status, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("embedguard: error: ")
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


def sent_inputs(server: EmbeddingServer) -> list[str]:
    """Every text the server received, in order."""
    return [t for r in server.requests for t in r.inputs]


# -- embed: formats ----------------------------------------------------------------------------
def test_text_file_to_npy(server: EmbeddingServer, tmp_path: Path) -> None:
    """One text per line -> float32 (n, d) .npy in input order; duplicates sent once."""
    lines = ["first line", "second line", "first line", "  third, with spaces  ", "fourth"]
    source = tmp_path / "docs.txt"
    source.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    out = tmp_path / "docs.npy"
    result = run("embed", str(source), "-o", str(out), *openai_args(server))
    assert result.returncode == 0, result.stderr
    vectors = np.load(out)
    assert vectors.dtype == np.float32 and vectors.shape == (5, D)
    np.testing.assert_array_equal(vectors, deterministic_vectors(lines, D))
    assert sorted(sent_inputs(server)) == sorted(set(lines))
    assert f"wrote 5 vectors of {D} dimensions" in result.stdout
    assert "embedguard metrics: openai" in result.stdout and "4 embedded" in result.stdout
    assert "embedding" in result.stderr  # the progress bar
    assert not (tmp_path / "docs.npy.partial").exists()


def test_jsonl_field_to_jsonl_output(server: EmbeddingServer, tmp_path: Path) -> None:
    """A JSONL field is embedded; the .jsonl output holds {"index", "vector"} per record."""
    records = [{"id": i, "body": f"record {i} é ✓"} for i in range(7)]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in records) + "\n\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    args = openai_args(server, "--field", "body", "--no-progress")
    result = run("embed", str(source), "-o", str(out), *args)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert [row["index"] for row in rows] == list(range(7))
    got = np.array([row["vector"] for row in rows], dtype=np.float32)
    np.testing.assert_array_equal(got, deterministic_vectors([r["body"] for r in records], D))
    assert result.stderr == ""


def test_csv_column(server: EmbeddingServer, tmp_path: Path) -> None:
    """A CSV column is embedded, quoted commas and newlines included."""
    texts = ["plain", "with, a comma", 'with "quotes"', "two\nlines"]
    source = tmp_path / "table.csv"
    with source.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["id", "content"])
        writer.writerows([i, t] for i, t in enumerate(texts))
    out = tmp_path / "table.npy"
    result = run("embed", str(source), "-o", str(out), *openai_args(server, "--column", "content"))
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.load(out), deterministic_vectors(texts, D))


def test_empty_lines_error_or_skip(server: EmbeddingServer, tmp_path: Path) -> None:
    """An empty line is an error naming it; --skip-empty skips it and .jsonl keeps positions."""
    source = tmp_path / "gaps.txt"
    source.write_text("one\ntwo\n   \nfour\n", encoding="utf-8")
    out = tmp_path / "gaps.jsonl"
    refused = run("embed", str(source), "-o", str(out), *openai_args(server))
    assert "line 3 is empty" in assert_one_error_line(refused, 2)
    assert server.requests == [] and not out.exists()
    args = openai_args(server, "--skip-empty", "--no-progress")
    result = run("embed", str(source), "-o", str(out), *args)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert [row["index"] for row in rows] == [0, 1, 3]
    expected = deterministic_vectors(["one", "two", "four"], D)
    np.testing.assert_array_equal(np.array([r["vector"] for r in rows], np.float32), expected)
    assert "1 empty skipped" in result.stdout


# -- embed: resume -----------------------------------------------------------------------------
def _numbered(tmp_path: Path, n: int) -> tuple[Path, list[str]]:
    texts = [f"text number {i}" for i in range(n)]
    source = tmp_path / "many.txt"
    source.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return source, texts


def _answered(server: EmbeddingServer) -> list[tuple[str, ...]]:
    """The inputs of every request the server answered with vectors."""
    return [r.inputs for r in server.requests if r.status == 200]


def _chunk_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("chunk*"))


def _wait_for(done: Callable[[], bool], process: subprocess.Popen[str], what: str) -> None:
    """Poll (the subprocess has its own clock) until ``done()``; fail after 30 s."""
    deadline = time.monotonic() + 30
    while not done():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            _, stderr = process.communicate()
            pytest.fail(f"gave up waiting for {what}; the command said: {stderr}")
        time.sleep(0.01)


def test_resume_after_a_permanent_failure(server: EmbeddingServer, tmp_path: Path) -> None:
    """A 401 stops the run; what completed is saved, and the rerun sends only the rest."""
    source, texts = _numbered(tmp_path, 11)
    out = tmp_path / "many.npy"
    chunking = ["--batch-size", "2", "--chunk-size", "2", "--no-progress"]
    server.script(Fault.delay(0), Fault.delay(0), Fault.status(401))
    failed = run("embed", str(source), "-o", str(out), *openai_args(server, *chunking))
    line = assert_one_error_line(failed, 1)
    saved = {t for inputs in _answered(server) for t in inputs}
    assert "status 401" in line and f"{len(saved)} of 11 texts saved" in line and "rerun" in line
    assert len(saved) >= 4 and not out.exists()
    assert len(_chunk_files(tmp_path / "many.npy.partial")) == len(_answered(server))

    server.reset()
    resumed = run("embed", str(source), "-o", str(out), *openai_args(server, *chunking))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming: {len(saved)} of 11 texts already done" in resumed.stdout
    assert sorted(sent_inputs(server)) == sorted(set(texts) - saved)  # nothing paid twice
    np.testing.assert_array_equal(np.load(out), deterministic_vectors(texts, D))
    assert not (tmp_path / "many.npy.partial").exists()


@pytest.mark.parametrize("chunking", [["--chunk-size", "3"], []], ids=["chunk-3", "default"])
def test_interrupt_resends_nothing_that_completed(tmp_path: Path, chunking: list[str]) -> None:
    """Ctrl-C: exit 130 with a resume hint; the rerun sends only the request cut short."""
    source, texts = _numbered(tmp_path, 24)
    out = tmp_path / "many.npy"
    partial = tmp_path / "many.npy.partial"
    with EmbeddingServer(dimensions=D) as server:
        # Eight requests of three; the third to arrive hangs until the interrupt.
        server.script(Fault.delay(0), Fault.delay(0), Fault.delay(60))
        args = openai_args(server, "--batch-size", "3", *chunking, "--no-progress")
        process = _start("embed", str(source), "-o", str(out), *args)
        _wait_for(lambda: len(_answered(server)) == 7, process, "7 answered requests")
        _wait_for(lambda: len(_chunk_files(partial)) == 7, process, "7 saved chunks")
        hung = next(r.inputs for r in server.requests if r.status == 0)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 130, stderr
        assert "embedguard: error: interrupted [21 of 24 texts saved" in stderr
        assert "rerun the same command" in stderr and "Traceback" not in stderr
        server.reset()
        resumed = run("embed", str(source), "-o", str(out), *args)
        assert resumed.returncode == 0, resumed.stderr
        assert sent_inputs(server) == list(hung)  # completed requests are not sent again
    np.testing.assert_array_equal(np.load(out), deterministic_vectors(texts, D))


def test_appending_input_keeps_finished_work(server: EmbeddingServer, tmp_path: Path) -> None:
    """A line appended after a failure: the rerun says the input changed and reuses the rest."""
    source, texts = _numbered(tmp_path, 6)
    out = tmp_path / "many.npy"
    chunking = openai_args(server, "--chunk-size", "2", "--no-progress")
    server.script(Fault.delay(0), Fault.status(401))
    assert run("embed", str(source), "-o", str(out), *chunking).returncode == 1
    saved = {t for inputs in _answered(server) for t in inputs}
    assert saved
    source.write_text("\n".join([*texts, "one more"]) + "\n", encoding="utf-8")
    server.reset()
    result = run("embed", str(source), "-o", str(out), *chunking)
    assert result.returncode == 0, result.stderr
    assert "the input changed since the checkpoint was saved" in result.stdout
    assert f"resuming: {len(saved)} of 7 texts already done" in result.stdout
    assert sorted(sent_inputs(server)) == sorted({*texts, "one more"} - saved)
    np.testing.assert_array_equal(np.load(out), deterministic_vectors([*texts, "one more"], D))


def test_changed_setting_is_named_and_no_resume_discards(
    server: EmbeddingServer, tmp_path: Path
) -> None:
    """Other settings: refused naming the setting; --no-resume discards and says so."""
    source, texts = _numbered(tmp_path, 6)
    out = tmp_path / "many.npy"
    server.script(Fault.delay(0), Fault.status(401))
    chunking = ["--chunk-size", "2", "--no-progress"]
    first = run("embed", str(source), "-o", str(out), *openai_args(server, *chunking))
    assert first.returncode == 1
    other = ["--profile", "openai", "--base-url", server.base_url("openai"), "--dimensions", "8"]
    refused = run("embed", str(source), "-o", str(out), *other, *chunking)
    line = assert_one_error_line(refused, 2)
    assert "dimensions 16 -> 8" in line and "--no-resume" in line
    server.reset()
    result = run("embed", str(source), "-o", str(out), *other, *chunking, "--no-resume")
    assert result.returncode == 0, result.stderr
    assert "discarded the checkpoint" in result.stdout and "--no-resume" in result.stdout
    assert sorted(sent_inputs(server)) == sorted(texts)
    assert np.load(out).shape == (6, 8)


# -- errors ------------------------------------------------------------------------------------
_BAD_TOML = 'provider = "openai"\nmodel = \n'
_BAD_INPUT = {
    "missing input": (["embed", "{tmp}/nope.txt"], "nope.txt"),
    "unknown column": (["embed", "{tmp}/t.csv", "--column", "body"], "no column 'body'"),
    "unknown field": (["embed", "{tmp}/t.jsonl", "--field", "body"], "no field 'body'"),
    "not json": (["embed", "{tmp}/bad.jsonl"], "line 1 is not JSON"),
    "unknown profile": (["embed", "{tmp}/t.txt", "--profile", "nope"], "unknown profile"),
    "missing key": (["embed", "{tmp}/t.txt", "--profile", "openai"], "OPENAI_API_KEY"),
    "bad toml": (["embed", "{tmp}/t.txt", "--profile-file", "{tmp}/bad.toml"], "TOML"),
    "no toml": (["embed", "{tmp}/t.txt", "--profile-file", "{tmp}/no.toml"], "no.toml"),
    "bad output": (["embed", "{tmp}/t.txt", "-o", "{tmp}/x.csv"], ".npy or .jsonl"),
    "bad batch": (["embed", "{tmp}/t.txt", "--batch-size", "0"], "--batch-size"),
    "bad option": (["embed", "{tmp}/t.txt", "--frobnicate"], "--frobnicate"),
    "no command": ([], "required"),
    "bad profile name": (["profiles", "nope"], "unknown profile"),
    "missing metrics": (["metrics", "{tmp}/none.json"], "none.json"),
    "bad metrics": (["metrics", "{tmp}/t.jsonl"], "missing fields"),
}


@pytest.fixture(scope="module")
def bad_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every bad-input case, run as concurrent subprocesses (no key in the environment)."""
    tmp = tmp_path_factory.mktemp("bad")
    (tmp / "t.txt").write_text("hello\n", encoding="utf-8")
    (tmp / "t.csv").write_text("id,text\n1,hello\n", encoding="utf-8")
    (tmp / "t.jsonl").write_text('{"text": "hello"}\n', encoding="utf-8")
    (tmp / "bad.jsonl").write_text("{not json}\n", encoding="utf-8")
    (tmp / "bad.toml").write_text(_BAD_TOML, encoding="utf-8")
    started = {
        case: _start(*(a.format(tmp=tmp) for a in args), key=None)
        for case, (args, _) in _BAD_INPUT.items()
    }
    results = {}
    for case, process in started.items():
        stdout, stderr = process.communicate(timeout=60)
        results[case] = subprocess.CompletedProcess(
            process.args, process.returncode, stdout, stderr
        )
    return results


@pytest.mark.parametrize("case", list(_BAD_INPUT))
def test_bad_input_is_one_line_and_status_2(bad_runs: dict[str, Completed], case: str) -> None:
    """Each usage or input error: one 'embedguard: error:' line, exit 2, no traceback."""
    result = bad_runs[case]
    assert _BAD_INPUT[case][1] in assert_one_error_line(result, 2)
    assert result.stdout == ""


def test_provider_failure_is_one_line_and_status_1(tmp_path: Path) -> None:
    """A rejected key at run time: one line, exit 1, the key redacted."""
    source = tmp_path / "t.txt"
    source.write_text("hello\n", encoding="utf-8")
    with EmbeddingServer(dimensions=D, require_key="sk-the-right-one") as server:
        result = run("embed", str(source), *openai_args(server, "--no-progress"))
    line = assert_one_error_line(result, 1)
    assert "status 401" in line and "rerun" not in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]  # no output, no checkpoint


# -- profiles and metrics ----------------------------------------------------------------------
def test_profiles_table_lists_every_builtin() -> None:
    """`profiles` prints one row per built-in profile with its key settings."""
    result = run("profiles")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert set(profiles.names()) <= set(rows)
    assert "text-embedding-3-small" in rows["openai"] and "1,536" in rows["openai"]
    assert rows["local"].rstrip().endswith("off")  # the local breaker


@pytest.mark.parametrize("name", ["openai", "mistral", "local"])
def test_profile_as_toml_round_trips(name: str) -> None:
    """`profiles NAME` prints TOML that loads back to the same profile."""
    result = run("profiles", name)
    assert result.returncode == 0, result.stderr
    assert ProviderProfile.from_toml(result.stdout) == profiles.get(name)


def test_profile_file_and_metrics_out(server: EmbeddingServer, tmp_path: Path) -> None:
    """--profile-file drives the run; --metrics-out saves a snapshot `metrics` formats."""
    profile = profiles.openai(base_url=server.base_url("openai"), dimensions=D, name="staging")
    (tmp_path / "p.toml").write_text(profile.to_toml(), encoding="utf-8")
    source = tmp_path / "t.txt"
    source.write_text("alpha\nbeta\n", encoding="utf-8")
    saved = tmp_path / "m.json"
    args = ["--profile-file", str(tmp_path / "p.toml"), "--metrics-out", str(saved)]
    result = run("embed", str(source), "-o", str(tmp_path / "t.npy"), *args)
    assert result.returncode == 0, result.stderr
    snapshot = MetricsSnapshot.from_dict(json.loads(saved.read_text("utf-8")))
    assert snapshot.provider == "staging" and snapshot.items_embedded == 2
    shown = run("metrics", str(saved))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == snapshot.format()


# -- the local model ---------------------------------------------------------------------------
@pytest.mark.slow
def test_embed_defaults_to_the_local_model(tmp_path: Path) -> None:
    """Without --profile, `embed` uses the bundled local model (no key) and writes INPUT.npy."""
    pytest.importorskip("sentence_transformers")
    source = tmp_path / "docs.txt"
    source.write_text("The cat sat on the mat.\nA dog barked.\nThe cat sat on the mat.\n", "utf-8")
    result = run("embed", str(source), "--no-progress", key=None, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # not even the model library's loading bar
    vectors = np.load(tmp_path / "docs.npy")
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors[0], vectors[2])
    assert "embedguard metrics: local / all-MiniLM-L6-v2" in result.stdout


# -- the demo ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_demo_runs_end_to_end_offline() -> None:
    """`embedguard demo` ingests the corpus with the real local model and answers questions."""
    pytest.importorskip("langchain_core")
    pytest.importorskip("sentence_transformers")
    result = run("demo", key=None, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "provider: local / all-MiniLM-L6-v2" in out
    assert "[2/4] Ingesting 300 passages" in out and "300 passages embedded" in out
    assert "6 of 6 questions got a passage from the expected topic first" in out
    assert "embedguard metrics: local / all-MiniLM-L6-v2" in out
    assert "circuit breaker: closed" in out
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_demo_stays_offline_when_a_key_is_set() -> None:
    """With OPENAI_API_KEY set and no --provider, the demo still runs offline and says so."""
    pytest.importorskip("langchain_core")
    pytest.importorskip("sentence_transformers")
    with EmbeddingServer(vectors="lexical") as server:
        result = run("demo", env={"OPENAI_BASE_URL": server.base_url("openai")}, timeout=300)
        requests = len(server.requests)
    assert result.returncode == 0, result.stderr
    assert requests == 0  # nothing went to the (here: loopback) paid API
    out = result.stdout
    assert "provider: local / all-MiniLM-L6-v2 (in-process, offline, no key;" in out
    assert "OPENAI_API_KEY is set but not used; --provider openai uses it" in out
    assert "6 of 6 questions got a passage from the expected topic first" in out


def test_demo_uses_openai_when_asked() -> None:
    """With --provider openai the demo runs over HTTP (here: the loopback server)."""
    pytest.importorskip("langchain_core")
    with EmbeddingServer(vectors="lexical") as server:
        env = {"OPENAI_BASE_URL": server.base_url("openai")}
        result = run("demo", "--provider", "openai", env=env)
        requests = len(server.requests)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    chosen = "provider: openai / text-embedding-3-small (over HTTP; chosen by --provider openai)"
    assert chosen in out
    assert "[1/4] Checking the openai endpoint" in out and "1536-dimensional vectors" in out
    assert "300 passages embedded" in out and "Q6." in out
    assert f"requests  {requests} total, {requests} ok" in out  # 1 + 10 batches + 6 questions
    assert requests == 17 and "circuit breaker: closed" in out


def test_a_failure_names_the_line_of_the_input_not_of_its_chunk(
    server: EmbeddingServer, tmp_path: Path
) -> None:
    """A text refused in a later chunk is named by its position in the whole input file."""
    lines = [f"line {i}" for i in range(50)]
    lines[40] = "word " * 20_000  # over the model's per-input limit
    source = tmp_path / "t.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run("embed", str(source), *openai_args(server, "--no-progress"))
    line = assert_one_error_line(result, 2 if result.returncode == 2 else 1)
    assert "input 40" in line, line
