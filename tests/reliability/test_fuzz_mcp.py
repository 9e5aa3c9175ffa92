"""Fuzzing every MCP tool's arguments through the real MCP client, in memory.

One server serves the whole run (that it keeps answering is part of what is proved).
Every answer must be a valid tool result: a tool error with a message (never the bare
"Error executing tool X" of a crash, never a traceback), or a structured result that
matches the tool's output schema. `policy_check` must deny a malformed PreToolUse(Agent).
The wave tools run on a server of their own whose agents are scripted, so generated plans
never start real agents.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import given
from hypothesis import strategies as st
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, Tool

from mcp_server.server import build_server, lifespan
from mcp_server.state import AppState
from mcp_server.wave_tools import register_wave_tools
from smart_orchestrator.store import SqliteStore
from smart_orchestrator.waves import WaveConfig, WaveService
from smart_orchestrator.waves.admission import MIB, AdmissionConfig
from smart_orchestrator.waves.recovery import RetryPolicy
from tests.wave_fakes import FixedMetrics, ScriptedRunner, Step

from ..unit.policy_payloads import pre_agent
from ._figures import Figures
from ._util import examples, scoped_env

SUITE = "fuzz_mcp"
WAVE_TOOLS = frozenset({"spawn_wave", "wave_status", "cancel_wave", "resume_wave", "list_runs"})
AGENT = ("Agent", "Task")


@dataclass(repr=False)
class Served:
    portal: BlockingPortal
    client: Client
    tools: dict[str, Tool]
    data: Path
    seen: dict[str, int] = field(default_factory=dict)

    def call(self, name: str, args: Any) -> CallToolResult:
        result: CallToolResult = self.portal.call(self.client.call_tool, name, args)
        self.seen[name] = self.seen.get(name, 0) + 1
        return result


@contextlib.contextmanager
def _serve(server: MCPServer[AppState], data: Path) -> Iterator[Served]:
    with start_blocking_portal() as portal, \
            portal.wrap_async_context_manager(Client(server)) as client:
        tools = {t.name: t for t in portal.call(client.list_tools).tools}
        yield Served(portal, client, tools, data)


@pytest.fixture(scope="module")
def fuzz_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("mcp")
    project = root / "project"
    (project / ".claude").mkdir(parents=True)
    # Admission has suites of its own; here a busy machine must not turn answers into waits.
    (project / ".claude" / "smart-orchestrator.toml").write_text('[admission]\nmode = "off"\n')
    (project / "CLAUDE.md").write_text("Project notes.\n")
    with scoped_env(SMART_ORCHESTRATOR_DATA=str(root / "data"),
                    SMART_ORCHESTRATOR_DB=str(root / "data" / "state.db"),
                    CLAUDE_PROJECT_DIR=str(project), CLAUDE_CODE_SESSION_ID="mcp-fuzz"):
        yield root


@pytest.fixture(scope="module")
def served(fuzz_env: Path) -> Iterator[Served]:
    with _serve(build_server(), fuzz_env / "data") as s:
        yield s


class _ScriptedWaves:
    def __init__(self) -> None:
        self.services: list[WaveService] = []

    def make(self, store: SqliteStore) -> WaveService:
        config = WaveConfig(admission=AdmissionConfig(max_agents=4, reserve_bytes=0,
                                                      memory_budget_bytes=4096 * MIB),
                            retry=RetryPolicy(initial_s=0.0), tick_s=0.01)
        service = WaveService(SqliteStore(store.location),
                              ScriptedRunner(default=Step(answers=('{"ok": true}',))),
                              config, metrics=FixedMetrics())
        self.services.append(service)
        return service


@pytest.fixture(scope="module")
def waves_served(fuzz_env: Path) -> Iterator[Served]:
    fake = _ScriptedWaves()
    server: MCPServer[AppState] = MCPServer("waves-fuzz", lifespan=lifespan)
    register_wave_tools(server, make_service=fake.make)
    try:
        with _serve(server, fuzz_env / "data") as s:
            yield s
    finally:
        for service in fake.services:
            service.close()


# -- arguments from the tools' own schemas ---------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**64, 2**64) |
    st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=15)


def _plausible(schema: dict[str, Any], defs: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "$ref" in schema:
        return _plausible(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    if "anyOf" in schema:
        return st.one_of([_plausible(s, defs) for s in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True) | st.text(max_size=20)
        return st.text(max_size=min(int(schema.get("maxLength", 300)), 300))
    if kind == "integer":
        lo, hi = schema.get("minimum"), schema.get("maximum")
        return st.integers(lo, hi) | st.integers()
    if kind == "number":
        lo, hi = schema.get("minimum", schema.get("exclusiveMinimum")), schema.get("maximum")
        return st.floats(lo, hi, allow_nan=False) | st.floats()
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        return st.lists(_plausible(schema.get("items", {}), defs), max_size=4)
    if kind == "object" and "properties" in schema:
        return _object(schema, defs)
    return json_values


def _object(schema: dict[str, Any], defs: dict[str, Any]) -> st.SearchStrategy[Any]:
    props = schema.get("properties", {})

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, sub in props.items():
            pick = draw(st.integers(0, 9))
            if pick < 6:
                out[name] = draw(_plausible(sub, defs))
            elif pick < 8:
                out[name] = draw(json_values)
        if draw(st.integers(0, 9)) == 0:
            out[draw(st.text(max_size=10))] = draw(json_values)
        return out
    return build()


def arguments(tool: Tool) -> st.SearchStrategy[Any]:
    schema = tool.input_schema
    return _object(schema, schema.get("$defs", {}))


def check_result(served: Served, name: str, args: Any, result: CallToolResult,
                 figures: Figures) -> None:
    assert isinstance(result, CallToolResult)
    if result.is_error:
        text = " ".join(getattr(c, "text", "") for c in result.content)
        assert text.strip() and "Traceback" not in text, text
        assert text.strip() != f"Error executing tool {name}", \
            f"{name} crashed on {json.dumps(args, default=str)[:500]}"
        figures.add(SUITE, "calls answered with a tool error (argument or state refused)")
        return
    schema = served.tools[name].output_schema
    if schema is not None:
        assert result.structured_content is not None
        jsonschema.validate(result.structured_content, schema)
    figures.add(SUITE, "calls answered with a valid result")


@st.composite
def tool_calls(draw: st.DrawFn, names: list[str], tools: dict[str, Tool]) -> tuple[str, Any]:
    name = draw(st.sampled_from(names))
    if draw(st.integers(0, 19)) == 0:
        return name, draw(json_values)  # arguments that are not even an object
    return name, draw(arguments(tools[name]))


def _calls(served: Served, exclude: frozenset[str] = frozenset()) -> st.SearchStrategy[Any]:
    names = sorted(n for n in served.tools if n not in exclude)
    return tool_calls(names, served.tools)


def check_call(served: Served, call: tuple[str, Any], figures: Figures) -> None:
    name, args = call
    if not isinstance(args, dict):
        with contextlib.suppress(Exception):  # the client itself refuses a non-object
            result = served.call(name, args)
            check_result(served, name, args, result, figures)
        figures.add(SUITE, "tool calls (generated arguments)")
        return
    if name == "gate_status":
        args["run"] = False  # running the project's checks is the gates suite's business
    result = served.call(name, args)
    check_result(served, name, args, result, figures)
    figures.add(SUITE, "tool calls (generated arguments)")


@pytest.fixture(scope="module")
def main_calls(served: Served) -> st.SearchStrategy[Any]:
    return _calls(served, exclude=WAVE_TOOLS)


def test_every_tool_of_the_server_is_fuzzed(served: Served, waves_served: Served) -> None:
    assert set(served.tools) >= WAVE_TOOLS, "the server offers the wave tools"
    assert set(waves_served.tools) == WAVE_TOOLS


@examples(150)
@given(data=st.data())
def test_generated_arguments_for_every_tool_short(served: Served, figures: Figures,
                                                  main_calls: st.SearchStrategy[Any],
                                                  data: st.DataObject) -> None:
    check_call(served, data.draw(main_calls), figures)


@pytest.mark.slow
@examples(4000)
@given(data=st.data())
def test_generated_arguments_for_every_tool_long(served: Served, figures: Figures,
                                                 main_calls: st.SearchStrategy[Any],
                                                 data: st.DataObject) -> None:
    check_call(served, data.draw(main_calls), figures)


# -- wave tools, with plans that make sense often enough to run --------------------------------

ids = st.sampled_from(["a", "b", "c", "d", "e", "A-1", "", "x" * 70, "a b"])


@st.composite
def plans(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    tasks = []
    for tid in draw(st.lists(ids, max_size=5)):
        task: dict[str, Any] = {"id": tid, "prompt": draw(st.text(max_size=60))}
        if draw(st.booleans()):
            task["depends_on"] = draw(st.lists(ids, max_size=3))
        if draw(st.integers(0, 4)) == 0:
            task[draw(st.sampled_from(["timeout_s", "max_turns", "priority", "budget_usd",
                                       "output_schema", "allowed_tools", "agent",
                                       "context", "bogus"]))] = draw(json_values)
        if draw(st.integers(0, 9)) == 0:
            # Compensations run for real: only a harmless command or a prompt.
            task["compensate"] = draw(st.sampled_from([{"command": ["true"]},
                                                       {"prompt": "undo it"}]))
        tasks.append(task)
    plan: dict[str, Any] = {"tasks": tasks}
    if draw(st.booleans()):
        plan["on_failure"] = draw(st.sampled_from(["continue", "compensate", "explode"]))
    if draw(st.booleans()):
        plan["name"] = draw(st.text(max_size=30))
    return plan


@st.composite
def wave_calls(draw: st.DrawFn, served: Served) -> tuple[str, Any, int | None]:
    """A call, and which earlier run to aim it at (by index: runs exist only at run time)."""
    name = draw(st.sampled_from(sorted(WAVE_TOOLS)))
    args = draw(arguments(served.tools[name]))
    known_run = None
    if name == "spawn_wave":
        args["plan"] = draw(plans())
        args["wait_s"] = draw(st.sampled_from([0, 0.5, -1, "soon"]))
        if draw(st.booleans()):
            args.pop("cwd", None)
    elif "run_id" in served.tools[name].input_schema.get("properties", {}) and \
            draw(st.booleans()):
        known_run = draw(st.integers(0, 10**6))
    if name == "resume_wave":
        args["wait_s"] = draw(st.sampled_from([0, 0.2]))
    return name, args, known_run


_RUN_IDS: list[str] = []


def check_wave_call(served: Served, call: tuple[str, Any, int | None],
                    figures: Figures) -> None:
    name, args, known_run = call
    if known_run is not None and _RUN_IDS:
        args = {**args, "run_id": _RUN_IDS[known_run % len(_RUN_IDS)]}
    result = served.call(name, args)
    check_result(served, name, args, result, figures)
    figures.add(SUITE, "wave tool calls (generated arguments, scripted agents)")
    if name == "spawn_wave" and not result.is_error and result.structured_content:
        _RUN_IDS.append(result.structured_content["run_id"])
        figures.add(SUITE, "generated plans that ran as waves")


@examples(60)
@given(data=st.data())
def test_generated_arguments_for_the_wave_tools_short(waves_served: Served, figures: Figures,
                                                      data: st.DataObject) -> None:
    check_wave_call(waves_served, data.draw(wave_calls(waves_served)), figures)


@pytest.mark.slow
@examples(1500)
@given(data=st.data())
def test_generated_arguments_for_the_wave_tools_long(waves_served: Served, figures: Figures,
                                                     data: st.DataObject) -> None:
    check_wave_call(waves_served, data.draw(wave_calls(waves_served)), figures)


# -- policy_check fails closed -----------------------------------------------------------------

_unique = itertools.count()
_lock = threading.Lock()


def _malformed_inputs() -> st.SearchStrategy[str]:
    good = pre_agent()["tool_input"]
    broken = st.one_of(
        json_values.map(json.dumps),
        st.text(max_size=50),
        st.just("{not json"),
        st.builds(lambda k, v: json.dumps({**good, k: v}),
                  st.sampled_from(["prompt", "description"]),
                  st.one_of(st.just(""), st.just("   "), st.integers(), st.none(),
                            st.lists(st.text(max_size=3)))),
        st.builds(lambda k, v: json.dumps({**good, k: v}),
                  st.sampled_from(["subagent_type", "run_in_background", "model"]),
                  st.one_of(st.integers(), st.lists(st.integers()), st.dictionaries(
                      st.text(max_size=3), st.integers()))),
    )
    return broken.filter(_is_malformed)


def _is_malformed(text: str) -> bool:
    try:
        ti = json.loads(text)
    except ValueError:
        return True
    if not isinstance(ti, dict):
        return True
    if any(not isinstance(ti.get(k), str) or not ti[k].strip() for k in ("prompt", "description")):
        return True
    types = {"subagent_type": str, "run_in_background": bool, "model": str}
    return any(ti.get(k) is not None and not isinstance(ti[k], t) for k, t in types.items())


def check_fail_closed(served: Served, tool_input: str, tool: str, figures: Figures) -> None:
    with _lock:
        n = next(_unique)
    result = served.call("policy_check", {"event": "PreToolUse", "tool_name": tool,
                                          "session_id": "fuzz", "tool_use_id": f"toolu_m{n}",
                                          "tool_input": tool_input})
    assert not result.is_error
    out = json.loads(result.content[0].text)  # type: ignore[union-attr]
    assert out["hookSpecificOutput"]["permissionDecision"] == "deny", out
    figures.add(SUITE, "malformed PreToolUse(Agent) through policy_check: denied")


@examples(100)
@given(tool_input=_malformed_inputs(), tool=st.sampled_from(AGENT))
def test_policy_check_denies_malformed_agent_calls_short(served: Served, figures: Figures,
                                                         tool_input: str, tool: str) -> None:
    check_fail_closed(served, tool_input, tool, figures)


@pytest.mark.slow
@examples(2000)
@given(tool_input=_malformed_inputs(), tool=st.sampled_from(AGENT))
def test_policy_check_denies_malformed_agent_calls_long(served: Served, figures: Figures,
                                                        tool_input: str, tool: str) -> None:
    check_fail_closed(served, tool_input, tool, figures)


@pytest.mark.parametrize("depth", [100, 5000, 100_000])
def test_policy_check_denies_deeply_nested_tool_input(served: Served, figures: Figures,
                                                      depth: int) -> None:
    check_fail_closed(served, "[" * depth + "]" * depth, "Agent", figures)
    if depth > 1000:  # beyond what a JSON parser follows: unreadable, so denied
        check_fail_closed(served, '{"description": "d", "prompt": "p", "x": '
                          + "[" * depth + "]" * depth + "}", "Agent", figures)


@pytest.mark.parametrize("until_us", [0, 2**63 - 1, 2**63, 2**70])
def test_metrics_takes_any_end_of_window_without_crashing(served: Served, figures: Figures,
                                                          until_us: int) -> None:
    result = served.call("metrics", {"until_us": until_us, "days": 3650})
    check_result(served, "metrics", {"until_us": until_us}, result, figures)


# -- still up ----------------------------------------------------------------------------------

def test_the_server_still_answers_normal_calls_after_the_fuzzing(served: Served,
                                                                 figures: Figures) -> None:
    saved = served.call("checkpoint_save", {"name": "after-fuzz", "state": {"ok": True}})
    assert not saved.is_error, saved.content
    loaded = served.call("checkpoint_load", {"name": "after-fuzz"})
    assert loaded.structured_content is not None
    assert loaded.structured_content["state"] == {"ok": True}
    verify = served.call("audit_verify", {})
    assert verify.structured_content is not None and verify.structured_content["ok"], verify
    allowed = served.call("policy_check", {
        "event": "PreToolUse", "tool_name": "Agent", "session_id": "after-fuzz",
        "tool_use_id": "toolu_after", "tool_input": json.dumps(pre_agent()["tool_input"])})
    assert "deny" not in allowed.content[0].text  # type: ignore[union-attr]
    conn = sqlite3.connect(served.data / "state.db")
    try:
        errors = conn.execute("SELECT count(*) FROM audit WHERE kind = 'policy.error'")
        figures.put(SUITE, "policy.error rows written while fuzzing", errors.fetchone()[0])
    finally:
        conn.close()
    figures.put(SUITE, "tools fuzzed", len(served.seen))
    figures.note(SUITE, "Tools called: " + ", ".join(f"{k} ({v})"
                                                     for k, v in sorted(served.seen.items())))


def test_the_wave_server_still_answers_after_the_fuzzing(waves_served: Served,
                                                         figures: Figures) -> None:
    plan = {"tasks": [{"id": "one", "prompt": "do one thing"}]}
    result = waves_served.call("spawn_wave", {"plan": plan, "wait_s": 10})
    assert result.structured_content is not None, result.content
    assert result.structured_content["state"] == "completed"
    runs = waves_served.call("list_runs", {"limit": 500})
    assert runs.structured_content is not None
    figures.note(SUITE, "Wave tools called: " + ", ".join(
        f"{k} ({v})" for k, v in sorted(waves_served.seen.items())))
