"""The `orchestrator` MCP server: thin tool adapters over the core.

Tools are plain functions here; the SDK runs sync tools in a worker thread, and the
store serialises its one connection, so no call blocks the event loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from smart_orchestrator import __version__
from smart_orchestrator.audit_check import check_audit
from smart_orchestrator.beacon import ServerBeacon
from smart_orchestrator.checkpoints import Checkpoints
from smart_orchestrator.errors import OrchestratorError
from smart_orchestrator.paths import data_dir
from smart_orchestrator.store.base import CheckpointMeta

from .accept_tools import register_accept_tools
from .context_tools import register_context_tools
from .gate_tools import register_gate_tools
from .metrics_tools import register_metrics_tools
from .models import (
    AuditVerifyResult,
    CheckpointInfo,
    CheckpointList,
    CheckpointLoaded,
    CheckpointSaved,
)
from .policy_tools import register_policy_tools
from .state import AppState, service_state
from .wave_tools import register_wave_tools

CheckpointName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$",
                                      description="checkpoint name")]


@asynccontextmanager
async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
    # The service's own state (store, warmed detectors, audit watch; waves stopped at the
    # end), plus what a server of one session adds: the beacon that tells `status` this
    # session's server is up. The per-user service holds one per connected session.
    async with service_state(lambda: True) as state:
        session_id = os.environ.get("CLAUDE_CODE_SESSION_ID", "")
        beacon = ServerBeacon(data_dir(), session_id)
        heartbeat = None
        if state.store is not None and session_id and beacon.hold():
            heartbeat = asyncio.get_running_loop().create_task(_heartbeat(beacon))
        try:
            yield state
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
            beacon.release()


async def _heartbeat(beacon: ServerBeacon) -> None:
    # Runs on the event loop on purpose: a wedged loop stops the beat, which `status`
    # reports.
    while True:
        beacon.beat()
        await asyncio.sleep(1.0)


def _state(ctx: Context[AppState, Any]) -> AppState:
    return ctx.request_context.lifespan_context


def _info(meta: CheckpointMeta) -> CheckpointInfo:
    return CheckpointInfo(id=meta.id, name=meta.name, created_us=meta.created_us,
                          sha256=meta.sha256, size=meta.size)


def build_server() -> MCPServer[AppState]:
    server: MCPServer[AppState] = MCPServer(
        "orchestrator", version=__version__, lifespan=lifespan,
        instructions="Smart Orchestrator: policy checks, agent waves, checkpoints, audit.")

    @server.tool()
    def checkpoint_save(name: CheckpointName, state: Any,
                        ctx: Context[AppState, Any],
                        keep: Annotated[int, Field(ge=1, le=1000)] = 10) -> CheckpointSaved:
        """Save a named JSON state with its SHA-256; keeps the newest `keep` copies."""
        try:
            meta = Checkpoints(_state(ctx).require_store()).save(name, state, keep=keep)
        except OrchestratorError as exc:
            raise ToolError(exc.one_line()) from exc
        return CheckpointSaved(checkpoint=_info(meta))

    @server.tool()
    def checkpoint_load(name: CheckpointName, ctx: Context[AppState, Any]) -> CheckpointLoaded:
        """Load the newest valid copy of a checkpoint, skipping corrupt newer ones."""
        try:
            loaded = Checkpoints(_state(ctx).require_store()).load(name)
        except OrchestratorError as exc:
            raise ToolError(exc.one_line()) from exc
        return CheckpointLoaded(checkpoint=_info(loaded.meta), state=loaded.state,
                                fell_back=loaded.fell_back, note=loaded.note())

    @server.tool()
    def checkpoint_list(ctx: Context[AppState, Any],
                        name: CheckpointName | None = None) -> CheckpointList:
        """List saved checkpoints, newest first within each name."""
        try:
            metas = Checkpoints(_state(ctx).require_store()).list(name)
        except OrchestratorError as exc:
            raise ToolError(exc.one_line()) from exc
        return CheckpointList(checkpoints=[_info(m) for m in metas])

    @server.tool()
    def audit_verify(ctx: Context[AppState, Any]) -> AuditVerifyResult:
        """Check the whole audit hash chain and its witness outside the database; names the
        first bad row, or what the witness has that the database lacks, and recorded gaps."""
        try:
            store = _state(ctx).require_store()
            store.reconcile_witness()  # a loss found now is recorded before it is reported
            report = check_audit(store)
        except OrchestratorError as exc:
            raise ToolError(exc.one_line()) from exc
        return AuditVerifyResult(**report.as_json())

    register_policy_tools(server)
    register_accept_tools(server)
    register_gate_tools(server)
    register_context_tools(server)
    register_metrics_tools(server)
    register_wave_tools(server)
    return server


def main() -> None:
    build_server().run("stdio")
