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
from typing import Any, NamedTuple

__all__ = ["HookCall", "parse_hook_call", "tool_result"]

PROTOCOL_VERSION = "2026-07-28"
_VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
# Claude Code marks a model's tool call with its tool-use id; a hook's call carries none.
MODEL_CALL_KEY = "claudecode/toolUseId"


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
