"""Budgets on real subagent calls inside Claude Code, against the scripted model reporting
usage."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

from .harness import ClaudeRun, ScriptedModel, agent_call, text
from .plugin_env import audit_rows, plugin_data, run_plugin

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


def test_a_background_agent_is_settled_at_its_stop(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    scripted_model.main([agent_call("BG-1: index the docs", background=True),
                         text("launched", delay=3.0), text("all done")])
    scripted_model.subagent("BG-1", [text("indexed", usage={"input": 1234, "output": 56})])
    run = run_plugin(run_claude, repo_root, "index in the background")
    run.assert_success()
    home = claude_dirs["home"]
    from .plugin_env import wait_for_audit

    wait_for_audit(home, "agent.stop")
    rows = _ledger(home)
    assert len(rows) == 1 and rows[0]["state"] == "settled", rows
    assert (rows[0]["input_tokens"], rows[0]["output_tokens"]) == (1234, 56)
