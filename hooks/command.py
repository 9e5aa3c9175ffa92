"""`smart-orchestrator hook <Event>`: the command-hook adapter (JSON on stdin).

It runs as a fresh process on every matching tool call, so it imports the policy engine
only when it has to decide: when the plugin's MCP server is live, the server's `mcp_tool`
hook normally claims the event first and this process just exits.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

MAX_STDIN = 64 * 1024 * 1024
AGENT_TOOLS = ("Agent", "Task")


def _emit(out: dict[str, Any]) -> int:
    sys.stdout.write(json.dumps(out))
    sys.stdout.flush()
    return 0


def _fail(event: str, tool: str, reason: str) -> int:
    """Security-relevant events fail closed; the rest pass with a note on stderr."""
    if event == "PreToolUse" and tool in AGENT_TOOLS:
        return _emit({"hookSpecificOutput": {
            "hookEventName": "PreToolUse", "permissionDecision": "deny",
            "permissionDecisionReason": f"Smart Orchestrator denied this call: {reason}"}})
    print(f"smart-orchestrator: {reason}", file=sys.stderr)
    return 0


def main(argv: list[str]) -> int:
    event = argv[0] if argv else ""
    try:
        raw = sys.stdin.buffer.read(MAX_STDIN + 1)
        payload = json.loads(raw.decode("utf-8", "replace")) if raw.strip() else None
    except (ValueError, OSError, RecursionError) as exc:  # deep nesting: RecursionError
        return _fail(event, "Agent", f"malformed hook input ({type(exc).__name__})")
    if not isinstance(payload, dict) or len(raw) > MAX_STDIN:
        return _fail(event, "Agent", "malformed hook input (expected one JSON object)")
    # The event this hook was registered for is the one to decide, whatever the payload says.
    event = event or str(payload.get("hook_event_name") or "")
    if event == "PreToolUse" and (payload.get("hook_event_name") not in (None, event)
                                  or not isinstance(payload.get("tool_name"), str)):
        return _fail(event, "Agent", "malformed hook input (not a PreToolUse tool call)")
    payload["hook_event_name"] = event
    tool = str(payload.get("tool_name") or "")
    try:
        return _decide(event, tool, payload)
    except Exception as exc:  # boundary: never a traceback on the user's screen
        from smart_orchestrator.policy.engine import _log_crash

        where = _log_crash(exc)
        return _fail(event, tool, f"internal error ({type(exc).__name__}); details in {where}")


def _decide(event: str, tool: str, payload: dict[str, Any]) -> int:
    from smart_orchestrator.errors import StoreError
    from smart_orchestrator.paths import data_dir
    from smart_orchestrator.policy.claims import (
        claim,
        claim_key,
        server_is_live,
        wait_for_claim,
    )
    from smart_orchestrator.store import open_store

    try:
        store = open_store()
    except StoreError as exc:
        return _fail(event, tool, exc.one_line())
    session = str(payload.get("session_id") or "")
    key = claim_key(event, session, str(payload.get("tool_use_id") or ""),
                    str(payload.get("agent_id") or ""))
    if server_is_live(data_dir(), session):
        grace = float(os.environ.get("SMART_ORCHESTRATOR_CLAIM_GRACE_S", "2.0"))
        if wait_for_claim(store, key, grace) is not None:
            return _emit({})
    if not claim(store, key, "command"):
        return _emit({})
    from smart_orchestrator.policy import EngineFactory

    return _emit(EngineFactory(store, source="command").decide(payload))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
