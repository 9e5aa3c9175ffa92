"""Subagents' tool calls through the engine and the command hook: decisions, audit rows, and
what happens when the enforcement server cannot answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcp_server.hook_output import hook_output as rendered
from smart_orchestrator.policy.config import build_policy
from smart_orchestrator.policy.engine import PolicyEngine
from smart_orchestrator.store import SqliteStore

from .policy_payloads import subagent_tool

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----")
    (home / "proj").mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SMART_ORCHESTRATOR_DATA", str(tmp_path / "data"))
    return home


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "state.db")
    yield s
    s.close()


def engine(store: SqliteStore, home: Path, **policy: Any) -> PolicyEngine:
    return PolicyEngine(store, build_policy(policy, "test.toml"), project_dir=home / "proj",
                        owner_pid=None)


def call(home: Path, tool: str, tool_input: dict[str, Any]) -> dict[str, Any]:
    payload = subagent_tool(tool, tool_input)
    payload["cwd"] = str(home / "proj")
    return payload


def tool_rows(store: SqliteStore) -> list[dict[str, Any]]:
    return [dict(r.data) for r in store.iter_audit() if r.kind == "tool.use"]


def reason(out: dict[str, Any]) -> str:
    return str(out.get("hookSpecificOutput", {}).get("permissionDecisionReason", ""))


def test_a_credential_read_is_denied_in_one_line_and_audited(store: SqliteStore,
                                                              home: Path) -> None:
    e = engine(store, home)
    out = rendered(e.handle(call(home, "Bash", {"command": "cd ~ && awk 1 .ssh/id*"})))
    assert out["hookSpecificOutput"]["permissionDecision"] == "deny"
    assert "SSH keys" in reason(out) and "\n" not in reason(out)
    [row] = tool_rows(store)
    assert row["decision"] == "deny" and row["denied_by"] == ["tools:credential-read"]
    assert "credential-read" in row["flags"]
    assert "awk" not in json.dumps(row), "the audit holds a digest, not the command"


def test_an_unresolvable_command_is_denied_by_default_and_allowed_when_configured(
        store: SqliteStore, home: Path) -> None:
    payload = call(home, "Bash", {"command": "cat $(echo notes.txt)"})
    out = rendered(engine(store, home).handle(payload))
    assert "command substitution" in reason(out)
    allowed = rendered(engine(store, home, tools={"unresolvable": "allow"}).handle(payload))
    assert allowed == {}
    rows = tool_rows(store)
    assert [r["decision"] for r in rows] == ["deny", "allow"]
    assert "unresolved" in rows[1]["flags"]


def test_warn_mode_records_what_it_would_deny(store: SqliteStore, home: Path) -> None:
    out = rendered(engine(store, home, tools={"mode": "warn"}).handle(
        call(home, "Read", {"file_path": str(home / ".ssh" / "id_rsa")})))
    assert out == {}
    [row] = tool_rows(store)
    assert row["would_deny"] == ["tools:credential-read"] and row["decision"] == "allow"


def test_a_write_to_the_policy_file_is_denied(store: SqliteStore, home: Path) -> None:
    out = rendered(engine(store, home).handle(call(home, "Write", {
        "file_path": ".claude/smart-orchestrator.toml", "content": "preset = 'permissive'"})))
    assert "state, policy or hooks" in reason(out)


def test_the_main_agents_calls_stay_unpoliced(store: SqliteStore, home: Path) -> None:
    payload = call(home, "Bash", {"command": "cat ~/.ssh/id_rsa"})
    del payload["agent_id"]
    assert rendered(engine(store, home).handle(payload)) == {}
    assert tool_rows(store) == []


def test_a_crash_in_the_tool_check_denies_a_subagent(store: SqliteStore, home: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: Any, **__: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("smart_orchestrator.policy.paths_guard.check_tool_call", boom)
    out = rendered(engine(store, home).handle(call(home, "Bash", {"command": "ls"})))
    assert out["hookSpecificOutput"]["permissionDecision"] == "deny"
    assert "fails closed" in reason(out)
