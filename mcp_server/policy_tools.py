"""`policy_check`: the hook decision, answered by the warm server for `mcp_tool` hooks."""

from __future__ import annotations

import json
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from smart_orchestrator.policy import normalize_mcp_args
from smart_orchestrator.policy.claims import (
    Undecided,
    claim_key,
    decide_once,
    process_owner,
)
from smart_orchestrator.policy.surfaces import GATED_TOOLS, POST_TOOLS, UNCLAIMED_EVENTS
from smart_orchestrator.session import bound as bound_session

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
                     stop_hook_active: str = "", error: str = "", trigger: str = "",
                     prompt: str = "", transcript_path: str = "",
                     background_tasks: str = "") -> str:
        """Decide a Claude Code hook event (called by the plugin's mcp_tool hooks).

        Returns hook output JSON: `{}` for no decision, or a deny/block with the reason.
        """
        args = dict(locals())
        args.pop("ctx")
        payload = normalize_mcp_args(args)
        if (forged := _not_from_a_hook(ctx, session_id)) is not None:
            raise ToolError(forged)
        state = ctx.request_context.lifespan_context
        try:
            store = state.require_store()
            factory = state.engine_factory()
        except Exception as exc:  # no store, no decision: subagent calls fail closed
            return _closed(payload, str(exc))
        if event in UNCLAIMED_EVENTS or (event == "PostToolUse" and
                                         tool_name not in GATED_TOOLS | POST_TOOLS):
            # A tool result that is not an agent's: redaction recomputed on a redelivery,
            # no claim row.
            return json.dumps(factory.decide(payload))
        key = claim_key(event, session_id, tool_use_id, agent_id, payload)
        try:
            settled = decide_once(store, key, process_owner("server"),
                                  lambda: factory.decide(payload),
                                  free_text=lambda: factory.get()[0].outputs.free_text(payload))
        except Undecided as exc:
            return _closed(payload, str(exc))
        return json.dumps(settled.answer())


def _not_from_a_hook(ctx: Context[AppState, Any], session_id: str) -> str | None:
    """Why this call cannot be a hook's, or None. The tool is listed to the model like every
    tool of the server; called by the model it could forge events (a SessionEnd releasing
    the session's slots, a PostToolUse closing a breaker). Claude Code marks a model's tool
    call with the tool-use id in `_meta`; an `mcp_tool` hook's call carries none. A call
    naming another session than the connection's is not this session's hook either."""
    meta = ctx.request_context.meta or {}
    if "claudecode/toolUseId" in meta:
        return ("policy_check answers Smart Orchestrator's own hooks; it cannot be called "
                "as a tool")
    bound = bound_session()
    if bound is not None and bound.session_id and session_id and session_id != bound.session_id:
        return "policy_check: this connection belongs to another session"
    return None


def _is_agent_call(payload: dict[str, Any]) -> bool:
    return payload.get("hook_event_name") == "PreToolUse" and \
        payload.get("tool_name") in GATED_TOOLS


def _is_subagent_tool_call(payload: dict[str, Any]) -> bool:
    return payload.get("hook_event_name") == "PreToolUse" and bool(payload.get("agent_id"))


def _closed(payload: dict[str, Any], reason: str) -> str:
    if _is_agent_call(payload) or _is_subagent_tool_call(payload):
        out = json.loads(json.dumps(_FAIL_CLOSED))
        out["hookSpecificOutput"]["permissionDecisionReason"] = \
            out["hookSpecificOutput"]["permissionDecisionReason"].format(reason=reason)
        return json.dumps(out)
    return "{}"
