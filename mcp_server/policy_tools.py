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
from smart_orchestrator.policy.surfaces import GATED_TOOLS, UNCLAIMED_EVENTS
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
        if "claudecode/toolUseId" in (ctx.request_context.meta or {}):
            raise ToolError("policy_check answers Smart Orchestrator's own hooks; it cannot "
                            "be called as a tool")
        text, refused = decide_hook(ctx.request_context.lifespan_context, args)
        if refused:
            raise ToolError(text)
        return text


def decide_hook(state: AppState, args: dict[str, Any]) -> tuple[str, bool]:
    """The hook output for a hook's `policy_check` arguments, and whether the call was
    refused (it cannot be this session's hook). Used by the tool and by the service's
    direct path for hook calls (`hook_call.py`), so both decide alike."""
    if (problem := _malformed(args)) is not None:
        # Which tool or whose call cannot be told: a tool call is denied.
        return (_deny(problem) if args.get("event") in ("PreToolUse", None) or
                not isinstance(args.get("event"), str) else "{}"), False
    payload = normalize_mcp_args({k: v for k, v in args.items() if k in HOOK_FIELDS})
    event = str(payload.get("hook_event_name") or "")
    if (forged := _other_session(str(payload.get("session_id") or ""))) is not None:
        return forged, True
    try:
        store = state.require_store()
        factory = state.engine_factory()
    except Exception as exc:  # no store, no decision: subagent calls fail closed
        return _closed(payload, str(exc)), False
    if event in UNCLAIMED_EVENTS:
        return json.dumps(factory.decide(payload)), False
    key = claim_key(event, str(payload.get("session_id") or ""),
                    str(payload.get("tool_use_id") or ""), str(payload.get("agent_id") or ""),
                    payload)
    try:
        settled = decide_once(store, key, process_owner("server"),
                              lambda: factory.decide(payload),
                              free_text=lambda: factory.get()[0].outputs.free_text(payload))
    except Undecided as exc:
        return _closed(payload, str(exc)), False
    return json.dumps(settled.answer()), False


def _other_session(session_id: str) -> str | None:
    """Why this call cannot be this connection's hook, or None. The tool is listed to the
    model like every tool of the server; called by the model it could forge events (a
    SessionEnd releasing the session's slots, a PostToolUse closing a breaker). Claude Code
    marks a model's tool call with the tool-use id in `_meta` (refused before this); an
    `mcp_tool` hook's call carries none. A call naming another session than the
    connection's is not this session's hook either."""
    bound = bound_session()
    if bound is not None and bound.session_id and session_id and session_id != bound.session_id:
        return "policy_check: this connection belongs to another session"
    return None


def _is_agent_call(payload: dict[str, Any]) -> bool:
    return payload.get("hook_event_name") == "PreToolUse" and \
        payload.get("tool_name") in GATED_TOOLS


def _is_subagent_tool_call(payload: dict[str, Any]) -> bool:
    return payload.get("hook_event_name") == "PreToolUse" and bool(payload.get("agent_id"))


# The tool's parameters: what the hooks in hooks/hooks.json pass, each a string.
HOOK_FIELDS = ("event", "session_id", "tool_use_id", "tool_name", "tool_input", "tool_response",
               "agent_id", "agent_type", "duration_ms", "last_assistant_message",
               "stop_hook_active", "error", "trigger", "prompt", "transcript_path",
               "background_tasks")


def _malformed(args: dict[str, Any]) -> str | None:
    bad = sorted(k for k in HOOK_FIELDS if k in args and not isinstance(args[k], str))
    return f"malformed hook input: {', '.join(bad)} must be strings" if bad else None


def fail_closed(args: dict[str, Any], reason: str) -> str:
    """The answer when no decision could be made: a denial for calls that start or feed
    agents, and for a subagent's tool calls; nothing for the rest."""
    picked = {k: v for k, v in args.items() if k in HOOK_FIELDS and isinstance(v, str)}
    return _closed(normalize_mcp_args(picked), reason)


def _closed(payload: dict[str, Any], reason: str) -> str:
    if _is_agent_call(payload) or _is_subagent_tool_call(payload):
        return _deny(reason)
    return "{}"


def _deny(reason: str) -> str:
    out = json.loads(json.dumps(_FAIL_CLOSED))
    out["hookSpecificOutput"]["permissionDecisionReason"] = \
        out["hookSpecificOutput"]["permissionDecisionReason"].format(reason=reason)
    return json.dumps(out)
