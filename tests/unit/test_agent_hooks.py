from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mcp_server.hook_output import hook_output
from smart_orchestrator.policy import EngineFactory
from smart_orchestrator.policy.agent_hooks import AgentPolicyHooks
from smart_orchestrator.store import SqliteStore


def _hooks(store: SqliteStore, root: Path) -> AgentPolicyHooks:
    factory = EngineFactory(store, source="wave", project_dir=root)
    return AgentPolicyHooks(factory, run_id="r1", task_id="t1", agent_type="general",
                            allowed_roots=[root], render=hook_output)


def _pre(tool: str, tool_input: dict[str, Any], cwd: Path) -> dict[str, Any]:
    return {"hook_event_name": "PreToolUse", "session_id": "s", "tool_name": tool,
            "tool_input": tool_input, "cwd": str(cwd)}


def _decision(out: dict[str, Any]) -> str | None:
    return out.get("hookSpecificOutput", {}).get("permissionDecision")


@pytest.mark.parametrize(("tool", "tool_input", "denied"), [
    ("Read", {"file_path": "src/app.py"}, False),
    ("Read", {"file_path": "~/.ssh/id_rsa"}, True),
    ("Read", {"file_path": "../outside.txt"}, True),
    ("Write", {"file_path": "/etc/cron.d/job", "content": "x"}, True),
    ("Grep", {"pattern": "x", "path": "."}, False),
    ("Bash", {"command": "cat ~/.ssh/id_rsa"}, True),
    ("Bash", {"command": "ls -la"}, False),
])
async def test_wave_agent_tool_calls_are_confined_and_audited(
        store: SqliteStore, tmp_path: Path, tool: str, tool_input: dict[str, Any],
        denied: bool) -> None:
    root = tmp_path / "project"
    (root / "src").mkdir(parents=True)
    out = await _hooks(store, root)(_pre(tool, tool_input, root), "toolu_1", None)
    assert (_decision(out) == "deny") is denied
    rows = [r.data for r in store.iter_audit() if r.kind == "tool.use"]
    assert len(rows) == 1 and rows[0]["agent_id"] == "wave:r1:t1"
    assert rows[0]["decision"] == ("deny" if denied else "allow")


async def test_symlink_out_of_the_root_is_denied(store: SqliteStore, tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    (tmp_path / "secret.txt").write_text("x")
    (root / "link.txt").symlink_to(tmp_path / "secret.txt")
    out = await _hooks(store, root)(_pre("Read", {"file_path": "link.txt"}, root), None, None)
    assert _decision(out) == "deny"


async def test_wave_agent_prompts_with_secrets_for_subagents_are_denied(
        store: SqliteStore, tmp_path: Path) -> None:
    payload = _pre("Agent", {"description": "d", "subagent_type": "general-purpose",
                             "prompt": "use AKIAZ3MSJV4WKQ7NTB5R and "
                                       "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq8Lr4Tm2d"}, tmp_path)
    out = await _hooks(store, tmp_path)(payload, "toolu_2", None)
    assert _decision(out) == "deny"
    assert "AKIAZ3MSJV4WKQ7NTB5R" not in json.dumps([r.data for r in store.iter_audit()])
