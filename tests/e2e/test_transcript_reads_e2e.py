"""The main agent reading its subagents' transcripts gets no credential the gate kept out.

A background subagent repeats a credential; the output gate keeps it out of the task
notification. The scripted main model then goes for the transcript on disk that Claude
Code writes for the agent (its `output_file` and the `subagents/agent-<id>.jsonl` it
links to) by every route of its own: `cat` through a glob, `tail`, `grep -r` over the
projects folder, Python decoding the JSON lines, a copy read with the Read tool, the Grep
tool, `sed`, and a path built from character codes. A call that names those files is
denied before it runs; one whose path cannot be seen comes back with the credential
redacted. Each denial and each redaction is audited.
"""

from __future__ import annotations

import contextlib
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


DENIED = "Smart Orchestrator denied this tool call"
# "~/.claude/projects" spelled as character codes: no name the pre-check could see.
_HIDDEN = ",".join(str(ord(c)) for c in "~/.claude/projects")


def test_reads_of_a_subagents_transcript_are_denied_or_come_back_redacted(
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
    hidden = ("import glob, os\n"
              f"top = os.path.expanduser(''.join(map(chr, [{_HIDDEN}])))\n"
              "for p in glob.glob(top + '/*/*/s*/*.jsonl'):\n"
              "    print(open(p).read()[-4000:])\n")
    named = [
        _bash(f"sleep 8; cat {OUTPUT}"),
        _bash(f"tail -n 5 {TRANSCRIPTS}"),
        _bash('grep -rho "AKIA[A-Z0-9]*" "$HOME/.claude/projects"'),
        _bash(f"{shlex.quote(sys.executable)} -c {shlex.quote(decode)}"),
        _bash(f"cp $(ls {OUTPUT} | head -1) {shlex.quote(str(link))}; echo linked"),
        tool_use("Grep", {"pattern": "AKIA", "path": str(home / ".claude" / "projects"),
                          "output_mode": "content"}),
        # Claude Code keeps large results in files of their own.
        _bash("grep -rhoa 'AKIA[A-Z0-9]*' $HOME/.claude/projects/*/*/tool-results/ | head -3"),
        _bash(f"base64 -w0 {TRANSCRIPTS} | rev"),
        tool_use("Glob", {"pattern": "**/*.output", "path": str(claude_dirs["cctmp"])}),
    ]
    # With the veil off (or no bubblewrap) a path built at run time is not confined: its
    # result is redacted instead. That second line of defence is what this test checks;
    # test_own_state_e2e checks the confinement.
    (work / ".claude").mkdir(exist_ok=True)
    (work / ".claude" / "smart-orchestrator.toml").write_text('[tools]\nveil = "off"\n')
    scripted_model.main([agent_call("TRX-BG: find the key", background=True), *named,
                         _bash(f"{shlex.quote(sys.executable)} -c {shlex.quote(hidden)}"),
                         text("noted"), text("done")])
    scripted_model.subagent("TRX-BG", repeating(key))
    run_plugin(run_claude, repo_root, "look", allowed_tools=("Bash", "Read", "Grep", "Glob"),
               extra_args=["--permission-mode", "bypassPermissions"],
               env={"IS_SANDBOX": "1"})
    results = [r for r in scripted_model.tool_results("main") if r.tool_name != "Agent"]
    assert len(results) == len(named) + 1
    assert all(key not in r.text for r in results)
    *tried, built = results
    assert all(DENIED in r.text for r in tried), [(r.tool_name, r.text[:200]) for r in tried]
    # The path built at run time passes the pre-check; what it printed is redacted.
    assert "[REDACTED:aws-access-key-id]" in built.text, built.text[:500]
    assert not link.exists()
    assert_main_never_saw(scripted_model, key)
    denials = [json.loads(d) for *_, d in wait_for_audit(home, "tool.use", len(tried))]
    assert len(denials) == len(tried)
    assert all(d["agent_type"] == "main" and d["decision"] == "deny" for d in denials)
    [row] = [json.loads(d) for *_, d in wait_for_audit(home, "transcript.redacted")]
    assert row["tool"] == "Bash" and row["rules"] == ["aws-access-key-id"]
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


def test_reading_the_output_file_the_launch_names_is_denied(
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
    # The exact files Claude Code named are denied before they are read.
    assert all(DENIED in results[i].text for i in ids), {i: results[i].text[:300] for i in ids}
    assert_main_never_saw(scripted_model, key)
    assert len(wait_for_audit(home, "tool.use", len(ids))) == len(ids)


def test_killing_the_service_before_reading_withholds_the_result(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    """The service is killed and kept from coming back (its lock held), then the model
    reads the transcript and the audit key. The model's own tools may not name the
    service's files (so the kill is done here, as a process outside the session would);
    the shim cannot have the calls checked, so a call naming those files (or building a
    path) is denied, and a result it lets through is withheld."""
    import fcntl
    import os
    import signal
    import time

    from mcp_server.service_wire import service_lock

    from .plugin_env import plugin_data

    key = aws_key()
    data = plugin_data(claude_dirs["home"])
    held: list[int] = []

    def kill_the_service(request: Any) -> None:
        """Kill the service and take its lock, so no new one starts; a new one the shim
        started in between is killed too. The model's next call waits for this."""
        if held or "WAITED-MARK" not in json.dumps(request.body or {}):
            return None
        lock = os.open(service_lock(data), os.O_RDWR | os.O_CREAT, 0o600)
        held.append(lock)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError, KeyError):
                os.kill(json.loads((data / "service.json").read_text())["pid"],
                        signal.SIGKILL)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return None
            except BlockingIOError:
                time.sleep(0.05)
        raise AssertionError("the service's lock was never free")

    scripted_model.on(kill_the_service)
    scripted_model.main([
        _bash("sleep 6; echo the service is up"),  # the shim holds calls only 3 s here
        agent_call("TRX-KILL: find the key", background=True),
        _bash("sleep 8; echo WAITED-MARK"),
        _bash(f"sleep 2; cat {OUTPUT}"),
        _bash(f"grep -rhoa 'AKIA[A-Z0-9]*' {TRANSCRIPTS}"),
        tool_use("Read", {"file_path": str(data / "witness.key")}),
        _bash("echo plain"),
        text("done")])
    scripted_model.subagent("TRX-KILL", repeating(key))
    try:
        run_plugin(run_claude, repo_root, "look", allowed_tools=("Bash", "Read"),
                   extra_args=["--permission-mode", "bypassPermissions"],
                   env={"IS_SANDBOX": "1", "SMART_ORCHESTRATOR_SHIM_HOLD_S": "3"})
    finally:
        for lock in held:
            os.close(lock)
    assert held, "the service was killed"
    results = [r for r in scripted_model.tool_results("main") if r.tool_name != "Agent"]
    reads, plain = results[2:5], results[5]
    assert all(key not in r.text for r in results)
    assert all("cannot check this call" in r.text for r in reads), \
        [r.text[:300] for r in reads]
    # An ordinary call is not denied for the dead service (its result may be withheld).
    assert not plain.is_error and "cannot check" not in plain.text, plain.text[:300]
    assert_main_never_saw(scripted_model, key)
