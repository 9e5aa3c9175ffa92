"""Wave tools: `spawn_wave`, `wave_status`, `cancel_wave`, `resume_wave`, `list_runs`.

Thin adapters over `smart_orchestrator.waves.WaveService`, which runs waves on its own
loop thread. The tools are async so a call can stay open and report progress; the
service's blocking calls go to worker threads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from smart_orchestrator.errors import OrchestratorError
from smart_orchestrator.paths import project_dir
from smart_orchestrator.store import Store, WitnessedStore
from smart_orchestrator.waves import (
    AgentRequest,
    RunList,
    WaveConfig,
    WavePlan,
    WaveService,
    WaveSnapshot,
)

from .state import AppState

if TYPE_CHECKING:
    from smart_orchestrator.waves.runner import HookCallback, HooksFactory

__all__ = ["register_wave_tools", "shutdown_waves", "wave_policy_hooks"]

_KEY = "waves"
RunId = Annotated[str, Field(pattern=r"^w[0-9A-Za-z-]{1,80}$", description="a wave's run_id")]
WaitS = Annotated[float, Field(ge=0, le=3600, description=(
    "keep the call open up to this many seconds (or until the wave ends), sending progress "
    "notifications; the wave runs on in the background either way"))]
RunState = Literal["running", "cancelling", "compensating", "completed", "failed", "partial",
                   "cancelled"]
ServiceFactory = Callable[[WitnessedStore], WaveService]


def wave_policy_hooks(store: Store) -> HooksFactory:
    """The policy core on every wave agent: each tool call it makes is checked and audited
    like a subagent's, and file tools stay inside the wave's working directory."""
    from smart_orchestrator.policy import EngineFactory
    from smart_orchestrator.policy.agent_hooks import AgentPolicyHooks

    from .hook_output import hook_output

    factory = EngineFactory(store, source="wave")

    def make(request: AgentRequest) -> Mapping[str, HookCallback]:
        return AgentPolicyHooks(factory, run_id=request.run_id, task_id=request.task_id,
                                agent_type=request.agent.name,
                                allowed_roots=[request.cwd], render=hook_output).callbacks()

    return make


def default_service(store: WitnessedStore) -> WaveService:
    from smart_orchestrator.waves.runner import SdkAgentRunner

    # Its own connection: waves write from their loop thread while tools read.
    waves_store = store.reopen()
    runner = SdkAgentRunner(make_hooks=wave_policy_hooks(waves_store))
    return WaveService(waves_store, runner, WaveConfig.from_env())


def shutdown_waves(state: AppState) -> None:
    """Stop this server's agents; unfinished waves stay resumable. Safe to call twice."""
    service = state.extras.pop(_KEY, None)
    if isinstance(service, WaveService):
        service.close()


def waves_running(state: AppState) -> bool:
    """Whether this server still drives a wave (the service then does not exit idle)."""
    service = state.extras.get(_KEY)
    return isinstance(service, WaveService) and service.busy()


def _workdir(cwd: str | None) -> str:
    path = Path(cwd) if cwd else project_dir()
    if not path.is_absolute() or not path.is_dir():
        raise ToolError(f"cwd {cwd!r} is not an existing absolute directory")
    return str(path)


async def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))
    except OrchestratorError as exc:
        raise ToolError(exc.one_line()) from exc


def _progress_line(snap: WaveSnapshot) -> str:
    running = [t.id for t in snap.tasks if t.state in ("running", "retrying")]
    done = sum(1 for t in snap.tasks if t.finished_us is not None)
    line = f"{snap.run_id}: {snap.state}, {done}/{len(snap.tasks)} tasks finished"
    return line + (f"; running: {', '.join(running)}" if running else "")


async def _follow(ctx: Context[AppState, Any], service: WaveService, run_id: str,
                  wait_s: float) -> WaveSnapshot:
    """Report progress (the first report names the run) until the wave ends or time is up."""
    snap: WaveSnapshot = await _call(service.status, run_id)
    deadline = anyio.current_time() + wait_s
    reported = -1
    while True:
        # One unit per finished task and one for the wave's own end: it only grows.
        progress = sum(1 for t in snap.tasks if t.finished_us is not None) + int(snap.done)
        if progress > reported:
            reported = progress
            await ctx.report_progress(progress, len(snap.tasks) + 1, _progress_line(snap))
        left = deadline - anyio.current_time()
        if snap.done or left <= 0:
            return snap
        await _call(service.wait_for_change, run_id, snap.version, min(left, 5.0))
        snap = await _call(service.status, run_id)


def register_wave_tools(server: MCPServer[AppState],
                        make_service: ServiceFactory = default_service) -> None:
    def service_of(ctx: Context[AppState, Any]) -> WaveService:
        state = ctx.request_context.lifespan_context
        service = state.extras.get(_KEY)
        if not isinstance(service, WaveService):
            service = make_service(state.require_store())
            state.extras[_KEY] = service
        return service

    @server.tool()
    async def spawn_wave(plan: WavePlan, ctx: Context[AppState, Any],
                         cwd: str | None = None,
                         max_concurrency: Annotated[int | None, Field(ge=1, le=64)] = None,
                         wait_s: WaitS = 0.0, preview: bool = False) -> WaveSnapshot:
        """Run a plan of dependent tasks as waves of agents, in the background.

        Validates the plan (unknown dependencies and cycles are refused), returns the
        `run_id` at once and, with `wait_s`, reports progress while the call is open.
        Follow with `wave_status`; stop with `cancel_wave`. With `preview`, runs nothing:
        `preview` holds the expected tokens and dollars and each budget cap's share;
        when its `confirm` is true, ask the user before running the plan.
        """
        service = service_of(ctx)
        if preview:
            previewed: WaveSnapshot = await _call(service.preview, plan)
            return previewed
        run_id = await _call(service.spawn, plan, cwd=_workdir(cwd),
                             max_concurrency=max_concurrency)
        return await _follow(ctx, service, run_id, wait_s)

    @server.tool()
    async def wave_status(run_id: RunId, ctx: Context[AppState, Any],
                          output_chars: Annotated[int, Field(ge=0, le=200_000)] = 2000
                          ) -> WaveSnapshot:
        """Every task's state, attempts, timing, tokens, cost and error; the wave's state."""
        snap: WaveSnapshot = await _call(service_of(ctx).status, run_id,
                                         output_chars=output_chars)
        return snap

    @server.tool()
    async def cancel_wave(run_id: RunId, ctx: Context[AppState, Any],
                          reason: Annotated[str, Field(min_length=1, max_length=500)] =
                          "cancelled by request",
                          compensate: bool = False) -> WaveSnapshot:
        """Stop a wave: kills its running agents' process trees and starts nothing new.

        With `compensate`, completed tasks are undone afterwards, newest first.
        """
        snap: WaveSnapshot = await _call(service_of(ctx).cancel, run_id, reason=reason,
                                         compensate=compensate)
        return snap

    @server.tool()
    async def resume_wave(run_id: RunId, ctx: Context[AppState, Any],
                          wait_s: WaitS = 0.0) -> WaveSnapshot:
        """Continue an interrupted wave from the store: finished tasks are kept, tasks
        that were running when the server stopped run again."""
        service = service_of(ctx)
        await _call(service.resume, run_id)
        return await _follow(ctx, service, run_id, wait_s)

    @server.tool()
    async def list_runs(ctx: Context[AppState, Any],
                        limit: Annotated[int, Field(ge=1, le=500)] = 20,
                        state: RunState | None = None) -> RunList:
        """Known waves, newest first, with their task counts by state."""
        runs = await _call(service_of(ctx).list_runs, limit=limit, state=state)
        return RunList(runs=runs)
