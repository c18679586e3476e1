"""The worker side of the harness: one contender, one scenario, one measurement, in its own process.

Protocol (stdout lines starting with ``@@BENCH``; anything else a library prints is ignored)::

    @@BENCH READY {...}      imports done, client built and warmed up; waiting for "GO" on stdin
    @@BENCH CALL {...}       outage scenario only: progress after each failed call
    @@BENCH RESULT {...}     the measurement

CPU time is ``resource.getrusage(RUSAGE_SELF)`` (user + sys, every thread) over the measured part
only. Peak memory is the kernel's RSS high-water mark (``VmHWM``), reset at GO through
``/proc/self/clear_refs``, so it is the peak of the measured part; ``ru_maxrss`` is not used for
that because on Linux it also counts the parent's RSS at the moment the worker was spawned.
"""

from __future__ import annotations

import cProfile
import gc
import json
import pstats
import resource
import statistics
import sys
import threading
import time
from typing import Any

import _contenders as ct
import _scenarios as sc
from _verify import check_vectors, problems

TAG = "@@BENCH"


def emit(kind: str, payload: dict[str, Any]) -> None:
    """Write one protocol line to stdout."""
    sys.stdout.write(f"{TAG} {kind} {json.dumps(payload)}\n")
    sys.stdout.flush()


def _maxrss_kb() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


def _memory_kb() -> tuple[int, int]:
    """(current RSS, peak RSS) in KiB; ru_maxrss for both where /proc is missing."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            fields = dict(line.split(":", 1) for line in status if line.startswith("Vm"))
        return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])
    except (OSError, KeyError, ValueError):
        return _maxrss_kb(), _maxrss_kb()


def _reset_peak() -> bool:
    """Restart the RSS high-water mark from the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def _cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


class _ThreadProfiles:
    """CPU-time cProfile of the main thread and of every thread started while profiling."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        threading.setprofile(self._first_call)
        self._new().enable()

    def _new(self) -> cProfile.Profile:
        profile = cProfile.Profile(time.thread_time)  # CPU time of its own thread
        with self._lock:
            self.profiles.append(profile)
        return profile

    def _first_call(self, frame: Any, event: str, arg: Any) -> None:
        sys.setprofile(None)
        self._new().enable()

    def stop(self) -> None:
        threading.setprofile(None)
        self.profiles[0].disable()

    def dump(self, path: str) -> None:
        """Merge every thread's statistics into one file (call after the threads have ended)."""
        pstats.Stats(*self.profiles).dump_stats(path)


def _shape(out: Any) -> tuple[int, int]:
    if isinstance(out, ct._Shape):
        return out.rows, out.width
    rows = len(out)
    return rows, (len(out[0]) if rows else 0)


def _outage(runner: ct.Runner, texts: list[str], calls: int, started: float) -> dict[str, Any]:
    failed = 0
    errors: dict[str, int] = {}
    for i in range(calls):
        try:
            runner.embed([texts[i % len(texts)]])
        except Exception as exc:  # every call is expected to fail; count how and how fast
            failed += 1
            name = type(exc).__name__
            errors[name] = errors.get(name, 0) + 1
        emit("CALL", {"done": i + 1, "elapsed": time.perf_counter() - started})
    return {"calls": calls, "failed": failed, "errors": errors}


def _queries(scenario: sc.Scenario, ctx: ct.Context, contender: str) -> tuple[Any, list[str]]:
    """S11's runner, warmed up on its own loop, and the query texts."""
    import _queries as qr

    runner = qr.build(contender, ctx)
    warm = sc.make_texts(8, seed=99, prefix="warmup")
    if scenario.metric == "latency":
        for text in warm:
            runner.one(text)
    else:
        runner.burst(warm)
    return runner, sc.make_texts(scenario.n, prefix="query")


def _sequential(runner: Any, texts: list[str]) -> tuple[list[Any], dict[str, Any]]:
    """Each text as one sync call; the per-call latencies in milliseconds."""
    out, times = [], []
    for text in texts:
        t0 = time.perf_counter()
        out.append(runner.one(text))
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return out, {"lat_median_ms": statistics.median(times), "lat_p95_ms": p95}


def _measured(
    scenario: sc.Scenario, runner: Any, inputs: Any, texts: list[str], started: float
) -> tuple[Any, dict[str, Any]]:
    """Run the measured part; returns the output and extra result fields."""
    if scenario.metric == "fail_time":
        return None, _outage(runner, texts, scenario.calls, started)
    if scenario.metric == "latency":
        return _sequential(runner, texts)
    if scenario.metric == "burst":
        return runner.burst(texts), {}
    return runner.embed(inputs), {}


def run(
    scenario_key: str,
    contender: str,
    base_url: str,
    quick: bool,
    profile: str | None,
    smoke: bool = False,
) -> int:
    """Build, warm up, signal READY, wait for GO, measure, print the RESULT line."""
    scenario = sc.by_key(scenario_key, quick, smoke)
    ctx = ct.Context(scenario, base_url)
    inputs: Any = None
    if scenario.metric in ("latency", "burst"):
        runner, texts = _queries(scenario, ctx, contender)
    else:
        if scenario.metric == "fail_time":
            texts = sc.make_texts(max(1, scenario.calls))
        else:
            texts = sc.make_texts(scenario.n, duplicates=scenario.duplicates)
        runner = ct.build(contender, ctx)
        if scenario.warmup:
            runner.embed(runner.inputs(sc.make_texts(16, seed=99, prefix="warmup")))
        inputs = runner.inputs(texts)
    gc.collect()
    emit("READY", {"maxrss_kb": _maxrss_kb(), "peak_kb": _memory_kb()[1]})
    if sys.stdin.readline().strip() != "GO":
        return 2
    peak_reset = _reset_peak()
    start_kb = _memory_kb()[0]
    extra: dict[str, Any] = {}
    error: str | None = None
    out: Any = None
    profiler = _ThreadProfiles() if profile else None
    user0, sys0 = _cpu()
    started = time.perf_counter()
    try:
        if profiler is not None:
            profiler.start()
        out, extra = _measured(scenario, runner, inputs, texts, started)
    except Exception as exc:  # reported, not raised: the orchestrator shows it in the table
        error = f"{type(exc).__name__}: {str(exc)[:200]}"
    finally:
        if profiler is not None:
            profiler.stop()
    wall = time.perf_counter() - started
    user1, sys1 = _cpu()
    memory = {"maxrss_kb": _maxrss_kb(), "peak_kb": _memory_kb()[1], "start_kb": start_kb}
    rows = 0
    if error is None and scenario.metric != "fail_time":
        vectors = out if scenario.metric in ("latency", "burst") else runner.vectors(out)
        rows, width = _shape(vectors)
        expected = (len(texts), scenario.dimensions)
        if (rows, width) != expected:
            error = f"wrong output shape {(rows, width)}, expected {expected}"
        if scenario.verify:
            extra["vectors"] = check_vectors(vectors, texts, scenario.dimensions)
            error = error or problems(extra["vectors"])
    elif scenario.verify:
        extra["vectors"] = {"lost": len(texts), "misordered": 0, "wrong": 0, "extra": 0}
    runner.close()
    if profiler is not None and profile:
        profiler.dump(profile)
    emit(
        "RESULT",
        {
            "ok": error is None,
            "error": error,
            "wall": wall,
            "cpu": (user1 - user0) + (sys1 - sys0),
            "cpu_user": user1 - user0,
            "cpu_sys": sys1 - sys0,
            **memory,
            "peak_reset": peak_reset,
            "rows": rows,
            **extra,
        },
    )
    return 0
