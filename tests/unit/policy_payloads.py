"""Hook payloads in the shapes Claude Code 2.1.330 sends (trimmed real samples)."""

from __future__ import annotations

from typing import Any

SESSION = "af372961-880d-4664-a7ea-6329ee8472f0"


def pre_agent(prompt: str = "SUBTASK-7: compute the answer", *, tool_use_id: str = "toolu_1",
              subagent_type: str = "general-purpose", background: bool | None = False,
              agent_id: str | None = None, session: str = SESSION,
              description: str = "compute answer") -> dict[str, Any]:
    tool_input: dict[str, Any] = {"description": description, "prompt": prompt,
                                  "subagent_type": subagent_type}
    if background is not None:
        tool_input["run_in_background"] = background
    payload: dict[str, Any] = {
        "session_id": session, "cwd": "/work", "permission_mode": "default",
        "hook_event_name": "PreToolUse", "tool_name": "Agent", "tool_input": tool_input,
        "tool_use_id": tool_use_id}
    if agent_id:
        payload["agent_id"] = agent_id
        payload["agent_type"] = "general-purpose"
    return payload


def post_agent(text: str = "SUBAGENT-ANSWER: the answer is 42", *, tool_use_id: str = "toolu_1",
               status: str = "completed", subagent_type: str = "general-purpose",
               agent_id: str = "a8f881c184d60c76d", session: str = SESSION) -> dict[str, Any]:
    response: dict[str, Any] = {"status": status, "agentId": agent_id, "agentType": subagent_type}
    if status == "completed":
        response.update(content=[{"type": "text", "text": text}], totalDurationMs=224,
                        totalTokens=15, totalToolUseCount=0,
                        usage={"input_tokens": 10, "output_tokens": 5})
    return {"session_id": session, "hook_event_name": "PostToolUse", "tool_name": "Agent",
            "tool_input": {"description": "d", "prompt": "p", "subagent_type": subagent_type},
            "tool_response": response, "tool_use_id": tool_use_id, "duration_ms": 227}


def subagent_event(event: str, agent_id: str, *, message: str = "done",
                   session: str = SESSION, stop_hook_active: bool = False) -> dict[str, Any]:
    payload: dict[str, Any] = {"session_id": session, "hook_event_name": event,
                               "agent_id": agent_id, "agent_type": "general-purpose"}
    if event == "SubagentStop":
        payload.update(last_assistant_message=message, stop_hook_active=stop_hook_active)
    return payload


def subagent_tool(tool: str, tool_input: dict[str, Any], *, agent_id: str = "a23489d8777de63f9",
                  session: str = SESSION) -> dict[str, Any]:
    return {"session_id": session, "hook_event_name": "PreToolUse", "tool_name": tool,
            "tool_input": tool_input, "tool_use_id": "toolu_0001_1", "agent_id": agent_id,
            "agent_type": "general-purpose"}
