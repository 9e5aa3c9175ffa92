"""`policy_check`: the hook decision, answered by the warm server for `mcp_tool` hooks."""

from __future__ import annotations

import json
from typing import Any

from mcp.server.mcpserver import Context, MCPServer

from smart_orchestrator.paths import data_dir
from smart_orchestrator.policy import normalize_mcp_args
from smart_orchestrator.policy.claims import (
    Undecided,
    claim_key,
    decide_once,
    process_owner,
    publish_decision,
)

from .state import AppState

_FAIL_CLOSED = {"hookSpecificOutput": {
    "hookEventName": "PreToolUse", "permissionDecision": "deny",
    "permissionDecisionReason": "Smart Orchestrator cannot check subagent calls: {reason}"}}


def register_policy_tools(server: MCPServer[AppState]) -> None:
    @server.tool(structured_output=False)
    def policy_check(ctx: Context[AppState, Any], event: str = "", session_id: str = "",
                     tool_use_id: str = "", tool_name: str = "", tool_input: str = "",
                     tool_response: str = "", agent_id: str = "", agent_type: str = "",
                     duration_ms: str = "", last_assistant_message: str = "",
                     stop_hook_active: str = "", error: str = "", trigger: str = "") -> str:
        """Decide a Claude Code hook event (called by the plugin's mcp_tool hooks).

        Returns hook output JSON: `{}` for no decision, or a deny/block with the reason.
        """
        args = dict(locals())
        args.pop("ctx")
        payload = normalize_mcp_args(args)
        state = ctx.request_context.lifespan_context
        try:
            store = state.require_store()
            factory = state.engine_factory()
        except Exception as exc:  # no store, no decision: subagent calls fail closed
            return _closed(payload, str(exc))
        key = claim_key(event, session_id, tool_use_id, agent_id)
        try:
            settled = decide_once(store, key, process_owner("server"),
                                  lambda: factory.decide(payload))
        except Undecided as exc:
            return _closed(payload, str(exc))
        answer = settled.answer()
        if settled.here and (_is_agent_call(payload) or _is_subagent_tool_call(payload)):
            # For the command hook's shell fast path, which returns it without Python.
            publish_decision(data_dir(), session_id, tool_use_id, settled.echo())
        return json.dumps(answer)


def _is_agent_call(payload: dict[str, Any]) -> bool:
    return payload.get("hook_event_name") == "PreToolUse" and \
        payload.get("tool_name") in ("Agent", "Task")


def _is_subagent_tool_call(payload: dict[str, Any]) -> bool:
    return payload.get("hook_event_name") == "PreToolUse" and bool(payload.get("agent_id"))


def _closed(payload: dict[str, Any], reason: str) -> str:
    if _is_agent_call(payload) or _is_subagent_tool_call(payload):
        out = json.loads(json.dumps(_FAIL_CLOSED))
        out["hookSpecificOutput"]["permissionDecisionReason"] = \
            out["hookSpecificOutput"]["permissionDecisionReason"].format(reason=reason)
        return json.dumps(out)
    return "{}"
