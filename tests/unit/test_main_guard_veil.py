"""The main agent's searches from a folder that holds the plugin's data run, with the data
folder and transcripts hidden; lines that build the key's path at run time run the same
way and find nothing there. Each rewritten line is run for real, in bash, over a home
that holds a key and a transcript with known contents."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mcp_server.hook_output import hook_output
from smart_orchestrator.policy import veil
from smart_orchestrator.store import SqliteStore

from .test_own_state_guard import SESSION, engine, home, main_call, paths, store

__all__ = ["home", "store"]  # fixtures, shared

KEY = "k" * 32
TRANSCRIPT_SECRET = "AKIA"  # what the fixture's subagent transcript holds

# Where the sandbox must work (CI), a missing veil fails these tests instead.
needs_bwrap = pytest.mark.skipif(
    not veil.available()[0] and not os.environ.get("SMART_ORCHESTRATOR_TEST_REQUIRE_SANDBOX"),
    reason=f"no veil here: {veil.available()[1]}")


def outcome(store: SqliteStore, home: Path, command: str, **extra: Any
            ) -> tuple[str, str | None]:
    """('deny' | 'rewrite' | 'allow', the rewritten command or the reason)."""
    out = hook_output(engine(store, home).handle(
        main_call(home, "Bash", {"command": command, **extra})))
    specific = out.get("hookSpecificOutput", {})
    if specific.get("permissionDecision") == "deny":
        return "deny", specific.get("permissionDecisionReason")
    if "updatedInput" in specific:
        assert "permissionDecision" not in specific  # the user's rules still apply
        return "rewrite", specific["updatedInput"]["command"]
    return "allow", None


def run(home: Path, line: str) -> str:
    done = subprocess.run(["bash", "-c", line], cwd=home / "proj", capture_output=True,
                          text=True, timeout=120, env={**os.environ, "HOME": str(home)})
    return done.stdout + done.stderr


def secret_free(text: str) -> bool:
    import base64

    return all(form not in text for form in (
        KEY, KEY.encode().hex(), base64.b64encode(KEY.encode()).decode(),
        TRANSCRIPT_SECRET))


# Ordinary searches and walks from a folder that holds the protected ones.
BROAD = [
    "grep -r TODO ~", "grep -rn TODO ~ | head", "grep -rl print ~",
    "find ~ -name '*.py'", "find ~ -name '*.py' | xargs wc -l", "rg print ~",
    "du -sh ~", "ls -R ~", "tree ~", "find / -maxdepth 1 -name '*.py'",
    "grep -r --include='*.py' print ~", "cd ~ && grep -r TODO .",
    "find ~ -type f -newer ~/proj/README.md", "rg -l TODO ~/", "cd && find . -name app.py",
]

# Attacks that reach the key or a transcript by walking, copying or building the path:
# they run, confined, and nothing of the key or the transcript comes back.
CONTAINED = [
    "grep -r -a k ~",
    "grep -r . ~/.claude",
    "grep -rao AKIA ~ | head",
    "tar cf - ~ 2>/dev/null | strings | grep -a -e kkkk -e AKIA",
    "cp -r ~ /tmp/so-copy-$$ && cat -v /tmp/so-copy-$$/.claude/plugins/data/*/*; "
    "rm -rf /tmp/so-copy-$$",
    "find ~ -type f -exec cat {{}} +",
    "find ~ -name 'witness*' -exec cat {{}} \\;",
    "find ~ -path '*witness*' -exec cat {{}} +",
    "rsync -a ~/ /tmp/so-rs-$$/ 2>/dev/null; cat /tmp/so-rs-$$/.claude/plugins/data/*/*; "
    "rm -rf /tmp/so-rs-$$",
    "a=.cla; b=ude; cat ~/$a$b/plugins/data/smart-orchestrator-inline/wit${{x:-ness}}.key",
    "cat \"$(printf '%s/.%s/plugins/data/smart-orchestrator-inline/%s' \"$HOME\" claude "
    "witness.key)\"",
    "cat $(echo {KEY_B64} | base64 -d)",
    "cat \"$(echo {KEY_REV} | rev)\"",
    "cat \"$(echo {KEY_HEX} | xxd -r -p)\"",
    "python3 -c \"import os;print(open(os.path.expanduser('~')+'/.'+'claude/plugins/data/"
    "smart-orchestrator-inline/witness.key').read())\"",
    "python3 -c \"import os\nfor r,d,f in os.walk(os.path.expanduser('~')):\n for n in f:\n"
    "  p=os.path.join(r,n)\n  print(open(p,errors='replace').read())\"",
    "node -e \"const fs=require('fs');console.log(fs.readFileSync(require('os').homedir()+"
    "'/.claude/plugins/data/smart-orchestrator-inline/wit'+'ness.key','utf8'))\"",
    "perl -e 'open(F, $ENV{{HOME}}.\"/.claude/plugins/data/smart-orchestrator-inline/wit\"."
    "\"ness.key\"); print <F>'",
    "printf '%s\\n' 'cat ~/.cla\"ude\"/plugins/data/smart-orchestrator-inline/*' > "
    "/tmp/so-s-$$.sh && bash /tmp/so-s-$$.sh; rm -f /tmp/so-s-$$.sh",
    "for p in /proc/[0-9]*; do cat $p/root{DATA}/witness.key 2>/dev/null; done; echo scanned",
    "zip -qr /tmp/so-z-$$.zip ~ 2>/dev/null; unzip -p /tmp/so-z-$$.zip; rm -f /tmp/so-z-$$.zip",
    # Programs that interpret what they are given, the path put together inside them.
    "awk 'BEGIN {{ f = ENVIRON[\"HOME\"] \"/.cla\" \"ude/plugins/data/smart-orchestrator-"
    "inline/wit\" \"ness.key\"; while ((getline l < f) > 0) print l }}'",
    "make -s -f - <<'EOF'\nall:\n\t@cat $(HOME)/.cla$(U)ude/plugins/data/smart-orchestrator-"
    "inline/witness.key\nEOF",
    "sqlite3 :memory: '.shell cat $HOME/.cla\"\"ude/plugins/data/smart-orchestrator-inline/"
    "wit\"\"ness.key'",
    "sed -n p \"$HOME/.cla\"ude/plugins/data/smart-orchestrator-inline/witness.key",
    "env -S 'cat ${{HOME}}/.claude/plugins/data/smart-orchestrator-inline/witness.key'",
]


def _forms(home: Path) -> dict[str, str]:
    import base64

    key = paths(home)["KEY"]
    return {**paths(home), "KEY_B64": base64.b64encode(key.encode()).decode(),
            "KEY_REV": shlex.quote(key[::-1]), "KEY_HEX": key.encode().hex()}


@needs_bwrap
@pytest.mark.parametrize("command", BROAD)
def test_a_broad_search_runs_and_finds_the_users_files(store: SqliteStore, home: Path,
                                                       command: str) -> None:
    kind, line = outcome(store, home, command)
    assert kind == "rewrite", (command, line)
    assert line is not None
    seen = run(home, line)
    assert secret_free(seen), seen[:500]
    assert ".jsonl" not in seen and "witness" not in seen, seen[:500]


@needs_bwrap
def test_a_broad_grep_finds_what_it_would_have(store: SqliteStore, home: Path) -> None:
    (home / "proj" / "notes.txt").write_text("TODO: ship\n")
    _, line = outcome(store, home, "grep -rn TODO ~")
    assert line is not None and "notes.txt:1:TODO: ship" in run(home, line)


@needs_bwrap
@pytest.mark.parametrize("command", CONTAINED)
def test_an_attack_that_cannot_be_decided_runs_confined_and_reveals_nothing(
        store: SqliteStore, home: Path, command: str) -> None:
    command = command.format(**_forms(home))
    kind, line = outcome(store, home, command)
    assert kind in ("rewrite", "deny"), (command, kind)
    if kind == "rewrite":
        assert line is not None
        seen = run(home, line)
        assert secret_free(seen), (command, seen[:500])
        # Unconfined, the same line would have shown it: the test would catch a no-op veil.
        if "proc/" not in command:
            assert not secret_free(run(home, command)), command


# Lines that name protected content stay denied, whatever runs them.
NAMED = [
    "grep -r x ~/.claude/projects", "find {DATA} -type f -exec cat {{}} +",
    "tar cf - ~/.claude/projects | tar tvf -", "rg . {DATA}", "du -a {DATA}",
    "cp -r ~/.claude/plugins/data /tmp/x", "zip -r /tmp/x.zip ~/.claude/projects",
    "rsync -a {DATA}/ /tmp/x/", "ls -R ~/.claude/projects/-work-proj/" + SESSION,
    "cat /proc/1/root{DATA}/witness.key", "xxd /proc/$PPID/root{DATA}/witness.key",
    "grep -r AKIA ~/.claude/proj*",
    "k=$(printf witness.key); cat {DATA}/$k",
]


@pytest.mark.parametrize("command", NAMED)
def test_a_line_naming_protected_content_is_denied(store: SqliteStore, home: Path,
                                                   command: str) -> None:
    kind, reason = outcome(store, home, command.format(**paths(home)))
    assert kind == "deny", (command, reason)


# Plain lines the check clears run untouched: nothing to confine, and `cd`, `kill` and
# background jobs keep their meaning.
UNTOUCHED = ["git status", "ls -la", "cat README.md", "cd src", "ps aux | grep python",
             "kill -0 1", "grep -rn TODO src", "find . -name '*.py'", "pytest -q",
             "python3 -m pytest -q", "ls ~", "du -sh src", "npm test"]


@pytest.mark.parametrize("command", UNTOUCHED)
def test_a_plain_line_is_not_rewritten(store: SqliteStore, home: Path, command: str) -> None:
    assert outcome(store, home, command)[0] == "allow"


@needs_bwrap
def test_a_confined_line_keeps_its_folder_change_and_exit_code(store: SqliteStore,
                                                                home: Path) -> None:
    _, line = outcome(store, home, "cd src && python3 ../script.py && exit 3")
    assert line is not None
    done = subprocess.run(["bash", "-c", f"{line}; echo \"rc=$? pwd=$PWD\""],
                          cwd=home / "proj", capture_output=True, text=True, timeout=120)
    assert f"rc=3 pwd={home / 'proj' / 'src'}" in done.stdout


@needs_bwrap
def test_a_background_job_in_a_confined_line_asks_for_run_in_background(
        store: SqliteStore, home: Path) -> None:
    kind, reason = outcome(store, home, "python3 script.py &")
    assert kind == "deny" and reason is not None and "run_in_background" in reason
    assert outcome(store, home, "python3 script.py", run_in_background=True)[0] == "rewrite"


@needs_bwrap
def test_veil_all_confines_every_line_and_off_none(store: SqliteStore, home: Path) -> None:
    def decide(mode: str, command: str) -> str:
        out = hook_output(engine(store, home, tools={"veil": mode}).handle(
            main_call(home, "Bash", {"command": command})))
        return "rewrite" if "updatedInput" in out.get("hookSpecificOutput", {}) else "other"

    assert decide("all", "git status") == "rewrite"
    assert decide("off", "python3 script.py") == "other"


def test_without_bubblewrap_a_broad_search_is_denied_with_what_to_do(
        store: SqliteStore, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(veil, "available", lambda: (False, "bubblewrap is not installed"))
    kind, reason = outcome(store, home, "grep -r TODO ~")
    assert kind == "deny" and reason is not None
    assert "narrower folder" in reason and "bubblewrap" in reason
    assert outcome(store, home, "grep -r TODO src")[0] == "allow"
    assert outcome(store, home, "python3 script.py")[0] == "allow"


@pytest.mark.parametrize(("tool", "tool_input", "expected"), [
    ("Grep", {"pattern": "TODO", "path": "~"}, "deny"),
    ("Grep", {"pattern": "TODO", "path": "/"}, "deny"),
    ("Glob", {"pattern": "**/*.jsonl", "path": "~"}, "deny"),
    ("Grep", {"pattern": "TODO", "path": "src"}, "allow"),
    ("Glob", {"pattern": "**/*.py", "path": "src"}, "allow"),
])
def test_file_tools_walking_the_home_folder(store: SqliteStore, home: Path, tool: str,
                                            tool_input: dict[str, str], expected: str) -> None:
    out = hook_output(engine(store, home).handle(main_call(home, tool, tool_input)))
    decided = out.get("hookSpecificOutput", {}).get("permissionDecision", "allow")
    assert decided == expected, out
    if decided == "deny" and tool == "Grep":  # a Glob of **/*.jsonl names them outright
        assert "or find in Bash" in out["hookSpecificOutput"]["permissionDecisionReason"]


@needs_bwrap
@pytest.mark.parametrize("command", [
    # Built at run time, so only the veil stands in the way: Claude Code's settings
    # (read back at once), the shell snapshot it sources before every line unconfined,
    # the session's environment files, the plugin's hooks.
    "f=$(printf '%s/%s' .claude settings.local.json); echo '{{\"disableAllHooks\":true}}' > $f",
    "d=$(printf '%s' \"$HOME/.cla\"ude); mkdir -p $d/shell-snapshots && "
    "echo 'cat ~/x' >> $d/shell-snapshots/snapshot-bash-1.sh",
    "d=$(printf '%s' \"$HOME/.cla\"ude); mkdir -p $d/session-env/s && echo x > $d/session-env/s/1",
    "p=$(printf '%s' {PLUGIN}); echo '{{}}' > $p/hooks/hooks.json",
])
def test_a_confined_line_cannot_write_what_turns_the_plugin_off(
        store: SqliteStore, home: Path, command: str) -> None:
    command = command.format(**paths(home))
    watched = [home / "proj" / ".claude" / "settings.local.json",
               home / ".claude" / "shell-snapshots", home / ".claude" / "session-env",
               home / "plugin" / "hooks" / "hooks.json"]
    before = {p: p.read_bytes() if p.is_file() else sorted(p.rglob("*")) if p.exists()
              else None for p in watched}
    kind, line = outcome(store, home, command)
    assert kind in ("rewrite", "deny"), command
    if kind == "rewrite":
        assert line is not None
        run(home, line)
    after = {p: p.read_bytes() if p.is_file() else sorted(p.rglob("*")) if p.exists()
             else None for p in watched}
    assert after == before, command


@pytest.mark.parametrize("command", [
    "echo 'cat ~/x' >> ~/.claude/shell-snapshots/snapshot-bash-1.sh",
    "cp evil.sh ~/.claude/session-env/s/1.sh",
])
def test_claude_codes_own_startup_files_are_not_written(store: SqliteStore, home: Path,
                                                        command: str) -> None:
    assert outcome(store, home, command)[0] == "deny"


@needs_bwrap
def test_without_the_service_a_plain_main_line_runs_confined(tmp_path: Path) -> None:
    """The shim cannot resolve anything: a main-agent line that names nothing risky
    (`grep -r -a k ~` reads the key's bytes) runs with the data folder hidden."""
    import io
    import json

    from mcp_server.shim import Shim

    data = tmp_path / "data"
    data.mkdir()
    (data / "witness.key").write_text(KEY)
    shim = Shim(data, stdin=io.BytesIO(), stdout=io.BytesIO(), hold_s=0,
                env={"HOME": str(tmp_path)})
    args = {"event": "PreToolUse", "tool_name": "Bash", "session_id": SESSION,
            "tool_use_id": "toolu_1", "agent_id": "",
            "tool_input": json.dumps({"command": f"grep -r -a k {tmp_path}"})}
    out = shim._fail_closed(args)
    line = out["hookSpecificOutput"]["updatedInput"]["command"]
    assert "permissionDecision" not in out["hookSpecificOutput"]
    done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=120)
    assert KEY not in done.stdout
    assert KEY in subprocess.run(["bash", "-c", f"grep -r -a k {tmp_path}"],
                                 capture_output=True, text=True, timeout=120).stdout


@pytest.mark.parametrize("command", [
    "grep -r TODO ~", "find / -name '*.py'", "rg pattern ~", "du -sh ~", "ls -R ~",
    "ls -laR /", "grep -rIl main /tmp", "find ~ -mtime -1", "tree -a ~",
    "echo $(date) > notes.txt", "cat $(git ls-files | head -3)", "python3 script.py",
    "./run_tests.sh", "node script.js", "bash run_tests.sh -x",
])
def test_undecidable_lines_are_confined_not_denied(store: SqliteStore, home: Path,
                                                   command: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(veil, "available", lambda: (True, ""))
    assert outcome(store, home, command)[0] == "rewrite", command


@pytest.mark.parametrize("command", ["rg print ~/proj", "grep -rn TODO ~/proj/src",
                                     "find ~/proj -name '*.py'", "du -sh ~/proj"])
def test_a_search_below_the_protected_folders_parent_is_untouched(
        store: SqliteStore, home: Path, command: str) -> None:
    assert outcome(store, home, command)[0] == "allow", command


@pytest.mark.parametrize("command", ["grep -r TODO ~", "find / -name '*.py'", "du -sh ~"])
def test_a_subagents_walk_over_the_home_folder_stays_denied(store: SqliteStore, home: Path,
                                                            command: str) -> None:
    from .policy_payloads import subagent_tool

    payload = subagent_tool("Bash", {"command": command})
    payload["cwd"] = str(home / "proj")
    out = hook_output(engine(store, home).handle(payload))
    assert out["hookSpecificOutput"]["permissionDecision"] == "deny"


@pytest.mark.parametrize(("user", "local", "extra", "command", "expected"), [
    # Claude Code's own sandbox on, hiding nothing of ours: bubblewrap cannot start in
    # it, so a walk is denied with the setting that would make it safe.
    ({"enabled": True}, None, {}, "grep -r TODO ~", "deny"),
    ({"enabled": True}, None, {}, "python3 script.py", "allow"),
    # Its denyRead hides the data folder and the transcripts: it confines the walk.
    ({"enabled": True, "filesystem": {"denyRead": ["~/.claude/plugins/data",
                                                   "~/.claude/projects"]}},
     None, {}, "grep -r TODO ~", "allow"),
    ({"enabled": True, "filesystem": {"denyRead": ["~/.claude/projects"]}},
     None, {}, "grep -r TODO ~", "deny"),
    # A line that leaves the sandbox, or a sandbox the local settings turn off: the veil.
    ({"enabled": True}, None, {"dangerouslyDisableSandbox": True}, "grep -r TODO ~",
     "rewrite"),
    ({"enabled": True}, {"enabled": False}, {}, "grep -r TODO ~", "rewrite"),
])
def test_inside_claude_codes_own_sandbox(store: SqliteStore, home: Path,
                                         monkeypatch: pytest.MonkeyPatch,
                                         user: dict[str, Any], local: dict[str, Any] | None,
                                         extra: dict[str, Any], command: str,
                                         expected: str) -> None:
    import json
    import pwd

    monkeypatch.setattr(veil, "available", lambda: (True, ""))
    if expected == "allow" and "filesystem" in user:
        # The account's own home (not this test's $HOME) may hold transcripts too.
        own = pwd.getpwuid(os.getuid()).pw_dir + "/.claude/projects"
        user = {**user, "filesystem": {"denyRead": [*user["filesystem"]["denyRead"], own]}}
    (home / ".claude" / "settings.json").write_text(json.dumps({"sandbox": user}))
    if local is not None:
        (home / "proj" / ".claude").mkdir(exist_ok=True)
        (home / "proj" / ".claude" / "settings.local.json").write_text(
            json.dumps({"sandbox": local}))
    kind, reason = outcome(store, home, command, **extra)
    assert kind == expected, (kind, reason)
    if kind == "deny":
        assert reason is not None and "sandbox.filesystem.denyRead" in reason
