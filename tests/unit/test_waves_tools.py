from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer

from mcp_server.server import lifespan
from mcp_server.state import AppState
from mcp_server.wave_tools import register_wave_tools, shutdown_waves
from smart_orchestrator.store import SqliteStore
from smart_orchestrator.waves import WaveConfig, WaveService
from smart_orchestrator.waves.admission import MIB, AdmissionConfig
from smart_orchestrator.waves.recovery import RetryPolicy
from tests.wave_fakes import FixedMetrics, ScriptedRunner, Step

TOOLS = ("spawn_wave", "wave_status", "cancel_wave", "resume_wave", "list_runs")


class Fixture:
    def __init__(self, runner: ScriptedRunner) -> None:
        self.runner = runner
        self.services: list[WaveService] = []
        self.states: list[AppState] = []

    def make(self, store: SqliteStore) -> WaveService:
        config = WaveConfig(admission=AdmissionConfig(max_agents=4, reserve_bytes=0,
                                                      memory_budget_bytes=4096 * MIB),
                            retry=RetryPolicy(initial_s=0.0), tick_s=0.01)
        service = WaveService(SqliteStore(store.location), self.runner, config,
                              metrics=FixedMetrics())
        self.services.append(service)
        return service

    def server(self) -> MCPServer[AppState]:
        server: MCPServer[AppState] = MCPServer("waves-test", lifespan=lifespan)
        register_wave_tools(server, make_service=self.make)
        return server


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
async def waves(db_path: Path, gate: threading.Event) -> AsyncIterator[Fixture]:
    fx = Fixture(ScriptedRunner({"slow": Step(gate=gate)}))
    yield fx
    for service in fx.services:
        service.close()


def _plan(*tasks: dict[str, Any]) -> dict[str, Any]:
    return {"tasks": list(tasks)}


async def test_tools_are_listed_with_output_schemas(waves: Fixture) -> None:
    async with Client(waves.server()) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    for name in TOOLS:
        assert tools[name].output_schema is not None, name
    plan_schema = tools["spawn_wave"].input_schema["properties"]["plan"]
    assert plan_schema  # the plan model is the argument's schema


async def test_spawn_returns_the_run_id_at_once_then_status_follows(
        waves: Fixture, gate: threading.Event, tmp_path: Path) -> None:
    async with Client(waves.server()) as client:
        started = await client.call_tool("spawn_wave", {
            "plan": _plan({"id": "slow", "prompt": "wait"},
                          {"id": "after", "prompt": "then", "depends_on": ["slow"]}),
            "cwd": str(tmp_path)})
        assert not started.is_error, started.content
        body = started.structured_content
        assert body is not None and body["state"] == "running"
        run_id = body["run_id"]
        gate.set()
        waves.services[0].wait_until_done(run_id, 60)
        status = await client.call_tool("wave_status", {"run_id": run_id})
        listed = await client.call_tool("list_runs", {})
    assert status.structured_content is not None
    assert status.structured_content["state"] == "completed"
    assert [t["state"] for t in status.structured_content["tasks"]] == ["succeeded"] * 2
    assert listed.structured_content is not None
    assert listed.structured_content["runs"][0]["run_id"] == run_id


async def test_waiting_spawn_reports_progress_naming_the_run(waves: Fixture,
                                                             tmp_path: Path) -> None:
    reports: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reports.append((progress, total, message))

    async with Client(waves.server()) as client:
        result = await client.call_tool("spawn_wave", {
            "plan": _plan({"id": "a", "prompt": "x"}, {"id": "b", "prompt": "y"}),
            "cwd": str(tmp_path), "wait_s": 30}, progress_callback=on_progress)
    assert result.structured_content is not None
    run_id = result.structured_content["run_id"]
    assert result.structured_content["state"] == "completed"
    assert reports[0][1] == 3, "two tasks and the wave's end"
    assert reports[0][2] is not None and reports[0][2].startswith(run_id)
    assert reports[-1][0] == 3 and "completed, 2/2 tasks finished" in str(reports[-1][2])
    progress = [r[0] for r in reports]
    assert progress == sorted(set(progress))


@pytest.mark.parametrize(("plan", "match"), [
    (_plan({"id": "a", "prompt": "x", "depends_on": ["b"]},
           {"id": "b", "prompt": "y", "depends_on": ["a"]}), "dependency cycle: "),
    (_plan({"id": "a", "prompt": "x", "depends_on": ["ghost"]}), "unknown task(s) 'ghost'"),
])
async def test_invalid_plans_are_refused_with_the_reason(waves: Fixture, plan: dict[str, Any],
                                                         match: str) -> None:
    async with Client(waves.server()) as client:
        result = await client.call_tool("spawn_wave", {"plan": plan})
    assert result.is_error and match in result.content[0].text  # type: ignore[union-attr]
    assert waves.runner.calls == []


async def test_unknown_run_and_bad_cwd_are_tool_errors(waves: Fixture) -> None:
    async with Client(waves.server()) as client:
        status = await client.call_tool("wave_status", {"run_id": "w-nope"})
        bad_cwd = await client.call_tool("spawn_wave", {
            "plan": _plan({"id": "a", "prompt": "x"}), "cwd": "relative/dir"})
    assert status.is_error and "no wave run 'w-nope'" in status.content[0].text  # type: ignore[union-attr]
    assert bad_cwd.is_error and "absolute directory" in bad_cwd.content[0].text  # type: ignore[union-attr]


async def test_cancel_wave_stops_it_and_says_why(waves: Fixture, tmp_path: Path) -> None:
    async with Client(waves.server()) as client:
        started = await client.call_tool("spawn_wave", {
            "plan": _plan({"id": "slow", "prompt": "wait"}), "cwd": str(tmp_path)})
        assert started.structured_content is not None
        run_id = started.structured_content["run_id"]
        assert waves.runner.wait_started("slow")
        cancelled = await client.call_tool("cancel_wave", {"run_id": run_id,
                                                           "reason": "not needed"})
        resumed = await client.call_tool("resume_wave", {"run_id": run_id})
    assert cancelled.structured_content is not None
    assert cancelled.structured_content["state"] == "cancelled"
    assert cancelled.structured_content["reason"] == "not needed"
    assert resumed.is_error and "already ended" in resumed.content[0].text  # type: ignore[union-attr]


async def test_shutdown_leaves_a_running_wave_resumable(waves: Fixture, tmp_path: Path) -> None:
    server = waves.server()
    async with Client(server) as client:
        started = await client.call_tool("spawn_wave", {
            "plan": _plan({"id": "slow", "prompt": "wait"}), "cwd": str(tmp_path)})
        assert started.structured_content is not None
        run_id = started.structured_content["run_id"]
        assert waves.runner.wait_started("slow")
        waves.services[0].close()
        status = await client.call_tool("wave_status", {"run_id": run_id})
    assert status.structured_content is not None
    assert status.structured_content["state"] == "interrupted"
    state = AppState(None)
    state.extras["waves"] = waves.services[0]
    shutdown_waves(state)
    assert "waves" not in state.extras


async def test_the_orchestrator_server_serves_the_wave_tools(db_path: Path) -> None:
    from mcp_server.server import build_server

    async with Client(build_server()) as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert set(TOOLS) <= names
