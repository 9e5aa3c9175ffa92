"""The server's lifespan state, shared by every tool module."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError

from smart_orchestrator.paths import project_dir
from smart_orchestrator.policy import EngineFactory
from smart_orchestrator.store import WitnessedStore


@dataclass
class AppState:
    store: WitnessedStore | None
    store_error: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    _engines: dict[str, EngineFactory] = field(default_factory=dict)
    # Hook calls are decided in parallel worker threads: two first calls of a project must
    # not build two factories (each engine remembers what its sessions were given).
    _engines_lock: threading.Lock = field(default_factory=threading.Lock)

    def require_store(self) -> WitnessedStore:
        if self.store is None:
            raise ToolError(self.store_error or "state store unavailable")
        return self.store

    def engine_factory(self) -> EngineFactory:
        """One per project: each project has its own policy file."""
        project = project_dir()
        with self._engines_lock:
            factory = self._engines.get(str(project))
            if factory is None:
                factory = self._engines[str(project)] = EngineFactory(
                    self.require_store(), source="server", project_dir=project)
        return factory
