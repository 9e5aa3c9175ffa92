"""`gate_status` and `record_approval` through the real MCP client, and the `gates` CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mcp.types as types
import pytest
from mcp import Client

from mcp_server.server import build_server
from smart_orchestrator.cli import main as cli_main
from smart_orchestrator.store import SqliteStore

from .test_gates import APPROVALS, cmd, git, make_repo, write_config


@pytest.fixture
def project(tmp_path: Path, db_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    repo = make_repo(tmp_path / "repo")
    write_config(repo, f"[gates]\ndetect = false\n{APPROVALS}\n[gates.tier1]\n"
                       f"tests = {cmd('print(42)')}\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "config")
    (repo / "auth").mkdir()
    (repo / "auth" / "login.py").write_text("def login(): ...\n")
    monkeypatch.setenv("CLAUDE_PROJECT_DIR", str(repo))
    monkeypatch.delenv("CLAUDECODE", raising=False)
    return repo


def _answer(action: str, content: dict[str, Any] | None = None) -> Any:
    asked: list[str] = []

    async def callback(_ctx: Any, params: Any) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action=action, content=content)  # type: ignore[arg-type]

    callback.asked = asked  # type: ignore[attr-defined]
    return callback


async def test_gate_tools_publish_output_schemas(project: Path) -> None:
    async with Client(build_server()) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    for name in ("gate_status", "record_approval"):
        assert tools[name].output_schema is not None, name
    assert set(tools["record_approval"].input_schema["properties"]) == {"kind", "approver",
                                                                        "note"}


async def test_gate_status_runs_the_commands_and_names_the_blocking_tier(project: Path) -> None:
    progress: list[str | None] = []

    async def on_progress(_done: float, _total: float | None, message: str | None) -> None:
        progress.append(message)

    async with Client(build_server()) as client:
        first = await client.call_tool("gate_status", {}, progress_callback=on_progress)
        again = await client.call_tool("gate_status", {"run": False})
    assert progress == ["tier 1: running tests"]
    report = first.structured_content
    assert report is not None and not first.is_error
    assert report["blocking_tier"] == 3 and not report["passed"]
    assert "security approval" in report["reason"]
    tests = report["tiers"][0]["checks"][0]
    assert (tests["status"], tests["exit_code"], tests["output_tail"].strip()) == \
        ("passed", 0, "42")
    assert again.structured_content["tiers"][0]["checks"][0]["cached"]  # type: ignore[index]


async def test_an_approval_confirmed_by_the_user_is_recorded_and_passes_tier3(
        project: Path, store: SqliteStore) -> None:
    answer = _answer("accept", {"approve": True, "approver": "bob"})
    async with Client(build_server(), elicitation_callback=answer) as client:
        recorded = await client.call_tool("record_approval",
                                          {"kind": "security", "approver": "alice"})
        status = await client.call_tool("gate_status", {})
    assert not recorded.is_error, recorded.content
    assert recorded.structured_content["approver"] == "bob"  # the person's answer wins
    assert recorded.structured_content["paths"] == ["auth/login.py"]
    assert "auth/login.py" in answer.asked[0]
    assert status.structured_content["passed"]  # type: ignore[index]
    events = [r for r in store.iter_audit() if r.kind == "gate.approval"]
    assert [(e.data["approver"], e.data["via"]) for e in events] == [("bob", "elicitation")]


@pytest.mark.parametrize(("action", "content"), [
    ("decline", None),
    ("cancel", None),
    ("accept", {"approve": False, "approver": "bob"}),
])
async def test_nothing_is_recorded_unless_the_user_approves(
        project: Path, store: SqliteStore, action: str, content: dict[str, Any] | None) -> None:
    async with Client(build_server(), elicitation_callback=_answer(action, content)) as client:
        result = await client.call_tool("record_approval", {"kind": "security"})
    assert result.is_error
    assert not any(r.kind == "gate.approval" for r in store.iter_audit())


async def test_a_client_that_cannot_ask_the_user_cannot_approve(project: Path,
                                                                store: SqliteStore) -> None:
    async with Client(build_server()) as client:
        result = await client.call_tool("record_approval", {"kind": "security"})
    assert result.is_error
    assert "smart-orchestrator gates approve security" in result.content[0].text
    assert not any(r.kind == "gate.approval" for r in store.iter_audit())


async def test_an_approval_nothing_needs_is_refused_before_asking(project: Path) -> None:
    answer = _answer("accept", {"approve": True, "approver": "bob"})
    async with Client(build_server(), elicitation_callback=answer) as client:
        result = await client.call_tool("record_approval", {"kind": "ux"})
    assert result.is_error and "needs no 'ux' approval" in result.content[0].text
    assert answer.asked == []


async def test_gate_status_outside_git_is_a_tool_error(tmp_path: Path, db_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAUDE_PROJECT_DIR", str(tmp_path))
    async with Client(build_server()) as client:
        result = await client.call_tool("gate_status", {})
    assert result.is_error and "not inside a git work tree" in result.content[0].text


def test_cli_gates_exits_1_when_blocked_and_approve_then_passes(
        project: Path, db_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--db", str(db_path), "gates", "--project", str(project)]
    assert cli_main([*base, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["blocking_tier"] == 3
    assert cli_main([*base, "approve", "security", "--by", "alice"]) == 0
    assert "alice approved the security review of 1 file(s)" in capsys.readouterr().out
    assert cli_main(base) == 0
    assert "## Quality gates: PASS" in capsys.readouterr().out


def test_cli_approve_refuses_inside_a_claude_code_session(
        project: Path, db_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CLAUDECODE", "1")
    rc = cli_main(["--db", str(db_path), "gates", "--project", str(project), "approve",
                   "security", "--by", "alice"])
    assert rc == 2
    assert "/smart-orchestrator:approve" in capsys.readouterr().err
