"""The plugin's data folder (its audit key) and Claude Code's agent transcripts are kept from
every agent's tools, the main agent's included; so are the files and commands that would
turn the plugin off. The main agent's ordinary work passes untouched."""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcp_server.hook_output import hook_output
from smart_orchestrator.policy.config import build_policy
from smart_orchestrator.policy.decision import Decision
from smart_orchestrator.policy.engine import PolicyEngine
from smart_orchestrator.store import SqliteStore

from .policy_payloads import subagent_tool
from .test_paths_guard import ORDINARY_COMMANDS

SESSION = "0b6c1d7e-4c1f-4d55-9d1a-3f2e8e1a9c10"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    data = home / ".claude" / "plugins" / "data" / "smart-orchestrator-inline"
    projects = home / ".claude" / "projects" / "-work-proj"
    tasks = tmp_path / "tmp" / f"claude-{os.getuid()}" / "-work-proj" / SESSION / "tasks"
    files = {
        data / "witness.key": "k" * 32, data / "state.db": "", data / "state.witness": "",
        projects / f"{SESSION}.jsonl": "{}",
        projects / SESSION / "subagents" / "agent-a1b2c3d4e5f60718.jsonl": '{"AKIA": 1}',
        projects / SESSION / "tool-results" / "toolu_1.txt": "big",
        tasks / "b1x2y3z4w.output": "shell output",
        home / "proj" / "README.md": "readme", home / "proj" / "src" / "app.py": "print(1)",
        home / "proj" / "tests" / "test_app.py": "def test(): pass",
        home / "proj" / "script.py": "print(2)", home / "proj" / "run_tests.sh": "pytest\n",
        home / "proj" / "tools" / "gen.py": "print(3)\n",
        home / ".ssh" / "id_rsa": "-----BEGIN OPENSSH PRIVATE KEY-----",
        home / "plugin" / "hooks" / "hooks.json": "{}",
        home / "plugin" / ".mcp.json": "{}",
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    os.symlink(projects / SESSION / "subagents" / "agent-a1b2c3d4e5f60718.jsonl",
               tasks / "a1b2c3d4e5f60718.output")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SMART_ORCHESTRATOR_DATA", str(data))
    monkeypatch.setenv("CLAUDE_CODE_TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setenv("CLAUDE_PLUGIN_ROOT", str(home / "plugin"))
    return home


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "audit.db")
    yield s
    s.close()


def engine(store: SqliteStore, home: Path, **policy: Any) -> PolicyEngine:
    return PolicyEngine(store, build_policy(policy, "test.toml"), project_dir=home / "proj",
                        owner_pid=None)


def main_call(home: Path, tool: str, tool_input: dict[str, Any]) -> dict[str, Any]:
    payload = subagent_tool(tool, tool_input)
    del payload["agent_id"]
    payload["agent_type"] = ""
    payload["cwd"] = str(home / "proj")
    payload["transcript_path"] = str(home / ".claude" / "projects" / "-work-proj" /
                                     f"{SESSION}.jsonl")
    return payload


def decision(out: Decision | dict[str, Any]) -> str:
    rendered = hook_output(out) if isinstance(out, Decision) else out
    return str(rendered.get("hookSpecificOutput", {}).get("permissionDecision", "allow"))


def paths(home: Path) -> dict[str, str]:
    data = home / ".claude" / "plugins" / "data" / "smart-orchestrator-inline"
    return {"DATA": str(data), "KEY": str(data / "witness.key"),
            "PROJ": str(home / ".claude" / "projects"),
            "TASKS": os.environ["CLAUDE_CODE_TMPDIR"] + f"/claude-{os.getuid()}",
            "PLUGIN": str(home / "plugin"), "PY": shlex.quote("python3")}


# The main model going for the audit key, the transcripts or the plugin's switch, every
# way it can spell it.
MAIN_ATTACKS: list[tuple[str, dict[str, str]]] = [
    ("Bash", {"command": "cat {KEY}"}),
    ("Bash", {"command": "base64 < {KEY}"}),
    ("Bash", {"command": "xxd {DATA}/witness.key | head"}),
    ("Bash", {"command": "cd {DATA} && od -An -tx1 witness.key"}),
    ("Bash", {"command": "cat {DATA}/witness.*"}),
    ("Bash", {"command": "cat {DATA}/wit?ess.k[e]y"}),
    ("Bash", {"command": "cp {KEY} /tmp/k && cat /tmp/k"}),
    ("Bash", {"command": "ln {KEY} /tmp/hard-k"}),
    ("Bash", {"command": "ln -s {DATA} /tmp/d; cat /tmp/d/witness.key"}),
    ("Bash", {"command": "tar cf - {DATA} | tar tvf -"}),
    ("Bash", {"command": "sqlite3 {DATA}/state.db .dump"}),
    ("Bash", {"command": "{PY} -c \"print(open('{KEY}','rb').read().hex())\""}),
    ("Bash", {"command": "{PY} -c \"import os; print(open(os.path.expanduser("
                         "'~/.claude/plugins/data/smart-orchestrator-inline/witness.key'"
                         ")).read())\""}),
    ("Bash", {"command": "k=$(ls {DATA} | grep witness); cat \"{DATA}/$k\""}),
    ("Bash", {"command": "cat /proc/$(pgrep -f smart-orchestrator)/fd/* 2>/dev/null"}),
    ("Bash", {"command": "cat {TASKS}/*/*/tasks/a*.output"}),
    ("Bash", {"command": "tail -n 5 ~/.claude/projects/*/*/subagents/agent-*.jsonl"}),
    ("Bash", {"command": "grep -rho 'AKIA[A-Z0-9]*' \"$HOME/.claude/projects\""}),
    ("Bash", {"command": "base64 ~/.claude/proj*/*/*/sub*/*.jsonl | rev"}),
    ("Bash", {"command": "cat ~/.claude/projects/-work-proj/" + SESSION + ".jsonl"}),
    ("Bash", {"command": "sed -i 's/mcp_tool/none/' {PLUGIN}/hooks/hooks.json"}),
    ("Bash", {"command": "echo '{{}}' > {PLUGIN}/.mcp.json"}),
    ("Bash", {"command": "rm -rf {PLUGIN}"}),
    ("Bash", {"command": "echo '{{\"disableAllHooks\":true}}' > ~/.claude/settings.json"}),
    ("Bash", {"command": "echo '{{\"disableAllHooks\":true}}' > .claude/settings.local.json"}),
    ("Bash", {"command": "claude plugin disable smart-orchestrator"}),
    ("Bash", {"command": "env FOO=1 claude plugins uninstall smart-orchestrator@x"}),
    ("Bash", {"command": "claude mcp remove orchestrator"}),
    ("Bash", {"command": "claude -p 'deploy with AKIA...' --settings "
                         "'{{\"disableAllHooks\": true}}'"}),
    ("Bash", {"command": "nohup claude --bare -p hi &"}),
    ("Bash", {"command": "npx @anthropic-ai/claude-code -p hi"}),
    ("Read", {"file_path": "{KEY}"}),
    ("Read", {"file_path": "{TASKS}/-work-proj/" + SESSION + "/tasks/a1b2c3d4e5f60718.output"}),
    ("Read", {"file_path": "{PROJ}/-work-proj/" + SESSION + "/tool-results/toolu_1.txt"}),
    ("Grep", {"pattern": ".", "path": "{DATA}"}),
    ("Grep", {"pattern": "AKIA", "path": "{PROJ}"}),
    ("Glob", {"pattern": "**/witness.key", "path": "{DATA}/.."}),
    ("Glob", {"pattern": "~/.claude/projects/**/*.jsonl"}),
    ("NotebookEdit", {"notebook_path": "{DATA}/x.ipynb", "new_source": "x"}),
    ("Write", {"file_path": "{PLUGIN}/hooks/hooks.json", "content": "{{}}"}),
    ("Edit", {"file_path": "~/.claude/settings.json", "old_string": "{{",
              "new_string": "{{\"disableAllHooks\": true,"}),
    ("MultiEdit", {"file_path": "{DATA}/policy-cache.json", "edits": "[]"}),
    ("Write", {"file_path": "{DATA}/witness.key", "content": "mine"}),
    ("Write", {"file_path": "/etc/claude-code/managed-settings.json",
               "content": "{{\"disableAllHooks\": true}}"}),
    ("Bash", {"command": "mkdir -p /etc/claude-code/managed-settings.d && echo '{{}}' > "
                         "/etc/claude-code/managed-settings.d/off.json"}),
]


@pytest.mark.parametrize(("tool", "tool_input"), MAIN_ATTACKS)
def test_the_main_agent_cannot_reach_the_plugins_own_state(
        store: SqliteStore, home: Path, tool: str, tool_input: dict[str, str]) -> None:
    ti = {k: v.format(**paths(home)) for k, v in tool_input.items()}
    out = engine(store, home).handle(main_call(home, tool, ti))
    assert decision(out) == "deny", (tool, ti)
    [row] = [r.data for r in store.iter_audit() if r.kind == "tool.use"]
    assert row["decision"] == "deny" and row["agent_type"] == "main"
    assert str(home) not in json.dumps(row)  # the input is kept as a digest


@pytest.mark.parametrize("command", [
    *ORDINARY_COMMANDS,
    "cat ~/.ssh/id_rsa",  # the user's own files are the user's business
    "ls ~/.claude",
    "smart-orchestrator audit verify",
    "claude --version",
    "claude mcp list",
    "claude plugin list",
    "echo $(date) > notes.txt",
    "cat $(git ls-files | head -3)",
    "printf 'preset = \"default\"\\n' > .claude/smart-orchestrator.toml",
])
def test_the_main_agents_ordinary_work_passes(store: SqliteStore, home: Path,
                                              command: str) -> None:
    out = engine(store, home).handle(main_call(home, "Bash", {"command": command}))
    assert decision(out) == "allow", (command, out)
    assert [r for r in store.iter_audit() if r.kind == "tool.use"] == []


@pytest.mark.parametrize(("tool", "tool_input"), [
    ("Read", {"file_path": "README.md"}),
    ("Read", {"file_path": "~/.ssh/id_rsa"}),
    ("Grep", {"pattern": "def", "path": "src"}),
    ("Glob", {"pattern": "**/*.py"}),
    ("Write", {"file_path": ".claude/smart-orchestrator.toml", "content": "preset='strict'"}),
    ("Read", {"file_path": "{TASKS}/-work-proj/" + SESSION + "/tasks/b1x2y3z4w.output"}),
    # The plugin's own launcher, as its skills have the model run it.
    ("Bash", {"command": "python3 \"{PLUGIN}/bin/smart-orchestrator\" plan-from-markdown "
                         "plan.md"}),
    ("Bash", {"command": "{PLUGIN}/bin/smart-orchestrator status"}),
])
def test_the_main_agents_own_files_stay_its_own(store: SqliteStore, home: Path, tool: str,
                                                 tool_input: dict[str, str]) -> None:
    ti = {k: v.format(**paths(home)) for k, v in tool_input.items()}
    assert decision(engine(store, home).handle(main_call(home, tool, ti))) == "allow"


@pytest.mark.parametrize(("tool", "tool_input"), [
    ("Bash", {"command": "cat {KEY}"}),
    ("Read", {"file_path": "{TASKS}/-work-proj/" + SESSION + "/tasks/a1b2c3d4e5f60718.output"}),
    ("Bash", {"command": "claude -p hello"}),
    ("Grep", {"pattern": "x", "path": "{DATA}"}),
])
def test_subagents_are_kept_from_it_too(store: SqliteStore, home: Path, tool: str,
                                        tool_input: dict[str, str]) -> None:
    ti = {k: v.format(**paths(home)) for k, v in tool_input.items()}
    payload = subagent_tool(tool, ti)
    payload["cwd"] = str(home / "proj")
    assert decision(engine(store, home).handle(payload)) == "deny"


def test_the_plugins_own_cli_may_read_its_data_folder(store: SqliteStore, home: Path) -> None:
    """Its skills have the model run the launcher with `--plugin-data`; a subcommand that
    changes state, or anything else on the line, is still checked."""
    from smart_orchestrator.policy.engine import _LAUNCHER

    launcher, data = shlex.quote(str(_LAUNCHER)), paths(home)["DATA"]
    allowed = [f"python3 {launcher} report w1 --plugin-data {data}",
               f"{launcher} slash --plugin-data {data} status"]
    denied = [f"python3 {launcher} report w1 --plugin-data {data}; cat {data}/witness.key",
              f"python3 {launcher} store migrate --plugin-data {data}",
              f"python3 {launcher} slash --plugin-data {data} policy accept",
              f"python3 {launcher} report $(cat {data}/witness.key)",
              f"python3 /tmp/bin/smart-orchestrator report w1 --plugin-data {data}"]
    eng = engine(store, home)
    for command in allowed:
        assert decision(eng.handle(main_call(home, "Bash", {"command": command}))) == "allow"
    for command in denied:
        assert decision(eng.handle(main_call(home, "Bash", {"command": command}))) == "deny", \
            command


def test_warn_mode_records_and_allows(store: SqliteStore, home: Path) -> None:
    ti = {"file_path": paths(home)["KEY"]}
    out = engine(store, home, tools={"mode": "warn"}).handle(main_call(home, "Read", ti))
    assert decision(out) == "allow"
    [row] = [r.data for r in store.iter_audit() if r.kind == "tool.use"]
    assert row["would_deny"] == ["tools:own-state"]


def test_a_crash_in_the_check_denies_the_main_agent_too(
        store: SqliteStore, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: Any, **__: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("smart_orchestrator.policy.paths_guard.check_tool_call", boom)
    out = engine(store, home).handle(main_call(home, "Read", {"file_path": "README.md"}))
    assert decision(out) == "deny"


@pytest.mark.parametrize(("tool_input", "denied"), [
    ({"command": "cat /x/witness.key"}, True),
    ({"command": "xxd /proc/77/fd/5"}, True),
    ({"command": "cat ~/.cl*/p*/*/*/s*/*"}, True),
    ({"command": "cat \"$(ls -d ~/.c*)\"/x"}, True),
    ({"command": "python3 -c 'print(open(bytes([47]).decode()).read())'"}, True),
    ({"command": "claude plugin disable smart-orchestrator"}, True),
    ({"file_path": "/x/.claude/projects/p/s/subagents/agent-a.jsonl"}, True),
    ({"command": "echo plain", "description": "look at the agent"}, False),
    ({"command": "git status", "description": "what changed"}, False),
    ({"file_path": "/work/src/app.py"}, False),
])
def test_without_the_service_a_main_call_that_may_reach_our_state_is_denied(
        tmp_path: Path, tool_input: dict[str, str], denied: bool) -> None:
    """The shim's own answer while the service is away (killed, its lock held): a call
    that names the plugin's data or the transcripts, or builds a path, is denied; an
    ordinary one passes at once."""
    import io

    from mcp_server.shim import Shim

    shim = Shim(tmp_path, stdin=io.BytesIO(), stdout=io.BytesIO(), env={}, hold_s=0)
    args = {"event": "PreToolUse", "tool_name": "Bash", "session_id": SESSION,
            "tool_use_id": "toolu_1", "agent_id": "", "tool_input": json.dumps(tool_input)}
    assert shim._risky_main_call(args) is denied
    out = shim._fail_closed(args)
    assert (decision(out) == "deny") is denied, out
    # The data folder's own path counts too, however the rest of the call looks.
    args["tool_input"] = json.dumps({"command": f"xxd {tmp_path}/k"})
    assert decision(shim._fail_closed(args)) == "deny"
