"""The metrics table as Markdown, and the time window helper the adapters share."""

from __future__ import annotations

import time

from .core import Metric, MetricsReport

__all__ = ["render_markdown", "window"]

_US_PER_DAY = 86_400 * 1_000_000


def window(days: float, *, until_us: int | None = None) -> tuple[int, int]:
    """(since_us, until_us) covering the last `days` days up to `until_us` (default now)."""
    end = until_us if until_us is not None else time.time_ns() // 1000 + 1
    return end - int(days * _US_PER_DAY), end


def _cell(m: Metric) -> str:
    if m.value is None:
        return "no data"
    if m.unit == "ratio":
        text = f"{m.value:.0%} ({m.numerator}/{int(m.denominator)})"
    elif m.unit == "per_month":
        text = f"{m.value:g}/month ({m.numerator} in {m.denominator:g} months)"
    else:
        text = str(m.numerator)
    mark = {True: " ok", False: " MISS", None: ""}[m.meets_target]
    return text + mark


def _day(us: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(us / 1e6))


def render_markdown(report: MetricsReport) -> str:
    cols = report.columns
    lines = [f"## Smart Orchestrator metrics, {_day(report.since_us)} to "
             f"{_day(report.until_us)}", "",
             "| metric | target | " + " | ".join(c.label for c in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    keys = {m.key: m for c in cols for m in c.metrics}
    for key, first in keys.items():
        cells = []
        for c in cols:
            found = next((m for m in c.metrics if m.key == key), None)
            cells.append(_cell(found) if found else "-")
        lines.append(f"| {first.label} | {first.target} | " + " | ".join(cells) + " |")
    lines += ["", f"{report.events} audit events read."]
    lines += [f"Note: {n}" for n in report.notes]
    return "\n".join(lines)
