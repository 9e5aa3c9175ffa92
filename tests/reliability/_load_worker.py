"""One Claude Code session's worth of hook traffic, for the load suite.

Run as `python -m tests.reliability._load_worker DB SESSION AGENTS SEED`; prints one JSON
line of counts. Every hook event is delivered twice at once to the session's one decider
(as the service's worker threads would decide a redelivered event): only the delivery whose
claim wins decides, and the other returns that decision.
"""

from __future__ import annotations

import json
import random
import sys
import threading
from collections import Counter
from typing import Any

from mcp_server.hook_output import hook_output as rendered
from smart_orchestrator.policy import EngineFactory
from smart_orchestrator.policy.claims import Settled, claim_key, decide_once
from smart_orchestrator.store import SqliteStore


class Decider:
    def __init__(self, db: str, source: str) -> None:
        self.store = SqliteStore(db, busy_timeout_s=60.0)
        self.factory = EngineFactory(self.store, source=source)
        self.source = source

    def offer(self, payload: dict[str, Any], key: str) -> Settled:
        return decide_once(self.store, key, lambda: rendered(self.factory.decide(payload)),
                           wait_s=60,
                           free_text=lambda: self.factory.get()[0].outputs.free_text(payload))


def _race(decider: Decider, payload: dict[str, Any]) -> tuple[dict[str, Any], int]:
    key = claim_key(payload["hook_event_name"], payload["session_id"],
                    str(payload.get("tool_use_id") or ""), str(payload.get("agent_id") or ""),
                    payload)
    results: list[Settled | None] = [None, None]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = decider.offer(dict(payload), key)
        except BaseException as exc:  # reported to the test, which fails on any
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    settled = [r for r in results if r is not None]
    answers = {json.dumps(r.decision, sort_keys=True) for r in settled}
    if len(settled) != 2 or len(answers) != 1:
        raise AssertionError(f"the two deliveries were answered differently: {answers}")
    decided = [r.decision for r in settled if r.here]
    return (decided[0] if decided else {}), len(decided)


def session(db: str, session_id: str, agents: int, seed: int) -> Counter[str]:
    rng = random.Random(seed)
    decider = Decider(db, "server")
    counts: Counter[str] = Counter()

    def send(payload: dict[str, Any]) -> dict[str, Any]:
        payload["session_id"] = session_id
        out, winners = _race(decider, payload)
        counts["events"] += 1
        counts[f"event:{payload['hook_event_name']}"] += 1
        counts["decided"] += winners
        return out

    for i in range(agents):
        tool_use_id = f"toolu_{session_id}_{i}"
        agent_id = f"agent_{session_id}_{i}"
        background = rng.random() < 0.5
        ti = {"description": f"task {i}", "prompt": f"SUBTASK-{i}: count the files in src/",
              "subagent_type": "general-purpose", "run_in_background": background}
        pre = send({"hook_event_name": "PreToolUse", "tool_name": "Agent", "tool_input": ti,
                    "tool_use_id": tool_use_id})
        verdict = (pre.get("hookSpecificOutput") or {}).get("permissionDecision")
        if verdict == "deny":
            counts["denied"] += 1
            continue
        counts["allowed"] += 1
        if background:
            send({"hook_event_name": "PostToolUse", "tool_name": "Agent", "tool_input": ti,
                  "tool_use_id": tool_use_id,
                  "tool_response": {"status": "async_launched", "agentId": agent_id}})
        send({"hook_event_name": "SubagentStart", "agent_id": agent_id,
              "agent_type": "general-purpose"})
        for j in range(rng.randrange(1, 4)):
            tool, tool_input = rng.choice([("Read", {"file_path": "/work/src/a.py"}),
                                           ("Bash", {"command": "ls src"}),
                                           ("Grep", {"pattern": "def", "path": "src"})])
            send({"hook_event_name": "PreToolUse", "tool_name": tool, "tool_input": tool_input,
                  "tool_use_id": f"{tool_use_id}_t{j}", "agent_id": agent_id,
                  "agent_type": "general-purpose"})
            counts["subagent_tools"] += 1
        send({"hook_event_name": "SubagentStop", "agent_id": agent_id,
              "agent_type": "general-purpose", "last_assistant_message": f"{i * 7} files",
              "stop_hook_active": False})
        if not background:
            send({"hook_event_name": "PostToolUse", "tool_name": "Agent", "tool_input": ti,
                  "tool_use_id": tool_use_id, "duration_ms": 1200,
                  "tool_response": {"status": "completed", "agentId": agent_id,
                                    "content": [{"type": "text", "text": f"{i * 7} files"}],
                                    "totalTokens": 40,
                                    "usage": {"input_tokens": 30, "output_tokens": 10}}})
    decider.store.close()
    return counts


if __name__ == "__main__":
    db, sid, n, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    print(json.dumps(session(db, sid, n, seed)))
