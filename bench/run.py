"""embedguard benchmarks against its peers, measured in one run against the same loopback server.

Run ``make bench`` (or ``.venv/bin/python bench/run.py``); ``--quick`` scales every size down.
Writes ``bench/RESULTS.md`` and ``bench/results.png``. Absolute numbers depend on the machine and
are printed, never asserted; compare the ratios, which are measured within one run.

How a measurement is made: the orchestrator (this process) starts an ``EmbeddingServer`` per
scenario and, for each repetition and contender, a fresh worker subprocess
(``run.py --worker --scenario S1 --contender X --base-url URL``). The worker imports its library,
builds the client, warms it up, says READY and waits; the orchestrator resets the server (and, per
scenario, drains its rate-limit bucket or takes it down), then says GO. The worker measures wall
time, CPU time (getrusage) and peak RSS of the measured part only, and prints one JSON line.
Contenders whose library is not installed are skipped with a note.

Before each measured run the orchestrator sets the server up as the scenario says (``setup``):
spend its token bucket (S3), take it down (S7), script one header-less 429 (S9), or inject
seeded chaos (S10: repetition k draws its faults with seed k, the same for every contender);
``embedguard-fault-free`` is spared the faults and is the baseline of S9 and S10. In S8-S12
the worker checks every vector against ``deterministic_vectors`` after the clock stops, and the
report prints each scenario's targets as met or missed.

Options: ``--scenario S1,S4`` and ``--contender embedguard,httpx-floor`` select a subset;
``--out DIR`` writes the report elsewhere; ``--smoke`` runs tiny sizes (the test suite's check
that the harness works); ``--profile DIR`` saves a cProfile of every embedguard
worker. The environment variable ``EMBEDGUARD_BENCH_HIDE=mod1,mod2`` treats those modules as not
installed (to exercise the skip path).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _scenarios as sc  # noqa: E402
from _report import Outcome, write_report  # noqa: E402

_TAG = b"@@BENCH "
_READY_TIMEOUT = 180.0


class Worker:
    """One worker subprocess and its line protocol."""

    def __init__(self, scenario: sc.Scenario, contender: str, base_url: str, args: Any) -> None:
        cmd = [
            sys.executable, str(HERE / "run.py"), "--worker", "--scenario", scenario.key,
            "--contender", contender, "--base-url", base_url,
        ]  # fmt: skip
        if args.quick:
            cmd.append("--quick")
        if args.smoke:
            cmd.append("--smoke")
        if args.profile and contender.startswith("embedguard"):
            Path(args.profile).mkdir(parents=True, exist_ok=True)
            cmd += ["--profile-out", str(Path(args.profile) / f"{scenario.key}-{contender}.prof")]
        self.contender = contender
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in finish()
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, env=env
        )
        self._buffer = b""
        self.progress: dict[str, Any] = {}
        self.go_at = 0.0
        self.ready: dict[str, Any] = {}

    def expect(self, kind: str, deadline: float) -> dict[str, Any] | None:
        """The payload of the next ``kind`` line; None at the deadline or if the worker died."""
        stdout: BinaryIO = self.proc.stdout  # type: ignore[assignment]
        prefix = _TAG + kind.encode() + b" "
        while True:
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                if line.startswith(_TAG + b"CALL "):
                    self.progress = json.loads(line[len(_TAG) + 5 :])
                elif line.startswith(prefix):
                    payload: dict[str, Any] = json.loads(line[len(prefix) :])
                    return payload
            # Past the deadline, still take what the worker already wrote (workers that ran
            # in parallel are collected one after another).
            left = max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([stdout], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(stdout.fileno(), 65536)
                if not chunk:
                    return None
                self._buffer += chunk
            elif left <= 0:
                return None

    def go(self) -> None:
        """Start the measured part."""
        stdin: BinaryIO = self.proc.stdin  # type: ignore[assignment]
        self.go_at = time.monotonic()
        stdin.write(b"GO\n")
        stdin.flush()

    def finish(self, cap: float) -> dict[str, Any]:
        """Wait for the result; kill the worker after ``cap`` seconds from GO."""
        result = self.expect("RESULT", self.go_at + cap)
        if result is None:
            timed_out = self.proc.poll() is None
            self.kill()
            note = f"stopped at the {cap:.0f} s cap" if timed_out else self.error_tail()
            result = {"ok": False, "timeout": timed_out, "error": note, "wall": cap}
            result["calls_done"] = self.progress.get("done", 0)
        self.proc.wait(30)
        self.stderr.close()
        return result

    def kill(self) -> None:
        """Stop the worker (this process started it)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def error_tail(self) -> str:
        """The last line the worker wrote to stderr (why it died)."""
        self.stderr.seek(0)
        lines = [ln for ln in self.stderr.read().decode(errors="replace").splitlines() if ln]
        return lines[-1][:200] if lines else f"worker exited with {self.proc.returncode}"


def available(contender: str) -> str | None:
    """None when ``contender`` can run here, else why not."""
    hidden = {m for m in os.environ.get("EMBEDGUARD_BENCH_HIDE", "").split(",") if m}
    for module in sc.REQUIRES.get(contender, ()):
        root = module.split(".")[0]
        try:
            found = root not in hidden and importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            return f"skipped: {root} is not installed (pip install -e '.[bench]')"
    if contender == sc.EMBEDGUARD_ITER:
        from embedguard import EmbeddingClient

        if not hasattr(EmbeddingClient, "embed_iter"):
            return "skipped: this embedguard has no EmbeddingClient.embed_iter"
    return None


def _drain_tokens(server: Any, tokens: int) -> None:
    """Spend the server's whole tokens-per-minute bucket, so the run meets the steady limit."""
    import httpx

    body = {"model": "text-embedding-3-small", "input": ["w " * tokens], "dimensions": 8}
    httpx.post(server.base_url("openai") + "/embeddings", json=body, timeout=30.0)


def _faults(names: tuple[str, ...]) -> list[Any]:
    """The ``Fault`` objects of S10's mix (``CHAOS_MIX`` names them)."""
    from embedguard.testing import Fault

    made = {
        "status_500": Fault.status(500),
        "status_503": Fault.status(503),
        "rate_limited": Fault.rate_limited(retry_after=sc.RETRY_AFTER),
        "drop": Fault.drop(),
    }
    return [made[name] for name in names]


def _prepare(scenario: sc.Scenario, server: Any, contender: str, rep: int) -> int:
    """Reset the server for one run; returns how many log entries are setup, not the run.

    Repetition ``rep`` of the chaos scenario draws its faults with seed ``rep + 1``, the same
    for every contender; the fault-free baseline gets no fault.
    """
    if server is None:
        return 0
    server.reset()
    if scenario.setup == "drain" and scenario.tpm is not None:
        _drain_tokens(server, scenario.tpm)
    elif scenario.setup == "outage":
        server.set_down(True, status=503)
    elif contender in sc.FAULT_FREE:
        pass
    elif scenario.setup == "one_429":
        from embedguard.testing import Fault

        server.script(Fault.rate_limited(retry_after=sc.RETRY_AFTER))
    elif scenario.setup == "chaos":
        server.chaos(sc.CHAOS_RATE, _faults(sc.CHAOS_MIX), seed=rep + 1)
    return len(server.requests)


def _server_stats(server: Any, skip: int) -> dict[str, Any]:
    if server is None:
        return {}
    log = server.requests[skip:]
    usage = sum(server.count_tokens(t) for r in log if r.status == 200 for t in r.inputs)
    return {
        "requests": len(log),
        "n429": sum(1 for r in log if r.status == 429),
        "faults": sum(1 for r in log if r.fault is not None),
        "usage_tokens": usage,
        "max_in_flight": server.max_in_flight,
    }


def _start_server(scenario: sc.Scenario) -> Any:
    if scenario.server is None:
        return None
    from embedguard.testing import EmbeddingServer

    return EmbeddingServer(dimensions=scenario.dimensions, **scenario.server).start()


def _measure(
    scenario: sc.Scenario, names: list[str], servers: dict[str, Any], args: Any, rep: int
) -> None:
    """Run each of ``names`` once and print what it measured.

    The workers start together, so their imports and warm-ups overlap; the measured parts then
    run one at a time while the others wait idle (all together when the scenario is parallel).
    """
    results: dict[str, dict[str, Any]] = {}
    workers = []
    for name in names:
        server = servers.get(name)
        url = server.base_url("openai") if server is not None else ""
        workers.append(Worker(scenario, name, url, args))
    deadline = time.monotonic() + _READY_TIMEOUT
    live = []
    for worker in workers:
        ready = worker.expect("READY", deadline)
        if ready is None:
            results[worker.contender] = {"ok": False, "error": worker.error_tail()}
            worker.kill()
            continue
        worker.ready = ready
        live.append(worker)
    for group in [live] if scenario.parallel else [[w] for w in live]:
        skips = {
            w.contender: _prepare(scenario, servers.get(w.contender), w.contender, rep)
            for w in group
        }
        for worker in group:
            worker.go()
        for worker in group:
            result = worker.finish(scenario.cap)
            if not result.get("peak_reset", True):  # no reset: compare with the peak at READY
                result["start_kb"] = worker.ready.get("peak_kb")
            result.update(_server_stats(servers.get(worker.contender), skips[worker.contender]))
            results[worker.contender] = result
    for name in names:
        OUTCOMES[scenario.key][name].runs.append(results[name])
        r = results[name]
        status = "ok" if r.get("ok") else f"FAILED ({str(r.get('error'))[:100]})"
        if r.get("timeout"):
            status = f"stopped at the {scenario.cap:.0f} s cap"
        print(f"  {scenario.key:10} {name:24} wall {r.get('wall', 0):8.3f} s  "
              f"cpu {r.get('cpu', 0):7.3f} s  {status}", flush=True)  # fmt: skip


OUTCOMES: dict[str, dict[str, Outcome]] = {}


def run_scenario(scenario: sc.Scenario, wanted: set[str] | None, args: Any) -> None:
    """Every repetition of one scenario; fills ``OUTCOMES[scenario.key]``."""
    names = [c for c in scenario.contenders if wanted is None or c in wanted]
    OUTCOMES[scenario.key] = {}
    runnable = []
    for name in names:
        why = available(name)
        OUTCOMES[scenario.key][name] = Outcome(name, skipped=why)
        if why is None:
            runnable.append(name)
        else:
            print(f"  {scenario.key:10} {name:24} {why}", flush=True)
    if not runnable:
        return
    shared = None if scenario.parallel else _start_server(scenario)
    servers = {n: (_start_server(scenario) if scenario.parallel else shared) for n in runnable}
    try:
        for rep in range(scenario.reps):
            shift = rep % len(runnable)  # rotate the order so no contender is always first
            _measure(scenario, runnable[shift:] + runnable[:shift], servers, args, rep)
    finally:
        for server in {id(s): s for s in servers.values() if s is not None}.values():
            server.stop()


def _environment(args: Any, started: float) -> dict[str, Any]:
    from importlib import metadata

    versions = {}
    for dist in ("embedguard", "httpx", "numpy", "openai", "langchain-openai", "langchain-core",
                 "llama-index-embeddings-openai", "llama-index-core", "sentence-transformers",
                 "torch"):  # fmt: skip
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return {
        "mode": _mode(args),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load": os.getloadavg(),
        "minutes": (time.monotonic() - started) / 60,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "versions": versions,
    }


def _mode(args: Any) -> str:
    return "smoke" if args.smoke else "quick" if args.quick else "full"


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (orchestrator, or worker with ``--worker``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: proves the harness runs")
    parser.add_argument("--scenario", help="comma-separated: S1,S2,...,S12,local")
    parser.add_argument("--contender", help="comma-separated contender names")
    parser.add_argument("--out", default=str(HERE), help="directory for RESULTS.md/results.png")
    parser.add_argument("--profile", help="save a cProfile of each embedguard worker here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        import _worker

        return _worker.run(args.scenario, args.contender, args.base_url, args.quick,
                           args.profile_out, args.smoke)  # fmt: skip
    started = time.monotonic()
    chosen = sc.select(sc.scenarios(args.quick, args.smoke), args.scenario)
    wanted = {c.strip() for c in args.contender.split(",")} if args.contender else None
    known = {c for s in sc.scenarios(args.quick) for c in s.contenders}
    if wanted and wanted - known:
        raise SystemExit(f"unknown contender(s) {sorted(wanted - known)}; known: {sorted(known)}")
    print(f"embedguard bench ({_mode(args)}): "
          f"{', '.join(s.key for s in chosen)}", flush=True)  # fmt: skip
    for scenario in chosen:
        print(f"{scenario.key}: {scenario.title}", flush=True)
        run_scenario(scenario, wanted, args)
    env = _environment(args, started)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = write_report(out, chosen, OUTCOMES, env)
    print(f"wrote {', '.join(str(p) for p in written)} in {env['minutes']:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
