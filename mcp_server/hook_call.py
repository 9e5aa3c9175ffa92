"""The JSON-RPC framing of a hook's `policy_check` call, read and answered by the service
without the MCP SDK's request machinery.

Every hook event of every session is one such call, and in a burst (six parallel Agent
calls are 24 hook calls) the SDK's per-request work (validating the message and the
arguments with pydantic, routing, building the result models) ran on the service's one
event loop ahead of the decisions and cost more than the decisions themselves. A hook's
call has one fixed shape, so the service recognises it from the raw line and answers it
directly; anything else (a model calling the tool, another protocol version, another
tool) goes through the SDK as before. Standard library only.
"""

from __future__ import annotations

import json
from typing import Any, Literal, NamedTuple, TypedDict, get_type_hints

from smart_orchestrator import __version__
from smart_orchestrator.policy.decision import Decision, block, deny, passed

from .hook_output import hook_output

__all__ = ["AGENT_TOOLS", "EVENT_ARGS", "SERVER_INFO", "HookArgs", "HookCall", "answered_first",
           "fail_closed", "guarded", "parse_hook_call", "tool_result"]

PROTOCOL_VERSION = "2026-07-28"
# What the SDK stamps on the server's results (a test compares the two).
SERVER_INFO = {"name": "orchestrator", "version": __version__}
_VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
# Claude Code marks a model's tool call with its tool-use id; a hook's call carries none.
MODEL_CALL_KEY = "claudecode/toolUseId"


# Tools that start, resume, message or stop agents.
AGENT_TOOLS = frozenset({"Agent", "Task", "SendMessage", "Workflow", "TaskStop", "Skill"})


# What each hook in hooks/hooks.json passes to `policy_check`, per event: Claude Code's
# `${...}` substitution of the hook payload, so every value is text (objects arrive as JSON,
# a missing field as ""). A hook passes only the fields its event's checks read, because
# Claude Code's work per call grows with the number of arguments; the test that compares
# these with hooks.json keeps the two in step.
class _Tool(TypedDict):
    session_id: str
    tool_use_id: str
    tool_name: str
    tool_input: str
    agent_id: str
    agent_type: str


class PreToolUseArgs(_Tool):
    event: Literal["PreToolUse"]
    transcript_path: str  # passed by the agent tools' hook: the fork check reads it


class PostToolUseArgs(_Tool):
    event: Literal["PostToolUse"]
    tool_response: str
    duration_ms: str
    # The main agent's results are redacted of credentials in the session's subagent
    # transcripts, which lie beside this one.
    transcript_path: str


class PostToolUseFailureArgs(_Tool):
    event: Literal["PostToolUseFailure"]
    tool_response: str
    duration_ms: str
    error: str


class SubagentStartArgs(TypedDict):
    event: Literal["SubagentStart"]
    session_id: str
    agent_id: str
    agent_type: str


class SubagentStopArgs(TypedDict):
    event: Literal["SubagentStop"]
    session_id: str
    agent_id: str
    agent_type: str
    last_assistant_message: str
    stop_hook_active: str
    # The agent's transcript lies beside the session's: its usage settles the ledger.
    transcript_path: str


class UserPromptSubmitArgs(TypedDict):
    event: Literal["UserPromptSubmit"]
    session_id: str
    prompt: str


class StopArgs(TypedDict):
    event: Literal["Stop"]
    session_id: str
    background_tasks: str


class StopFailureArgs(TypedDict):
    """An agent (the main one, or a subagent: `agent_id`) that Claude Code gave up on
    after its own retries; a rate limit or overload closes the shared rate gate."""

    event: Literal["StopFailure"]
    session_id: str
    agent_id: str
    agent_type: str
    error: str  # the kind: rate_limit, overloaded, server_error, ...
    last_assistant_message: str  # the error as shown: "API Error: ... (429) ..."
    transcript_path: str  # the main agent's retries, with the delays chosen, are in it


class SessionEndArgs(TypedDict):
    event: Literal["SessionEnd"]
    session_id: str
    transcript_path: str  # the session's agents' transcripts settle what they used


class PreCompactArgs(TypedDict):
    event: Literal["PreCompact"]
    session_id: str
    agent_id: str
    trigger: str


HookArgs = (PreToolUseArgs | PostToolUseArgs | PostToolUseFailureArgs | SubagentStartArgs |
            SubagentStopArgs | UserPromptSubmitArgs | StopArgs | StopFailureArgs |
            SessionEndArgs | PreCompactArgs)
# Event name -> the fields its hook passes.
EVENT_ARGS: dict[str, frozenset[str]] = {
    get_type_hints(t)["event"].__args__[0]: frozenset(get_type_hints(t))
    for t in (PreToolUseArgs, PostToolUseArgs, PostToolUseFailureArgs, SubagentStartArgs,
              SubagentStopArgs, UserPromptSubmitArgs, StopArgs, StopFailureArgs,
              SessionEndArgs, PreCompactArgs)}


class HookCall(NamedTuple):
    msg_id: int | str
    arguments: dict[str, Any]


def parse_hook_call(line: bytes) -> HookCall | None:
    """The call when `line` is a hook's `policy_check` call in the modern protocol, else
    None (the SDK then handles the line, and answers any error in it)."""
    if b'"policy_check"' not in line:  # most lines of a session are not hook calls
        return None
    try:
        msg = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(msg, dict) or msg.get("method") != "tools/call" or \
            msg.get("jsonrpc") != "2.0":
        return None
    msg_id = msg.get("id")
    params = msg.get("params")
    if isinstance(msg_id, bool) or not isinstance(msg_id, (int, str)) or \
            not isinstance(params, dict) or params.get("name") != "policy_check":
        return None
    meta, args = params.get("_meta"), params.get("arguments", {})
    if not isinstance(meta, dict) or meta.get(_VERSION_KEY) != PROTOCOL_VERSION or \
            MODEL_CALL_KEY in meta or not isinstance(args, dict):
        return None
    return HookCall(msg_id, args)


def tool_result(msg_id: int | str, text: str, server_info: dict[str, str], *,
                error: bool = False) -> bytes:
    """The `tools/call` result line, shaped as the SDK shapes it for this protocol."""
    return json.dumps({"jsonrpc": "2.0", "id": msg_id, "result": {
        "content": [{"type": "text", "text": text}], "isError": error,
        "resultType": "complete",
        "_meta": {"io.modelcontextprotocol/serverInfo": server_info}}},
        separators=(",", ":")).encode() + b"\n"


# Events whose hook output is always empty (the engine records them and decides nothing,
# and Claude Code lets nothing wait on them but the agent that starts): the service
# answers them at once and records them after, ahead of the connection's next call.
_ANSWERED_FIRST = frozenset({"SubagentStart", "PreCompact"})


def answered_first(args: dict[str, Any]) -> bool:
    event = args.get("event")
    return isinstance(event, str) and event in _ANSWERED_FIRST


def guarded(args: dict[str, Any]) -> bool:
    """A call that must be decided: one that starts or messages agents, or any tool call a
    subagent makes."""
    return str(args.get("tool_name") or "") in AGENT_TOOLS or bool(args.get("agent_id"))


def fail_closed(args: dict[str, Any], reason: str) -> dict[str, Any]:
    """The hook output when nothing could decide the event (`reason` says why, in one
    line): what starts or feeds an agent is denied or withheld, the rest passes. The shim
    answers with it while the service is away, the service when a call cannot be read."""
    return hook_output(fail_closed_decision(args, reason))


def fail_closed_decision(args: dict[str, Any], reason: str) -> Decision:
    event = args.get("event")
    if not isinstance(event, str) or (event == "PreToolUse" and guarded(args)):
        return deny(reason)  # an event that cannot be named may be an Agent call
    if event in ("PostToolUse", "PostToolUseFailure") and \
            str(args.get("tool_name") or "") in AGENT_TOOLS:
        return block(event, "Smart Orchestrator could not scan this subagent's output for "
                     "credentials: " + reason, updated_output=_withheld(args.get("tool_response")))
    if event == "UserPromptSubmit" and "<task-notification>" in str(args.get("prompt")):
        # A background agent's answer, which nothing can scan now: kept out.
        return block(event, "Smart Orchestrator could not scan a background agent's answer "
                     "for credentials: " + reason, suppress_prompt=True)
    return passed(event)


def _withheld(raw: Any) -> dict[str, Any]:
    """The Agent result in its own shape (Claude Code ignores a rewrite that changes it),
    its text replaced."""
    try:
        response = json.loads(raw) if isinstance(raw, str) else raw
    except (ValueError, RecursionError):
        response = None
    response = dict(response) if isinstance(response, dict) else {}
    response["content"] = [{"type": "text", "text": "[Smart Orchestrator withheld this "
                            "subagent's answer: it could not be scanned.]"}]
    return response
