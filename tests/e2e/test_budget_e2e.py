"""Budgets on real subagent calls inside Claude Code, against the scripted model reporting
usage."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from smart_orchestrator.budget import Budget
from smart_orchestrator.budget.summary import cost_summary, render_costs
from smart_orchestrator.budget.waves import WaveBudget
from smart_orchestrator.policy.config import BudgetPolicy
from smart_orchestrator.report import load_run, render_html
from smart_orchestrator.store import SqliteStore
from smart_orchestrator.waves import WaveConfig, WaveService
from smart_orchestrator.waves.admission import MIB, AdmissionConfig
from smart_orchestrator.waves.recovery import RetryPolicy
from smart_orchestrator.waves.runner import SdkAgentRunner
from tests.wave_fakes import shared_policy

from .harness import (
    ClaudeRun,
    ScriptedModel,
    agent_call,
    api_error,
    offline_env,
    rate_limit_error,
    task_stop,
    text,
    tool_use,
    turn,
)
from .plugin_env import audit_rows, plugin_data, plugin_env, run_plugin, wait_for_audit
from .test_waves_e2e import Waves, _agent_processes, _seen, plan, t

# 500k input and 100k output tokens: $3.00 on Sonnet, $15 on an unknown model (Opus
# rates); over a $2 cap either way.
HEAVY = {"input": 500_000, "output": 100_000, "cache_read": 7_000, "cache_write": 3_000}


def _policy(work: Path, body: str) -> None:
    (work / ".claude").mkdir(exist_ok=True)
    (work / ".claude" / "smart-orchestrator.toml").write_text(body)


def _ledger(home: Path) -> list[dict[str, object]]:
    conn = sqlite3.connect(f"file:{plugin_data(home) / 'state.db'}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM ledger ORDER BY created_us")]
    finally:
        conn.close()


def test_a_session_cap_reached_by_native_agents_denies_the_next_one(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    _policy(claude_dirs["work"], "[budget]\nsession_usd = 2.0\n")
    scripted_model.main([agent_call("COST-1: summarise part 1"),
                         agent_call("COST-2: summarise part 2"), text("done")])
    scripted_model.subagent("COST-1", [text("part 1 summarised", usage=HEAVY)])
    scripted_model.subagent("COST-2", [text("part 2 summarised")])
    run = run_plugin(run_claude, repo_root, "summarise both parts")
    run.assert_success(allow_denials=True)
    first, second = scripted_model.tool_results("main")
    assert not first.is_error and "part 1 summarised" in first.text
    assert second.is_error and "session budget cap of $2.00" in second.text, second.text
    assert "resets when the session ends" in second.text
    assert scripted_model.requests_for("COST-2") == [], "the denied agent must not start"
    home = claude_dirs["home"]
    rows = _ledger(home)
    assert [r["state"] for r in rows] == ["settled"], rows
    # Settled from the subagent's transcript: the scripted usage, every kind of token.
    assert (rows[0]["input_tokens"], rows[0]["output_tokens"], rows[0]["cache_read_tokens"],
            rows[0]["cache_write_tokens"]) == (500_000, 100_000, 7_000, 3_000)
    assert float(rows[0]["cost_usd"]) >= 3.0  # type: ignore[arg-type]
    ends = [json.loads(d) for *_, d in audit_rows(home, "agent.end")]
    assert ends[0]["cost"]["input_tokens"] == 500_000
    denials = [json.loads(d) for *_, d in audit_rows(home, "policy.decision")]
    assert [d["decision"] for d in denials] == ["allow", "deny"]
    assert denials[1]["denied_by"] == ["budget:cap-session"]


def test_parallel_agents_in_one_message_cannot_overshoot_a_cap_together(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    # Each is estimated at $0.63 (no history, model unknown): two fit under $1.30. Their
    # PreToolUse hooks run at once; each checks and reserves in one transaction.
    _policy(claude_dirs["work"], "[budget]\nsession_usd = 1.3\n"
                                 "[admission]\nmax_in_flight_session = 8\n")
    calls = [agent_call(f"PAR-{i}: part {i}", description=f"part {i}") for i in range(4)]
    scripted_model.main([turn(*calls), text("merged")])
    for i in range(4):
        scripted_model.subagent(f"PAR-{i}", [text(f"part {i} done")])
    run = run_plugin(run_claude, repo_root, "fan out", timeout=240)
    run.assert_success(allow_denials=True)
    results = scripted_model.tool_results("main")
    assert len(results) == 4
    denied = [r for r in results if r.is_error]
    assert len(denied) == 2, [r.text for r in results]
    assert all("session budget cap of $1.30" in r.text for r in denied)
    started = sum(1 for i in range(4) if scripted_model.requests_for(f"PAR-{i}"))
    assert started == 2
    assert len(_ledger(claude_dirs["home"])) == 2


def test_a_background_agent_is_settled_at_its_stop(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    scripted_model.main([agent_call("BG-1: index the docs", background=True),
                         text("launched", delay=3.0), text("all done")])
    scripted_model.subagent("BG-1", [text("indexed", usage={"input": 1234, "output": 56})])
    run = run_plugin(run_claude, repo_root, "index in the background")
    run.assert_success()
    home = claude_dirs["home"]
    # Its stop and its launch are decided at once; whichever comes second settles it.
    wait_for_audit(home, "agent.stop")
    wait_for_audit(home, "agent.launched")
    rows = _ledger(home)
    assert len(rows) == 1 and rows[0]["state"] == "settled", rows
    assert (rows[0]["input_tokens"], rows[0]["output_tokens"]) == (1234, 56)


# -- waves ----------------------------------------------------------------------------------
class _Policy:
    """The budget section in force; a test changes it as `policy accept` would."""

    def __init__(self, store: SqliteStore, project: str, **values: object) -> None:
        self.store, self.project, self.values = store, project, dict(values)

    def budget(self) -> Budget:
        return Budget(self.store, BudgetPolicy(**self.values),  # type: ignore[arg-type]
                      project=self.project)


@pytest.fixture
def waves(tmp_path: Path, scripted_model: ScriptedModel, claude_dirs: dict[str, Path],
          claude_bin: Path) -> Iterator[Waves]:
    w = Waves(tmp_path, scripted_model, claude_dirs, claude_bin)
    yield w
    w.close()


def _wave_service(waves: Waves, policy: _Policy, **runner: Any) -> WaveService:
    env = offline_env(model_url=waves.model.base_url, home=waves.dirs["home"],
                      tmpdir=waves.dirs["cctmp"])
    store = SqliteStore(waves.tmp / "state.db")
    config = WaveConfig(admission=AdmissionConfig(max_agents=4,
                                                  memory_budget_bytes=3072 * MIB),
                        retry=RetryPolicy(initial_s=0.05, max_backoff_s=0.2), tick_s=0.1)
    agents = SdkAgentRunner(cli_path=waves.claude_bin, extra_env=env, **runner)
    service = WaveService(store, agents, config, budget=WaveBudget(store, policy.budget),
                          **shared_policy(store))
    waves._open.append((service, store))
    return service


SONNET = {"name": "worker", "model": "claude-sonnet-4-5"}
# 100k input, 10k output on Sonnet: $0.45 a task.
TASK_USAGE = {"input": 100_000, "output": 10_000}


def _wait(predicate: Callable[[], bool], timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_a_cap_reached_mid_wave_pauses_it_and_raising_the_cap_resumes_it(
        waves: Waves, scripted_model: ScriptedModel) -> None:
    for name in "ABCD":
        scripted_model.agent(f"TASK-{name}:", [text(f"result {name}", usage=TASK_USAGE)])
    policy = _Policy(waves.store, "proj", project_usd=1.0)
    service = _wave_service(waves, policy)
    wave = plan(*(t(n, agent=SONNET) for n in "abcd"))
    run_id = service.spawn(wave, cwd=str(waves.dirs["work"]), max_concurrency=1)
    # Two tasks fit under $1 (the second is estimated from the first: $0.45); the third
    # would take the project past it, so the wave waits.
    assert _wait(lambda: any(r.kind == "wave.paused" for r in waves.store.iter_audit()))
    paused = service.status(run_id)
    assert paused.state == "running", paused
    assert "paused at a budget cap" in (paused.admission or ""), paused.admission
    assert [t_.state for t_ in paused.tasks] == ["succeeded", "succeeded", "pending",
                                                 "pending"]
    assert scripted_model.requests_for("TASK-C:") == []
    spent = waves.store.ledger.charged(project="proj")[0]
    assert 0.85 < spent <= 1.0, spent
    policy.values["project_usd"] = 10.0
    assert service.wait_until_done(run_id, 180), service.status(run_id)
    done = service.status(run_id)
    assert done.state == "completed", done
    for name in "ABCD":
        assert len(scripted_model.requests_for(f"TASK-{name}:")) == 1, name
    assert all(t_.attempts == 1 for t_ in done.tasks)
    rows = waves.store.ledger.rows(run_id=run_id)
    assert [r.state for r in rows] == ["settled"] * 4
    assert all((r.input_tokens, r.output_tokens) == (100_000, 10_000) for r in rows), rows
    assert all(r.priced == "table:sonnet-4" for r in rows)
    # Each agent's cost with its token split: in the audit, the run report and metrics.
    costs = {e.data["task_id"]: e.data["cost"] for e in waves.store.iter_audit()
             if e.kind == "wave.agent_cost"}
    assert sorted(costs) == ["a", "b", "c", "d"]
    assert all((c["input_tokens"], c["output_tokens"], c["state"], c["cost_usd"])
               == (100_000, 10_000, "settled", 0.45) for c in costs.values()), costs
    page = render_html(load_run(waves.store, run_id))
    assert "Cost per agent (ledger)" in page
    assert page.count("<td>table:sonnet-4</td>") == 4
    # The ledger's columns: input, output, cache read, cache write, estimated, cost.
    split = ('<td class="num">100,000</td><td class="num">10,000</td>'
             '<td class="num">0</td><td class="num">0</td>')
    assert page.count(split) == 4
    assert page.count('<td class="num">$0.4500</td><td>table:sonnet-4</td>') == 4
    summary = cost_summary(waves.store, since_us=0)
    assert summary["by_model"]["claude-sonnet-4-5"]["agents"] == 4
    table = "\n".join(render_costs(summary))
    assert table.count("| 100000 | 10000 | 0 | 0 | 0.4500 |") == 4, table


def test_without_cli_retries_a_wave_agents_429_backs_the_wave_off_by_default(
        waves: Waves, scripted_model: ScriptedModel) -> None:
    scripted_model.agent("TASK-R:", [rate_limit_error(retry_after=3), text("made it")])
    for name in "XYZ":
        scripted_model.agent(f"TASK-{name}:", [text(f"result {name}")])
    # Without a retry of its own Claude Code drops the reply's headers: the SDK's result
    # carries no Retry-After, and the gate takes its default (5 s), capped here.
    policy = _Policy(waves.store, "proj", max_backoff_s=6.0)
    service = _wave_service(waves, policy, cli_max_retries=0)
    # r runs first (priority); the others become ready when `gate` ends, which it does
    # only once r's 429 closed the shared gate.
    wave = plan(t("r", agent=SONNET, priority=5),
                *(t(n, "gate", agent=SONNET) for n in "xyz"),
                t("gate", agent=SONNET))
    scripted_model.on(_after_the_gate_closed(waves, "TASK-GATE:", text("open")))
    run_id = service.spawn(wave, cwd=str(waves.dirs["work"]), max_concurrency=4)
    assert service.wait_until_done(run_id, 180), service.status(run_id)
    status = service.status(run_id)
    assert status.state == "completed", status
    gate = waves.store.rate_gate.get("api")
    assert gate is not None and gate.status == 429
    first, retried = scripted_model.requests_for("TASK-R:")
    assert type(first.reply).__name__ == "ApiError"
    opened = _monotonic_of(gate.until_us)
    assert first.answered_at is not None and opened - first.answered_at >= 5.0
    # Every agent that started after the 429, the retry included, waited for the gate.
    later = [retried, *(r for n in ("TASK-X:", "TASK-Y:", "TASK-Z:")
                        for r in scripted_model.requests_for(n))]
    assert len(later) == 4
    assert all(r.received_at >= opened - 0.05 for r in later), \
        (opened, [r.received_at for r in later])
    paused = [r.data for r in waves.store.iter_audit() if r.kind == "wave.paused"]
    assert all("rate limited" in str(p["reason"]) for p in paused)


def test_the_preview_of_a_repeated_plan_is_within_a_quarter_of_the_run(
        waves: Waves, scripted_model: ScriptedModel) -> None:
    policy = _Policy(waves.store, "proj", project_usd=20.0, confirm_above_usd=0.5)
    service = _wave_service(waves, policy)
    wave = plan(t("a", agent=SONNET), t("b", "a", agent=SONNET), t("c", agent=SONNET))
    before = service.preview(wave)
    assert before.preview is not None and before.preview["history"] == 0
    assert all(r["basis"].startswith("default estimate") for r in before.preview["tasks"])
    assert waves.store.waves.runs(limit=5) == [], "a preview runs and stores nothing"
    assert scripted_model.requests == []
    # The first run: each task's own usage; the second reports about 10% more.
    usage = {"a": (80_000, 8_000), "b": (120_000, 4_000), "c": (50_000, 20_000)}
    scale = [1.0]

    def reply(request: Any) -> Any:
        # Scripts match the first conversation whose text fits: a rule answers each round
        # with that round's usage.
        for name, (inp, out) in usage.items():
            if f"TASK-{name.upper()}: do it" in request.first_user_text:
                return text(f"{name} at x{scale[0]}", usage={
                    "input": int(inp * scale[0]), "output": int(out * scale[0])})
        return None

    scripted_model.on(reply)
    for round_, factor in ((1, 1.0), (2, 1.1)):
        scale[0] = factor
        if round_ == 2:
            repeated = service.preview(wave)
        run_id = service.spawn(wave, cwd=str(waves.dirs["work"]))
        assert service.wait_until_done(run_id, 180), service.status(run_id)
        assert service.status(run_id).state == "completed"
    preview = repeated.preview
    assert preview is not None and preview["history"] == 3
    assert all("of this task" in r["basis"] for r in preview["tasks"]), preview["tasks"]
    actual = waves.store.ledger.charged(since_us=0)[0]
    first_run = sum(r.cost_usd for r in waves.store.ledger.rows() if r.run_id != run_id)
    second_run = actual - first_run
    print(f"preview ${preview['expected_usd']:.4f}, run ${second_run:.4f}: "
          f"{preview['expected_usd'] / second_run - 1:+.1%}")
    assert abs(preview["expected_usd"] - second_run) <= 0.25 * second_run, \
        (preview["expected_usd"], second_run)
    assert second_run == pytest.approx(first_run * 1.1, rel=0.01), "the runs differ by 10%"
    assert preview["by_model"]["claude-sonnet-4-5"]["agents"] == 3
    share = preview["caps"]["project"]
    assert share["limit_usd"] == 20.0 and 0 < share["share"] < 1
    assert preview["confirm"] is True  # above the $0.50 threshold


def test_cancel_stops_every_descendant_releases_slots_and_settles(
        waves: Waves, scripted_model: ScriptedModel) -> None:
    # Each agent starts a long command, a child of its CLI, and waits in it.
    for name in "XY":
        scripted_model.agent(f"TASK-{name}:", [
            tool_use("Bash", {"command": "tail -f /dev/null", "timeout": 600000}),
            text("too late")])
    seen = [_seen(scripted_model, f"TASK-{n}:") for n in "XY"]
    service = _wave_service(waves, _Policy(waves.store, "proj"), sandbox="off")
    wave = plan(*(t(n, agent=SONNET, allowed_tools=["Bash"]) for n in "xy"))
    run_id = service.spawn(wave, cwd=str(waves.dirs["work"]))
    assert all(event.wait(60) for event in seen)
    assert _wait(lambda: sum(p.name() == "tail" for p in _agent_processes(run_id)) == 2,
                 timeout=60), ([p.name() for p in _agent_processes(run_id)],
                               scripted_model.tool_results("TASK-X:"), service.status(run_id))
    started = time.monotonic()
    status = service.cancel(run_id, reason="stop now", wait_s=30)
    assert _wait(lambda: _agent_processes(run_id) == [], timeout=5)
    gone_s = time.monotonic() - started
    print(f"process trees gone {gone_s:.2f} s after cancel_wave")
    assert status.state == "cancelled", status
    assert service.admission().running == 0, "slots released"
    rows = waves.store.ledger.rows(run_id=run_id)
    # Killed before a result: what they used is unknown, so their estimate stays charged.
    assert [r.state for r in rows] == ["abandoned", "abandoned"], rows
    assert all(r.charged_usd == r.reserved_usd > 0 for r in rows)


def test_a_usage_limit_naming_its_reset_pauses_the_wave_until_then(
        waves: Waves, scripted_model: ScriptedModel) -> None:
    reset = int(time.time()) + 8
    # Claude Code retries it once itself, then gives up.
    limit = api_error(429, "rate_limit_error", f"Claude AI usage limit reached|{reset}",
                      times=2)
    scripted_model.agent("TASK-U:", [limit, text("after the reset")])
    scripted_model.agent("TASK-V:", [text("v done")])
    service = _wave_service(waves, _Policy(waves.store, "proj"))
    # v depends on nothing but has lower priority: it starts while u is held or after.
    run_id = service.spawn(plan(t("u", agent=SONNET, priority=2), t("v", "u", agent=SONNET)),
                           cwd=str(waves.dirs["work"]))
    assert service.wait_until_done(run_id, 180), service.status(run_id)
    status = service.status(run_id)
    assert status.state == "completed", status
    u = next(x for x in status.tasks if x.id == "u")
    assert u.output == "after the reset" and u.attempts == 2
    *limited, second = scripted_model.requests_for("TASK-U:")
    assert [type(r.reply).__name__ for r in limited] == ["ApiError", "ApiError"]
    offset = time.time() - time.monotonic()
    assert second.received_at + offset >= reset - 0.05, "started again only after the reset"
    paused = [r.data for r in waves.store.iter_audit() if r.kind == "wave.paused"]
    assert paused and "usage limit until its reset" in str(paused[0]["reason"])
    assert [r.state for r in waves.store.ledger.rows(run_id=run_id)] == ["settled"] * 2


# -- the rate gate, fed by native agents ---------------------------------------------------
def _monotonic_of(wall_us: int) -> float:
    """The model log keeps monotonic times; the gate keeps wall-clock ones."""
    return wall_us / 1e6 - (time.time() - time.monotonic())


def test_parallel_native_agents_back_off_together_after_a_subagent_gives_up_on_429s(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    # RL-A's every request gets a 429 naming Retry-After 2 s; Claude Code retries once
    # (honouring it) and gives up. The main agent then starts three agents at once.
    _policy(claude_dirs["work"], "[budget]\nmax_backoff_s = 6\n"
                                 "[admission]\nmax_in_flight_session = 8\n")
    scripted_model.main([
        agent_call("RL-A: look around"),
        turn(*[agent_call(f"RL-{n}: part {n}", description=f"part {n}") for n in "BCD"]),
        text("merged")])
    scripted_model.subagent("RL-A", [rate_limit_error(retry_after=2, times=None)])
    for n in "BCD":
        scripted_model.subagent(f"RL-{n}", [text(f"{n} done")])
    run = run_plugin(run_claude, repo_root, "fan out", timeout=240,
                     env={"CLAUDE_CODE_MAX_RETRIES": "1"})
    run.assert_success(allow_denials=True)
    home = claude_dirs["home"]
    limited = [r.received_at for r in scripted_model.requests_for("RL-A")]
    assert len(limited) == 2, "one try and Claude Code's own retry"
    assert limited[1] - limited[0] >= 2.0, "Claude Code honoured the Retry-After itself"
    # The failed Agent call closed the gate before the main agent's next turn; the
    # subagent's StopFailure (Claude Code does not wait for that hook) closes it too.
    rows = [json.loads(d) for *_, d in wait_for_audit(home, "rate.limited", count=2)]
    assert {r["event"] for r in rows} == {"PostToolUseFailure", "StopFailure"}, rows
    assert all(r["status"] == 429 for r in rows)
    stop = next(r for r in rows if r["event"] == "StopFailure")
    assert stop["agent_id"], "the subagent's StopFailure names it"
    conn = sqlite3.connect(f"file:{plugin_data(home) / 'state.db'}?mode=ro", uri=True)
    try:
        until_us, status = conn.execute(
            "SELECT until_us, status FROM rate_gate WHERE scope = 'api'").fetchone()
    finally:
        conn.close()
    assert status == 429
    first_close = min(r["gate_s"] for r in rows)
    assert first_close == 6.0, "no Retry-After reaches a hook: the backoff cap, bounded"
    opened = _monotonic_of(until_us)
    answered = scripted_model.requests_for("RL-A")[-1].answered_at
    assert answered is not None and opened - answered >= 5.0
    # Every agent started after the 429s waited for the gate, then started: none before.
    later = [r for n in "BCD" for r in scripted_model.requests_for(f"RL-{n}")]
    assert len(later) == 3
    assert all(r.received_at >= opened - 0.05 for r in later), \
        (opened, [r.received_at for r in later])
    results = scripted_model.tool_results("main")
    assert [r.is_error for r in results] == [True, False, False, False], \
        [r.text[:200] for r in results]
    waited = [json.loads(d) for *_, d in audit_rows(home, "rate.waited")]
    assert len(waited) == 3 and all(w["waited_ms"] > 0 for w in waited)


def test_the_main_agent_giving_up_on_429s_holds_other_sessions_for_its_retry_delay(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    _policy(claude_dirs["work"], "[budget]\nmax_backoff_s = 60\n")
    scripted_model.agent("FIRST SESSION", [rate_limit_error(retry_after=8, times=None)])
    scripted_model.main([agent_call("RL-N: after the limit"), text("done")])
    scripted_model.subagent("RL-N", [text("n done")])
    first = run_plugin(run_claude, repo_root, "FIRST SESSION", timeout=240,
                       env={"CLAUDE_CODE_MAX_RETRIES": "1"})
    assert first.is_error and "429" in first.result_text
    home = claude_dirs["home"]
    [row] = [json.loads(d) for *_, d in wait_for_audit(home, "rate.limited")]
    assert row["event"] == "StopFailure" and not row.get("agent_id")
    # The delay Claude Code chose for its retry (the Retry-After plus its jitter) is in
    # the session's transcript; the gate holds that long (plus up to a quarter more).
    [transcript] = (home / ".claude" / "projects").glob("*/*.jsonl")
    delays = [json.loads(line)["retryInMs"] / 1000 for line in
              transcript.read_text().splitlines() if '"subtype":"api_error"' in line]
    assert delays and delays[-1] >= 8.0
    assert row["retry_delay_s"] == delays[-1]
    assert delays[-1] <= row["gate_s"] <= delays[-1] * 1.25 + 0.01
    conn = sqlite3.connect(f"file:{plugin_data(home) / 'state.db'}?mode=ro", uri=True)
    try:
        until_us = conn.execute("SELECT until_us FROM rate_gate").fetchone()[0]
    finally:
        conn.close()
    second = run_plugin(run_claude, repo_root, "start one more agent", timeout=240)
    second.assert_success()
    [started] = scripted_model.requests_for("RL-N")
    assert started.received_at >= _monotonic_of(until_us) - 0.05


def _retries_written(home: Path) -> list[dict[str, Any]]:
    """The main agent's retries Claude Code wrote to the session's transcript."""
    found = []
    for transcript in (home / ".claude" / "projects").glob("*/*.jsonl"):
        for line in transcript.read_text().splitlines():
            if '"subtype":"api_error"' in line:
                found.append(json.loads(line))
    return found


def test_the_main_agents_retried_429_holds_new_agents_until_the_retry_goes_out(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    """The main agent's request gets a 429 naming Retry-After 20 s; Claude Code waits it
    out and its retry succeeds, so no failure is ever reported. A background agent's tool
    call meanwhile hears of the retry from the session's transcript: the gate holds new
    agents until the retry goes out. (The tool call must come within the wait, which
    Claude Code times: 20 s leaves a loaded machine ample room.)"""
    home, work = claude_dirs["home"], claude_dirs["work"]
    _policy(work, "[budget]\nmax_backoff_s = 60\n[admission]\nwait_timeout_s = 100\n")
    (work / "notes.txt").write_text("some notes\n")
    scripted_model.main([agent_call("BG-R: read the notes", background=True),
                         rate_limit_error(retry_after=20),
                         agent_call("RL-NEW: after the retry"), text("done")])
    scripted_model.subagent("RL-NEW", [text("new done")])

    def background(request: Any) -> Any:
        if "BG-R" not in request.first_user_text:
            return None
        if request.turn == 0:
            # Its tool call comes while Claude Code waits out the main agent's 429: the
            # order the test needs, made explicit.
            assert _wait(lambda: bool(_retries_written(home)), timeout=120)
            return tool_use("Read", {"file_path": str(work / "notes.txt")})
        return text("read them")

    scripted_model.on(background)
    run = run_plugin(run_claude, repo_root, "read in the background", timeout=240,
                     allowed_tools=["Read"],
                     env={"CLAUDE_CODE_MAX_RETRIES": "1", "ENABLE_TOOL_SEARCH": "false"})
    run.assert_success(allow_denials=True)
    limited, retried = scripted_model.requests_for("main")[1:3]
    assert type(limited.reply).__name__ == "ApiError", "the second main request got the 429"
    assert type(retried.reply).__name__ != "ApiError", "Claude Code's retry succeeded"
    [written] = _retries_written(home)
    at_us = int(dt.datetime.fromisoformat(written["timestamp"]).timestamp() * 1e6)
    assert written["error"]["status"] == 429 and written["retryInMs"] >= 20_000, \
        "Claude Code waits at least the Retry-After"
    [heard] = [json.loads(d) for *_, d in wait_for_audit(home, "rate.limited")]
    assert heard["retrying"] is True and heard["event"] == "PreToolUse"
    assert heard["agent_id"], "heard by the background agent's tool call"
    assert heard["retry_at_us"] == at_us and heard["retry_delay_s"] == written["retryInMs"] / 1000
    conn = sqlite3.connect(f"file:{plugin_data(home) / 'state.db'}?mode=ro", uri=True)
    try:
        until_us, updated_us, status = conn.execute(
            "SELECT until_us, updated_us, status FROM rate_gate WHERE scope = 'api'"
        ).fetchone()
    finally:
        conn.close()
    # The gate's deadline, against the header: from when Claude Code started to wait,
    # at least its delay (which is at least the Retry-After), at most a quarter more.
    assert (status, updated_us) == (429, at_us)
    assert written["retryInMs"] * 1000 <= until_us - updated_us <= written["retryInMs"] * 1250
    # The agent started after the retry waited for the gate: none before it opened.
    [started] = scripted_model.requests_for("RL-NEW")
    assert started.received_at >= _monotonic_of(until_us) - 0.05
    assert audit_rows(home, "policy.decision"), "the plugin decided the calls"


def test_another_sessions_main_agent_waiting_out_a_429_holds_this_sessions_new_agent(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    """Session A's main agent gets a 429 naming Retry-After 30 s and waits it out (it runs
    no hook meanwhile); session B, started while A waits, starts an agent: B's hook reads
    A's transcript (named by A's earlier tool call) and the agent waits until A's retry
    goes out. (B's agent must come within the wait, which Claude Code times: 30 s leaves
    a loaded machine ample room to start a session.)"""
    home, work = claude_dirs["home"], claude_dirs["work"]
    _policy(work, "[budget]\nmax_backoff_s = 60\n[admission]\nwait_timeout_s = 100\n")
    (work / "notes.txt").write_text("some notes\n")
    scripted_model.agent("FIRST SESSION", [
        tool_use("Read", {"file_path": str(work / "notes.txt")}),
        rate_limit_error(retry_after=30), text("a done")])
    scripted_model.main([agent_call("RL-B: after the other session's 429"), text("b done")])
    scripted_model.subagent("RL-B", [text("b's agent done")])
    env = {"CLAUDE_CODE_MAX_RETRIES": "1", "ENABLE_TOOL_SEARCH": "false"}
    first: list[ClaudeRun | BaseException] = []

    def session_a() -> None:
        try:
            first.append(run_plugin(run_claude, repo_root, "FIRST SESSION: read the notes",
                                    timeout=240, allowed_tools=["Read"], env=env))
        except BaseException as exc:  # reported by the test's thread below
            first.append(exc)

    thread = threading.Thread(target=session_a)
    thread.start()
    try:
        # B starts once A's retry is written: the order the test needs, made explicit.
        assert _wait(lambda: bool(_retries_written(home)) or not thread.is_alive(),
                     timeout=120)
        second = run_plugin(run_claude, repo_root, "start one agent", timeout=240, env=env)
    finally:
        thread.join(timeout=300)
    assert first and isinstance(first[0], ClaudeRun), first
    first[0].assert_success()
    second.assert_success()
    a_requests = scripted_model.requests_for("FIRST SESSION")
    assert [type(r.reply).__name__ for r in a_requests] == ["Turn", "ApiError", "Turn"], \
        "A's retry succeeded: no failure was ever reported"
    [written] = _retries_written(home)
    at_us = int(dt.datetime.fromisoformat(written["timestamp"]).timestamp() * 1e6)
    assert written["retryInMs"] >= 30_000, "Claude Code waits at least the Retry-After"
    [heard] = [json.loads(d) for *_, d in wait_for_audit(home, "rate.limited")]
    a_session = first[0].init["session_id"]
    assert heard["retrying"] is True and heard["event"] == "PreToolUse"
    assert heard["retrying_session"] == a_session != heard["session_id"]
    assert heard["retry_at_us"] == at_us
    conn = sqlite3.connect(f"file:{plugin_data(home) / 'state.db'}?mode=ro", uri=True)
    try:
        until_us, updated_us = conn.execute(
            "SELECT until_us, updated_us FROM rate_gate WHERE scope = 'api'").fetchone()
    finally:
        conn.close()
    # The gate's deadline, against the header: from when A's Claude Code started to wait,
    # at least its delay (at least the Retry-After), at most a quarter more.
    assert updated_us == at_us
    assert written["retryInMs"] * 1000 <= until_us - updated_us <= written["retryInMs"] * 1250
    [started] = scripted_model.requests_for("RL-B")
    assert started.received_at >= _monotonic_of(until_us) - 0.05


def _after_the_gate_closed(waves: Waves, match: str, reply: Any) -> Callable[[Any], Any]:
    """A rule answering `match`'s agent only once the shared gate has closed: the order
    the test needs, made explicit instead of left to timing."""
    def rule(request: Any) -> Any:
        if match not in request.first_user_text:
            return None
        _wait(lambda: waves.store.rate_gate.get("api") is not None, timeout=120)
        return reply
    return rule


def _after_heard(waves: Waves, match: str, reply: Any, count: int) -> Callable[[Any], Any]:
    """A rule answering `match`'s agent only once `count` retries were heard."""
    def rule(request: Any) -> Any:
        if match not in request.first_user_text:
            return None
        _wait(lambda: sum(e.kind == "wave.rate_limited" for e in waves.store.iter_audit())
              >= count, timeout=120)
        return reply
    return rule


def test_parallel_wave_agents_429s_close_the_gate_for_their_retry_after(
        waves: Waves, scripted_model: ScriptedModel) -> None:
    """Two agents of a wave get a 429 at once, naming Retry-After 3 and 5 s. With the
    runner's defaults Claude Code reads each header, says how long it will wait, and
    retries; the gate closes for each as it is heard, so the wave's other agents start only
    after the longer one."""
    scripted_model.agent("TASK-R:", [rate_limit_error(retry_after=3), text("r made it")])
    scripted_model.agent("TASK-S:", [rate_limit_error(retry_after=5), text("s made it")])
    scripted_model.on(_after_heard(waves, "TASK-GATE:", text("open"), count=2))
    for name in "XYZ":
        scripted_model.agent(f"TASK-{name}:", [text(f"result {name}")])
    service = _wave_service(waves, _Policy(waves.store, "proj", max_backoff_s=60.0))
    # x, y and z become ready when `gate` ends, which is after both 429s were heard.
    wave = plan(t("r", agent=SONNET, priority=5), t("s", agent=SONNET, priority=5),
                t("gate", agent=SONNET), *(t(n, "gate", agent=SONNET) for n in "xyz"))
    run_id = service.spawn(wave, cwd=str(waves.dirs["work"]), max_concurrency=5)
    assert service.wait_until_done(run_id, 180), service.status(run_id)
    status = service.status(run_id)
    assert status.state == "completed", status
    done = {x.id: x for x in status.tasks}
    assert (done["r"].attempts, done["r"].output) == (1, "r made it"), "the CLI's retry"
    assert (done["s"].attempts, done["s"].output) == (1, "s made it")
    heard = {e.data["task_id"]: e.data for e in waves.store.iter_audit()
             if e.kind == "wave.rate_limited"}
    assert sorted(heard) == ["r", "s"], heard
    for task, retry_after in (("r", 3.0), ("s", 5.0)):
        one = heard[task]
        assert one["status"] == 429
        assert one["retry_delay_s"] >= retry_after, "Claude Code's delay honours the header"
        # The deadline each closing asked for, against the header, from when it was heard.
        span_s = (one["until_us"] - one["heard_us"]) / 1e6
        assert retry_after <= one["retry_delay_s"] <= span_s <= one["retry_delay_s"] * 1.25 + 0.01
    gate = waves.store.rate_gate.get("api")
    assert gate is not None and gate.status == 429
    assert gate.until_us == max(h["until_us"] for h in heard.values()), "the later one wins"
    opened = _monotonic_of(gate.until_us)
    later = [req for n in "XYZ" for req in scripted_model.requests_for(f"TASK-{n}:")]
    assert len(later) == 3
    assert all(req.received_at >= opened - 0.05 for req in later), \
        (opened, [req.received_at for req in later])
    paused = [e.data for e in waves.store.iter_audit() if e.kind == "wave.paused"]
    assert paused and all("rate limited" in str(p["reason"]) for p in paused)


# -- stop means stop: native agents ---------------------------------------------------------
def _processes_with(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if marker in " ".join(proc.cmdline()) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _alive(proc: psutil.Process) -> bool:
    try:  # is_running also checks the pid was not reused
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_task_stop_leaves_no_process_of_the_stopped_agent_within_5_s(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path], tmp_path: Path) -> None:
    marker = f"stopme-{tmp_path.name}"
    # A background agent waits in a long command; the main agent stops it with TaskStop.
    scripted_model.subagent("TS-LONG", [
        tool_use("Bash", {"command": f"tail -f /dev/null # {marker}", "timeout": 600000}),
        text("too late")])
    gone_within: list[float | None] = []
    tree: list[psutil.Process] = []

    def main(request: Any) -> Any:
        if request.kind != "main":
            return None
        if request.turn == 0:
            return agent_call("TS-LONG: wait a while", background=True)
        if request.turn == 1:
            # Stop it only once its command runs: the order the test needs, explicit.
            assert _wait(lambda: bool(_processes_with(marker)), timeout=60)
            for proc in _processes_with(marker):
                tree.extend([proc, *proc.children(recursive=True)])
            launched = " ".join(r.text for r in request.tool_results)
            found = re.search(r"agentId: (a[0-9a-f]+)", launched)
            return task_stop(found.group(1) if found else "no-agent-id")
        # The TaskStop's result is back: its agent's processes must be gone within 5 s.
        started = time.monotonic()
        gone = _wait(lambda: not any(_alive(p) for p in tree), timeout=5.0)
        gone_within.append(time.monotonic() - started if gone else None)
        return text("stopped")

    scripted_model.on(main)
    run = run_plugin(run_claude, repo_root, "start and stop", timeout=240,
                     allowed_tools=["Bash"], env={"ENABLE_TOOL_SEARCH": "false"})
    run.assert_success(allow_denials=True)
    stopped = [r for r in scripted_model.tool_results("main") if r.tool_name == "TaskStop"]
    assert stopped and not stopped[0].is_error, stopped
    assert len(tree) >= 2, "the command's shell and what it runs"
    assert gone_within and gone_within[0] is not None, "the stopped agent's command still ran"
    print(f"stopped agent's processes gone {gone_within[0]:.2f} s after TaskStop returned")
    ends = [json.loads(d) for *_, d in wait_for_audit(claude_dirs["home"], "surface.end")]
    assert any(e["tool"] == "TaskStop" for e in ends), ends


def test_the_end_of_a_session_leaves_no_process_of_its_agents_within_5_s(
        scripted_model: ScriptedModel, claude_bin: Path, repo_root: Path,
        claude_dirs: dict[str, Path], tmp_path: Path) -> None:
    """The user ends the session (SIGTERM to Claude Code) while a background agent waits in
    a long command. Run outside the harness, which kills the process group after a run
    and would hide a survivor."""
    marker = f"endme-{tmp_path.name}"
    scripted_model.subagent("END-BG", [
        tool_use("Bash", {"command": f"tail -f /dev/null # {marker}", "timeout": 600000}),
        text("too late")])
    scripted_model.main([agent_call("END-BG: wait a while", background=True),
                         text("waiting for it", delay=1.0), text("still waiting")])
    env = offline_env(model_url=scripted_model.base_url, home=claude_dirs["home"],
                      tmpdir=claude_dirs["cctmp"],
                      extra=plugin_env({"ENABLE_TOOL_SEARCH": "false"}))
    cli = subprocess.Popen(
        [str(claude_bin), "-p", "start it", "--output-format", "stream-json", "--verbose",
         "--plugin-dir", str(repo_root), "--allowedTools", "Bash"],
        cwd=claude_dirs["work"], env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    tree: list[psutil.Process] = []
    try:
        assert _wait(lambda: bool(_processes_with(marker)), timeout=120)
        for proc in _processes_with(marker):
            tree.extend([proc, *proc.children(recursive=True)])
        assert len(tree) >= 2
        cli.send_signal(signal.SIGTERM)
        cli.wait(timeout=60)
        started = time.monotonic()
        gone = _wait(lambda: not any(_alive(p) for p in tree), timeout=5.0)
        print(f"the agents' processes gone {time.monotonic() - started:.2f} s after "
              "Claude Code exited")
        survivors = [p.pid for p in tree if _alive(p)]
        assert gone, f"still running after the session ended: {survivors}"
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(cli.pid, signal.SIGKILL)
        for proc in tree:
            with contextlib.suppress(psutil.Error):
                proc.kill()
