"""The main agent reading its subagents' transcripts gets no credential the gate kept out.

A background subagent repeats a credential; the output gate keeps it out of the task
notification. The scripted main model then goes for the transcript on disk that Claude
Code writes for the agent (its `output_file` and the `subagents/agent-<id>.jsonl` it
links to) by every route of its own: `cat` through a glob, `tail`, `grep -r` over the
projects folder, Python decoding the JSON lines, a symlink it makes and reads with the
Read tool, the Grep tool, and `sed`. Every result comes back with the credential
redacted, and each redaction is audited.
"""

from __future__ import annotations

import glob
import json
import re
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .harness import ClaudeRun, ScriptedModel, agent_call, text, tool_use
from .plugin_env import audit_rows, run_plugin, wait_for_audit
from .test_output_gate_e2e import assert_main_never_saw, aws_key, repeating

OUTPUT = '"$CLAUDE_CODE_TMPDIR"/claude-*/*/*/tasks/a*.output'
TRANSCRIPTS = "$HOME/.claude/projects/*/*/subagents/agent-*.jsonl"


def _bash(command: str) -> Any:
    return tool_use("Bash", {"command": command, "description": "look at the agent"})


def test_reads_of_a_subagents_transcript_come_back_redacted(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    key = aws_key()
    work, home = claude_dirs["work"], claude_dirs["home"]
    link = work / "notes.jsonl"
    decode = ("import glob, json, os\n"
              "home = os.path.expanduser('~/.claude/projects')\n"
              "for p in glob.glob(home + '/*/*/subagents/*.jsonl'):\n"
              "    for line in open(p):\n"
              "        print(json.dumps(json.loads(line), ensure_ascii=False))\n")
    reads = [
        _bash(f"sleep 8; cat {OUTPUT}"),
        _bash(f"tail -n 5 {TRANSCRIPTS}"),
        _bash('grep -rho "AKIA[A-Z0-9]*" "$HOME/.claude/projects"'),
        _bash(f"{shlex.quote(sys.executable)} -c {shlex.quote(decode)}"),
        # Claude Code's Read refuses a symlink made in the session: a copy, then.
        _bash(f"cp $(ls {OUTPUT} | head -1) {shlex.quote(str(link))}; echo linked"),
        tool_use("Read", {"file_path": str(link)}),
        tool_use("Grep", {"pattern": "AKIA", "path": str(home / ".claude" / "projects"),
                          "output_mode": "content"}),
        _bash(f"sed -n '1,$p' {shlex.quote(str(link))} | cut -c1-100000"),
        # Claude Code keeps large results in files of their own: read those back too.
        _bash("grep -rhoa 'AKIA[A-Z0-9]*' $HOME/.claude/projects/*/*/tool-results/ | head -3"),
        _bash(f"grep -ao 'AKIA[A-Z0-9]*' {shlex.quote(str(link))} | head -3"),
    ]
    scripted_model.main([agent_call("TRX-BG: find the key", background=True), *reads,
                         text("noted"), text("done")])
    scripted_model.subagent("TRX-BG", repeating(key))
    run_plugin(run_claude, repo_root, "look", allowed_tools=("Bash", "Read", "Grep"),
               extra_args=["--permission-mode", "bypassPermissions"],
               env={"IS_SANDBOX": "1"})
    results = [r for r in scripted_model.tool_results("main") if r.tool_name != "Agent"]
    assert len(results) == len(reads)
    readers = [r for r in results if "linked" not in r.text]
    assert all(key not in r.text for r in readers)
    # The credential was really in what was read: these came back with it redacted.
    redacted = [r for r in readers if "[REDACTED:aws-access-key-id]" in r.text]
    assert {r.tool_name for r in redacted} >= {"Bash"}, \
        [(r.tool_name, r.text[:300]) for r in readers]
    assert len(redacted) >= 4
    assert_main_never_saw(scripted_model, key)
    rows = [json.loads(d) for *_, d in wait_for_audit(home, "transcript.redacted",
                                                      len(redacted))]
    assert {r["tool"] for r in rows} >= {"Bash"}
    assert all(r["rules"] == ["aws-access-key-id"] for r in rows)
    assert key not in json.dumps([d for *_, d in audit_rows(home)])


def test_a_session_without_subagents_reads_as_usual(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    key = aws_key()
    work = claude_dirs["work"]
    (work / "deploy.env.txt").write_text(f"KEY={key}\n")
    scripted_model.main([tool_use("Read", {"file_path": str(work / "deploy.env.txt")}),
                         text("done")])
    run_plugin(run_claude, repo_root, "look", allowed_tools=("Read",))
    [result] = scripted_model.tool_results("main")
    assert key in result.text  # the main agent's own files are not ours to police
    assert audit_rows(claude_dirs["home"], "transcript.redacted") == []


def test_reading_the_output_file_the_launch_names_comes_back_redacted(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    """The model reads the exact paths Claude Code gave it (the launch result's
    `output_file`) and the transcript next to its agent id, with Read and Grep."""
    key = aws_key()
    home = claude_dirs["home"]
    ids = ["toolu_trx_read_output", "toolu_trx_grep_output", "toolu_trx_read_transcript",
           "toolu_trx_read_tail"]

    def steps(body: str) -> Any:
        output = re.search(r"output_file: (\S+?\.output)", body)
        agent = re.search(r"agentId: (\w+)", body)
        assert output and agent, "the launch result names the output file and the agent"
        [transcript] = glob.glob(str(home / ".claude" / "projects" / "*" / "*" / "subagents"
                                     / f"agent-{agent.group(1)}.jsonl"))
        return [tool_use("Read", {"file_path": output.group(1), "allow_large": True},
                         id=ids[0]),
                tool_use("Grep", {"pattern": "AKIA", "path": output.group(1),
                                  "output_mode": "content"}, id=ids[1]),
                tool_use("Read", {"file_path": transcript, "allow_large": True}, id=ids[2]),
                tool_use("Read", {"file_path": transcript, "offset": 2, "limit": 40},
                         id=ids[3]),
                text("done")]

    def rule(request: Any) -> Any:
        body = json.dumps(request.body or {})
        if "SLEPT-MARK" not in body:
            return None
        done = sum(f'"{i}"' in body for i in ids)
        return steps(body)[done]

    scripted_model.on(rule)
    scripted_model.main([agent_call("TRX-PATH: find the key", background=True),
                         _bash("sleep 8; echo SLEPT-MARK")])
    scripted_model.subagent("TRX-PATH", repeating(key))
    run_plugin(run_claude, repo_root, "look", allowed_tools=("Bash", "Read", "Grep"),
               extra_args=["--permission-mode", "bypassPermissions"],
               env={"IS_SANDBOX": "1"})
    results = {r.tool_use_id: r for r in scripted_model.tool_results("main")}
    assert set(ids) <= set(results), sorted(results)
    assert all(key not in results[i].text for i in ids)
    redacted = [i for i in ids if "[REDACTED:aws-access-key-id]" in results[i].text]
    # The credential was in what came back: whole-file reads and the Grep show it redacted.
    assert len(redacted) >= 2, {i: results[i].text[-300:] for i in ids}
    assert_main_never_saw(scripted_model, key)
    assert wait_for_audit(home, "transcript.redacted", len(redacted))


def test_killing_the_service_before_reading_withholds_the_result(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    """The model kills the service and keeps it from coming back (it holds the service's
    lock), then reads the transcript: the shim cannot have it checked, so withholds it."""
    from mcp_server.service_wire import service_lock

    from .plugin_env import plugin_data

    key = aws_key()
    data = plugin_data(claude_dirs["home"])
    lock = shlex.quote(str(service_lock(data)))
    ready = shlex.quote(str(data / "service.json"))
    pid = f"{shlex.quote(sys.executable)} -c \"import json,sys; " \
        f"print(json.load(open(sys.argv[1]))['pid'])\" {ready}"
    scripted_model.main([
        _bash("sleep 6; echo the service is up"),  # the shim holds calls only 3 s here
        agent_call("TRX-KILL: find the key", background=True),
        _bash("sleep 8; echo waited"),
        _bash(f"(flock {lock} sleep 40 &) ; sleep 1; kill -9 $({pid}); sleep 1; "
              f"cat {OUTPUT}"),
        _bash(f"grep -rhoa 'AKIA[A-Z0-9]*' {TRANSCRIPTS}"),
        text("done")])
    scripted_model.subagent("TRX-KILL", repeating(key))
    run_plugin(run_claude, repo_root, "look", allowed_tools=("Bash",),
               extra_args=["--permission-mode", "bypassPermissions"],
               env={"IS_SANDBOX": "1", "SMART_ORCHESTRATOR_SHIM_HOLD_S": "3"})
    reads = [r for r in scripted_model.tool_results("main") if r.tool_name == "Bash"][2:]
    assert len(reads) == 2
    assert all(key not in r.text for r in reads)
    assert any("withheld this result" in r.text for r in reads), [r.text[:300] for r in reads]
    assert_main_never_saw(scripted_model, key)
