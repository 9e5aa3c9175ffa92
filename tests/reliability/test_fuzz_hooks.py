"""Fuzzing the hook edge: generated payloads as Claude Code substitutes them into the
`policy_check` call of an `mcp_tool` hook, through the service's decision, and raw lines
through the service's recognition of a hook call.

Never a traceback; the answer is `{}` or one JSON object of valid hook output; and a
PreToolUse that is, or may be, a malformed Agent call is denied.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcp_server.hook_call import parse_hook_call
from smart_orchestrator.policy import normalize_mcp_args

from ..unit.policy_payloads import post_agent, pre_agent, subagent_event, subagent_tool
from ._figures import Figures
from ._util import assert_hook_output, denied, examples, hook_answer, mcp_hook_args, scoped_env

SUITE = "fuzz_hooks"
EVENTS = ["PreToolUse", "PostToolUse", "PostToolUseFailure", "SubagentStart", "SubagentStop",
          "SessionEnd", "PreCompact"]
AGENT = ("Agent", "Task")
_ID = re.compile(r"[A-Za-z0-9_.:-]{1,200}")


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
    """A PreToolUse(Agent) whose input, as the hook's call carries it, is not one Claude
    Code could have sent."""
    if event != "PreToolUse":
        return False
    p = normalize_mcp_args(mcp_hook_args(event, payload))
    if p.get("tool_name") not in AGENT:
        return False
    ti = p.get("tool_input")
    if not isinstance(ti, dict) or ti.get("_unparsed"):
        return True
    if any(not isinstance(ti.get(k), str) or not ti[k].strip()
           for k in ("prompt", "description")):
        return True
    types = {"subagent_type": str, "run_in_background": bool, "model": str}
    if any(ti.get(k) is not None and not isinstance(ti[k], t) for k, t in types.items()):
        return True
    return any(p.get(k) not in (None, "") and not _ID.fullmatch(str(p[k]))
               for k in ("session_id", "tool_use_id", "agent_id"))


def _forget_claims() -> None:
    """Each example is a new event: a key an earlier example claimed would be answered with
    that example's decision, as a second delivery of one event is."""
    data = Path(os.environ["SMART_ORCHESTRATOR_DATA"]) / "state.db"
    if data.exists():
        conn = sqlite3.connect(data, isolation_level=None)
        conn.execute("PRAGMA synchronous = OFF")  # a test's bookkeeping: no fsync wait
        conn.execute("DELETE FROM claims")
        conn.close()


def check_payload(event: str, payload: Any, figures: Figures) -> None:
    _forget_claims()
    out = hook_answer(event, payload)
    figures.add(SUITE, "payloads through the service's decision")
    assert "Traceback" not in out
    deny = must_deny(event, payload)
    decision = assert_hook_output(out, event=event, must_deny=deny)
    if deny:
        figures.add(SUITE, "malformed PreToolUse(Agent) payloads: denied")
    elif denied(decision):
        figures.add(SUITE, "well-formed PreToolUse(Agent) denied by a check")


@examples(150)
@given(case=payloads())
def test_generated_payloads_through_the_decision_short(hook_env: Path, figures: Figures,
                                                       case: tuple[str, Any]) -> None:
    check_payload(*case, figures)


@pytest.mark.slow
@examples(5000)
@given(case=payloads())
def test_generated_payloads_through_the_decision_long(hook_env: Path, figures: Figures,
                                                      case: tuple[str, Any]) -> None:
    check_payload(*case, figures)


_CALL = st.builds(
    lambda args: json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "policy_check", "arguments": args,
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}}).encode(),
    json_values)


@examples(300)
@given(raw=st.binary(max_size=500) | _CALL)
def test_random_lines_through_the_hook_call_recognition(figures: Figures, raw: bytes) -> None:
    call = parse_hook_call(raw)  # never raises: a line it does not know goes to the SDK
    figures.add(SUITE, "raw lines through the service's hook-call recognition")
    assert call is None or isinstance(call.arguments, dict)


# -- the extremes, by hand -------------------------------------------------------------------

def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [10, 900, 5000, 100_000])
def test_deeply_nested_input_is_denied_without_traceback(hook_env: Path, figures: Figures,
                                                         depth: int) -> None:
    base = {"event": "PreToolUse", "session_id": "fuzz", "tool_name": "Agent",
            "tool_use_id": "toolu_n"}
    for tool_input, deny in ((_nested(depth), True),
                             ('{"description":"d","prompt":"p","extra":' + _nested(depth)
                              + "}", False)):  # decided either way
        _forget_claims()
        from mcp_server.policy_tools import decide_hook
        from mcp_server.state import AppState
        from smart_orchestrator.store import open_store

        state = AppState(open_store())
        try:
            out, _ = decide_hook(state, {**base, "tool_input": tool_input})
        finally:
            assert state.store is not None
            state.store.close()
        assert_hook_output(out, event="PreToolUse", must_deny=deny)
        figures.add(SUITE, "deeply nested inputs (by hand)")
    assert parse_hook_call(_nested(depth).encode()) is None


@pytest.mark.parametrize("size_mib", [1, 8])
def test_huge_payloads_are_decided_or_refused_without_traceback(hook_env: Path,
                                                               figures: Figures,
                                                               size_mib: int) -> None:
    prompt = "SUBTASK: " + "a" * (size_mib * 1024 * 1024)
    _forget_claims()
    out = hook_answer("PreToolUse", pre_agent(prompt=prompt,
                                              tool_use_id=f"toolu_huge_{size_mib}"))
    decision = assert_hook_output(out, event="PreToolUse", must_deny=True)
    assert "Traceback" not in decision["hookSpecificOutput"]["permissionDecisionReason"]
    figures.add(SUITE, "huge payloads (1 and 8 MiB)")


@pytest.mark.parametrize("payload", [
    {"tool_name": "Agent", "tool_input": "x"},
    {"tool_name": "Agent", "tool_input": [{"description": "d", "prompt": "p"}]},
    {"tool_name": "Agent", "session_id": {"a": 1},
     "tool_input": {"description": "d", "prompt": "p"}},
    {"tool_name": "Agent", "tool_use_id": "toolu 1; rm",
     "tool_input": {"description": "d", "prompt": "p"}},
    {"tool_name": "Agent", "tool_input": {"description": "d", "prompt": "p",
                                          "run_in_background": "no"}},
    {"tool_name": "Agent", "tool_input": {"description": "d", "prompt": ["p"]}},
])
def test_a_payload_cannot_talk_its_way_out_of_the_agent_gate(hook_env: Path,
                                                            payload: dict[str, Any]) -> None:
    _forget_claims()
    assert_hook_output(hook_answer("PreToolUse", payload), event="PreToolUse", must_deny=True)
