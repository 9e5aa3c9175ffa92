"""The circuit breaker's half-open trial in real Claude Code: a trial that admission denies,
or whose owner is gone, never leaves the breaker half-open for good."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from smart_orchestrator.policy.agent_types import canonical_agent_type
from smart_orchestrator.scripted import ModelRequest
from smart_orchestrator.store import SqliteStore

from .harness import ClaudeRun, ScriptedModel, agent_call, text
from .plugin_env import audit_rows, plugin_data, run_plugin

# As the breakers table keys it: agent types compare without case or separators.
AGENT_TYPE = canonical_agent_type("general-purpose")


def _seed(home: Path, *, breaker: tuple[str, str | None, int | None],
          lease_owner_pid: int | None = None) -> Path:
    """State as another session left it: the breaker past its cool-down, and optionally
    a live agent of another session holding the machine's only slot."""
    db = plugin_data(home) / "state.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    store = SqliteStore(db)
    now_us = int(time.time() * 1e6)
    state, owner, expires = breaker
    with store.transaction() as conn:
        conn.execute("INSERT INTO breakers (agent_type, state, opened_us, failures, "
                     "trial_owner, trial_expires_us) VALUES (?, ?, ?, ?, ?, ?)",
                     (AGENT_TYPE, state, now_us - 3600 * 10**6, json.dumps([1.0]), owner,
                      expires))
        if lease_owner_pid is not None:
            conn.execute("INSERT INTO leases (id, session_id, agent_type, owner_pid, depth, "
                         "background, acquired_us, expires_us) VALUES "
                         "('held-elsewhere', 'another-session', 'other', ?, 1, 1, ?, ?)",
                         (lease_owner_pid, now_us, now_us + 3600 * 10**6))
    store.close()
    return db


def _policy(work: Path) -> None:
    (work / ".claude").mkdir(exist_ok=True)
    (work / ".claude" / "smart-orchestrator.toml").write_text(
        "[admission]\nmax_in_flight_machine = 1\nwait_timeout_s = 0\n")


def _breaker_state(home: Path) -> str:
    store = SqliteStore(plugin_data(home) / "state.db")
    try:
        return str(store.query("SELECT state FROM breakers WHERE agent_type = ?",
                               (AGENT_TYPE,))[0][0])
    finally:
        store.close()


def test_a_trial_denied_by_admission_lets_the_next_call_be_the_trial(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    home, work = claude_dirs["home"], claude_dirs["work"]
    _policy(work)
    db = _seed(home, breaker=("open", None, None), lease_owner_pid=os.getpid())

    def free_the_slot(request: ModelRequest) -> None:
        # The other session's agent ends once the first trial has been denied.
        if request.conversation == "main" and request.turn == 1:
            store = SqliteStore(db)
            with store.transaction() as conn:
                conn.execute("DELETE FROM leases WHERE id = 'held-elsewhere'")
            store.close()
        return None

    scripted_model.on(free_the_slot)
    scripted_model.main([agent_call("TRIAL-1: check the build"),
                         agent_call("TRIAL-2: check the build again"), text("done")])
    scripted_model.subagent("TRIAL-1", [text("built")])
    scripted_model.subagent("TRIAL-2", [text("built fine")])
    run = run_plugin(run_claude, repo_root, "check")
    first, second = scripted_model.tool_results("main")
    assert first.is_error and "already running on this machine" in first.text, first.text
    assert "half-open" not in second.text and not second.is_error, second.text
    assert scripted_model.requests_for("TRIAL-1") == []
    assert scripted_model.requests_for("TRIAL-2"), "the second call was the trial and ran"
    decisions = [json.loads(d)["decision"] for *_, d in audit_rows(home, "policy.decision")]
    assert decisions == ["deny", "allow"]
    assert _breaker_state(home) == "closed", "the trial's success closed the breaker"
    run.assert_success(allow_denials=True)


def test_a_trial_whose_lease_is_gone_is_abandoned(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    home = claude_dirs["home"]
    far = int((time.time() + 3600) * 1e6)
    # A trial from a session that died: its lease was purged, no outcome was recorded.
    _seed(home, breaker=("half_open", "lease:session-that-died:toolu_x", far))
    scripted_model.main([agent_call("AFTER-1: run the linter"), text("done")])
    scripted_model.subagent("AFTER-1", [text("lint clean")])
    run = run_plugin(run_claude, repo_root, "lint")
    [result] = scripted_model.tool_results("main")
    assert not result.is_error, result.text
    assert scripted_model.requests_for("AFTER-1")
    assert _breaker_state(home) == "closed"
    run.assert_success()
