"""Policy hooks on real subagent calls inside Claude Code."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from smart_orchestrator.store import SqliteStore
from smart_orchestrator.store.hostid import host_id

from .harness import ClaudeRun, ScriptedModel, agent_call, text, tool_use, turn
from .plugin_env import audit_rows, data_folder_files, plugin_data, run_plugin, wait_for_audit

AWS_KEY = "AKIAZ3MSJV4WKQ7NTB5R"
AWS_SECRET = "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"
PEM_BODY = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun"
PRIVATE_KEY = ("-----BEGIN RSA PRIVATE KEY-----\n" + PEM_BODY + "\n"
               "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
               "-----END RSA PRIVATE KEY-----")


def _policy(work: Path, body: str) -> None:
    (work / ".claude").mkdir(exist_ok=True)
    (work / ".claude" / "smart-orchestrator.toml").write_text(body)


def _decisions(home: Path) -> list[dict[str, object]]:
    return [json.loads(data) for *_, data in audit_rows(home, "policy.decision")]


def test_clean_prompt_spawns_and_is_audited(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    scripted_model.main([agent_call("SUBTASK-1: count the files"), text("all done")])
    scripted_model.subagent("SUBTASK-1", [text("there are 3 files")])
    run = run_plugin(run_claude, repo_root, "delegate it")
    run.assert_success()
    scripted_model.assert_all_served()
    [result] = scripted_model.tool_results("main")
    assert not result.is_error and "3 files" in result.text
    home = claude_dirs["home"]
    wait_for_audit(home, "agent.start")  # recorded by a background hook
    kinds = [kind for _, _, kind, _ in audit_rows(home)]
    assert kinds.count("policy.decision") == 1
    assert {"agent.start", "agent.stop", "agent.end"} <= set(kinds)
    assert _decisions(home)[0]["decision"] == "allow"
    # One decider: nothing is left on disk for a second hook to collect.
    assert list((plugin_data(home) / "servers").glob("*.decided/*")) == []
    # The decision came from the per-user service, not a process started for the event.
    assert _decisions(home)[0]["source"] == "server"


def test_prompt_with_aws_key_is_denied_and_never_stored(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    prompt = f"SUBTASK-2: deploy using key {AWS_KEY} and secret {AWS_SECRET}"
    scripted_model.main([agent_call(prompt), text("understood")])
    scripted_model.subagent("SUBTASK-2", [text("deployed")])
    run = run_plugin(run_claude, repo_root, "deploy")
    [result] = scripted_model.tool_results("main")
    assert result.is_error
    assert "environment variables" in result.text
    assert AWS_KEY not in result.text
    assert scripted_model.requests_for("SUBTASK-2") == [], "the subagent must not start"
    home = claude_dirs["home"]
    assert _decisions(home)[0]["decision"] == "deny"
    for path, data in data_folder_files(home).items():
        assert AWS_KEY.encode() not in data, path
    run.assert_success(allow_denials=True)


def test_six_parallel_agents_under_a_limit_of_two_never_exceed_two(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    _policy(claude_dirs["work"], "[admission]\nmax_in_flight_session = 2\n"
                                 "wait_timeout_s = 90\n")
    calls = [agent_call(f"PAR-{i}: work on part {i}", description=f"part {i}")
             for i in range(6)]
    scripted_model.main([turn(*calls), text("merged")])
    for i in range(6):
        scripted_model.subagent(f"PAR-{i}", [text(f"part {i} done", delay=1.0)])
    run = run_plugin(run_claude, repo_root, "fan out", timeout=240)
    results = scripted_model.tool_results("main")
    assert len(results) == 6
    home = claude_dirs["home"]
    # In flight, as the model sees it: from a subagent's first request to its last answer.
    spans = []
    for i in range(6):
        reqs = scripted_model.requests_for(f"PAR-{i}")
        spans.append((min(r.received_at for r in reqs), max(r.answered_at or 0 for r in reqs)))
    edges = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert peak <= 2, spans
    # Claude Code starts each subagent as soon as its own PreToolUse answers, so the
    # calls over the limit waited for a slot: all six allowed, never more than two running.
    decisions = _decisions(home)
    assert [d["decision"] for d in decisions] == ["allow"] * 6
    assert not any(r.is_error for r in results)
    run.assert_success()


def test_subagent_answer_with_private_key_is_flagged_and_withheld(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    scripted_model.main([agent_call("SUBTASK-3: find the deploy key"), text("noted")])
    scripted_model.subagent("SUBTASK-3", [text(f"Found it:\n{PRIVATE_KEY}"),
                                          text("The deploy key is in keys/deploy.pem.")])
    run = run_plugin(run_claude, repo_root, "look")
    run.assert_success(allow_denials=True)
    home = claude_dirs["home"]
    stops = [json.loads(d) for *_, d in audit_rows(home, "agent.stop")]
    assert any(any("output-secrets" in f for f in s["flags"]) for s in stops), stops
    main_saw = " ".join(r.text for r in scripted_model.tool_results("main"))
    assert PEM_BODY not in main_saw


def test_policy_check_that_crashes_denies(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    (claude_dirs["work"] / ".secrets.baseline").write_text("{ this is not json")
    scripted_model.main([agent_call("SUBTASK-4: anything"), text("ok")])
    scripted_model.subagent("SUBTASK-4", [text("ran")])
    run_plugin(run_claude, repo_root, "go")
    [result] = scripted_model.tool_results("main")
    assert result.is_error and "fails closed" in result.text
    assert scripted_model.requests_for("SUBTASK-4") == []


def test_warn_mode_allows_and_records_what_it_would_deny(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    _policy(claude_dirs["work"], 'preset = "permissive"\n')
    scripted_model.main([agent_call(f"SUBTASK-5: use {AWS_KEY} / {AWS_SECRET}"), text("ok")])
    scripted_model.subagent("SUBTASK-5", [text("used it")])
    run_plugin(run_claude, repo_root, "go").assert_success()
    [result] = scripted_model.tool_results("main")
    assert not result.is_error
    [decision] = _decisions(claude_dirs["home"])
    assert decision["decision"] == "allow"
    assert any(str(w).startswith("secrets:") for w in decision["would_deny"])  # type: ignore[attr-defined]


@pytest.fixture
def plugin_without_server(repo_root: Path, tmp_path: Path) -> Path:
    """The plugin with its MCP server gone, as when the server fails to start."""
    copy = tmp_path / "plugin"
    shutil.copytree(repo_root, copy, ignore=shutil.ignore_patterns(
        ".venv", ".git", "__pycache__", "*.egg-info", ".mypy_cache", ".pytest_cache"))
    (copy / ".mcp.json").unlink()
    return copy


def test_agent_calls_are_blocked_when_the_mcp_server_is_missing(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        plugin_without_server: Path, claude_dirs: dict[str, Path]) -> None:
    """No server to answer the hooks: Claude Code blocks the guarded calls itself
    (`onFailure: block`), the main agent's own tools included."""
    scripted_model.main([agent_call(f"SUBTASK-6: key {AWS_KEY} secret {AWS_SECRET}"),
                         tool_use("Bash", {"command": "echo main-agent"}), text("ok")])
    scripted_model.subagent("SUBTASK-6", [text("ran")])
    run_plugin(run_claude, plugin_without_server, "go", plugin_dir=plugin_without_server)
    agent, bash = scripted_model.tool_results("main")
    assert agent.is_error and 'onFailure is "block"' in agent.text
    assert bash.is_error and 'onFailure is "block"' in bash.text
    assert scripted_model.requests_for("SUBTASK-6") == []


def test_a_service_killed_while_deciding_blocks_the_call_and_restarts(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    """The service claims the call, then dies before deciding (SIGKILL while it waits for an
    admission slot): the shim starts a new service and sends it the pending hook call, which
    it refuses with the reason (the claim was left undecided), so the Agent call is blocked;
    the new service decides the next call of the session."""
    _policy(claude_dirs["work"], "[admission]\nmax_in_flight_machine = 1\n"
                                 "wait_timeout_s = 3\n")
    home = claude_dirs["home"]
    db = plugin_data(home) / "state.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    store = SqliteStore(db)
    try:  # the one machine-wide slot, held by a live process of another session
        with store.transaction() as conn:
            conn.execute("INSERT INTO leases (id, session_id, agent_id, agent_type, owner_pid, "
                         "depth, background, acquired_us, expires_us, host) VALUES "
                         "('other:toolu_x', 'other', NULL, 'general', ?, 1, 0, 0, ?, ?)",
                         (os.getpid(), 2**62, host_id()))
    finally:
        store.close()
    killed: list[int] = []
    stop = threading.Event()

    def kill_the_deciding_service() -> None:
        while not stop.is_set() and not killed:
            with contextlib.suppress(sqlite3.Error):
                conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.2)
                try:
                    rows = conn.execute("SELECT owner FROM claims WHERE key LIKE 'PreToolUse:%'"
                                        " AND owner LIKE 'server:%' AND decision IS NULL"
                                        ).fetchall()
                finally:
                    conn.close()
                for (owner,) in rows:
                    os.kill(int(owner.split(":")[1]), signal.SIGKILL)
                    killed.append(int(owner.split(":")[1]))
            time.sleep(0.01)

    watcher = threading.Thread(target=kill_the_deciding_service, daemon=True)
    watcher.start()
    scripted_model.main([agent_call("SUBTASK-8: count the files"),
                         agent_call("SUBTASK-9: count them again"), text("understood")])
    scripted_model.subagent("SUBTASK-8", [text("there are 3 files")])
    scripted_model.subagent("SUBTASK-9", [text("still 3 files")])
    try:
        run_plugin(run_claude, repo_root, "delegate it")
    finally:
        stop.set()
        watcher.join(5)
    assert killed, "the service never claimed the call"
    first, second = scripted_model.tool_results("main")
    assert first.is_error and "left no decision" in first.text, first.text
    assert scripted_model.requests_for("SUBTASK-8") == [], "the subagent must not start"
    # A new service decided the next call: still no slot, so a reasoned denial.
    assert second.is_error and "already running on this machine" in second.text, second.text
    [decision] = _decisions(home)
    assert (decision["decision"], decision["source"]) == ("deny", "server")
