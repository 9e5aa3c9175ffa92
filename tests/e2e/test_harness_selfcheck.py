"""The e2e harness itself, checked against the real Claude Code CLI.

The plugin here is a throwaway built in tmp_path, so these tests hold whatever state the
project's own plugin is in.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from claude_agent_sdk import ClaudeAgentOptions, ResultMessage, query

from .harness import (
    ApiError,
    ClaudeRun,
    ClaudeTimeoutError,
    ModelRequest,
    ScriptedModel,
    Turn,
    agent_call,
    overloaded_error,
    rate_limit_error,
    sdk_env,
    text,
    tool_use,
    turn,
    validate_plugin,
)

RunClaude = Callable[..., ClaudeRun]

PLUGIN = "selfcheck"
ECHO_TOOL = f"mcp__plugin_{PLUGIN}_{PLUGIN}__echo"
DENY_MARK = "FORBIDDEN"
DENY_REASON = "SELFCHECK-DENY: this subtask is forbidden"

_GATE = """\
import json, sys
payload = json.load(sys.stdin)
with open({log!r}, "a", encoding="utf-8") as log:
    log.write(json.dumps(payload) + "\\n")
if {mark!r} in str(payload.get("tool_input", {{}}).get("prompt", "")):
    print(json.dumps({{"hookSpecificOutput": {{
        "hookEventName": "PreToolUse",
        "permissionDecision": "deny",
        "permissionDecisionReason": {reason!r},
    }}}}))
"""

_SERVER = """\
from mcp.server.mcpserver import MCPServer

server = MCPServer("selfcheck")


@server.tool(structured_output=False)
def echo(text: str) -> str:
    return "ECHO: " + text


server.run()
"""


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def make_plugin(root: Path, *, name: str = PLUGIN, hook_log: Path, hook_type: str = "command",
                with_mcp: bool = True) -> Path:
    """A minimal plugin: a PreToolUse(Agent) command hook that logs and can deny, and an
    `echo` MCP server. `hook_type` other than "command" makes the plugin invalid."""
    _write_json(root / ".claude-plugin" / "plugin.json",
                {"name": name, "version": "0.1.0", "description": "harness self-check"})
    (root / "hooks").mkdir(parents=True, exist_ok=True)
    (root / "hooks" / "gate.py").write_text(
        _GATE.format(log=str(hook_log), mark=DENY_MARK, reason=DENY_REASON), encoding="utf-8")
    hook = {"type": hook_type, "command": sys.executable,
            "args": ["${CLAUDE_PLUGIN_ROOT}/hooks/gate.py"], "timeout": 30}
    _write_json(root / "hooks" / "hooks.json",
                {"hooks": {"PreToolUse": [{"matcher": "Agent|Task", "hooks": [hook]}]}})
    if with_mcp:
        (root / "server.py").write_text(_SERVER, encoding="utf-8")
        _write_json(root / ".mcp.json", {"mcpServers": {name: {
            "command": sys.executable, "args": ["${CLAUDE_PLUGIN_ROOT}/server.py"]}}})
    return root


def _live_members(pgid: int) -> list[int]:
    """Processes of a process group that are not zombies (Linux /proc)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while being read
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def _post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
    request = urllib.request.Request(url, json.dumps(body).encode(),
                                     {"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def _read_jsonl(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def test_main_agent_answers_plain_text(
    scripted_model: ScriptedModel, run_claude: RunClaude
) -> None:
    scripted_model.main([text("PLAIN-ANSWER")])

    run = run_claude("say something", timeout=60)

    run.assert_success()
    assert run.result_text == "PLAIN-ANSWER"
    [request] = scripted_model.requests
    assert (request.kind, request.conversation, request.turn) == ("main", "main", 0)
    scripted_model.assert_all_served()


def test_foreground_subagent_answer_returns_to_main_agent(
    scripted_model: ScriptedModel, run_claude: RunClaude
) -> None:
    scripted_model.main([agent_call("SUBTASK-1: compute the answer")])
    scripted_model.subagent("SUBTASK-1", [text("ANSWER-1: 42")])

    @scripted_model.on
    def echo_agent_result(request: ModelRequest) -> Turn | None:
        if request.kind == "main" and request.turn == 1:
            return text(f"MAIN-SAW[{request.tool_results[-1].text}]")
        return None

    run = run_claude("delegate one subtask", timeout=90)

    run.assert_success()
    assert run.result_text.startswith("MAIN-SAW[") and "ANSWER-1: 42" in run.result_text
    [result] = scripted_model.tool_results("main")
    assert result.tool_name == "Agent"
    assert not result.is_error
    assert "ANSWER-1: 42" in result.text
    [sub] = scripted_model.requests_for("SUBTASK-1")
    assert sub.kind == "subagent"
    assert sub.prompt == "SUBTASK-1: compute the answer"
    main_turn_1 = scripted_model.requests_for("main")[-1]
    assert sub.answered_at is not None and sub.answered_at <= main_turn_1.received_at
    scripted_model.assert_all_served()


def test_parallel_subagents_are_routed_by_prompt_and_overlap(
    scripted_model: ScriptedModel, run_claude: RunClaude
) -> None:
    prompts = {"SUBTASK-A": "SUBTASK-A: first half", "SUBTASK-B": "SUBTASK-B: second half"}
    scripted_model.main([turn(*(agent_call(p) for p in prompts.values())), text("BOTH-DONE")])
    for key in prompts:
        scripted_model.subagent(key, [text(f"ANSWER-{key}")])
    # Each answers only once both have asked: run one after the other, they would fail.
    both = threading.Barrier(2)

    def meet(request: ModelRequest) -> None:
        if request.conversation in prompts and request.turn == 0:
            both.wait(150)

    scripted_model.on(meet)

    run = run_claude("delegate two subtasks", timeout=90)

    run.assert_success()
    assert run.result_text == "BOTH-DONE"
    [a], [b] = (scripted_model.requests_for(key) for key in prompts)
    assert a.answered_at is not None and b.answered_at is not None
    assert a.received_at < b.answered_at and b.received_at < a.answered_at, "not concurrent"
    by_prompt = {r.tool_input["prompt"]: r for r in scripted_model.tool_results("main")
                 if r.tool_input}
    for key, prompt in prompts.items():
        assert f"ANSWER-{key}" in by_prompt[prompt].text
        assert not by_prompt[prompt].is_error
    scripted_model.assert_all_served()


def test_plugin_loads_connects_mcp_and_its_hook_denies_agent(
    scripted_model: ScriptedModel, run_claude: RunClaude, tmp_path: Path
) -> None:
    hook_log = tmp_path / "hook-log.jsonl"
    plugin = make_plugin(tmp_path / "plugin", hook_log=hook_log)
    forbidden = f"{DENY_MARK}-SUBTASK: must not run"
    scripted_model.main([
        tool_use(ECHO_TOOL, {"text": "PING-7"}),
        agent_call(forbidden),
        text("PLUGIN-DONE"),
    ])

    run = run_claude("use the plugin", plugin_dir=plugin,
                     allowed_tools=[f"mcp__plugin_{PLUGIN}_{PLUGIN}"], timeout=90)

    run.assert_plugin_loaded(PLUGIN)
    assert run.plugin_errors == []
    run.assert_success(allow_denials=True)
    # The CLI reports the hook's deny under the legacy tool name.
    assert [d["tool_name"] for d in run.permission_denials] == ["Task"]
    assert run.mcp_server_status(PLUGIN) == "connected"
    assert ECHO_TOOL in run.tools
    assert run.result_text == "PLUGIN-DONE"
    echo, agent = scripted_model.tool_results("main")
    assert (echo.tool_name, echo.is_error) == (ECHO_TOOL, False)
    assert "ECHO: PING-7" in echo.text
    assert agent.tool_name == "Agent" and agent.is_error
    assert agent.text.startswith("PreToolUse:Agent hook error") and DENY_REASON in agent.text
    [payload] = _read_jsonl(hook_log)
    assert payload["hook_event_name"] == "PreToolUse" and payload["tool_name"] == "Agent"
    assert payload["tool_input"]["prompt"] == forbidden  # type: ignore[index]
    assert run.hook_responses("PreToolUse"), "stream-json carried no PreToolUse hook events"
    assert all(r.kind != "subagent" for r in scripted_model.requests)
    scripted_model.assert_all_served()


def test_assert_plugin_loaded_reports_a_silently_dropped_plugin(
    scripted_model: ScriptedModel, run_claude: RunClaude, claude_bin: Path, tmp_path: Path
) -> None:
    plugin = make_plugin(tmp_path / "broken", name="broken", hook_log=tmp_path / "unused.jsonl",
                         hook_type="bogus", with_mcp=False)
    rc, output = validate_plugin(plugin, claude_bin=claude_bin)
    assert rc != 0 and "bogus" in output, output
    scripted_model.main([text("RAN-WITHOUT-PLUGIN")])

    run = run_claude("hello", plugin_dir=plugin, timeout=60)

    assert run.returncode == 0 and run.result_text == "RAN-WITHOUT-PLUGIN"
    with pytest.raises(AssertionError, match='Unknown hook type "bogus"'):
        run.assert_plugin_loaded("broken")


def test_cli_retries_after_rate_limit(
    scripted_model: ScriptedModel, run_claude: RunClaude
) -> None:
    scripted_model.main([rate_limit_error(retry_after=0), text("RECOVERED")])

    run = run_claude("hello", timeout=60)

    run.assert_success()
    assert run.result_text == "RECOVERED"
    first, second = scripted_model.requests
    assert isinstance(first.reply, ApiError) and first.reply.status == 429
    assert (first.turn, second.turn) == (0, 0)
    assert [m["error_status"] for m in run.api_retries] == [429]
    scripted_model.assert_all_served()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_timeout_kills_the_whole_process_group(
    scripted_model: ScriptedModel, run_claude: RunClaude, tmp_path: Path
) -> None:
    # An MCP server gives the CLI a child process that must die with it.
    plugin = make_plugin(tmp_path / "plugin", hook_log=tmp_path / "unused.jsonl")
    scripted_model.main([text("TOO-LATE", delay=60)])

    with pytest.raises(ClaudeTimeoutError) as caught:
        run_claude("hang", plugin_dir=plugin, timeout=30)

    run = caught.value.run
    assert run.timed_out
    run.assert_plugin_loaded(PLUGIN)
    assert run.mcp_server_status(PLUGIN) == "connected"
    # SIGKILL is delivered asynchronously: poll briefly rather than assume.
    deadline = time.monotonic() + 5
    while (alive := _live_members(run.pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert alive == []


@pytest.mark.asyncio
async def test_sdk_query_agents_are_routed_by_first_message(
    scripted_model: ScriptedModel, claude_bin: Path, tmp_path: Path
) -> None:
    prompts = {"AGENT-ONE": "AGENT-ONE: summarise", "AGENT-TWO": "AGENT-TWO: review"}
    for key in prompts:
        scripted_model.agent(key, [text(f"RESULT-{key}", delay=0.5)])
    results: dict[str, str | None] = {}

    async def run_agent(key: str) -> None:
        home = tmp_path / key
        home.mkdir()
        options = ClaudeAgentOptions(
            cwd=str(tmp_path), max_turns=2, cli_path=str(claude_bin),
            env=sdk_env(model_url=scripted_model.base_url, home=home, tmpdir=home),
        )
        async for message in query(prompt=prompts[key], options=options):
            if isinstance(message, ResultMessage):
                results[key] = message.result

    with anyio.fail_after(60):
        async with anyio.create_task_group() as group:
            for key in prompts:
                group.start_soon(run_agent, key)

    assert results == {key: f"RESULT-{key}" for key in prompts}
    for key in prompts:
        [request] = scripted_model.requests_for(key)
        assert request.kind == "agent"
    scripted_model.assert_all_served()


def test_scripted_model_answers_json_count_tokens_and_scripted_errors(
    scripted_model: ScriptedModel,
) -> None:
    # Paths the CLI does not take offline (non-streaming, count_tokens), checked over HTTP.
    scripted_model.main([overloaded_error(), tool_use("Read", {"file_path": "/x"})])
    url = f"{scripted_model.base_url}/v1/messages"
    body = {"model": "m", "stream": False, "messages": [{"role": "user", "content": "hi"}]}

    status, _, error = _post(url, body)
    assert (status, error["type"]) == (529, "error")
    assert error["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    status, _, message = _post(url, body)
    assert (status, message["stop_reason"]) == (200, "tool_use")
    [block] = message["content"]
    assert block["name"] == "Read" and block["id"].startswith("toolu_")
    status, _, counted = _post(f"{url}/count_tokens", body)
    assert status == 200 and counted["input_tokens"] > 0
    scripted_model.assert_all_served()
