"""Policy for the agents `spawn_wave` starts, as in-process hook callbacks.

A wave agent is a top-level Claude Code process, so its own tool calls carry no
`agent_id`; the engine would take them for the user's main agent and leave them alone.
These callbacks mark them as the wave task's, so they get what a subagent's tool calls
get (flags, audit, credential-read denial), and add path isolation: file tools may only
touch the task's allowed folders.

Plain async callables over hook payload dicts: the waves runner wraps them in the SDK's
`HookMatcher`, keeping this module free of the SDK; the hook output is written by the
`render` the adapter passes (`mcp_server/hook_output.py`, the one place for it).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import EngineFactory
from .decision import Decision, deny

__all__ = ["AgentPolicyHooks", "HookCallback"]

HookCallback = Callable[[Mapping[str, Any], str | None, Any], Awaitable[dict[str, Any]]]
Render = Callable[[Decision], dict[str, Any]]
_PATH_TOOLS = {"Read": "file_path", "Write": "file_path", "Edit": "file_path",
               "MultiEdit": "file_path", "NotebookEdit": "notebook_path", "Glob": "path",
               "Grep": "path"}


class AgentPolicyHooks:
    def __init__(self, factory: EngineFactory, *, run_id: str, task_id: str,
                 agent_type: str, allowed_roots: Sequence[str | Path], render: Render) -> None:
        self._factory = factory
        self._render = render
        self.agent_id = f"wave:{run_id}:{task_id}"
        self._agent_type = agent_type
        self._roots = tuple(Path(os.path.realpath(r)) for r in allowed_roots)

    def callbacks(self) -> dict[str, HookCallback]:
        """Event name -> callback, for every event the policy handles."""
        return {event: self for event in ("PreToolUse", "PostToolUse", "PostToolUseFailure",
                                          "SubagentStart", "SubagentStop")}

    async def __call__(self, input_data: Mapping[str, Any], tool_use_id: str | None,
                       context: Any) -> dict[str, Any]:
        import anyio

        payload = dict(input_data)
        payload.setdefault("agent_id", self.agent_id)
        payload.setdefault("agent_type", self._agent_type)
        if tool_use_id:
            payload.setdefault("tool_use_id", tool_use_id)
        outside = self._outside_roots(payload)
        if outside is not None:
            self._factory.get()[0].audit.record(
                "tool.use", agent_id=self.agent_id, agent_type=self._agent_type,
                tool=str(payload.get("tool_name")), flags=["outside-allowed-paths"],
                decision="deny", source=self._factory.source)
            return self._render(deny(f"Smart Orchestrator denied this tool call: {outside} is "
                                     "outside the folders this task may use."))
        # The engine does blocking SQLite work: keep the agent's event loop free.
        return self._render(await anyio.to_thread.run_sync(self._factory.decide, payload))

    def _outside_roots(self, payload: Mapping[str, Any]) -> str | None:
        if payload.get("hook_event_name") != "PreToolUse" or not self._roots:
            return None
        key = _PATH_TOOLS.get(str(payload.get("tool_name")))
        tool_input = payload.get("tool_input")
        if key is None or not isinstance(tool_input, Mapping):
            return None
        raw = tool_input.get(key)
        if not isinstance(raw, str) or not raw:
            return None
        cwd = str(payload.get("cwd") or self._roots[0])
        # realpath resolves symlinks and "..", so neither can step outside a root.
        target = Path(os.path.realpath(os.path.join(cwd, os.path.expanduser(raw))))
        if any(target == root or root in target.parents for root in self._roots):
            return None
        return raw
