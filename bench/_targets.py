"""The tables of S8-S12 (issues 14 and 16) and their targets, met or missed, for RESULTS.md."""

from __future__ import annotations

from collections.abc import Callable

import _scenarios as sc
from _cells import Outcome, floor_of, notes, num, ratio

Table = tuple[list[str], list[list[str]]]
Rows = dict[str, Outcome]


def _is_embedguard(name: str) -> bool:
    return name.startswith("embedguard")


def _has_target(o: Outcome, s: sc.Scenario) -> bool:
    """An embedguard contender the targets apply to (not the baseline, not a diagnostic)."""
    name = o.contender
    return _is_embedguard(name) and name not in sc.DIAGNOSTICS and name != s.baseline


def _base(s: sc.Scenario, rows: Rows, key: str = "wall") -> float | None:
    base = rows.get(s.baseline)
    return base.median(key) if base else None


def vector_counts(o: Outcome) -> dict[str, int]:
    """Lost, misordered and wrong vectors summed over every run (a failed run lost them all)."""
    total = {"lost": 0, "misordered": 0, "wrong": 0}
    for run in o.runs:
        for key in total:
            total[key] += int((run.get("vectors") or {}).get(key, 0))
    return total


def _vectors(o: Outcome) -> str:
    if o.skipped or not o.runs:
        return "-"
    if not any("vectors" in r for r in o.runs):
        return "not checked"
    counts = vector_counts(o)
    if not any(counts.values()):
        return "all right"
    return ", ".join(f"{v} {k}" for k, v in counts.items() if v)


def _complete(o: Outcome) -> str:
    return "-" if o.skipped else f"{len(o.runs) - len(o.failures)}/{len(o.runs)}"


def setup_notes(s: sc.Scenario) -> list[str]:
    """What the server is made to do in the scenario, and what the worker checks."""
    out = []
    if s.setup == "one_429":
        out.append(f"the first request gets 429 with Retry-After: {sc.RETRY_AFTER} and no "
                   "x-ratelimit-* headers")  # fmt: skip
    elif s.setup == "chaos":
        mix = ", ".join(sc.CHAOS_MIX)
        out.append(f"{sc.CHAOS_RATE:.0%} of requests get a fault drawn uniformly from {mix} "
                   f"(Retry-After: {sc.RETRY_AFTER} on the 429); repetition k uses seed k for "
                   "every contender")  # fmt: skip
    if s.setup and sc.FAULT_FREE & set(s.contenders):
        clean = ", ".join(sorted(sc.FAULT_FREE))
        out.append(f"{clean} runs against the same server without faults")
    if s.verify:
        out.append("every vector checked against deterministic_vectors in the worker")
    return out


# -- tables ---------------------------------------------------------------------------------------


def _stated(s: sc.Scenario, rows: Rows) -> Table:
    base = _base(s, rows)
    floor = floor_of(s)
    head = ["contender", "median wall (s)", f"x {s.baseline}", "x floor", "requests", "429s",
            "max in flight", "vectors", "notes"]  # fmt: skip
    body = [["floor (server latency model)", num(floor), ratio(floor, base), "1.00x", "-", "-",
             str(s.slots), "-", "zero client time; the stated limits never bind"]]  # fmt: skip
    for o in rows.values():
        wall = o.median("wall")
        body.append([o.contender, num(wall), ratio(wall, base), ratio(wall, floor),
                     num(o.median("requests"), 0), num(o.median("n429", ok_only=False), 0),
                     num(o.median("max_in_flight"), 0), _vectors(o), notes(o, s)])  # fmt: skip
    return head, body


def _one_429(s: sc.Scenario, rows: Rows) -> Table:
    base = _base(s, rows)
    head = ["contender", "median wall (s)", f"x {s.baseline}", "requests", "429s", "vectors",
            "notes"]  # fmt: skip
    body = []
    for o in rows.values():
        wall = o.median("wall")
        body.append([o.contender, num(wall), ratio(wall, base), num(o.median("requests"), 0),
                     num(o.median("n429", ok_only=False), 0), _vectors(o),
                     notes(o, s)])  # fmt: skip
    return head, body


def _flaky(s: sc.Scenario, rows: Rows) -> Table:
    base = _base(s, rows)
    head = ["contender", "runs complete", "vectors (all runs)", "median wall (s)",
            f"x {s.baseline}", "requests", "faults injected", "notes"]  # fmt: skip
    body = []
    for o in rows.values():
        wall = o.median("wall")
        body.append([o.contender, _complete(o), _vectors(o), num(wall), ratio(wall, base),
                     num(o.median("requests", ok_only=False), 0),
                     num(o.median("faults", ok_only=False), 0), notes(o, s)])  # fmt: skip
    return head, body


def _latency(s: sc.Scenario, rows: Rows) -> Table:
    base = _base(s, rows, "lat_median_ms")
    head = ["contender", "median ms/call", "p95 ms/call", f"x {s.baseline}",
            f"overhead vs {s.baseline} (ms/call)", "requests", "wall (s)", "vectors",
            "notes"]  # fmt: skip
    body = []
    for o in rows.values():
        median = o.median("lat_median_ms")
        extra = None if median is None or base is None else median - base
        body.append([o.contender, num(median), num(o.median("lat_p95_ms")), ratio(median, base),
                     num(extra), num(o.median("requests"), 0), num(o.median("wall")),
                     _vectors(o), notes(o, s)])  # fmt: skip
    return head, body


def _burst(s: sc.Scenario, rows: Rows) -> Table:
    base = _base(s, rows)
    head = ["contender", "requests", "median wall (s)", f"x {s.baseline}", "max in flight",
            "vectors", "notes"]  # fmt: skip
    body = []
    for o in rows.values():
        wall = o.median("wall")
        body.append([o.contender, num(o.median("requests"), 0), num(wall), ratio(wall, base),
                     num(o.median("max_in_flight"), 0), _vectors(o), notes(o, s)])  # fmt: skip
    return head, body


def _adapters(s: sc.Scenario, rows: Rows) -> Table:
    base = _base(s, rows)
    floor = floor_of(s)
    head = ["contender", "median wall (s)", f"x {s.baseline}", "x floor", "requests", "vectors",
            "notes"]  # fmt: skip
    body = []
    for o in rows.values():
        wall = o.median("wall")
        body.append([o.contender, num(wall), ratio(wall, base), ratio(wall, floor),
                     num(o.median("requests"), 0), _vectors(o), notes(o, s)])  # fmt: skip
    return head, body


TABLES: dict[str, Callable[[sc.Scenario, Rows], Table]] = {
    "stated": _stated,
    "one_429": _one_429,
    "flaky": _flaky,
    "latency": _latency,
    "burst": _burst,
    "adapters": _adapters,
}

CHART: dict[str, tuple[str, Callable[[sc.Scenario, Outcome], float | None]]] = {
    "stated": ("wall time (s)", lambda s, o: o.median("wall")),
    "one_429": ("wall time (s)", lambda s, o: o.median("wall")),
    "flaky": ("median wall time of complete runs (s)", lambda s, o: o.median("wall")),
    "latency": ("median ms per query", lambda s, o: o.median("lat_median_ms")),
    "burst": ("requests sent for the concurrent queries", lambda s, o: o.median("requests")),
    "adapters": ("wall time (s)", lambda s, o: o.median("wall")),
}


# -- targets --------------------------------------------------------------------------------------


def _verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else ("**met**" if ok else "**missed**")


def _at_most(name: str, value: float | None, base: float | None, bound: float) -> str:
    """``name``'s value (wall time, CPU) against ``bound`` times the baseline's."""
    ok = None if value is None or base is None else value <= bound * base
    shown = ratio(value, base)
    return f"{_verdict(ok)} ({name}: {shown})"


def _faster_than_peers(rows: Rows, wall: float | None) -> str:
    peers = [o for o in rows.values() if not _is_embedguard(o.contender) and not o.skipped]
    if wall is None or not peers:
        return _verdict(None)
    slower = [o.contender for o in peers if (o.median("wall") or float("inf")) <= wall]
    detail = "every peer slower or failed" if not slower else "not faster than " + ", ".join(slower)
    return f"{_verdict(not slower)} ({detail})"


def targets(s: sc.Scenario, rows: Rows) -> list[str]:
    """The scenario's targets, each followed by met / missed and the measured value."""
    eg = rows.get(sc.EMBEDGUARD)
    wall = eg.median("wall") if eg else None
    base = _base(s, rows)
    lines: list[str] = []
    if s.metric == "stated":
        verdict = _at_most("embedguard", wall, base, 1.3)
        lines.append(f"embedguard defaults <= 1.3x {s.baseline}: {verdict}")
    elif s.metric == "one_429":
        lines.append(f"<= 1.3x its own fault-free time: {_at_most('embedguard', wall, base, 1.3)}")
        lines.append(f"faster than every peer: {_faster_than_peers(rows, wall)}")
    elif s.metric == "flaky" and eg is not None and not eg.skipped:
        counts = vector_counts(eg)
        ok = not eg.failures and not any(counts.values()) and len(eg.runs) == s.reps
        detail = f"{_complete(eg)} complete; " + ", ".join(f"{v} {k}" for k, v in counts.items())
        lines.append(f"every run complete, 0 lost/misordered/wrong: {_verdict(ok)} ({detail})")
        lines.append(f"median wall <= 2x fault-free: {_at_most('embedguard', wall, base, 2.0)}")
    elif s.metric == "burst":
        for o in rows.values():
            if _has_target(o, s) and not o.skipped:
                n = o.median("requests")
                ok = None if n is None else n <= 20
                lines.append(f"{o.contender}: <= 20 requests: {_verdict(ok)} ({num(n, 0)})")
    elif s.metric == "adapters":
        for o in rows.values():
            if _has_target(o, s) and not o.skipped:
                verdict = _at_most(o.contender, o.median("wall"), base, 1.2)
                lines.append(f"{o.contender} <= 1.2x {s.baseline}: {verdict}")
        lists = rows.get(sc.EMBEDGUARD_TOLIST)
        if lists is not None and not lists.skipped:
            lines.append(f"no target; {sc.EMBEDGUARD_TOLIST} (the list[float] conversion alone): "
                         f"{ratio(lists.median('wall'), base)}")  # fmt: skip
    elif s.metric == "latency" and eg is not None:
        base_ms = _base(s, rows, "lat_median_ms")
        ms = eg.median("lat_median_ms")
        fast = None if ms is None or base_ms is None else ms <= 1.3 * base_ms
        extra = None if ms is None or base_ms is None else ms - base_ms
        lines.append(f"embedguard median latency <= 1.3x the raw httpx call: {_verdict(fast)} "
                     f"({ratio(ms, base_ms)}; {num(extra)} ms more per call)")  # fmt: skip
    elif s.metric == "cpu" and s.key.startswith("S2") and eg is not None:
        cpu = eg.median("cpu")
        bounds = [(sc.FLOOR_LOOP, 1.1)]
        if s.encoding != "float":
            bounds.insert(0, (sc.FLOOR_MINIMAL, 0.75))
        for reference, bound in bounds:
            other = rows.get(reference)
            ref_cpu = other.median("cpu") if other is not None and not other.skipped else None
            lines.append(f"embedguard CPU <= {bound}x {reference}: "
                         f"{_at_most('embedguard', cpu, ref_cpu, bound)}")  # fmt: skip
    return [f"- Target: {line}" if "no target" not in line else f"- {line}" for line in lines]
