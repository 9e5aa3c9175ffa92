"""The server's lifespan state, shared by every tool module."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from smart_orchestrator.audit_guard import AuditGuard
from smart_orchestrator.budget.live_transcripts import LiveTranscripts
from smart_orchestrator.errors import OrchestratorError, StoreError
from smart_orchestrator.paths import project_dir
from smart_orchestrator.policy import EngineFactory
from smart_orchestrator.store import WitnessedStore, open_store

AUDIT_WATCH_S = 2.0


@dataclass
class AppState:
    store: WitnessedStore | None
    store_error: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    _engines: dict[str, EngineFactory] = field(default_factory=dict)
    # Hook calls are decided in parallel worker threads: two first calls of a project must
    # not build two factories (each engine remembers what its sessions were given).
    _engines_lock: threading.Lock = field(default_factory=threading.Lock)
    # Every session's transcript its hooks named lately, whatever its project: a session
    # hears another's main agent waiting out a 429 (`rate gate`, docs/budgets.md).
    transcripts: LiveTranscripts = field(default_factory=LiveTranscripts)

    def require_store(self) -> WitnessedStore:
        if self.store is None:
            # Imported here: the service decides hook calls before the SDK is loaded.
            from mcp.server.mcpserver.exceptions import ToolError

            raise ToolError(self.store_error or "state store unavailable")
        return self.store

    def engine_factory(self) -> EngineFactory:
        """One per project: each project has its own policy file."""
        project = project_dir()
        with self._engines_lock:
            factory = self._engines.get(str(project))
            if factory is None:
                factory = self._engines[str(project)] = EngineFactory(
                    self.require_store(), source="server", project_dir=project,
                    transcripts=self.transcripts)
        return factory


def open_state() -> AppState:
    # A broken store must not stop the server from starting: tools then answer with the
    # one-line reason, which a person sees, instead of a server marked "failed".
    try:
        return AppState(open_store())
    except StoreError as exc:
        print(f"smart-orchestrator: {exc.one_line()}", file=sys.stderr)
        return AppState(None, exc.one_line())


@asynccontextmanager
async def service_state(sdk_loaded: Callable[[], bool]) -> AsyncIterator[AppState]:
    """The per-user service's state, without the MCP SDK (which it loads later): the
    store, the detectors warmed off the loop, the audit watch."""
    state = open_state()
    watch = None
    if state.store is not None:
        asyncio.get_running_loop().run_in_executor(None, warm, state)
        watch = asyncio.get_running_loop().create_task(watch_audit(AuditGuard(state.store)))
    try:
        yield state
    finally:
        if watch is not None:
            watch.cancel()
        if sdk_loaded():  # only the SDK's tools start waves
            from .wave_tools import shutdown_waves

            shutdown_waves(state)
        if state.store is not None:
            state.store.close()


def warm(state: AppState) -> None:
    try:
        if os.environ.get("CLAUDE_CODE_SESSION_ID"):
            state.engine_factory().warm()
        else:
            # The per-user service has no project of its own: each session's engine is
            # built (and its policy pinned) as it connects. Only the detectors warm here.
            from smart_orchestrator.detect.injection import detect_injection
            from smart_orchestrator.detect.secrets import scan_text

            detect_injection("warm-up")
            scan_text("warm-up")
    except Exception as exc:  # a failed warm-up only costs the first call its speed
        print(f"smart-orchestrator: policy warm-up failed: {exc}", file=sys.stderr)


async def watch_audit(guard: AuditGuard) -> None:
    # A database deleted or replaced mid-session is recorded as a gap within seconds,
    # even when nothing else writes. Off the loop: it reads files and takes the store lock.
    while True:
        try:
            await asyncio.to_thread(guard.check)
        except Exception as exc:  # the watch outlives one failed look; the next may succeed
            text = exc.one_line() if isinstance(exc, OrchestratorError) else repr(exc)
            print(f"smart-orchestrator: audit watch: {text}", file=sys.stderr)
        await asyncio.sleep(AUDIT_WATCH_S)
