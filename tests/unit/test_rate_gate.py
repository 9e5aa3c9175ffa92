"""The shared rate-limit gate: what closes it (native agents Claude Code gave up on, wave
agents' retries), for how long, and how new agents wait for it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from mcp_server.hook_output import hook_output as rendered
from smart_orchestrator.budget import Budget
from smart_orchestrator.budget.ratelimit import (
    NATIVE_GAVE_UP_S,
    close_rate_gate,
    gate_deadline_us,
    last_retry_delay_s,
    native_failure,
)
from smart_orchestrator.budget.waves import WaveBudget
from smart_orchestrator.policy.config import BudgetPolicy
from smart_orchestrator.store import SqliteStore
from smart_orchestrator.waves.agents import AgentRequest
from smart_orchestrator.waves.plan import AgentSpec
from smart_orchestrator.waves.runner import _api_retry, _Tally

from .policy_payloads import SESSION, pre_agent
from .test_policy_engine import FakeClock, audit_rows, decision, make_engine, reason

SHOWN_429 = ("API Error: Request rejected (429) · Number of request tokens has exceeded your "
             "per-minute rate limit")
TOOL_429 = ("Agent terminated early due to an API error: " + SHOWN_429 + " (error type "
            "rate_limit, HTTP 429, request id req_011, model sent to the API: claude-x)")


@pytest.mark.parametrize(("kind", "text", "status"), [
    ("rate_limit", SHOWN_429, 429),
    ("overloaded", "API Error: 529 Overloaded.", 529),
    # Claude Code reports a 529 that outlived its retries as a server error.
    ("server_error", "API Error: 529 Overloaded. This is a server-side issue", 529),
    ("server_error", "API Error: the API is overloaded right now", 529),
    ("", TOOL_429, 429),
    ("", "Agent terminated early due to an API error: API Error: (529) busy", 529),
    # Not rate limits.
    ("server_error", "API Error: 500 Internal server error", None),
    ("authentication_failed", "API Error: 401 (429)", None),
    ("invalid_request", SHOWN_429, None),
    ("max_output_tokens", "", None),
    # Words an agent chose, not an API error Claude Code reported.
    ("", "Tool failed: the agent wrote HTTP 429 and (529) overloaded in its answer", None),
    ("", "Bash failed: exit 1\nAPI Error is the name of my file; status (429)", None),
    ("", "Agent failed: API Error: (429) quoted from the agent's answer", None),
    ("", "x" * 500 + " API Error: HTTP 429", None),
    ("", "", None),
])
def test_native_failures_that_are_rate_limits_or_overloads(kind: str, text: str,
                                                           status: int | None) -> None:
    found = native_failure(kind, text)
    assert (found.status if found else None) == status


def _retry_line(status: int, delay_ms: Any) -> str:
    return json.dumps({"type": "system", "subtype": "api_error", "level": "error",
                       "error": {"status": status, "message": "x"}, "retryInMs": delay_ms,
                       "retryAttempt": 1, "maxRetries": 10})


def test_the_last_retry_delay_is_read_from_the_transcript_tail(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join([
        "x" * (300 << 10),  # beyond the tail read: ignored
        _retry_line(429, 1_000), "not json", _retry_line(500, 9_000),
        _retry_line(429, True), _retry_line(529, -5), _retry_line(429, 7_250),
        json.dumps({"type": "assistant", "subtype": "api_error", "retryInMs": 99_000,
                    "error": {"status": 429}}),
    ]) + "\n")
    assert last_retry_delay_s(path, max_s=300) == 7.25
    assert last_retry_delay_s(path, max_s=3) == 3  # a file the agents can write: bounded
    assert last_retry_delay_s(tmp_path / "missing.jsonl", max_s=300) is None
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    assert last_retry_delay_s(fifo, max_s=300) is None  # never blocks on a FIFO


def test_a_later_deadline_wins_and_waiters_add_their_own_jitter(store: SqliteStore) -> None:
    wait = close_rate_gate(store, 429, "r", 10.0, max_backoff_s=300, now=1000.0,
                           jitter=lambda: 0.0)
    assert wait == 10.0
    close_rate_gate(store, 429, "r", 2.0, max_backoff_s=300, now=1001.0, jitter=lambda: 0.0)
    row = store.rate_gate.get("api")
    assert row is not None and row.until_us == 1010_000_000
    assert gate_deadline_us(row, 0.0) == row.until_us
    assert gate_deadline_us(row, 0.999) > row.until_us
    assert gate_deadline_us(row, 5.0) <= row.until_us + (row.until_us - row.updated_us) // 4
    assert close_rate_gate(store, 529, "r", 1e9, max_backoff_s=60, now=1000.0) == 60


# -- native agents ------------------------------------------------------------------------
def _stop_failure(kind: str, text: str, *, agent_id: str = "", transcript: str = ""
                  ) -> dict[str, Any]:
    return {"hook_event_name": "StopFailure", "session_id": SESSION, "agent_id": agent_id,
            "agent_type": "general-purpose" if agent_id else "", "error": kind,
            "last_assistant_message": text, "transcript_path": transcript}


def test_a_subagent_that_gave_up_on_a_429_makes_new_agents_wait_then_go(
        store: SqliteStore, tmp_path: Path) -> None:
    clock = FakeClock()
    engine = make_engine(store, tmp_path, clock=clock, budget={"max_backoff_s": 20})
    engine.budgets.random = lambda: 0.5
    assert rendered(engine.handle(_stop_failure("rate_limit", SHOWN_429, agent_id="a1"))) == {}
    row = store.rate_gate.get("api")
    assert row is not None and row.status == 429
    # No Retry-After reaches a hook for a subagent: Claude Code's backoff cap, bounded.
    assert row.until_us - row.updated_us == 20_000_000 < NATIVE_GAVE_UP_S * 1e6
    [limited] = audit_rows(store, "rate.limited")
    assert limited["agent_id"] == "a1" and limited["status"] == 429
    before = clock.now
    out = rendered(engine.handle(pre_agent(tool_use_id="tu1")))
    assert decision(out) is None, reason(out)
    # It waited for the gate and then its own share of a quarter of the wait.
    assert clock.now - before == pytest.approx(20 + 0.5 * 0.25 * 20, abs=0.02)
    assert audit_rows(store, "rate.waited")[0]["waited_ms"] >= 20_000


def test_the_main_agent_gave_up_the_gate_takes_its_last_retry_delay(
        store: SqliteStore, tmp_path: Path) -> None:
    clock = FakeClock()
    transcript = tmp_path / f"{SESSION}.jsonl"
    transcript.write_text(_retry_line(429, 3_000) + "\n" + _retry_line(429, 4_000) + "\n")
    engine = make_engine(store, tmp_path, clock=clock)
    engine.budgets.random = lambda: 0.0
    engine.handle(_stop_failure("rate_limit", SHOWN_429, transcript=str(transcript)))
    row = store.rate_gate.get("api")
    assert row is not None and row.until_us - row.updated_us == 4_000_000


def test_a_gate_closed_past_the_admission_wait_denies_with_when_to_retry(
        store: SqliteStore, tmp_path: Path) -> None:
    clock = FakeClock()
    engine = make_engine(store, tmp_path, clock=clock, admission={"wait_timeout_s": 5})
    engine.handle(_stop_failure("overloaded", "API Error: 529 Overloaded", agent_id="a2"))
    before = clock.now
    out = rendered(engine.handle(pre_agent(tool_use_id="tu1")))
    assert decision(out) == "deny" and "529" in reason(out) and "Retry in about" in reason(out)
    assert clock.now == before, "a wait longer than the bound is not waited"


def test_a_failed_agent_tool_call_closes_the_gate(store: SqliteStore, tmp_path: Path) -> None:
    engine = make_engine(store, tmp_path)
    failed = {"hook_event_name": "PostToolUseFailure", "session_id": SESSION,
              "tool_name": "Agent", "tool_use_id": "tu9",
              "tool_input": {"prompt": "x", "subagent_type": "general-purpose"},
              "error": TOOL_429}
    engine.handle(failed)
    assert (row := store.rate_gate.get("api")) is not None and row.status == 429
    # A failure that is no rate limit leaves the gate as it was.
    other = make_engine(SqliteStore(tmp_path / "other.db"), tmp_path)
    other.handle({**failed, "error": "Agent terminated early: tool crashed (HTTP 429 text)"})
    assert other.store.rate_gate.get("api") is None


def test_a_usage_limit_naming_its_reset_holds_the_gate_until_then(
        store: SqliteStore, tmp_path: Path) -> None:
    clock = FakeClock()
    engine = make_engine(store, tmp_path, clock=clock)
    reset = int(clock.now) + 7200
    engine.handle(_stop_failure("rate_limit", f"Claude AI usage limit reached|{reset}"))
    row = store.rate_gate.get("api")
    assert row is not None and row.until_us == reset * 1_000_000
    assert audit_rows(store, "rate.limited")[0]["usage_limit"] is True


@pytest.mark.parametrize("payload", [
    # An agent's own words in a failed call: not Claude Code's report of a usage limit.
    {"hook_event_name": "PostToolUseFailure", "tool_name": "Agent", "session_id": SESSION,
     "tool_use_id": "tu1", "tool_input": {"prompt": "x"},
     "error": "Agent failed: I hit my usage limit, resets at 2026-12-08T00:00:00Z"},
    _stop_failure("server_error", "usage limit reached|9999999999"),
    _stop_failure("authentication_failed", "Claude AI usage limit reached|1800003600"),
])
def test_a_usage_limit_is_believed_only_from_claude_codes_own_report(
        store: SqliteStore, tmp_path: Path, payload: dict[str, Any]) -> None:
    engine = make_engine(store, tmp_path)
    engine.handle(payload)
    assert store.rate_gate.get("api") is None


@pytest.mark.parametrize("budget", [{"rate_limit": "off"}, {"mode": "off"}])
def test_with_the_gate_off_nothing_closes_it(store: SqliteStore, tmp_path: Path,
                                            budget: dict[str, Any]) -> None:
    engine = make_engine(store, tmp_path, budget=budget)
    engine.handle(_stop_failure("rate_limit", SHOWN_429, agent_id="a1"))
    assert store.rate_gate.get("api") is None


def test_in_warn_mode_agents_start_at_once_with_a_note(store: SqliteStore,
                                                       tmp_path: Path) -> None:
    clock = FakeClock()
    engine = make_engine(store, tmp_path, clock=clock, budget={"rate_limit": "warn"})
    engine.handle(_stop_failure("rate_limit", SHOWN_429, agent_id="a1"))
    before = clock.now
    out = rendered(engine.handle(pre_agent(tool_use_id="tu1")))
    assert decision(out) is None and clock.now == before
    assert "rate-limited" in json.dumps(audit_rows(store, "policy.decision")[-1])


# -- wave agents ----------------------------------------------------------------------------
def _request(seen: list[tuple[int, float]]) -> AgentRequest:
    return AgentRequest("r", "t", 1, "p", AgentSpec(), "/", 60.0, "m",
                        on_rate_limit=lambda status, delay: seen.append((status, delay)))


@pytest.mark.parametrize(("data", "heard"), [
    ({"error_status": 429, "retry_delay_ms": 3618}, [(429, 3.618)]),
    ({"error_status": 529, "retry_delay_ms": 0}, [(529, 0.0)]),
    ({"error_status": 500, "retry_delay_ms": 3000}, []),
    ({"error_status": 429, "retry_delay_ms": "3000"}, []),
    ({"error_status": 429, "retry_delay_ms": -1}, []),
    ({"error_status": 429}, []),
])
def test_a_wave_agents_retry_of_a_429_is_heard_as_it_happens(
        data: dict[str, Any], heard: list[tuple[int, float]]) -> None:
    seen: list[tuple[int, float]] = []
    tally = _Tally()
    _api_retry(data, tally, _request(seen))
    assert seen == heard
    assert tally.retry_after_s == (heard[0][1] if heard else None)


def test_waiting_wave_tasks_each_draw_their_own_jitter(store: SqliteStore) -> None:
    budget = WaveBudget(store, lambda: Budget(store, BudgetPolicy(), project="p"))
    draws = iter([0.0, 0.9, 0.5])
    budget._random = lambda: next(draws)
    budget.rate_limited(429, "x", 8.0)
    a, b = budget.gate_wait_s("r", "a"), budget.gate_wait_s("r", "b")
    assert b > a > 0
    assert budget.gate_wait_s("r", "a") == pytest.approx(a, abs=0.5)  # drawn once
    off = WaveBudget(store, lambda: Budget(store, BudgetPolicy(rate_limit="off"), project="p"))
    assert off.rate_limited(429, "x", 8.0) == 0.0 and off.gate_wait_s("r", "a") == 0.0
