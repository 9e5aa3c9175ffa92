"""The plan's metrics from audit events shaped like the ones the hooks and waves write."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from mcp_server.server import build_server
from smart_orchestrator.audit import AuditLog
from smart_orchestrator.cli import main as cli_main
from smart_orchestrator.metrics import MetricsReport, compute_metrics, render_markdown, window
from smart_orchestrator.store import SqliteStore

DAY_US = 86_400 * 1_000_000
T0 = time.time_ns() // 1000 - 10 * DAY_US  # where the synthetic history starts


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        self.now += 1_000_000
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def timed(db_path: Path, clock: Clock) -> Iterator[SqliteStore]:
    store = SqliteStore(db_path, clock_us=clock)
    yield store
    store.close()


@pytest.fixture
def log(timed: SqliteStore) -> AuditLog:
    return AuditLog(timed)


def decide(log: AuditLog, session: str, tool_use: str, *, preset: str = "default",
           decision: str = "allow", denied_by: tuple[str, ...] = (),
           would_deny: tuple[str, ...] = (), source: str = "server") -> None:
    log.record("policy.decision", event="PreToolUse", tool="Agent", session_id=session,
               tool_use_id=tool_use, agent_type="general-purpose", decision=decision,
               denied_by=list(denied_by), would_deny=list(would_deny), preset=preset,
               source=source)


def end(log: AuditLog, session: str, tool_use: str, *, ok: bool = True,
        total_tokens: int = 20_000) -> None:
    log.record("agent.end", session_id=session, tool_use_id=tool_use, agent_id=f"a-{tool_use}",
               agent_type="general-purpose", status="completed" if ok else "failed", ok=ok,
               total_tokens=total_tokens, source="server")


def agent(log: AuditLog, session: str, tool_use: str, **kw: Any) -> None:
    decide(log, session, tool_use, preset=kw.pop("preset", "default"))
    end(log, session, tool_use, **kw)


def history(log: AuditLog) -> None:
    # Warn mode (the permissive preset): 4 agents, one failed, one near its context limit,
    # and one compaction.
    for i, kw in enumerate([{}, {}, {"ok": False}, {"total_tokens": 170_000}]):
        agent(log, "warn", f"w{i}", preset="permissive", **kw)
    log.record("context.compact", session_id="warn", trigger="auto")
    # Enforce mode: two denials (one for resources), three foreground agents, a background
    # one, one that never reports back before its session ends, and a policy crash.
    decide(log, "enf", "d1", decision="deny", denied_by=("admission:max-in-flight",))
    decide(log, "enf", "d2", decision="deny", denied_by=("secrets:github-token",))
    for i in range(3):
        agent(log, "enf", f"e{i}")
    decide(log, "enf", "bg")
    log.record("agent.launched", session_id="enf", tool_use_id="bg", agent_id="agent-bg",
               agent_type="general-purpose", source="server", background=True)
    log.record("agent.stop", session_id="enf", agent_id="agent-bg", agent_type="x",
               source="server")
    decide(log, "enf", "lost")
    log.record("policy.error", event="PostToolUse", tool="Agent", session_id="enf",
               error="RuntimeError", source="server")
    log.record("session.end", session_id="enf", released_leases=1, source="server")
    # A wave agent's own Agent call is not a native call.
    decide(log, "wave-session", "x1", source="wave")
    # Waves: one partial run, one completed, one cancelled by a person.
    log.record("wave.start", run_id="r1", tasks=3)
    for task, outcome, error in [("t1", "succeeded", None), ("t2", "retrying", "timeout"),
                                 ("t2", "succeeded", None),
                                 ("t3", "failed", "context_overflow")]:
        log.record("wave.agent_end", run_id="r1", task_id=task, outcome=outcome,
                   error_class=error)
    log.record("wave.end", run_id="r1", state="partial")
    log.record("wave.start", run_id="r2", tasks=1)
    log.record("wave.agent_end", run_id="r2", task_id="t1", outcome="succeeded",
               error_class=None)
    log.record("wave.end", run_id="r2", state="completed")
    log.record("wave.start", run_id="r3", tasks=1)
    log.record("wave.agent_end", run_id="r3", task_id="t1", outcome="cancelled",
               error_class="cancelled")
    log.record("wave.end", run_id="r3", state="cancelled")


def _table(report: MetricsReport) -> dict[str, dict[str, tuple[int, float] | float | None]]:
    out: dict[str, dict[str, Any]] = {}
    for col in report.columns:
        out[col.name] = {m.key: (m.numerator, m.denominator) if m.unit == "ratio" else m.value
                         for m in col.metrics}
    return out


def _week(clock: Clock) -> tuple[int, int]:
    return window(7, until_us=clock.now + 1)


def test_computes_the_plans_table_per_column(
        log: AuditLog, timed: SqliteStore, clock: Clock) -> None:
    history(log)
    since, until = _week(clock)
    report = compute_metrics(timed, since_us=since, until_us=until)
    table = _table(report)
    assert table["native_before"]["task_completion"] == (3, 4)
    assert table["native_before"]["agent_failure_rate"] == (1, 4)
    assert table["native_before"]["context_overflow_rate"] == (2, 4)
    assert table["native_after"]["task_completion"] == (4, 5)
    assert table["native_after"]["agent_failure_rate"] == (0, 4)
    assert table["native_after"]["resource_denials"] == 1.0
    assert table["native_after"]["resource_crashes"] == pytest.approx(2 / (7 / 30), abs=0.01)
    assert table["waves"]["task_completion"] == (3, 5)
    assert table["waves"]["agent_failure_rate"] == (2, 5)
    assert table["waves"]["context_overflow_rate"] == (1, 5)
    assert table["waves"]["wave_completion"] == (1, 2)
    assert "wave_completion" not in table["native_after"]
    after = next(c for c in report.columns if c.name == "native_after")
    verdicts = {m.key: m.meets_target for m in after.metrics}
    assert verdicts["task_completion"] is True and verdicts["resource_crashes"] is False


def test_events_outside_the_window_are_ignored(
        log: AuditLog, timed: SqliteStore, clock: Clock) -> None:
    agent(log, "old", "o1", ok=False)
    clock.now += 30 * DAY_US
    agent(log, "new", "n1")
    since, until = _week(clock)
    report = compute_metrics(timed, since_us=since, until_us=until)
    assert _table(report)["native_after"]["task_completion"] == (1, 1)
    assert report.events == 2


def test_an_empty_log_has_no_data_rather_than_perfect_scores(store: SqliteStore) -> None:
    since, until = window(7)
    report = compute_metrics(store, since_us=since, until_us=until)
    assert all(m.value is None or m.key == "resource_denials"
               for c in report.columns for m in c.metrics)
    assert "no data" in render_markdown(report)


def test_an_explicit_mode_field_decides_the_column(
        log: AuditLog, timed: SqliteStore, clock: Clock) -> None:
    log.record("policy.decision", event="PreToolUse", tool="Agent", session_id="s",
               tool_use_id="u", decision="allow", preset="default", mode="warn",
               source="server")
    end(log, "s", "u")
    since, until = _week(clock)
    report = compute_metrics(timed, since_us=since, until_us=until)
    assert _table(report)["native_before"]["task_completion"] == (1, 1)


def test_markdown_table_has_a_row_per_metric_and_a_column_per_source(
        log: AuditLog, timed: SqliteStore, clock: Clock) -> None:
    history(log)
    since, until = _week(clock)
    text = render_markdown(compute_metrics(timed, since_us=since, until_us=until))
    assert "| Predictable task completion | >= 80% | 75% (3/4) MISS | 80% (4/5) ok |" in text
    assert "| Wave completion rate | >= 90% | - | - | 50% (1/2) MISS |" in text


async def test_metrics_tool_returns_columns_and_the_table(log: AuditLog, clock: Clock) -> None:
    history(log)
    async with Client(build_server()) as client:
        result = await client.call_tool("metrics", {"days": 7, "until_us": clock.now + 1})
    out = result.structured_content
    assert out is not None and not result.is_error
    assert [c["name"] for c in out["columns"]] == ["native_before", "native_after", "waves"]
    assert "Predictable task completion" in out["table"]


def test_cli_metrics_json(log: AuditLog, db_path: Path, capsys: pytest.CaptureFixture[str],
                          ) -> None:
    agent(log, "s", "u")
    assert cli_main(["--db", str(db_path), "metrics", "--days", "36500", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["columns"][1]["counts"]["ok"] == 1
