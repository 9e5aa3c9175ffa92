"""Isolation and leaks.

Wave agents may not read outside the task's folders (a Read of `~/.ssh/id_rsa` is denied
and audited); secrets planted in prompts and outputs never reach any file under the data
folder (database, WAL, logs, caches) or a generated report; the MCP server offers no
network transport.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mcp_server.wave_tools import default_service
from smart_orchestrator.store import SqliteStore
from smart_orchestrator.waves import WaveConfig, WavePlan, WaveService

from ..e2e.harness import ScriptedModel, find_claude_bin, offline_env, text, tool_use
from ..unit.policy_payloads import post_agent, pre_agent, subagent_event, subagent_tool
from ._figures import Figures
from ._util import hook_answer, run_cli

SUITE = "isolation"
# Shaped like real credentials, so the secret scanner knows them; none is valid anywhere.
AWS_KEY = "AKIA" + "QYLPMN5HHHFPZAM2"  # pragma: allowlist secret
GITHUB_TOKEN = "ghp_" + "x7Kq9TzR2mW4vB8nL1pD6sF3hJ5gC0eA9yU2"  # pragma: allowlist secret
PRIVATE_KEY = ("-----BEGIN OPENSSH PRIVATE KEY-----\n"
               "b3BlbnNzaC1rZXktdjEAAAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0AAAAGAAAABD\n"
               "-----END OPENSSH PRIVATE KEY-----\n")


def leaks(root: Path, needles: list[str]) -> list[str]:
    """Every file under `root` holding any needle, raw or JSON-escaped."""
    found = []
    forms = {n: {n.encode(), json.dumps(n).strip('"').encode(),
                 json.dumps(n, ensure_ascii=False).strip('"').encode()} for n in needles}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for needle, variants in forms.items():
            if any(v in data for v in variants):
                found.append(f"{path.relative_to(root)}: {needle[:20]}")
    return found


# -- wave agents and the files they may read -------------------------------------------------

@dataclass
class AgentWorld:
    model: ScriptedModel
    env: dict[str, str]
    root: Path
    work: Path
    home: Path
    data: Path
    key_canary: str
    outside_canary: str


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AgentWorld]:
    if find_claude_bin() is None:
        pytest.skip("the bundled Claude Code CLI is missing")
    dirs = {n: tmp_path / n for n in ("work", "home", "cctmp", "data")}
    for d in dirs.values():
        d.mkdir()
    key_canary = f"KEYCANARY{uuid.uuid4().hex}"
    outside_canary = f"OUTSIDECANARY{uuid.uuid4().hex}"
    (dirs["home"] / ".ssh").mkdir()
    (dirs["home"] / ".ssh" / "id_rsa").write_text(
        f"-----BEGIN OPENSSH PRIVATE KEY-----\n{key_canary}\n-----END OPENSSH PRIVATE KEY-----\n")
    (tmp_path / "outside.txt").write_text(outside_canary + "\n")
    (tmp_path / "bash-outside.txt").write_text("BASHOUTSIDE\n")
    (dirs["work"] / "inside.txt").write_text("inside the task's folder\n")
    with ScriptedModel() as model:
        env = offline_env(model_url=model.base_url, home=dirs["home"], tmpdir=dirs["cctmp"])
        # The server's own environment, as Claude Code would start it for this project.
        for key in list(os.environ):
            if key.startswith(("CLAUDE", "ANTHROPIC")):
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("SMART_ORCHESTRATOR_DATA", str(dirs["data"]))
        monkeypatch.setenv("SMART_ORCHESTRATOR_DB", str(dirs["data"] / "state.db"))
        monkeypatch.setenv("CLAUDE_PROJECT_DIR", str(dirs["work"]))
        yield AgentWorld(model, env, tmp_path, dirs["work"], dirs["home"], dirs["data"],
                         key_canary, outside_canary)


# Task -> the tool call its agent makes.
READS: dict[str, tuple[str, dict[str, str]]] = {
    "ssh": ("Read", {"file_path": "~/.ssh/id_rsa"}),
    "outside": ("Read", {"file_path": "../outside.txt"}),
    "inside": ("Read", {"file_path": "inside.txt"}),
    "bashssh": ("Bash", {"command": "cat ~/.ssh/id_rsa"}),
    "bashoutside": ("Bash", {"command": "cat ../bash-outside.txt"}),
}


def _script(world: AgentWorld) -> WavePlan:
    for name, (tool, tool_input) in READS.items():
        world.model.agent(f"TASK-{name}:", [tool_use(tool, tool_input), text(f"{name} done")])
    return WavePlan.model_validate({"tasks": [
        {"id": name, "prompt": f"TASK-{name}: use {tool}", "allowed_tools": [tool]}
        for name, (tool, _) in READS.items()]})


def _run(world: AgentWorld, service: WaveService) -> None:
    try:
        run_id = service.spawn(_script(world), cwd=str(world.work))
        assert service.wait_until_done(run_id, 180), service.status(run_id)
    finally:
        service.close()


def _tool_result(world: AgentWorld, name: str) -> str:
    requests = world.model.requests_for(f"TASK-{name}:")
    assert len(requests) >= 2, f"{name}: the agent never sent its tool result"
    return json.dumps(requests[1].messages[-1])


def check_isolation(world: AgentWorld, figures: Figures) -> None:
    every_request = json.dumps([r.messages for r in world.model.requests])
    assert world.key_canary not in every_request, "the private key reached the model"
    assert world.outside_canary not in every_request, "a file outside the task's folder " \
                                                      "reached the model"
    assert "inside the task's folder" in _tool_result(world, "inside")
    for name in ("ssh", "outside", "bashssh"):
        assert "Smart Orchestrator denied this tool call" in _tool_result(world, name), name
    if "BASHOUTSIDE" in _tool_result(world, "bashoutside"):
        figures.note(SUITE, "Path isolation covers the file tools (Read, Write, Edit, Glob, "
                            "Grep, NotebookEdit). Bash commands are flagged, one that reads a "
                            "credential file is denied, and Claude Code's Bash sandbox makes "
                            "everything outside the task's folder read-only for them (where "
                            "bubblewrap works; docs/waves.md), but they can still read "
                            "outside it: `cat ../file` works. Give wave tasks Bash only when "
                            "that is acceptable.")
    conn = sqlite3.connect(world.data / "state.db")
    try:
        denials = conn.execute("SELECT data FROM audit WHERE kind = 'tool.use' AND "
                               "json_extract(data, '$.decision') = 'deny'").fetchall()
    finally:
        conn.close()
    assert len(denials) >= 3, denials
    assert any("credential-read" in d or "outside-allowed-paths" in d for (d,) in denials)
    assert leaks(world.data, [world.key_canary, world.outside_canary]) == []
    figures.add(SUITE, "wave agents' reads outside their folder: denied, audited")


def test_spawn_wave_agents_cannot_read_outside_their_folder(world: AgentWorld,
                                                            figures: Figures) -> None:
    store = SqliteStore(world.data / "state.db")
    try:
        _run(world, default_service(store))  # exactly what the server's spawn_wave uses
    finally:
        store.close()
    check_isolation(world, figures)


# -- secrets never stored --------------------------------------------------------------------

def _hook(event: str, payload: dict[str, Any]) -> str:
    return hook_answer(event, payload)


def test_secrets_in_hook_traffic_never_reach_the_data_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, figures: Figures) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("SMART_ORCHESTRATOR_DATA", str(data))
    monkeypatch.delenv("SMART_ORCHESTRATOR_DB", raising=False)
    monkeypatch.setenv("CLAUDE_PROJECT_DIR", str(tmp_path))
    canary = f"PLAINCANARY{uuid.uuid4().hex}"
    secrets = [AWS_KEY, GITHUB_TOKEN, PRIVATE_KEY.splitlines()[1], canary]
    blob = f"{canary} key {AWS_KEY} token {GITHUB_TOKEN}\n{PRIVATE_KEY}"
    sent = [
        ("PreToolUse", pre_agent(prompt=f"SUBTASK: use {blob}", tool_use_id="toolu_s1")),
        ("PreToolUse", pre_agent(prompt=f"SUBTASK: summarise ({canary})",
                                 description=f"about {canary}", tool_use_id="toolu_s2")),
        ("SubagentStart", subagent_event("SubagentStart", "agent_s2")),
        ("PreToolUse", subagent_tool("Bash", {"command": f"echo {blob}"}, agent_id="agent_s2")),
        ("PreToolUse", subagent_tool("Read", {"file_path": f"/tmp/{canary}/.aws/credentials"},
                                     agent_id="agent_s2")),
        ("SubagentStop", subagent_event("SubagentStop", "agent_s2", message=blob)),
        ("PostToolUse", post_agent(text=blob, tool_use_id="toolu_s2")),
        # Malformed inputs that crash checks, so their reports reach the error log.
        ("PreToolUse", {**pre_agent(tool_use_id="toolu_s3"),
                        "tool_input": {"prompt": blob, "description": 7}}),
        ("PostToolUse", {**post_agent(tool_use_id="toolu_s4"),
                         "tool_response": {"content": blob, "usage": {"input_tokens": blob}},
                         "duration_ms": float("inf")}),
        ("SubagentStop", {**subagent_event("SubagentStop", "agent_s5"),
                          "last_assistant_message": {"text": blob}}),
    ]
    outputs = [_hook(event, payload) for event, payload in sent]
    assert "deny" in outputs[0], "a prompt holding credentials is denied"
    assert leaks(data, secrets) == [], "a planted secret reached the data folder"
    for args in (("status", "--json"), ("audit", "export"), ("metrics", "--json"),
                 ("audit", "verify")):
        out = run_cli("--db", str(data / "state.db"), *args)
        for needle in secrets:
            assert needle.encode() not in out.stdout + out.stderr, args
    figures.add(SUITE, "hook events carrying planted secrets", len(sent))
    figures.put(SUITE, "files under the data folder searched (hooks)",
                sum(1 for p in data.rglob("*") if p.is_file()))


@pytest.fixture
def scripted_waves_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SMART_ORCHESTRATOR_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("SMART_ORCHESTRATOR_DB", str(tmp_path / "data" / "state.db"))
    return tmp_path


def _secret_wave(tmp: Path, prompt_secret: str, output_secret: str) -> tuple[Path, str]:
    """A wave whose agent answers with `output_secret`; `prompt_secret` ("" for none) goes
    into the task's prompt."""
    from tests.wave_fakes import ScriptedRunner, Step

    store = SqliteStore(tmp / "data" / "state.db")
    runner = ScriptedRunner({"leaky": Step(answers=(f"here it is: {output_secret}",))})
    service = WaveService(SqliteStore(store.location), runner,
                          WaveConfig(tick_s=0.01, sample_s=0.05))
    try:
        plan = WavePlan.model_validate({"tasks": [
            {"id": "leaky", "prompt": f"Deploy with the key {prompt_secret}.".replace(
                " .", ".")}]})
        run_id = service.spawn(plan, cwd=str(tmp))
        assert service.wait_until_done(run_id, 30)
    finally:
        service.close()
        store.close()
    return tmp / "data", run_id


def test_a_wave_report_never_holds_planted_secrets(scripted_waves_world: Path,
                                                   figures: Figures) -> None:
    _, run_id = _secret_wave(scripted_waves_world, "", GITHUB_TOKEN)
    report = scripted_waves_world / "report.html"
    out = run_cli("report", run_id, "-o", str(report))
    assert out.returncode == 0, out.stderr
    page = report.read_bytes()
    assert AWS_KEY.encode() not in page and GITHUB_TOKEN.encode() not in page
    figures.add(SUITE, "generated wave reports searched for planted secrets")


def test_a_plan_holding_a_credential_is_refused_before_anything_is_stored(
        scripted_waves_world: Path, figures: Figures) -> None:
    from smart_orchestrator.errors import OrchestratorError

    with pytest.raises(OrchestratorError, match="holds a credential"):
        _secret_wave(scripted_waves_world, AWS_KEY, GITHUB_TOKEN)
    assert leaks(scripted_waves_world / "data", [AWS_KEY]) == []
    figures.add(SUITE, "waves with a planted secret in a prompt: refused, none stored")


def test_secrets_in_wave_outputs_never_reach_the_data_folder(
        scripted_waves_world: Path, figures: Figures) -> None:
    data, _ = _secret_wave(scripted_waves_world, "", GITHUB_TOKEN)
    assert leaks(data, [GITHUB_TOKEN]) == []
    figures.add(SUITE, "waves with a planted secret in an output: stored redacted")


@pytest.mark.parametrize("comment", ["  # pragma: allowlist secret",
                                     "  /* pragma: allowlist secret */"])
def test_inline_allowlist_comments_do_not_let_credentials_into_plans_or_outputs(
        scripted_waves_world: Path, comment: str) -> None:
    # Whoever wrote the plan or the output could write the comment too.
    from smart_orchestrator.errors import OrchestratorError

    with pytest.raises(OrchestratorError, match="holds a credential"):
        _secret_wave(scripted_waves_world, AWS_KEY + comment + "\n", "")
    data, _ = _secret_wave(scripted_waves_world, "", GITHUB_TOKEN + comment)
    assert leaks(data, [AWS_KEY, GITHUB_TOKEN]) == []


# -- network exposure ------------------------------------------------------------------------

def test_the_mcp_server_offers_stdio_only(monkeypatch: pytest.MonkeyPatch,
                                          figures: Figures) -> None:
    from mcp.server.mcpserver import MCPServer

    import mcp_server.server as server_module

    transports: list[tuple[Any, ...]] = []
    monkeypatch.setattr(MCPServer, "run", lambda self, *a, **k: transports.append(a))
    server_module.main()
    assert transports == [("stdio",)]
    sources = " ".join(p.read_text() for p in Path(server_module.__file__).parent.glob("*.py"))
    for word in ("streamable-http", "streamable_http", '"sse"', "uvicorn", "0.0.0.0"):
        assert word not in sources, word
    figures.note(SUITE, "The MCP server runs over stdio only (the process Claude Code "
                        "starts); there is no HTTP transport, so no port is opened and "
                        "there is no token to require. An HTTP transport, if added, must "
                        "bind loopback and require a token; this test fails when one "
                        "appears, as a reminder.")
