"""The plan's outcome metrics, computed from the audit chain over a time window.

Three columns: native `Agent` calls seen by the hooks in warn mode (the "before" the plan
measures against) and in enforce mode (the "after"), and `spawn_wave` runs. Each audit kind
has one handler; a new kind is one more entry in `_HANDLERS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..store.base import Store

__all__ = ["COLUMNS", "DEFAULT_CONTEXT_WINDOW", "Column", "Metric", "MetricsReport",
           "compute_metrics"]

ColumnName = Literal["native_before", "native_after", "waves"]
COLUMNS: dict[ColumnName, str] = {
    "native_before": "native Agent, warn mode (before)",
    "native_after": "native Agent, enforce mode (after)",
    "waves": "spawn_wave runs",
}
DEFAULT_CONTEXT_WINDOW = 200_000
OVERFLOW_FRACTION = 0.8
_AGENT_TOOLS = ("Agent", "Task")
_US_PER_DAY = 86_400 * 1_000_000


@dataclass(frozen=True, slots=True)
class Metric:
    key: str
    label: str
    value: float | None          # a ratio in [0, 1], or events per month; None: no data
    unit: Literal["ratio", "per_month", "count"]
    numerator: int
    denominator: float
    target: str
    meets_target: bool | None


@dataclass(frozen=True, slots=True)
class Column:
    name: ColumnName
    label: str
    metrics: tuple[Metric, ...]
    counts: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class MetricsReport:
    since_us: int
    until_us: int
    events: int
    columns: tuple[Column, ...]
    notes: tuple[str, ...]


@dataclass(slots=True)
class _Tally:
    calls: int = 0
    allowed: int = 0
    denied: int = 0
    resource_denied: int = 0
    would_deny: int = 0
    ended: int = 0
    ok: int = 0
    failed: int = 0
    over_window: int = 0
    compactions: int = 0
    crashes: int = 0
    policy_errors: int = 0
    tasks: int = 0
    tasks_ok: int = 0
    runs: int = 0
    runs_completed: int = 0
    runs_cancelled: int = 0


@dataclass(slots=True)
class _State:
    window_tokens: int
    tallies: dict[ColumnName, _Tally] = field(
        default_factory=lambda: {name: _Tally() for name in COLUMNS})
    by_tool_use: dict[str, ColumnName] = field(default_factory=dict)
    by_session: dict[str, ColumnName] = field(default_factory=dict)
    launched: dict[str, ColumnName] = field(default_factory=dict)   # agent_id -> column
    open_calls: dict[str, tuple[str, ColumnName]] = field(default_factory=dict)
    run_tasks: dict[str, int] = field(default_factory=dict)
    tasks_ok: set[tuple[str, str]] = field(default_factory=set)
    tasks_seen: dict[str, set[str]] = field(default_factory=dict)
    unattributed: int = 0

    def native(self, data: Mapping[str, Any]) -> ColumnName:
        tool_use, session = str(data.get("tool_use_id") or ""), str(data.get("session_id") or "")
        return self.by_tool_use.get(tool_use) or self.by_session.get(session) or "native_after"


def _is_wave_source(data: Mapping[str, Any]) -> bool:
    return str(data.get("source") or "").startswith("wave")


def _decision_column(data: Mapping[str, Any]) -> ColumnName:
    """Warn mode is the baseline: an explicit `mode`, else the permissive preset."""
    mode = data.get("mode")
    if mode is not None:
        return "native_before" if mode == "warn" else "native_after"
    return "native_before" if data.get("preset") == "permissive" else "native_after"


# -- handlers: one per audit kind --------------------------------------------------------------
def _decision(s: _State, d: Mapping[str, Any]) -> None:
    if d.get("tool") not in _AGENT_TOOLS or _is_wave_source(d) or d.get("event") not in (
            None, "PreToolUse"):
        return
    col = _decision_column(d)
    t = s.tallies[col]
    t.calls += 1
    tool_use, session = str(d.get("tool_use_id") or ""), str(d.get("session_id") or "")
    s.by_session[session] = col
    if d.get("decision") == "deny":
        t.denied += 1
        if any(str(r).startswith("admission:") for r in d.get("denied_by") or []):
            t.resource_denied += 1
        return
    t.allowed += 1
    if d.get("would_deny"):
        t.would_deny += 1
    if tool_use:
        s.by_tool_use[tool_use] = col
        s.open_calls[tool_use] = (session, col)


def _agent_end(s: _State, d: Mapping[str, Any]) -> None:
    if _is_wave_source(d):
        return
    col = s.native(d)
    t = s.tallies[col]
    s.open_calls.pop(str(d.get("tool_use_id") or ""), None)
    t.ended += 1
    if d.get("ok"):
        t.ok += 1
    else:
        t.failed += 1
    size = d.get("context_tokens") or d.get("total_tokens") or d.get("input_tokens")
    if isinstance(size, int) and size > OVERFLOW_FRACTION * s.window_tokens:
        t.over_window += 1


def _agent_launched(s: _State, d: Mapping[str, Any]) -> None:
    if not _is_wave_source(d) and d.get("agent_id"):
        s.launched[str(d["agent_id"])] = s.native(d)
        s.open_calls.pop(str(d.get("tool_use_id") or ""), None)


def _agent_stop(s: _State, d: Mapping[str, Any]) -> None:
    # Only background agents end here: a foreground one already ended with agent.end.
    col = s.launched.pop(str(d.get("agent_id") or ""), None)
    if col is not None:
        t = s.tallies[col]
        t.ended += 1
        t.ok += 1


def _policy_error(s: _State, d: Mapping[str, Any]) -> None:
    if not _is_wave_source(d):
        s.tallies[s.native(d)].policy_errors += 1


def _session_end(s: _State, d: Mapping[str, Any]) -> None:
    """Agents still open when their session ends never reported back: count them lost."""
    session = str(d.get("session_id") or "")
    for tool_use, (owner, col) in list(s.open_calls.items()):
        if owner == session:
            s.tallies[col].crashes += 1
            del s.open_calls[tool_use]


def _compact(s: _State, d: Mapping[str, Any]) -> None:
    session = str(d.get("session_id") or "")
    col = s.by_session.get(session)
    if col is None:
        s.unattributed += 1
        col = "native_after"
    s.tallies[col].compactions += 1


def _wave_start(s: _State, d: Mapping[str, Any]) -> None:
    s.run_tasks[str(d.get("run_id"))] = int(d.get("tasks") or 0)


def _wave_agent_end(s: _State, d: Mapping[str, Any]) -> None:
    outcome, error = d.get("outcome"), d.get("error_class")
    if outcome == "cancelled":
        return  # a person's cancel says nothing about the agent
    t = s.tallies["waves"]
    t.ended += 1
    s.tasks_seen.setdefault(str(d.get("run_id")), set()).add(str(d.get("task_id")))
    if outcome == "succeeded":
        t.ok += 1
        s.tasks_ok.add((str(d.get("run_id")), str(d.get("task_id"))))
    else:
        t.failed += 1
    if error == "context_overflow":
        t.over_window += 1
    if error == "crash":
        t.crashes += 1


def _wave_end(s: _State, d: Mapping[str, Any]) -> None:
    t = s.tallies["waves"]
    run_id = str(d.get("run_id"))
    t.runs += 1
    state = d.get("state")
    if state == "completed":
        t.runs_completed += 1
    elif state == "cancelled":
        t.runs_cancelled += 1
    # A run started before the window: count the tasks its agents reported on.
    t.tasks += s.run_tasks.get(run_id, len(s.tasks_seen.get(run_id, ())))
    t.tasks_ok += sum(1 for r, _ in s.tasks_ok if r == run_id)


_HANDLERS: dict[str, Callable[[_State, Mapping[str, Any]], None]] = {
    "policy.decision": _decision,
    "agent.end": _agent_end,
    "agent.launched": _agent_launched,
    "agent.stop": _agent_stop,
    "policy.error": _policy_error,
    "session.end": _session_end,
    "context.compact": _compact,
    "wave.start": _wave_start,
    "wave.agent_end": _wave_agent_end,
    "wave.end": _wave_end,
}


# -- the report ------------------------------------------------------------------------------
def compute_metrics(store: Store, *, since_us: int, until_us: int,
                    context_window_tokens: int = DEFAULT_CONTEXT_WINDOW) -> MetricsReport:
    state = _State(context_window_tokens)
    rows = store.audit.events(kinds=tuple(_HANDLERS), since_us=since_us, until_us=until_us)
    for rec in rows:
        if "_unreadable" not in rec.data:
            _HANDLERS[rec.kind](state, dict(rec.data))
    months = max(until_us - since_us, 1) / (30 * _US_PER_DAY)
    columns = tuple(Column(name, label, _metrics(name, state.tallies[name], months),
                           _counts(state.tallies[name]))
                    for name, label in COLUMNS.items())
    notes = []
    if state.unattributed:
        notes.append(f"{state.unattributed} compaction(s) came from sessions with no Agent "
                     "call in the window; counted under enforce mode")
    if state.open_calls:
        notes.append(f"{len(state.open_calls)} Agent call(s) had not ended by the end of "
                     "the window")
    return MetricsReport(since_us, until_us, len(rows), columns, tuple(notes))


def _ratio(key: str, label: str, num: int, den: int, target: str,
           meets: Callable[[float], bool]) -> Metric:
    value = num / den if den else None
    return Metric(key, label, value, "ratio", num, den, target,
                  None if value is None else meets(value))


def _metrics(name: ColumnName, t: _Tally, months: float) -> tuple[Metric, ...]:
    native = name != "waves"
    started = t.allowed if native else t.tasks
    completed = t.ok if native else t.tasks_ok
    incidents = t.over_window + t.compactions
    crashes = t.crashes + t.policy_errors
    per_month = crashes / months
    active = bool(t.calls or t.ended or t.runs)
    out = [
        _ratio("task_completion", "Predictable task completion", completed, started,
               ">= 80%", lambda v: v >= 0.80),
        _ratio("agent_failure_rate", "Agent failure rate", t.failed, t.ended, "< 15%",
               lambda v: v < 0.15),
        _ratio("context_overflow_rate", "Context overflow incidents", incidents,
               t.ended if not native else max(t.allowed, t.ended), "< 5%", lambda v: v < 0.05),
        Metric("resource_crashes", "Resource crashes", round(per_month, 2) if active else None,
               "per_month", crashes, round(months, 3), "<= 1 per month",
               per_month <= 1.0 if active else None),
        Metric("resource_denials", "Resource denials", float(t.resource_denied), "count",
               t.resource_denied, 1, "-", None),
    ]
    if not native:
        out.append(_ratio("wave_completion", "Wave completion rate", t.runs_completed,
                          t.runs - t.runs_cancelled, ">= 90%", lambda v: v >= 0.90))
    return tuple(out)


def _counts(t: _Tally) -> dict[str, int]:
    return {k: getattr(t, k) for k in _Tally.__dataclass_fields__}
