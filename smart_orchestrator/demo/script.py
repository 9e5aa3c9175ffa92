"""What the demo asks Claude Code to do: one session, eight steps, in order.

Offline, a scripted main agent makes the calls (`scripted_driver`), and the subagent and
the wave's agents answer from scripts, the first wave answer deliberately not valid JSON.
Live, the same calls are asked of the real model in plain words (`live_prompt`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..scripted import ModelRequest, ScriptedModel, Turn, agent_call, text, tool_use

__all__ = [
    "AWS_KEY",
    "CHECKPOINT",
    "MARKER",
    "MCP",
    "SUBAGENT_ANSWER",
    "live_prompt",
    "script_model",
    "wave_plan",
]

MCP = "mcp__plugin_smart-orchestrator_orchestrator__"
MARKER = "SMART-ORCHESTRATOR-DEMO"
CHECKPOINT = "demo-wave"
# Shaped like AWS credentials, valid nowhere (AWS's documented example key would not do:
# scanners rightly let it pass). Joined at run time, so no compiled module holds the whole
# key: the demo checks that no file the plugin writes (its bytecode cache too) holds it.
AWS_KEY = "".join(("AKIAZ3MSJV4W", "KQ7NTB5R"))
AWS_SECRET = "".join(("wJalrXUtnFEMI/K7MDENG/", "bPxRfiCYzq8Lr4Tm2d"))
SUBAGENT_PROMPT = "DEMO-SUBAGENT: Which modules does src/inventory hold? Answer in one line."
SECRET_PROMPT = (f"DEMO-SECRET: Deploy the sample with AWS access key {AWS_KEY} and secret "
                 f"{AWS_SECRET}.")
SUBAGENT_ANSWER = "src/inventory holds stock.py (stock changes) and auth.py (staff tokens)."
COUNT_SCHEMA = {"type": "object", "required": ["functions"],
                "properties": {"functions": {"type": "integer", "minimum": 0}}}


def wave_plan() -> dict[str, Any]:
    return {"name": "demo: inventory summary", "tasks": [
        {"id": "count", "prompt": "DEMO-COUNT: How many functions does "
         "src/inventory/stock.py define? Answer with JSON only.",
         "output_schema": COUNT_SCHEMA, "allowed_tools": ["Read"], "timeout_s": 120},
        {"id": "summary", "depends_on": ["count"], "timeout_s": 120,
         "prompt": "DEMO-SUMMARY: In one sentence, summarise src/inventory/stock.py for a "
                   "new developer, using the function count you were given."}]}


def _result_json(request: ModelRequest, tool: str) -> Any:
    for result in reversed(request.tool_results):
        if result.tool_name == MCP + tool and not result.is_error:
            try:
                return json.loads(result.text)
            except ValueError:
                return None
    return None


def _checkpoint_state(request: ModelRequest) -> dict[str, Any]:
    status = _result_json(request, "wave_status") or {}
    return {"run_id": status.get("run_id"), "state": status.get("state"),
            "tasks": {t["id"]: t["state"] for t in status.get("tasks", [])},
            "next": "run the gates on the change"}


def _steps(work: Path) -> list[Callable[[ModelRequest], Turn]]:
    def wave_status(request: ModelRequest) -> Turn:
        spawned = _result_json(request, "spawn_wave") or {}
        return tool_use(MCP + "wave_status", {"run_id": spawned.get("run_id", "w-missing")})

    return [
        lambda _: agent_call(SUBAGENT_PROMPT, description="list the modules"),
        lambda _: agent_call(SECRET_PROMPT, description="deploy the sample"),
        lambda _: tool_use(MCP + "spawn_wave", {"plan": wave_plan(), "cwd": str(work),
                                               "wait_s": 90}),
        wave_status,
        lambda r: tool_use(MCP + "checkpoint_save", {"name": CHECKPOINT,
                                                     "state": _checkpoint_state(r)}),
        lambda _: tool_use(MCP + "checkpoint_load", {"name": CHECKPOINT}),
        lambda _: tool_use(MCP + "gate_status", {}),
        lambda _: tool_use(MCP + "metrics", {"days": 1}),
        lambda _: tool_use(MCP + "audit_verify", {}),
        lambda _: text("Demo finished: every step above was run by the orchestrator."),
    ]


def script_model(model: ScriptedModel, work: Path) -> None:
    """The main agent follows the steps in order; later calls use earlier results."""
    steps = _steps(work)

    def driver(request: ModelRequest) -> Turn | None:
        if request.kind != "main" or MARKER not in request.first_user_text:
            return None
        return steps[min(request.turn, len(steps) - 1)](request)

    model.on(driver)
    model.subagent("DEMO-SUBAGENT", [text(SUBAGENT_ANSWER)])
    model.subagent("DEMO-SECRET", [text("deployed")])
    model.agent("DEMO-COUNT:", [text("stock.py defines three functions: take, restock and "
                                     "reorder_list."),
                                text('{"functions": 3}')])
    model.agent("DEMO-SUMMARY:", [text("stock.py keeps stock levels: take and restock change "
                                       "them safely, reorder_list names what to buy; 3 "
                                       "functions in all.")])


def live_prompt(work: Path) -> str:
    plan = json.dumps(wave_plan())
    return f"""{MARKER}: this is a demonstration of the Smart Orchestrator plugin. Do these
steps in order, one tool call each, exactly as written, then reply with one short line.
1. Use the Agent tool (general-purpose, foreground) with the prompt: {SUBAGENT_PROMPT}
2. Use the Agent tool (general-purpose, foreground) with exactly this prompt, unchanged: \
{SECRET_PROMPT} (the key is fake and valid nowhere; the plugin is expected to refuse it).
3. Call {MCP}spawn_wave with cwd "{work}", wait_s 240 and this plan: {plan}
4. Call {MCP}wave_status with the run_id that spawn_wave returned.
5. Call {MCP}checkpoint_save with name "{CHECKPOINT}" and state {{"run_id": <the run_id>,
"state": <the wave's state>, "tasks": {{<task id>: <task state>}}}}.
6. Call {MCP}checkpoint_load with name "{CHECKPOINT}".
7. Call {MCP}gate_status with no arguments.
8. Call {MCP}metrics with days 1.
9. Call {MCP}audit_verify with no arguments."""
