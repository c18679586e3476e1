"""Turn the measurements into bench/RESULTS.md (a table per scenario) and bench/results.png."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _contenders as ct
import _scenarios as sc
import _targets
from _cells import Outcome
from _cells import floor_of as _floor
from _cells import notes as _notes
from _cells import num as _num
from _cells import ratio as _ratio

__all__ = ["Outcome", "write_report"]

_MB = 1024 * 1024


# -- one table builder per metric -----------------------------------------------------------------

_Table = tuple[list[str], list[list[str]]]


def _wall(s: sc.Scenario, rows: dict[str, Outcome]) -> _Table:
    floor = _floor(s)
    base = rows.get(sc.EMBEDGUARD_TUNED)
    base_wall = base.median("wall") if base else None
    head = ["contender", "median wall (s)", "x floor", "x embedguard-tuned", "requests",
            "max in flight", "notes"]  # fmt: skip
    body = [["floor (server latency model)", _num(floor), "1.00x", _ratio(floor, base_wall),
             "-", str(s.slots), f"{s.slots} slots, <= {sc.MAX_INPUTS} inputs/request, "
             "zero client time"]]  # fmt: skip
    for o in rows.values():
        wall = o.median("wall")
        body.append([o.contender, _num(wall), _ratio(wall, floor), _ratio(wall, base_wall),
                     _num(o.median("requests"), 0), _num(o.median("max_in_flight"), 0),
                     _notes(o, s)])  # fmt: skip
    return head, body


def _cpu(s: sc.Scenario, rows: dict[str, Outcome]) -> _Table:
    base_name = sc.EMBEDGUARD_BARE if s.key == "S6" else sc.FLOOR_LOOP
    base = rows.get(base_name)
    base_cpu = base.median("cpu") if base else None
    head = ["contender", "median CPU (s)", f"x {base_name}", "user / sys (s)", "wall (s)", "notes"]
    body = []
    for o in rows.values():
        cpu = o.median("cpu")
        split = f"{_num(o.median('cpu_user'))} / {_num(o.median('cpu_sys'))}"
        body.append([o.contender, _num(cpu), _ratio(cpu, base_cpu), split,
                     _num(o.median("wall")), _notes(o, s)])  # fmt: skip
    return head, body


def _tpm(s: sc.Scenario, rows: dict[str, Outcome]) -> _Table:
    limit = s.tpm or 1
    head = ["contender", "tokens/min", "% of TPM limit", "429s", "requests", "wall (s)",
            "texts the server embedded", "notes"]  # fmt: skip
    body = []
    for o in rows.values():
        wall = o.median("wall", ok_only=False)
        tokens = o.median("usage_tokens", ok_only=False)
        per_min = None if not wall or tokens is None else tokens / wall * 60
        pct = None if per_min is None else 100 * per_min / limit
        done = "-" if tokens is None else f"{tokens / sc.WORDS_PER_TEXT:.0f}/{s.n}"
        body.append([o.contender, _num(per_min, 0), _num(pct, 1),
                     _num(o.median("n429", ok_only=False), 0),
                     _num(o.median("requests", ok_only=False), 0), _num(wall, 2), done,
                     _notes(o, s)])  # fmt: skip
    return head, body


def _billed(s: sc.Scenario, rows: dict[str, Outcome]) -> _Table:
    unique = len(set(sc.make_texts(s.n, duplicates=s.duplicates))) * sc.WORDS_PER_TEXT
    head = ["contender", "tokens billed", "x unique tokens", "requests", "notes"]
    body = [["unique texts", str(unique), "1.00x", "-", f"{s.n} texts, {s.duplicates:.0%} copies"]]
    for o in rows.values():
        billed = o.median("usage_tokens")
        body.append([o.contender, _num(billed, 0), _ratio(billed, unique),
                     _num(o.median("requests"), 0), _notes(o, s)])  # fmt: skip
    return head, body


def _rss(s: sc.Scenario, rows: dict[str, Outcome]) -> _Table:
    result_mb = s.n * s.dimensions * 4 / _MB
    head = ["contender", "peak RSS (MB)", "growth (MB)", "growth / result", "wall (s)", "notes"]
    body = [["float32 result", "-", _num(result_mb, 1), "1.00x", "-",
             f"{s.n} x {s.dimensions} float32"]]  # fmt: skip
    for o in rows.values():
        peak = o.median("peak_kb")
        growth = _growth_mb(o)
        body.append([o.contender, _num(None if peak is None else peak / 1024, 1),
                     _num(growth, 1), _ratio(growth, result_mb), _num(o.median("wall")),
                     _notes(o, s)])  # fmt: skip
    return head, body


def _growth_mb(o: Outcome) -> float | None:
    values = [
        (r["peak_kb"] - r["start_kb"]) / 1024
        for r in o.runs
        if r.get("ok") and r.get("peak_kb") is not None and r.get("start_kb") is not None
    ]
    return statistics.median(values) if values else None


def _fail_time(s: sc.Scenario, rows: dict[str, Outcome]) -> _Table:
    base = rows.get(sc.EMBEDGUARD)
    base_wall = base.median("wall", ok_only=False) if base else None
    head = ["contender", f"time for {s.calls} calls to fail (s)", "x embedguard",
            "requests sent", "notes"]  # fmt: skip
    body = []
    for o in rows.values():
        wall = o.median("wall", ok_only=False)
        timed_out = [r for r in o.runs if r.get("timeout")]
        shown = _num(wall, 2)
        extra = ""
        if timed_out:
            shown = f">{s.cap:.0f}"
            extra = f"; {timed_out[0].get('calls_done', 0)}/{s.calls} calls done at the cap"
        elif o.runs and not o.skipped:
            errs = o.runs[0].get("errors") or {}
            extra = "; " + ", ".join(f"{k} x{v}" for k, v in errs.items()) if errs else ""
        notes = (o.skipped or ct.describe(o.contender, s) + extra).replace("|", "/")
        body.append([o.contender, shown, "-" if timed_out else _ratio(wall, base_wall),
                     _num(o.median("requests", ok_only=False), 0), notes])  # fmt: skip
    return head, body


def _local(s: sc.Scenario, rows: dict[str, Outcome]) -> _Table:
    base = rows.get(sc.SENTENCE_TRANSFORMERS)
    base_wall = base.median("wall") if base else None
    base_cpu = base.median("cpu") if base else None
    head = ["contender", "median wall (s)", "x direct (wall)", "median CPU (s)",
            "x direct (CPU)", "notes"]  # fmt: skip
    body = []
    for o in rows.values():
        wall, cpu = o.median("wall"), o.median("cpu")
        body.append([o.contender, _num(wall), _ratio(wall, base_wall), _num(cpu),
                     _ratio(cpu, base_cpu), _notes(o, s)])  # fmt: skip
    return head, body


_TABLES: dict[str, Callable[[sc.Scenario, dict[str, Outcome]], _Table]] = {
    "wall": _wall,
    "cpu": _cpu,
    "tpm": _tpm,
    "billed": _billed,
    "rss": _rss,
    "fail_time": _fail_time,
    "local": _local,
    **_targets.TABLES,
}

# The value each scenario's chart shows per contender, and its axis label.
_CHART: dict[str, tuple[str, Callable[[sc.Scenario, Outcome], float | None]]] = {
    "wall": ("wall time (s)", lambda s, o: o.median("wall")),
    "cpu": ("client CPU (s)", lambda s, o: o.median("cpu")),
    "tpm": ("% of TPM limit achieved", lambda s, o: _pct(s, o)),
    "billed": ("tokens billed / unique", lambda s, o: _billed_ratio(s, o)),
    "rss": ("RSS growth / result size", lambda s, o: _growth_ratio(s, o)),
    "fail_time": ("seconds for the calls to fail", lambda s, o: o.median("wall", ok_only=False)),
    "local": ("wall time (s)", lambda s, o: o.median("wall")),
    **_targets.CHART,
}


def _pct(s: sc.Scenario, o: Outcome) -> float | None:
    wall, tokens = o.median("wall", ok_only=False), o.median("usage_tokens", ok_only=False)
    return None if not wall or tokens is None else 100 * tokens / wall * 60 / (s.tpm or 1)


def _billed_ratio(s: sc.Scenario, o: Outcome) -> float | None:
    billed = o.median("usage_tokens")
    unique = len(set(sc.make_texts(s.n, duplicates=s.duplicates))) * sc.WORDS_PER_TEXT
    return None if billed is None else billed / unique


def _growth_ratio(s: sc.Scenario, o: Outcome) -> float | None:
    growth = _growth_mb(o)
    return None if growth is None else growth * _MB / (s.n * s.dimensions * 4)


def _markdown(head: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return lines


def _settings(s: sc.Scenario) -> str:
    server = s.server
    parts = [f"{s.n:,} texts of {sc.WORDS_PER_TEXT} words" if s.metric != "fail_time"
             else f"{s.calls} calls", f"{s.dimensions}-d"]  # fmt: skip
    if server is not None:
        parts.append(f"{s.encoding} responses")
    if server is None:
        parts.append("no server (in-process)")
    else:
        parts.append("server: " + (", ".join(f"{k}={v}" for k, v in server.items()) or "defaults"))
    parts.append(f"{s.reps} repetition(s), median")
    if s.parallel:
        parts.append("contenders run at the same time, each against its own identical server")
    parts += _targets.setup_notes(s)
    return "; ".join(parts)


_PREAMBLE = """\
Generated by `make bench` (`python bench/run.py{flag}`). Every contender of a scenario runs against
the same loopback `embedguard.testing.EmbeddingServer` settings in the same run, each repetition in
a fresh worker subprocess that is built and warmed up before the measured part starts; the server
runs in the parent process. CPU = user + sys of the worker (`getrusage`) over the measured part;
peak RSS = the kernel's high-water mark (`VmHWM`, reset when the measured part starts), and growth
= that peak minus the RSS at the start (the inputs are already in memory then).
Absolute numbers depend on the machine and are printed, never asserted; read the ratios.
LangChain runs with `check_embedding_ctx_length=False` because tiktoken's vocabulary files
cannot be downloaded here (it then sends raw texts, as embedguard does).
"""


def write_report(
    out: Path, chosen: list[sc.Scenario], outcomes: dict[str, dict[str, Outcome]], env: Any
) -> list[Path]:
    """Write RESULTS.md (and results.png when matplotlib is installed); returns the paths."""
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    load = ", ".join(f"{x:.2f}" for x in env["load"])
    lines = [
        "# embedguard benchmarks",
        "",
        _PREAMBLE.format(flag="" if env["mode"] == "full" else f" --{env['mode']}"),
        f"Run: {env['date']}, {env['mode']} mode, {env['minutes']:.1f} min; Python "
        f"{env['python']} on {env['platform']}, {env['cpus']} CPUs, load average at the end "
        f"{load}.",
        "",
        f"Versions: {versions}.",
    ]
    for s in chosen:
        rows = outcomes.get(s.key, {})
        lines += ["", f"## {s.key} — {s.title}", "", _settings(s), ""]
        lines += _markdown(*_TABLES[s.metric](s, rows))
        if goals := _targets.targets(s, rows):
            lines += ["", *goals]
    written = [out / "RESULTS.md"]
    chart = _chart(out / "results.png", chosen, outcomes)
    if chart is None:
        lines += ["", "(matplotlib is not installed: no chart.)"]
    else:
        lines += ["", "![results](results.png)"]
        written.append(chart)
    (out / "RESULTS.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return written


def _chart(
    path: Path, chosen: list[sc.Scenario], outcomes: dict[str, dict[str, Outcome]]
) -> Path | None:
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 3
    rows = max(1, -(-len(chosen) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.flat[len(chosen) :]:
        ax.axis("off")
    for ax, s in zip(axes.flat, chosen, strict=False):
        label, value = _CHART[s.metric]
        names, values, colors = [], [], []
        for o in outcomes.get(s.key, {}).values():
            v = None if o.skipped else value(s, o)
            if v is None:
                continue
            capped = s.metric == "fail_time" and any(r.get("timeout") for r in o.runs)
            names.append(o.contender + (" (capped)" if capped else ""))
            values.append(v)
            colors.append("tab:green" if o.contender.startswith("embedguard") else "tab:gray")
        ax.barh(names, values, color=colors)
        ax.invert_yaxis()
        ax.set_title(f"{s.key}: {s.title}"[:70], fontsize=9)
        ax.set_xlabel(label, fontsize=8)
        ax.tick_params(labelsize=8)
        floor = _floor(s) if s.metric == "wall" else None
        if floor is not None:
            ax.axvline(floor, color="tab:red", linestyle="--", linewidth=1, label="floor")
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
