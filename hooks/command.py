"""`smart-orchestrator hook <Event>`: the command-hook adapter (JSON on stdin).

It runs as a fresh process on every matching tool call, so it imports the policy engine
only when it has to decide: when the plugin's MCP server is live, the server's `mcp_tool`
hook normally claims the event first and this process returns the server's decision (or
takes over, if the server died before deciding).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

MAX_STDIN = 64 * 1024 * 1024
# PreToolUse of these starts or feeds agents (smart_orchestrator.policy.surfaces.GATED_TOOLS,
# not imported: this module must start without the package).
AGENT_TOOLS = ("Agent", "Task", "Workflow", "SendMessage", "Skill")


def _emit(out: dict[str, Any]) -> int:
    sys.stdout.write(json.dumps(out))
    sys.stdout.flush()
    return 0


def _fail(event: str, tool: str, reason: str, *, subagent: bool = False) -> int:
    """Security-relevant events fail closed (spawns, and every tool call of a subagent);
    the rest pass with a note on stderr."""
    if event == "PreToolUse" and (tool in AGENT_TOOLS or subagent):
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
        return _fail(event, tool, f"internal error ({type(exc).__name__}); details in {where}",
                     subagent=bool(payload.get("agent_id")))


def _decide(event: str, tool: str, payload: dict[str, Any]) -> int:
    from smart_orchestrator.errors import StoreError
    from smart_orchestrator.paths import data_dir
    from smart_orchestrator.policy.claims import (
        Undecided,
        claim_key,
        decide_once,
        decision_file,
        owner_alive,
        process_owner,
        server_is_live,
        server_is_responsive,
    )
    from smart_orchestrator.policy.surfaces import UNCLAIMED_EVENTS
    from smart_orchestrator.store import open_store

    subagent = bool(payload.get("agent_id"))
    try:
        store = open_store()
    except StoreError as exc:
        return _fail(event, tool, exc.one_line(), subagent=subagent)
    if event in UNCLAIMED_EVENTS:
        from smart_orchestrator.policy import EngineFactory

        return _emit(EngineFactory(store, source="command").decide(payload))
    session = str(payload.get("session_id") or "")
    tool_use_id = str(payload.get("tool_use_id") or "")
    key = claim_key(event, session, tool_use_id, str(payload.get("agent_id") or ""), payload)
    # A live server normally claims within milliseconds: give it the head start.
    grace = (float(os.environ.get("SMART_ORCHESTRATOR_CLAIM_GRACE_S", "2.0"))
             if server_is_live(data_dir(), session) else 0.0)

    def alive(owner: str) -> bool:
        # A server that claimed the event but whose event loop stopped beating is wedged.
        return owner_alive(owner) and (not owner.startswith("server:")
                                       or server_is_responsive(data_dir(), session))

    def decide() -> dict[str, Any]:
        from smart_orchestrator.policy import EngineFactory

        return EngineFactory(store, source="command").decide(payload)

    def free_text() -> dict[str, Any]:
        from smart_orchestrator.policy import EngineFactory

        return EngineFactory(store, source="command").get()[0].outputs.free_text(payload)

    try:
        settled = decide_once(
            store, key, process_owner("command"), decide, wait_for_other_s=grace, alive=alive,
            free_text=free_text,
            decision_timeout_s=float(os.environ.get("SMART_ORCHESTRATOR_DECISION_WAIT_S",
                                                    "100")))
    except Undecided as exc:
        return _fail(event, tool, str(exc), subagent=subagent)
    if (path := decision_file(data_dir(), session, tool_use_id)) is not None:
        path.unlink(missing_ok=True)  # the shell fast path did not collect it
    return _emit(settled.answer())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
