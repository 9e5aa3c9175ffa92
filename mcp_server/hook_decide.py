"""A hook's `policy_check` call decided: the one path from Claude Code's substituted hook
arguments to the hook output, for the MCP tool and the service's direct path alike.

Free of the MCP SDK, so the service answers hook calls while the SDK is still importing
(about two seconds of a cold start).
"""

from __future__ import annotations

import json
from typing import Any

from smart_orchestrator.policy import normalize_mcp_args
from smart_orchestrator.policy.claims import Undecided, claim_key, decide_once
from smart_orchestrator.policy.surfaces import GATED_TOOLS, POST_TOOLS, UNCLAIMED_EVENTS
from smart_orchestrator.session import bound as bound_session

from .hook_call import EVENT_ARGS
from .hook_call import fail_closed as _hook_call_fail_closed
from .hook_output import hook_output
from .state import AppState

__all__ = ["HOOK_FIELDS", "decide_hook", "fail_closed"]


def decide_hook(state: AppState, args: dict[str, Any]) -> tuple[str, bool]:
    """The hook output for a hook's `policy_check` arguments, and whether the call was
    refused (it cannot be this session's hook). Used by the tool and by the service's
    direct path for hook calls (`hook_call.py`), so both decide alike."""
    args = {k: v for k, v in args.items() if k in HOOK_FIELDS}
    if (problem := _malformed(args)) is not None:
        return _malformed_answer(args, problem), False
    # Typed at the edge: each event is read with the fields its hook passes (HookArgs),
    # so no event carries another's fields into the checks.
    fields = EVENT_ARGS.get(str(args.get("event")))
    if fields is not None:
        args = {k: v for k, v in args.items() if k in fields}
    payload = normalize_mcp_args(args)
    event = str(payload.get("hook_event_name") or "")
    if (forged := _other_session(str(payload.get("session_id") or ""))) is not None:
        return forged, True
    try:
        store = state.require_store()
        factory = state.engine_factory()
    except Exception as exc:  # no store, no decision: subagent calls fail closed
        return fail_closed(args, str(exc)), False
    if event in UNCLAIMED_EVENTS or (event == "PostToolUse" and str(
            payload.get("tool_name") or "") not in GATED_TOOLS | POST_TOOLS):
        # A tool result that is not an agent's: redaction recomputed on a redelivery,
        # no claim row.
        return json.dumps(hook_output(factory.decide(payload))), False
    key = claim_key(event, str(payload.get("session_id") or ""),
                    str(payload.get("tool_use_id") or ""), str(payload.get("agent_id") or ""),
                    payload)
    try:
        settled = decide_once(store, key, lambda: hook_output(factory.decide(payload)),
                              free_text=lambda: factory.get()[0].outputs.free_text(payload))
    except Undecided as exc:
        return fail_closed(args, str(exc)), False
    return json.dumps(settled.decision), False


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


# The tool's parameters: what the hooks in hooks/hooks.json pass, each a string.
HOOK_FIELDS = ("event", "session_id", "tool_use_id", "tool_name", "tool_input", "tool_response",
               "agent_id", "agent_type", "duration_ms", "last_assistant_message",
               "stop_hook_active", "error", "trigger", "prompt", "transcript_path",
               "background_tasks")


def _malformed(args: dict[str, Any]) -> str | None:
    """Why these arguments are not what Claude Code's substitution makes (text), or None."""
    bad = sorted(k for k, v in args.items() if not _is_text(v))
    return f"malformed hook input: {', '.join(bad)} must be text" if bad else None


def _is_text(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        value.encode()  # a lone surrogate is no text Claude Code sends
    except UnicodeEncodeError:
        return False
    return True


def _malformed_answer(args: dict[str, Any], problem: str) -> str:
    """Fails closed on what cannot be told: a tool call whose tool or caller is unreadable
    is denied, an agent output whose tool is unreadable withheld."""
    event = args.get("event")
    if not _is_text(event) or event == "PreToolUse":
        return json.dumps(_hook_call_fail_closed({"event": "PreToolUse", "tool_name": "Agent"},
                                                 problem))
    clean = {k: v for k, v in args.items() if _is_text(v)}
    if "tool_name" in args and not _is_text(args["tool_name"]):
        clean["tool_name"] = "Agent"
    return fail_closed(clean, problem)


def fail_closed(args: dict[str, Any], reason: str) -> str:
    """The answer when no decision could be made (one place for it, shared with the shim):
    what starts or feeds an agent is denied or withheld, the rest passes."""
    return json.dumps(_hook_call_fail_closed(
        args, f"Smart Orchestrator cannot check subagent calls: {reason}"))
