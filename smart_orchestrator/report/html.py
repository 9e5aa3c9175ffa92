"""One self-contained HTML file per wave: timeline, dependency graph, gates, tokens and cost.

Everything is inline (CSS, SVG, a small script); the page loads nothing from anywhere.
The SVG and tables are complete without the script, which only adds highlighting, a
detail panel and local times. Task outputs are left out: a report is made to be shared.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from html import escape
from importlib.resources import files
from typing import Any

from ..waves.snapshot import TaskView
from ..waves.state import AttemptRecord
from .data import GateRun, RunData

__all__ = ["STATE_COLOURS", "render_html"]

STATE_COLOURS = {
    "succeeded": "#2e7d32", "completed": "#2e7d32", "failed": "#c62828",
    "retrying": "#ef6c00", "partial": "#ef6c00", "running": "#1565c0",
    "pending": "#9e9e9e", "skipped": "#b0b0b0", "cancelled": "#6d4c41",
    "cancelling": "#6d4c41", "interrupted": "#6a1b9a", "compensating": "#00838f",
}
_ROW_H, _BAR_H, _LABEL_W, _PLOT_W = 30, 18, 150, 760
_NODE_W, _NODE_H, _COL_GAP, _ROW_GAP = 150, 44, 70, 18
# The page may load nothing: everything it needs is inline.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def _asset(name: str) -> str:
    return files(__package__).joinpath("assets", name).read_text(encoding="utf-8")


def _colour(state: str | None) -> str:
    return STATE_COLOURS.get(state or "running", "#607d8b")


def _iso(ts_us: int | None) -> str:
    if ts_us is None:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts_us / 1e6))


def _time(ts_us: int | None) -> str:
    """A UTC timestamp the script turns into the reader's local time."""
    if ts_us is None:
        return "-"
    return f'<time datetime="{_iso(ts_us)}">{_iso(ts_us).replace("T", " ")}</time>'


def _badge(state: str, label: str | None = None) -> str:
    return (f'<span class="badge" style="background:{_colour(state)}">'
            f"{escape(label or state)}</span>")


def _task_attrs(task_id: str) -> str:
    return f'data-task="{escape(task_id, quote=True)}"'


# -- sections --------------------------------------------------------------------------------

def _summary(data: RunData) -> str:
    snap = data.snapshot
    tokens_in = sum(t.input_tokens for t in snap.tasks)
    tokens_out = sum(t.output_tokens for t in snap.tasks)
    retries = sum(max(0, t.attempts - 1) for t in snap.tasks)
    reformats = sum(t.reformats for t in snap.tasks)
    end = snap.finished_us or data.generated_us
    cards = [("state", _badge(snap.state)),
             ("tasks", escape(", ".join(f"{n} {s}" for s, n in sorted(snap.counts.items())))),
             ("wall time", f"{(end - snap.created_us) / 1e6:.1f} s"),
             ("attempts", f"{len(data.attempts)} ({retries} retries, {reformats} reformats)"),
             ("tokens", f"{tokens_in + tokens_out:,} ({tokens_in:,} in, {tokens_out:,} out)"),
             ("cost", f"${sum(t.cost_usd for t in snap.tasks):.4f}")]
    body = "".join(f'<div class="card"><div class="k">{k}</div><div class="v">{v}</div></div>'
                   for k, v in cards)
    reason = f'<p class="reason">{escape(snap.reason)}</p>' if snap.reason else ""
    return f'<section id="summary"><div class="cards">{body}</div>{reason}</section>'


def _ordered(tasks: Sequence[TaskView]) -> list[TaskView]:
    return sorted(tasks, key=lambda t: t.level)


def _timeline(data: RunData) -> str:
    snap = data.snapshot
    tasks = _ordered(snap.tasks)
    start = snap.created_us
    ends = [a.finished_us or data.generated_us for a in data.attempts]
    end = max([snap.finished_us or 0, *ends, start + 1_000_000])
    span = end - start

    def x(ts: int) -> float:
        return _LABEL_W + (ts - start) / span * _PLOT_W

    height = _ROW_H * len(tasks) + 30
    parts = [f'<svg id="timeline" viewBox="0 0 {_LABEL_W + _PLOT_W + 20} {height}" '
             f'width="100%" role="img" aria-label="timeline of the wave\'s agents">']
    for tick in _ticks(span / 1e6):
        tx = _LABEL_W + tick * 1e6 / span * _PLOT_W
        parts.append(f'<line class="grid" x1="{tx:.1f}" y1="0" x2="{tx:.1f}" '
                     f'y2="{height - 22}"/><text class="tick" x="{tx:.1f}" y="{height - 8}">'
                     f"{tick:g}s</text>")
    by_task: dict[str, list[AttemptRecord]] = {}
    for a in data.attempts:
        by_task.setdefault(a.task_id, []).append(a)
    for row, task in enumerate(tasks):
        y = row * _ROW_H + 4
        parts.append(f'<g class="task" {_task_attrs(task.id)}><text class="label" x="4" '
                     f'y="{y + 13}">{escape(task.id)}</text>')
        attempts = by_task.get(task.id, [])
        if not attempts:
            parts.append(f'<text class="note" x="{_LABEL_W + 4}" y="{y + 13}">'
                         f"{escape(task.state)}: never started</text>")
        for a in attempts:
            parts.append(_bar(a, x(a.started_us), x(a.finished_us or data.generated_us), y))
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def _bar(a: AttemptRecord, x0: float, x1: float, y: int) -> str:
    state = a.outcome or "running"
    width = max(x1 - x0, 3.0)
    label = f"#{a.attempt}" + (f" +{a.reformats} reformat" if a.reformats else "")
    tip = (f"{a.task_id} attempt {a.attempt} ({a.context}): {state}"
           + (f", {a.error_class}: {a.reason}" if a.error_class else "")
           + (f", {a.reformats} reformat(s)" if a.reformats else ""))
    return (f'<g class="attempt" data-state="{escape(state, quote=True)}">'
            f"<title>{escape(tip)}</title>"
            f'<rect x="{x0:.1f}" y="{y}" width="{width:.1f}" height="{_BAR_H}" rx="3" '
            f'fill="{_colour(state)}"/>'
            f'<text class="bar-label" x="{x0 + 4:.1f}" y="{y + 13}">{escape(label)}</text></g>')


def _ticks(seconds: float) -> list[float]:
    step = next(s for s in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600, 1e9)
                if seconds / s <= 10)
    return [i * step for i in range(int(seconds // step) + 1)]


def _untangled(tasks: Sequence[TaskView], levels: Sequence[Sequence[str]]) -> list[list[str]]:
    """Each level ordered by where its dependencies sit in the levels before it (the
    barycenter heuristic), which removes most edge crossings of small plans."""
    deps = {t.id: t.depends_on for t in tasks}
    rank: dict[str, float] = {}
    out: list[list[str]] = []
    for level in levels:
        def key(task_id: str, level: Sequence[str] = level) -> float:
            placed = [rank[d] for d in deps[task_id] if d in rank]
            return sum(placed) / len(placed) if placed else float(level.index(task_id))
        ordered = sorted(level, key=key)
        rank.update({task_id: float(i) for i, task_id in enumerate(ordered)})
        out.append(ordered)
    return out


def _graph(data: RunData) -> str:
    snap = data.snapshot
    levels = _untangled(snap.tasks, snap.levels)
    pos: dict[str, tuple[float, float]] = {}
    tallest = max(len(level) for level in levels)
    height = tallest * (_NODE_H + _ROW_GAP) + _ROW_GAP
    for col, level in enumerate(levels):
        offset = (height - len(level) * (_NODE_H + _ROW_GAP) + _ROW_GAP) / 2
        for row, task_id in enumerate(level):
            pos[task_id] = (10 + col * (_NODE_W + _COL_GAP),
                            offset + row * (_NODE_H + _ROW_GAP))
    width = 20 + len(levels) * (_NODE_W + _COL_GAP) - _COL_GAP
    parts = [f'<svg id="graph" viewBox="0 0 {width} {height}" width="{min(width, 980)}" '
             'role="img" aria-label="dependency graph">'
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="9" '
             'markerHeight="9" markerUnits="userSpaceOnUse" orient="auto">'
             '<path d="M0,0 L10,5 L0,10 z" fill="#78909c"/></marker></defs>']
    for task in snap.tasks:
        tx, ty = pos[task.id]
        for dep in task.depends_on:
            dx, dy = pos[dep]
            x0, y0, x1, y1 = dx + _NODE_W, dy + _NODE_H / 2, tx, ty + _NODE_H / 2
            mid = (x0 + x1) / 2
            parts.append(f'<path class="edge" data-from="{escape(dep, quote=True)}" '
                         f'data-to="{escape(task.id, quote=True)}" d="M{x0:.1f},{y0:.1f} '
                         f'C{mid:.1f},{y0:.1f} {mid:.1f},{y1:.1f} {x1 - 2:.1f},{y1:.1f}" '
                         'marker-end="url(#arrow)"/>')
    for task in snap.tasks:
        tx, ty = pos[task.id]
        tries = f"{task.attempts} attempt{'s' if task.attempts != 1 else ''}"
        parts.append(f'<g class="node task" {_task_attrs(task.id)}>'
                     f"<title>{escape(task.id)}: {escape(task.state)}, {tries}</title>"
                     f'<rect x="{tx}" y="{ty:.1f}" width="{_NODE_W}" height="{_NODE_H}" rx="8" '
                     f'fill="{_colour(task.state)}"/>'
                     f'<text x="{tx + 10}" y="{ty + 18:.1f}" class="node-id">'
                     f"{escape(task.id[:18])}</text>"
                     f'<text x="{tx + 10}" y="{ty + 34:.1f}" class="node-sub">'
                     f"{escape(task.state)} · {tries}</text></g>")
    parts.append("</svg>")
    return "".join(parts)


def _table(headers: Iterable[str], rows: Iterable[str], table_id: str) -> str:
    head = "".join(f"<th>{h}</th>" for h in headers)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}' \
           "</tbody></table>"


def _tasks_table(data: RunData) -> str:
    snap = data.snapshot
    most = max([t.input_tokens + t.output_tokens for t in snap.tasks] + [1])
    rows = []
    for t in _ordered(snap.tasks):
        tokens = t.input_tokens + t.output_tokens
        bar = f'<span class="bar" style="width:{100 * tokens / most:.0f}%"></span>'
        error = f"{t.error_class}: {t.reason}" if t.error_class else (t.reason or "")
        rows.append(
            f"<tr {_task_attrs(t.id)}><td>{escape(t.id)}</td><td>{_badge(t.state)}</td>"
            f"<td>{t.level + 1}</td><td>{escape(', '.join(t.depends_on)) or '-'}</td>"
            f"<td>{t.attempts}</td><td>{t.reformats}</td>"
            f"<td>{t.duration_s if t.duration_s is not None else '-'}</td>"
            f'<td class="num">{t.input_tokens:,}</td><td class="num">{t.output_tokens:,}</td>'
            f'<td class="tokens">{bar}{tokens:,}</td><td class="num">${t.cost_usd:.4f}</td>'
            f"<td>{escape(error)}</td></tr>")
    return _table(["task", "state", "level", "depends on", "attempts", "reformats",
                   "time (s)", "input", "output", "tokens", "cost", "error / reason"],
                  rows, "tasks")


def _ledger_table(data: RunData) -> str:
    if not data.ledger:
        return '<p class="note">No ledger rows for this run.</p>'
    rows = [f"<tr {_task_attrs(str(a['task_id']))}><td>{escape(str(a['task_id']))}</td>"
            f"<td>{escape(str(a['model']))}</td><td>{escape(str(a['state']))}</td>"
            f'<td class="num">{a["input_tokens"]:,}</td>'
            f'<td class="num">{a["output_tokens"]:,}</td>'
            f'<td class="num">{a["cache_read_tokens"]:,}</td>'
            f'<td class="num">{a["cache_write_tokens"]:,}</td>'
            f'<td class="num">${a["estimated_usd"]:.4f}</td>'
            f'<td class="num">${a["cost_usd"]:.4f}</td><td>{escape(str(a["priced"]))}</td>'
            "</tr>" for a in data.ledger]
    return _table(["task", "model", "ledger", "input", "output", "cache read", "cache write",
                   "estimated", "cost", "priced"], rows, "ledger")


def _gates_section(gates: Sequence[GateRun], until_us: int, generated_us: int) -> str:
    window = "until the next wave started" if until_us < generated_us else \
        "until this report was made"
    if not gates:
        return (f"<p class=\"note\">No gate evaluation was recorded from the wave's start "
                f"{window}. The gates run on the working copy: run <code>gate_status</code> "
                "or <code>smart-orchestrator gates</code> after the wave.</p>")
    rows = []
    for g in gates:
        checks = "; ".join(f"{c.name} (tier {c.tier}) {c.status}"
                           + (f" exit {c.exit_code}" if c.exit_code is not None else "")
                           for c in g.checks) or f"all {g.cached} cached"
        verdict = "passed" if g.passed else f"blocked at tier {g.blocking_tier}"
        rows.append(f"<tr><td>{_time(g.ts_us)}</td><td><code>{escape(g.tree[:12])}</code></td>"
                    f"<td>{_badge('succeeded' if g.passed else 'failed', verdict)}</td>"
                    f"<td>{escape(g.reason)}</td><td>{escape(checks)}</td></tr>")
    return (f"<p class=\"note\">Gate evaluations recorded from the wave's start {window}."
            "</p>" + _table(["when", "tree", "verdict", "reason", "checks run"], rows, "gates"))


def _payload(data: RunData) -> str:
    """The data the script uses for the detail panel; `<` escaped so it cannot end the tag."""
    costs = data.attempt_costs
    tasks: dict[str, Any] = {}
    for t in data.snapshot.tasks:
        tasks[t.id] = {"state": t.state, "depends_on": list(t.depends_on),
                       "attempts": [], "error": t.error_class, "reason": t.reason}
    for a in data.attempts:
        cost = costs.get((a.task_id, a.attempt))
        tasks[a.task_id]["attempts"].append({
            "attempt": a.attempt, "context": a.context, "outcome": a.outcome or "running",
            "started": _iso(a.started_us), "finished": _iso(a.finished_us),
            "seconds": None if a.finished_us is None
            else round((a.finished_us - a.started_us) / 1e6, 2),
            "reformats": a.reformats, "error": a.error_class, "reason": a.reason,
            "tokens": None if cost is None else cost.input_tokens + cost.output_tokens,
            "cost_usd": None if cost is None else round(cost.cost_usd, 6)})
    return json.dumps({"run_id": data.snapshot.run_id, "tasks": tasks,
                       "order": [t.id for t in _ordered(data.snapshot.tasks)]}
                      ).replace("<", "\\u003c")


def render_html(data: RunData) -> str:
    snap = data.snapshot
    title = f"Wave {snap.run_id}" + (f" - {snap.name}" if snap.name else "")
    legend = "".join(f'<span class="key"><i style="background:{c}"></i>{s}</span>'
                     for s, c in STATE_COLOURS.items()
                     if s in ("succeeded", "failed", "retrying", "running", "pending",
                              "skipped", "cancelled", "interrupted"))
    audit = escape(data.audit.one_line())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<title>{escape(title)}</title><style>{_asset("report.css")}</style></head>
<body data-ready="false">
<header><h1>{escape(title)}</h1>
<p class="meta">Run <code>{escape(snap.run_id)}</code> · started {_time(snap.created_us)} ·
finished {_time(snap.finished_us)} · report made {_time(data.generated_us)}</p></header>
{_summary(data)}
<section><h2>Timeline</h2><p class="note">One row per task, one bar per attempt (retries are
later bars on the same row); hover for the outcome and reason.</p>
<div class="legend">{legend}</div>{_timeline(data)}</section>
<section class="split"><div><h2>Dependency graph</h2>{_graph(data)}</div>
<aside id="detail"><h2>Task</h2><p class="note">Select a task in the timeline, the graph or
the table.</p></aside></section>
<section><h2>Tasks, tokens and cost</h2>{_tasks_table(data)}</section>
<section><h2>Cost per agent (ledger)</h2>{_ledger_table(data)}</section>
<section><h2>Quality gates</h2>{_gates_section(data.gates, data.gates_until_us,
                                                  data.generated_us)}</section>
<footer><p>{data.audit_events} audit events for this run; {audit} (checked when the report
was made). Task outputs are not included.</p></footer>
<script type="application/json" id="run-data">{_payload(data)}</script>
<script>{_asset("report.js")}</script>
</body></html>
"""
