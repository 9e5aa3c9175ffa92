"""The shared rate-limit gate: what closes it (native agents Claude Code gave up on, wave
agents' retries), for how long, and how new agents wait for it."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import pytest
from claude_agent_sdk import AssistantMessage, ResultMessage, TextBlock

from mcp_server.hook_output import hook_output as rendered
from smart_orchestrator.budget import Budget
from smart_orchestrator.budget.live_transcripts import LiveTranscripts
from smart_orchestrator.budget.ratelimit import (
    CLI_LONGEST_RETRY_AFTER_S,
    NATIVE_GAVE_UP_S,
    TranscriptRetry,
    close_rate_gate,
    gate_deadline_us,
    last_retry_delay_s,
    native_failure,
    transcript_retries,
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


def _retry_line(status: int, delay_ms: Any, at: float | str | None = None) -> str:
    """A `system/api_error` entry as Claude Code 2.1.332 writes it to the main transcript."""
    entry: dict[str, Any] = {
        "type": "system", "subtype": "api_error", "level": "error",
        "error": {"status": status, "message": "x"}, "retryInMs": delay_ms,
        "retryAttempt": 1, "maxRetries": 10, "source": "request_retry"}
    if isinstance(at, float):
        entry["timestamp"] = dt.datetime.fromtimestamp(at, dt.UTC).isoformat(
            timespec="milliseconds").replace("+00:00", "Z")
    elif at is not None:
        entry["timestamp"] = at
    return json.dumps(entry)


@pytest.mark.parametrize(("line", "found"), [
    (_retry_line(429, 3385, 1_800_000_000.5), [TranscriptRetry(429, 1_800_000_000_500_000,
                                                               3.385)]),
    (_retry_line(529, 0, "2027-01-15T08:00:00.000Z"),
     [TranscriptRetry(529, int(dt.datetime(2027, 1, 15, 8, tzinfo=dt.UTC).timestamp() * 1e6),
                      0.0)]),
    (_retry_line(429, 1000), [TranscriptRetry(429, None, 1.0)]),  # no stamp: unstated
    (_retry_line(429, 1000, "2027-01-15T08:00:00"), [TranscriptRetry(429, None, 1.0)]),
    (_retry_line(429, 1000, "yesterday"), [TranscriptRetry(429, None, 1.0)]),
    (_retry_line(500, 1000, 1.0), []),  # not a rate limit
    (_retry_line(429, "1000", 1.0), []),
    (_retry_line(429, True, 1.0), []),
    (_retry_line(429, -1, 1.0), []),
    ('{"type": "system", "subtype": "api_error", "retryInMs": 1e999, "error": {"status": 429}}',
     []),
    ('{"type": "user", "subtype": "api_error", "retryInMs": 5, "error": {"status": 429}}', []),
    ('["api_error"]', []),
    ('{"subtype": "api_error", broken', []),
    ('{"subtype": "api_error", "x": ' + "[" * 100_000 + "]" * 100_000 + "}", []),
])
def test_claude_codes_retries_are_read_from_the_transcript(
        tmp_path: Path, line: str, found: list[TranscriptRetry]) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text(line + "\n")
    assert transcript_retries(path) == found


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


def _pre_tool(transcript: Path, agent_id: str = "bg1") -> dict[str, Any]:
    """A background subagent's tool call: its hook names the session's transcript."""
    return {"hook_event_name": "PreToolUse", "session_id": SESSION, "agent_id": agent_id,
            "agent_type": "general-purpose", "tool_name": "Read", "tool_use_id": "tu-r",
            "tool_input": {"file_path": "/work/README.md"}, "transcript_path": str(transcript)}


def test_the_main_agents_retry_closes_the_gate_until_it_goes_out(
        store: SqliteStore, tmp_path: Path) -> None:
    """Claude Code is waiting out a Retry-After for the main agent: the session's other
    hooks hear it from the transcript and hold every new agent until the retry goes out."""
    clock = FakeClock()
    transcript = tmp_path / f"{SESSION}.jsonl"
    at = clock.now - 2.0  # written two seconds ago, waiting 8.5 s: 6.5 s to go
    transcript.write_text("x" * 100 + "\n" + _retry_line(429, 8_500, at) + "\n")
    engine = make_engine(store, tmp_path, clock=clock)
    engine.budgets.random = lambda: 0.0
    assert decision(rendered(engine.handle(_pre_tool(transcript)))) is None
    row = store.rate_gate.get("api")
    assert row is not None and row.status == 429
    assert (row.updated_us, row.until_us) == (int(at * 1e6), int(at * 1e6) + 8_500_000)
    [heard] = audit_rows(store, "rate.limited")
    assert heard["retrying"] is True and heard["retry_delay_s"] == 8.5
    assert heard["event"] == "PreToolUse" and heard["agent_id"] == "bg1"
    # Heard once: the next calls find the gate closed as long already.
    engine.handle(_pre_tool(transcript))
    assert len(audit_rows(store, "rate.limited")) == 1
    # A new agent waits for it, then its own share of a quarter of the wait.
    before = clock.now
    assert decision(rendered(engine.handle(pre_agent(tool_use_id="tu1")))) is None
    assert clock.now == pytest.approx(at + 8.5 + 0.0, abs=0.02) and clock.now > before


def test_a_retry_already_gone_out_or_a_longer_gate_is_left_alone(
        store: SqliteStore, tmp_path: Path) -> None:
    clock = FakeClock()
    transcript = tmp_path / f"{SESSION}.jsonl"
    engine = make_engine(store, tmp_path, clock=clock)
    transcript.write_text(_retry_line(429, 3_000, clock.now - 3.5) + "\n")
    engine.handle(_pre_tool(transcript))
    assert store.rate_gate.get("api") is None, "that retry went out half a second ago"
    close_rate_gate(store, 529, "longer", 30.0, max_backoff_s=300, now=clock.now,
                    jitter=lambda: 0.0)
    transcript.write_text(_retry_line(429, 9_000, clock.now) + "\n")
    engine.handle(_pre_tool(transcript))
    row = store.rate_gate.get("api")
    assert row is not None and (row.status, row.reason) == (529, "longer")
    assert audit_rows(store, "rate.limited") == []


@pytest.mark.parametrize("at", [
    1_800_000_000.0 + 86_400,  # a stamp ahead of the clock is taken as now
    1_800_000_000.0,
])
def test_a_written_retry_holds_agents_max_backoff_s_at_most(
        store: SqliteStore, tmp_path: Path, at: float) -> None:
    clock = FakeClock()
    transcript = tmp_path / f"{SESSION}.jsonl"
    transcript.write_text(_retry_line(429, 10**12, at) + "\n")  # agents can write this file
    engine = make_engine(store, tmp_path, clock=clock, budget={"max_backoff_s": 20})
    engine.budgets.random = lambda: 0.99
    engine.handle(_pre_tool(transcript))
    row = store.rate_gate.get("api")
    assert row is not None and row.until_us == int(clock.now * 1e6) + 20_000_000


def test_another_sessions_main_agent_waiting_out_a_429_holds_this_sessions_new_agents(
        store: SqliteStore, tmp_path: Path) -> None:
    """Session A's main agent waits out a 429 and runs no hook meanwhile; session B's next
    agent hears it from A's transcript, which A's earlier hooks named to the service."""
    clock = FakeClock()
    shared = LiveTranscripts()
    a_transcript, b_transcript = tmp_path / "session-a.jsonl", tmp_path / "session-b.jsonl"
    a_transcript.write_text("{}\n")
    b_transcript.write_text("{}\n")
    a = make_engine(store, tmp_path, clock=clock)
    b = make_engine(store, tmp_path, clock=clock)
    a.budgets.transcripts = b.budgets.transcripts = shared
    b.budgets.random = lambda: 0.0
    a.handle({**_pre_tool(a_transcript, agent_id=""), "session_id": "session-a"})
    assert store.rate_gate.get("api") is None
    with a_transcript.open("a") as f:  # A's next request got a 429: Claude Code waits 7 s
        f.write(_retry_line(429, 7_000, clock.now) + "\n")
    payload = {**pre_agent(tool_use_id="tu-b", session="session-b"),
               "transcript_path": str(b_transcript)}
    before = clock.now
    assert decision(rendered(b.handle(payload))) is None
    assert clock.now == pytest.approx(before + 7.0, abs=0.02), "waited for A's retry"
    [heard] = audit_rows(store, "rate.limited")
    assert heard["session_id"] == "session-b" and heard["retrying_session"] == "session-a"
    # Once A's session ended, its transcript is no longer read.
    a.handle({"hook_event_name": "SessionEnd", "session_id": "session-a",
              "transcript_path": str(a_transcript)})
    assert shared.recent() == [str(b_transcript)]


def test_live_transcripts_keep_the_newest_and_drop_the_idle() -> None:
    now = [0.0]
    live = LiveTranscripts(most=2, keep_s=60.0, clock=lambda: now[0])
    for name in ("a", "b", "c"):
        live.note(name)
        now[0] += 1
    assert live.recent() == ["c", "b"], "at most two, newest first"
    live.note("b")
    assert live.recent() == ["b", "c"]
    now[0] += 59.5
    assert live.recent() == ["b"], "c was not named for a minute"
    live.forget("b")
    assert live.recent() == []


@pytest.mark.parametrize(("budget", "transcript"), [
    ({"rate_limit": "off"}, "{SESSION}.jsonl"),
    ({"mode": "off"}, "{SESSION}.jsonl"),
    ({}, "{SESSION}.txt"),  # not a transcript
    ({}, "missing/{SESSION}.jsonl"),
])
def test_a_retry_in_the_transcript_is_not_heard_with_the_gate_off_or_no_transcript(
        store: SqliteStore, tmp_path: Path, budget: dict[str, Any], transcript: str) -> None:
    clock = FakeClock()
    (tmp_path / f"{SESSION}.jsonl").write_text(_retry_line(429, 9_000, clock.now) + "\n")
    (tmp_path / f"{SESSION}.txt").write_text(_retry_line(429, 9_000, clock.now) + "\n")
    engine = make_engine(store, tmp_path, clock=clock, budget=budget)
    engine.handle(_pre_tool(tmp_path / transcript.format(SESSION=SESSION)))
    assert store.rate_gate.get("api") is None


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


def _result(status: int | None) -> ResultMessage:
    return ResultMessage(subtype="success", duration_ms=1, duration_api_ms=0,
                         is_error=status is not None, num_turns=1, session_id="s",
                         result=f"API Error: Request rejected ({status})" if status else "ok",
                         api_error_status=status)


def _reply(error: str | None = None, parent: str | None = None) -> AssistantMessage:
    return AssistantMessage(content=[TextBlock("x")], model="m", error=error,  # type: ignore[arg-type]
                            parent_tool_use_id=parent)


def _retry(attempt: int, most: int, status: int = 429, delay_ms: int = 3_000
           ) -> dict[str, Any]:
    return {"attempt": attempt, "max_retries": most, "error_status": status,
            "retry_delay_ms": delay_ms}


@pytest.mark.parametrize(("cli_retries", "before", "retry_after"), [
    # Claude Code had a retry left and did not use it: the Retry-After was over its ceiling.
    (1, [], CLI_LONGEST_RETRY_AFTER_S),
    # It retried (saying how long), the retry failed too: the delay it chose.
    (1, [_retry(1, 1)], 3.0),
    # An earlier request's retry succeeded; this request's 429 was not retried.
    (1, [_retry(1, 1), _reply()], CLI_LONGEST_RETRY_AFTER_S),
    # A subagent's reply, or the API-error message itself, is not the request's reply.
    (1, [_retry(1, 1), _reply(parent="tu1"), _reply(error="rate_limit")], 3.0),
    # Stopped before its last retry: declined the next one.
    (3, [_retry(1, 3, delay_ms=500)], CLI_LONGEST_RETRY_AFTER_S),
    # Retries off: nothing is known.
    (0, [], None),
])
def test_a_429_claude_code_did_not_retry_asked_for_more_than_its_ceiling(
        cli_retries: int, before: list[Any], retry_after: float | None) -> None:
    tally = _Tally(cli_retries=cli_retries)
    seen: list[tuple[int, float]] = []
    for message in before:
        if isinstance(message, AssistantMessage):
            tally.replied(message)
        else:
            _api_retry(message, tally, _request(seen))
    tally.add(_result(429))
    assert tally.outcome(None).retry_after_s == retry_after


def test_a_500_claude_code_did_not_retry_says_nothing_of_a_retry_after() -> None:
    tally = _Tally(cli_retries=1)
    tally.add(_result(500))
    assert tally.outcome(None).retry_after_s is None
