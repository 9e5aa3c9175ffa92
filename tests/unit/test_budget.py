"""Budgets on native agents: reserve at PreToolUse(Agent), settle from the transcript,
deny at a cap with when it resets, and the stronger-of rules for caps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mcp_server.hook_output import hook_output as rendered
from smart_orchestrator.budget import Tokens, cost_usd, price_for, transcript_usage
from smart_orchestrator.policy.config import build_policy
from smart_orchestrator.policy.pinning import merge_stronger
from smart_orchestrator.store import SqliteStore

from .policy_payloads import SESSION, post_agent, pre_agent, subagent_event
from .test_policy_engine import FakeClock, audit_rows, decision, make_engine, reason


def _transcript(path: Path, messages: list[tuple[str, dict[str, int]]],
                model: str = "claude-sonnet-4-5") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for msg_id, usage in messages:
        # Claude Code writes one line per content block, each with the message's usage.
        for _ in range(2):
            lines.append(json.dumps({"type": "assistant", "message": {
                "id": msg_id, "model": model, "usage": usage}}))
    lines.append(json.dumps({"type": "user", "message": {"content": "x"}}))
    lines.append("not json")
    path.write_text("\n".join(lines))
    return path


def _foreground_done(tmp_path: Path, *, tool_use_id: str, agent_id: str,
                     messages: list[tuple[str, dict[str, int]]]) -> dict[str, Any]:
    session_transcript = tmp_path / "proj" / f"{SESSION}.jsonl"
    _transcript(tmp_path / "proj" / SESSION / "subagents" / f"agent-{agent_id}.jsonl",
                messages)
    p = post_agent(tool_use_id=tool_use_id, agent_id=agent_id)
    p["transcript_path"] = str(session_transcript)
    return p


BIG = {"input_tokens": 100_000, "output_tokens": 20_000, "cache_read_input_tokens": 0,
       "cache_creation_input_tokens": 0}


# -- pricing and usage ------------------------------------------------------------------
@pytest.mark.parametrize(("model", "family"), [
    ("claude-sonnet-4-5-20250929", "table:sonnet-4"), ("sonnet", "table:sonnet-4"),
    ("claude-opus-4-5-20251101", "table:opus-4.5"), ("claude-opus-4-1", "table:opus-4"),
    ("claude-haiku-4-5", "table:haiku-4.5"), ("claude-3-5-haiku-20241022", "table:haiku-3.5"),
    ("claude-3-haiku-20240307", "table:haiku-3"), ("haiku", "table:haiku-4.5"),
    ("claude-scripted", "unknown:claude-scripted"), ("", "unknown:unnamed"),
    ("inherit", "unknown:inherit"),
])
def test_models_are_priced_by_family_and_unknown_ones_at_the_dearest(model: str,
                                                                     family: str) -> None:
    price, priced = price_for(model)
    assert priced == family
    if family.startswith("unknown"):
        assert price == price_for("claude-opus-4-1")[0]


def test_cost_counts_every_kind_of_token() -> None:
    usd, _ = cost_usd(Tokens(1_000_000, 1_000_000, 1_000_000, 1_000_000), "sonnet")
    assert usd == pytest.approx(3 + 15 + 0.30 + 3.75)


def test_transcript_usage_counts_each_message_once(tmp_path: Path) -> None:
    path = _transcript(tmp_path / "t.jsonl", [
        ("m1", {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 100,
                "cache_creation_input_tokens": 7}),
        ("m2", {"input_tokens": 3, "output_tokens": 1, "cache_read_input_tokens": -4}),
    ])
    found = transcript_usage(path)
    assert found == (Tokens(13, 6, 100, 7), "claude-sonnet-4-5")
    assert transcript_usage(tmp_path / "missing.jsonl") is None


# -- native agents ------------------------------------------------------------------------
def test_foreground_agent_reserves_then_settles_from_its_transcript(
        store: SqliteStore, tmp_path: Path) -> None:
    engine = make_engine(store, tmp_path)
    assert decision(rendered(engine.handle(pre_agent(tool_use_id="tu1")))) is None
    row = store.ledger.get(f"{SESSION}:tu1")
    assert row is not None and row.state == "reserved" and row.reserved_usd > 0
    rendered(engine.handle(_foreground_done(tmp_path, tool_use_id="tu1", agent_id="a1",
                                   messages=[("m1", BIG), ("m2", BIG)])))
    row = store.ledger.get(f"{SESSION}:tu1")
    assert row is not None and row.state == "settled"
    assert (row.input_tokens, row.output_tokens) == (200_000, 40_000)
    assert row.cost_usd == pytest.approx(cost_usd(Tokens(200_000, 40_000), "sonnet")[0])
    end = audit_rows(store, "agent.end")[0]
    assert end["cost"]["cost_usd"] == row.cost_usd and end["cost"]["priced"] == "table:sonnet-4"


def test_a_replayed_post_hook_does_not_settle_twice(store: SqliteStore, tmp_path: Path) -> None:
    engine = make_engine(store, tmp_path)
    engine.handle(pre_agent(tool_use_id="tu1"))
    done = _foreground_done(tmp_path, tool_use_id="tu1", agent_id="a1", messages=[("m", BIG)])
    engine.handle(done)
    first = store.ledger.get(f"{SESSION}:tu1")
    _transcript(tmp_path / "proj" / SESSION / "subagents" / "agent-a1.jsonl",
                [("m", BIG), ("m2", BIG)])
    engine.handle(done)
    assert store.ledger.get(f"{SESSION}:tu1") == first


def test_background_agent_settles_at_subagent_stop(store: SqliteStore, tmp_path: Path) -> None:
    engine = make_engine(store, tmp_path)
    engine.handle(pre_agent(tool_use_id="tu2", background=True))
    engine.handle(post_agent(tool_use_id="tu2", status="async_launched", agent_id="bg1"))
    stop = subagent_event("SubagentStop", "bg1")
    stop["agent_transcript_path"] = str(_transcript(tmp_path / "bg1.jsonl", [("m", BIG)]))
    engine.handle(stop)
    row = store.ledger.get(f"{SESSION}:tu2")
    assert row is not None and row.state == "settled" and row.input_tokens == 100_000
    assert audit_rows(store, "agent.stop")[0]["cost"]["input_tokens"] == 100_000


def test_background_agent_that_stops_before_its_launch_is_decided_settles_at_the_launch(
        store: SqliteStore, tmp_path: Path) -> None:
    # Claude Code runs both hooks at once: a short agent's SubagentStop can come first.
    engine = make_engine(store, tmp_path)
    engine.handle(pre_agent(tool_use_id="tu2", background=True))
    transcript = _session_transcript(tmp_path, "bg1", BIG)
    stop = subagent_event("SubagentStop", "bg1")
    stop["transcript_path"] = transcript
    engine.handle(stop)
    assert store.ledger.get(f"{SESSION}:tu2").state == "reserved"  # type: ignore[union-attr]
    launch = post_agent(tool_use_id="tu2", status="async_launched", agent_id="bg1")
    launch["transcript_path"] = transcript
    engine.handle(launch)
    row = store.ledger.get(f"{SESSION}:tu2")
    assert row is not None and row.state == "settled" and row.input_tokens == 100_000
    assert store.query("SELECT count(*) FROM leases") == [(0,)], "its slot is not held"


def test_session_cap_denies_the_next_agent_with_reason_and_keeps_state(
        store: SqliteStore, tmp_path: Path) -> None:
    engine = make_engine(store, tmp_path, budget={"session_usd": 1.0})
    engine.handle(pre_agent(tool_use_id="tu1"))
    rendered(engine.handle(_foreground_done(tmp_path, tool_use_id="tu1", agent_id="a1",
                                   messages=[("m", BIG)])))  # $0.60 on sonnet
    out = rendered(engine.handle(pre_agent(tool_use_id="tu2")))
    assert decision(out) == "deny"
    assert "session budget cap of $1.00" in reason(out)
    assert "resets when the session ends" in reason(out)
    assert store.ledger.get(f"{SESSION}:tu2") is None, "a denied agent reserves nothing"
    assert store.query("SELECT count(*) FROM leases") == [(0,)]
    denial = audit_rows(store, "policy.decision")[-1]
    assert denial["denied_by"] == ["budget:cap-session"]


def test_day_cap_says_when_the_window_resets_and_it_does(store: SqliteStore,
                                                         tmp_path: Path) -> None:
    clock = FakeClock()
    engine = make_engine(store, tmp_path, clock=clock, budget={"day_usd": 1.0})
    # The default estimate is $0.63.
    assert decision(rendered(engine.handle(pre_agent(tool_use_id="tu1")))) is None
    out = rendered(engine.handle(pre_agent(tool_use_id="tu2")))
    assert decision(out) == "deny" and "UTC (in" in reason(out) and "Retry in about" in reason(out)
    clock.now += 86_400
    assert decision(rendered(engine.handle(pre_agent(tool_use_id="tu3")))) is None


def test_warn_cap_allows_with_a_note(store: SqliteStore, tmp_path: Path) -> None:
    engine = make_engine(store, tmp_path, budget={"session_usd": 0.01, "session_mode": "warn"})
    out = rendered(engine.handle(pre_agent(tool_use_id="tu1")))
    assert decision(out) is None
    assert "session budget cap" in out.get("systemMessage", "")
    assert store.ledger.get(f"{SESSION}:tu1") is not None


def test_caps_are_shared_by_sessions_of_a_project(store: SqliteStore, tmp_path: Path) -> None:
    engine = make_engine(store, tmp_path, budget={"project_usd": 1.0})
    assert decision(rendered(engine.handle(pre_agent(tool_use_id="tu1", session="s-a")))) is None
    assert decision(rendered(engine.handle(pre_agent(tool_use_id="tu1", session="s-b")))) == "deny"


def test_admission_denial_releases_the_reservation(store: SqliteStore, tmp_path: Path) -> None:
    engine = make_engine(store, tmp_path, admission={"max_in_flight_session": 1,
                                                     "wait_timeout_s": 0})
    engine.handle(pre_agent(tool_use_id="tu1"))
    assert decision(rendered(engine.handle(pre_agent(tool_use_id="tu2")))) == "deny"
    row = store.ledger.get(f"{SESSION}:tu2")
    assert row is not None and row.charged_usd == 0


def test_session_end_keeps_unsettled_estimates_charged(store: SqliteStore,
                                                       tmp_path: Path) -> None:
    engine = make_engine(store, tmp_path)
    engine.handle(pre_agent(tool_use_id="tu1", background=True))
    reserved = store.ledger.charged(session_id=SESSION)[0]
    engine.handle({"session_id": SESSION, "hook_event_name": "SessionEnd"})
    row = store.ledger.get(f"{SESSION}:tu1")
    assert row is not None and row.state == "abandoned" and row.charged_usd == reserved
    assert audit_rows(store, "session.end")[0]["unsettled_reservations"] == 1


def test_estimates_come_from_the_history_of_the_same_task(store: SqliteStore,
                                                          tmp_path: Path) -> None:
    engine = make_engine(store, tmp_path)
    engine.handle(pre_agent("Count the words in file 1", tool_use_id="tu1"))
    rendered(engine.handle(_foreground_done(tmp_path, tool_use_id="tu1", agent_id="a1",
                                   messages=[("m", BIG)])))
    settled = store.ledger.get(f"{SESSION}:tu1")
    engine.handle(pre_agent("Count the words in file 2", tool_use_id="tu2"))
    again = store.ledger.get(f"{SESSION}:tu2")
    assert settled is not None and again is not None
    assert again.reserved_usd == pytest.approx(settled.cost_usd)


def test_rate_gate_holds_new_agents_until_it_opens(store: SqliteStore, tmp_path: Path) -> None:
    clock = FakeClock()
    engine = make_engine(store, tmp_path, clock=clock)
    store.rate_gate.close_until("api", int((clock.now + 30) * 1e6), 429, "rate limited",
                                int(clock.now * 1e6))
    out = rendered(engine.handle(pre_agent(tool_use_id="tu1")))
    assert decision(out) == "deny" and "429" in reason(out) and "Retry in about 30 s" in reason(out)
    clock.now += 31
    assert decision(rendered(engine.handle(pre_agent(tool_use_id="tu2")))) is None


def test_a_broken_ledger_fails_closed(store: SqliteStore, tmp_path: Path) -> None:
    engine = make_engine(store, tmp_path)
    store.query("DROP TABLE ledger")
    out = rendered(engine.handle(pre_agent(tool_use_id="tu1")))
    assert decision(out) == "deny" and "budget check failed" in reason(out)


# -- caps are policy keys: the pinning rules apply ----------------------------------------
@pytest.mark.parametrize(("pinned", "proposed", "weaker"), [
    ({"session_usd": 5.0}, {"session_usd": 10.0}, True),
    ({"session_usd": 5.0}, {}, True),
    ({"session_usd": 5.0}, {"session_usd": 2.0}, False),
    ({}, {"team_usd": 100.0}, False),
    ({"day_usd": 5.0}, {"day_usd": 5.0, "day_mode": "warn"}, True),
    ({"day_usd": 5.0}, {"day_usd": 5.0, "mode": "off"}, True),
    ({}, {"default_estimate_tokens": 1}, True),
    ({}, {"rate_limit": "off"}, True),
    ({}, {"confirm_above_usd": 1000.0}, True),
])
def test_raising_a_cap_or_loosening_its_mode_is_a_weakening(
        pinned: dict[str, Any], proposed: dict[str, Any], weaker: bool) -> None:
    merged = merge_stronger(build_policy({"budget": pinned}, "a"),
                            build_policy({"budget": proposed}, "b"))
    assert bool([k for k in merged.weakened if k.startswith("budget.")]) == weaker
    if weaker:
        assert merged.config.budget == build_policy({"budget": pinned}, "a").budget


@pytest.mark.parametrize("bad", [{"session_usd": -1}, {"session_usd": "lots"},
                                 {"max_backoff_s": 0}, {"cap": 3}])
def test_bad_budget_values_are_refused_by_name(bad: dict[str, Any]) -> None:
    from smart_orchestrator.errors import ConfigError

    with pytest.raises(ConfigError, match="budget"):
        build_policy({"budget": bad}, "p.toml")


# -- per-agent cost in status, metrics and the audit ---------------------------------------
def test_status_and_metrics_show_each_agents_cost_with_the_token_split(
        store: SqliteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time as _time

    from smart_orchestrator.budget.summary import cost_summary, render_costs
    from smart_orchestrator.status import collect_status, render_markdown

    clock = FakeClock()
    clock.now = _time.time()
    engine = make_engine(store, tmp_path, clock=clock)
    engine.handle(pre_agent(tool_use_id="tu1"))
    rendered(engine.handle(_foreground_done(tmp_path, tool_use_id="tu1", agent_id="a1", messages=[
        ("m", {**BIG, "cache_read_input_tokens": 5_000, "cache_creation_input_tokens": 700})])))
    engine.handle(pre_agent(tool_use_id="tu2", background=True))  # still at its estimate
    summary = cost_summary(store)
    assert (summary["agents"], summary["settled"], summary["estimated"]) == (2, 1, 1)
    newest = {a["agent_id"] or a["id"]: a for a in summary["newest"]}
    a1 = newest["a1"]
    assert (a1["input_tokens"], a1["output_tokens"], a1["cache_read_tokens"],
            a1["cache_write_tokens"]) == (100_000, 20_000, 5_000, 700)
    assert summary["cost_usd"] == pytest.approx(sum(a["cost_usd"] for a in newest.values()))
    assert summary["unknown_models"] == ["inherit"]  # the one still at its estimate
    text = "\n".join(render_costs(summary))
    assert "| 100000 | 20000 | 5000 | 700 |" in text
    monkeypatch.setenv("SMART_ORCHESTRATOR_DATA", str(tmp_path / "data"))
    status = collect_status(store.location)
    assert status["costs_today"]["agents"] == 2
    assert "Agent costs today" in render_markdown(status)


def _session_transcript(tmp_path: Path, agent_id: str, usage: dict[str, int]) -> str:
    _transcript(tmp_path / "proj" / SESSION / "subagents" / f"agent-{agent_id}.jsonl",
                [("m", usage)])
    return str(tmp_path / "proj" / f"{SESSION}.jsonl")


def test_task_stop_settles_the_stopped_agents_usage(store: SqliteStore, tmp_path: Path) -> None:
    engine = make_engine(store, tmp_path)
    engine.handle(pre_agent(tool_use_id="tu3", background=True))
    engine.handle(post_agent(tool_use_id="tu3", status="async_launched", agent_id="bg3"))
    transcript = _session_transcript(tmp_path, "bg3", BIG)
    rendered(engine.handle({"session_id": SESSION, "hook_event_name": "PostToolUse",
                   "tool_name": "TaskStop", "tool_input": {"task_id": "bg3"},
                   "tool_response": {"task_id": "bg3"}, "tool_use_id": "tu4",
                   "transcript_path": transcript}))
    row = store.ledger.get(f"{SESSION}:tu3")
    assert row is not None and row.state == "settled" and row.input_tokens == 100_000
    assert audit_rows(store, "surface.end")[-1]["cost"]["input_tokens"] == 100_000


def test_session_end_settles_what_transcripts_say_before_abandoning(
        store: SqliteStore, tmp_path: Path) -> None:
    engine = make_engine(store, tmp_path)
    engine.handle(pre_agent(tool_use_id="tu5", background=True))
    engine.handle(post_agent(tool_use_id="tu5", status="async_launched", agent_id="bg5"))
    engine.handle(pre_agent(tool_use_id="tu6", background=True))  # never launched
    transcript = _session_transcript(tmp_path, "bg5", BIG)
    rendered(engine.handle({"session_id": SESSION, "hook_event_name": "SessionEnd",
                   "transcript_path": transcript}))
    states = {r.id.rsplit(":", 1)[1]: r.state for r in store.ledger.rows(session_id=SESSION)}
    assert states == {"tu5": "settled", "tu6": "abandoned"}


# -- usage limits name their reset ---------------------------------------------------------
NOW = 1_800_000_000.0  # 2027-01-15 08:00 UTC


@pytest.mark.parametrize(("text", "expected"), [
    ("Claude AI usage limit reached|1800003600", NOW + 3600),
    ("usage limit reached, resets at 2027-01-15T10:30:00Z", NOW + 2.5 * 3600),
    ("usage limit reached, resets 2027-01-15 09:00+01:00", None),  # 08:00 UTC: past
    ("5-hour limit reached ∙ resets 3pm", NOW + 7 * 3600),
    ("You've hit your limit · resets 9am (Europe/Paris)", NOW + 24 * 3600),  # 9am is now
    ("limit will reset: resets at 7:30am", NOW + 23.5 * 3600),
    ("resets 13pm", None), ("resets 25:00", None), ("resets 3pm (Mars/Olympus)", None),
    ("Claude AI usage limit reached|1900000000", None),  # years away: not believed
    ("Claude AI usage limit reached|1700000000", None),  # in the past
    ("usage limit reached", None),
])
def test_usage_limit_reset_times_are_read_from_the_message(text: str,
                                                           expected: float | None) -> None:
    from smart_orchestrator.budget.waves import usage_limit_reset

    found = usage_limit_reset(text, NOW)
    if expected is None or expected <= NOW:
        assert found is None
    else:
        assert found == pytest.approx(expected)


def test_a_fifo_in_place_of_a_transcript_is_not_read(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "agent-x.jsonl"
    os.mkfifo(fifo)
    assert transcript_usage(fifo) is None  # returns at once: no writer would ever come
