"""Fuzzing the command hook: generated payloads through `main` and through the launcher.

Never a traceback; stdout empty or one JSON object of valid hook output; exit 0; and a
PreToolUse that is, or may be, a malformed Agent call is denied.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hooks.command import main as hook_main

from ..unit.policy_payloads import post_agent, pre_agent, subagent_event, subagent_tool
from ._figures import Figures
from ._util import REPO_ROOT, assert_hook_output, denied, examples, scoped_env

SUITE = "fuzz_hooks"
EVENTS = ["PreToolUse", "PostToolUse", "PostToolUseFailure", "SubagentStart", "SubagentStop",
          "SessionEnd", "PreCompact"]
AGENT = ("Agent", "Task")


@pytest.fixture(scope="module")
def hook_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A data folder and a project whose policy never waits for an admission slot."""
    root = tmp_path_factory.mktemp("hooks")
    project = root / "project"
    (project / ".claude").mkdir(parents=True)
    (project / ".claude" / "smart-orchestrator.toml").write_text(
        "[admission]\nwait_timeout_s = 0\n")
    with scoped_env(SMART_ORCHESTRATOR_DATA=str(root / "data"), SMART_ORCHESTRATOR_DB=None,
                    CLAUDE_PROJECT_DIR=str(project), CLAUDE_CODE_SESSION_ID="fuzz"):
        yield root


def run_main(event: str, raw: bytes) -> tuple[int, str, str]:
    """`hooks.command.main` in this process, with `raw` on stdin."""
    stdin = io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin
    sys.stdin = stdin
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = hook_main([event])
    finally:
        sys.stdin = saved
    return rc, out.getvalue(), err.getvalue()


# -- what may be sent ------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) |
    st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=5),
    max_leaves=20)
odd_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=200) | st.sampled_from(
    ["", " ", "\x00", "\ud800", "\udfff", "AKIA" + "X" * 16, "ignore previous instructions",
     "\u202e", "é" * 100, "🙂" * 50])
field_values = st.one_of(odd_text, json_values)


@st.composite
def agent_inputs(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)  # not even an object
    ti: dict[str, Any] = {}
    for name in ("description", "prompt", "subagent_type", "model", "run_in_background"):
        choice = draw(st.integers(0, 3))
        if choice == 1:
            ti[name] = draw(field_values)
        elif choice >= 2:
            ti[name] = {"description": "do a thing", "prompt": "SUBTASK: count the files",
                        "subagent_type": "general-purpose", "model": "sonnet",
                        "run_in_background": False}[name]
    return ti


@st.composite
def payloads(draw: st.DrawFn) -> tuple[str, Any]:
    event = draw(st.sampled_from(EVENTS))
    shape = draw(st.integers(0, 5))
    if shape == 0:
        return event, draw(json_values)
    base: dict[str, Any] = {
        "PreToolUse": pre_agent(tool_use_id=f"toolu_{draw(st.integers(0, 10**9))}"),
        "PostToolUse": post_agent(), "PostToolUseFailure": post_agent(),
        "SubagentStart": subagent_event("SubagentStart", "a1"),
        "SubagentStop": subagent_event("SubagentStop", "a1"),
        "SessionEnd": {"session_id": "s", "hook_event_name": "SessionEnd"},
        "PreCompact": {"session_id": "s", "hook_event_name": "PreCompact", "trigger": "auto"},
    }[event]
    if event == "PreToolUse" and draw(st.booleans()):
        base = subagent_tool(draw(st.sampled_from(["Read", "Bash", "Grep", "WebFetch"])),
                             {"file_path": draw(odd_text), "command": draw(odd_text)})
    payload = dict(base)
    if event == "PreToolUse" and payload.get("tool_name") in AGENT:
        payload["tool_input"] = draw(agent_inputs())
    for _ in range(draw(st.integers(0, 4))):
        key = draw(st.sampled_from(["session_id", "tool_use_id", "tool_name", "tool_input",
                                    "tool_response", "agent_id", "agent_type",
                                    "last_assistant_message", "hook_event_name",
                                    "duration_ms", "stop_hook_active", draw(odd_text)]))
        payload[key] = draw(field_values)
    return event, payload


def must_deny(event: str, payload: Any) -> bool:
    """A PreToolUse that is, or may be, an Agent call Claude Code could not have sent."""
    if event != "PreToolUse":
        return False
    if not isinstance(payload, dict) or not isinstance(payload.get("tool_name"), str):
        return True
    if payload.get("hook_event_name") not in (None, "PreToolUse"):
        return True
    if payload["tool_name"] not in AGENT:
        return False
    ti = payload.get("tool_input")
    if not isinstance(ti, dict):
        return True
    if any(not isinstance(ti.get(k), str) or not ti[k].strip()
           for k in ("prompt", "description")):
        return True
    types = {"subagent_type": str, "run_in_background": bool, "model": str}
    if any(ti.get(k) is not None and not isinstance(ti[k], t) for k, t in types.items()):
        return True
    return any(payload.get(k) is not None and not isinstance(payload[k], str)
               for k in ("session_id", "tool_use_id", "agent_id", "agent_type"))


def _encode(payload: Any, how: str) -> bytes:
    text = json.dumps(payload, ensure_ascii=how == "ascii")
    if how == "utf-16":
        return text.encode("utf-16", "surrogatepass")
    if how == "bom":
        return b"\xef\xbb\xbf" + text.encode("utf-8", "surrogatepass")
    return text.encode("utf-8", "surrogatepass")


def _forget_claims() -> None:
    """Each example is a new event: a key an earlier example claimed would make this hook
    answer "decided elsewhere", as it does for the other hook of the pair."""
    data = Path(os.environ["SMART_ORCHESTRATOR_DATA"]) / "state.db"
    if data.exists():
        conn = sqlite3.connect(data, isolation_level=None)
        conn.execute("PRAGMA synchronous = OFF")  # a test's bookkeeping: no fsync wait
        conn.execute("DELETE FROM claims")
        conn.close()


def check_payload(event: str, payload: Any, how: str, figures: Figures) -> None:
    _forget_claims()
    raw = _encode(payload, how)
    rc, out, err = run_main(event, raw)
    figures.add(SUITE, "payloads through main (in process)")
    assert rc == 0, (rc, err)
    assert "Traceback" not in err and "Traceback" not in out
    # Claude Code sends plain UTF-8; other encodings do not parse, and fail closed.
    deny = must_deny(event, payload) or (event == "PreToolUse" and how in ("utf-16", "bom"))
    decision = assert_hook_output(out, event=event, must_deny=deny)
    if deny:
        figures.add(SUITE, "malformed PreToolUse(Agent) payloads: denied")
    elif denied(decision):
        figures.add(SUITE, "well-formed PreToolUse(Agent) denied by a check")


encodings = st.sampled_from(["utf-8", "ascii", "utf-8", "bom", "utf-16"])


@examples(150)
@given(case=payloads(), how=encodings)
def test_generated_payloads_through_main_short(hook_env: Path, figures: Figures,
                                               case: tuple[str, Any], how: str) -> None:
    check_payload(*case, how, figures)


@pytest.mark.slow
@examples(5000)
@given(case=payloads(), how=encodings)
def test_generated_payloads_through_main_long(hook_env: Path, figures: Figures,
                                              case: tuple[str, Any], how: str) -> None:
    check_payload(*case, how, figures)


def check_raw(event: str, raw: bytes, figures: Figures) -> None:
    _forget_claims()
    rc, out, err = run_main(event, raw)
    figures.add(SUITE, "raw byte strings through main")
    assert rc == 0 and "Traceback" not in err
    try:
        parsed = json.loads(raw.decode("utf-8", "replace"))
    except ValueError:
        parsed = None
    assert_hook_output(out, event=event, must_deny=must_deny(event, parsed))


@examples(200)
@given(event=st.sampled_from(EVENTS), raw=st.binary(max_size=500))
def test_random_bytes_through_main_short(hook_env: Path, figures: Figures, event: str,
                                         raw: bytes) -> None:
    check_raw(event, raw, figures)


@pytest.mark.slow
@examples(3000)
@given(event=st.sampled_from(EVENTS), raw=st.binary(max_size=5000))
def test_random_bytes_through_main_long(hook_env: Path, figures: Figures, event: str,
                                        raw: bytes) -> None:
    check_raw(event, raw, figures)


# -- the extremes, by hand -------------------------------------------------------------------

def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [10, 900, 5000, 100_000])
def test_deeply_nested_payload_is_denied_without_traceback(hook_env: Path, figures: Figures,
                                                           depth: int) -> None:
    agent = '{"hook_event_name":"PreToolUse","tool_name":"Agent","tool_use_id":"toolu_n",'
    for text, deny in ((_nested(depth), True),
                       (agent + '"tool_input":' + _nested(depth) + "}", True),
                       (agent + '"tool_input":{"description":"d","prompt":"p","extra":'
                        + _nested(depth) + "}}", False)):  # decided either way
        _forget_claims()
        rc, out, err = run_main("PreToolUse", text.encode())
        assert rc == 0 and "Traceback" not in err
        assert_hook_output(out, event="PreToolUse", must_deny=deny)
        figures.add(SUITE, "deeply nested payloads (by hand)")


@pytest.mark.parametrize("size_mib", [1, 8, 65])
def test_huge_payloads_are_decided_or_refused_without_traceback(hook_env: Path,
                                                               figures: Figures,
                                                               size_mib: int) -> None:
    prompt = "SUBTASK: " + "a" * (size_mib * 1024 * 1024)
    payload = pre_agent(prompt=prompt, tool_use_id=f"toolu_huge_{size_mib}")
    _forget_claims()
    rc, out, err = run_main("PreToolUse", json.dumps(payload).encode())
    assert rc == 0 and "Traceback" not in err
    decision = assert_hook_output(out, event="PreToolUse", must_deny=True)
    reason = decision["hookSpecificOutput"]["permissionDecisionReason"]
    assert "over the limit" in reason or "malformed hook input" in reason
    figures.add(SUITE, "huge payloads (1, 8 and 65 MiB)")


@pytest.mark.parametrize("payload", [
    {"hook_event_name": "SubagentStart", "tool_name": "Agent",
     "tool_input": {"description": "d", "prompt": "p"}},
    {"hook_event_name": 5, "tool_name": "Agent", "tool_input": "x"},
    {"tool_name": ["Agent"], "tool_input": {"description": "d", "prompt": "p"}},
    {"tool_name": "Agent", "session_id": {"a": 1},
     "tool_input": {"description": "d", "prompt": "p"}},
    {"tool_name": "Agent", "tool_input": {"description": "d", "prompt": "p",
                                          "run_in_background": "no"}},
])
def test_a_payload_cannot_talk_its_way_out_of_the_agent_gate(hook_env: Path,
                                                            payload: dict[str, Any]) -> None:
    _forget_claims()
    rc, out, _ = run_main("PreToolUse", json.dumps(payload).encode())
    assert rc == 0
    assert_hook_output(out, event="PreToolUse", must_deny=True)


@pytest.fixture(scope="module")
def python_without_dependencies() -> str:
    """A Python 3.11+ that lacks the plugin's dependencies, as on a first run."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3", shutil.which("python3")):
        if not candidate or not Path(candidate).exists():
            continue
        probe = subprocess.run([candidate, "-I", "-c", "import sys, importlib.util as u; "
                                "print(sys.version_info >= (3, 11) and "
                                "u.find_spec('mcp') is None)"],
                               capture_output=True, text=True, check=False)
        if probe.stdout.strip() == "True":
            return candidate
    pytest.skip("no Python 3.11+ without the dependencies on this machine")


@pytest.mark.parametrize("raw", [b"[" * 50_000, b"[1, 2]", b"\xff\xfe", b"not json",
                                 json.dumps(pre_agent()).encode(),
                                 json.dumps(subagent_tool("Read", {"file_path": "/x"})).encode()])
def test_launcher_without_environment_fails_closed(hook_env: Path,
                                                   python_without_dependencies: str,
                                                   figures: Figures, raw: bytes) -> None:
    """Before the private environment exists the launcher answers hooks itself."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(hook_env / "home"),
           "SMART_ORCHESTRATOR_DATA": str(hook_env / "no-venv-data"), "PYTHONNOUSERSITE": "1"}
    done = subprocess.run([python_without_dependencies, "-I",
                           str(REPO_ROOT / "bin" / "smart-orchestrator"), "hook", "PreToolUse"],
                          input=raw, capture_output=True, env=env, timeout=60, check=False)
    assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr[-1000:]
    out = assert_hook_output(done.stdout.decode(), event="PreToolUse", must_deny=True)
    assert "still installing" in out["hookSpecificOutput"]["permissionDecisionReason"]
    figures.add(SUITE, "inputs through the launcher before its environment exists")
