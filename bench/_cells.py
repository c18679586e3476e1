"""The cells of the report's tables: every run of a contender, and how numbers are shown."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

import _contenders as ct
import _scenarios as sc


@dataclass
class Outcome:
    """Every run of one contender in one scenario."""

    contender: str
    skipped: str | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)

    def median(self, key: str, *, ok_only: bool = True) -> float | None:
        """The median of ``key`` over the (successful) runs, or None."""
        values = [
            float(r[key])
            for r in self.runs
            if key in r and r[key] is not None and (r.get("ok") or not ok_only)
        ]
        return statistics.median(values) if values else None

    @property
    def failures(self) -> list[dict[str, Any]]:
        """The runs that did not finish correctly."""
        return [r for r in self.runs if not r.get("ok")]


def num(value: float | None, digits: int = 3) -> str:
    """``value`` with ``digits`` decimals, or ``-``."""
    return "-" if value is None else f"{value:.{digits}f}"


def ratio(value: float | None, base: float | None) -> str:
    """``value / base`` as ``1.23x``, or ``-``."""
    if value is None or base is None or base <= 0:
        return "-"
    return f"{value / base:.2f}x"


def notes(o: Outcome, s: sc.Scenario) -> str:
    """The contender's settings, or why it was skipped, and its failed runs."""
    if o.skipped:
        return o.skipped
    text = ct.describe(o.contender, s)
    bad = o.failures
    if bad:
        text += f"; {len(bad)}/{len(o.runs)} runs failed: {str(bad[0].get('error'))[:120]}"
    return text.replace("|", "/")


def floor_of(s: sc.Scenario) -> float | None:
    """The least wall time the scenario's server latency model allows, if it has one."""
    server = s.server or {}
    if "latency" not in server:
        return None
    return sc.floor_seconds(
        s.n,
        latency=server.get("latency", 0.0),
        latency_per_input=server.get("latency_per_input", 0.0),
        slots=s.slots,
    )
