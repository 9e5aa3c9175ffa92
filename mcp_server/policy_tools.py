"""`policy_check`: the hook decision, answered by the warm server for `mcp_tool` hooks."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from .hook_decide import HOOK_FIELDS, decide_hook
from .state import AppState

__all__ = ["HOOK_FIELDS", "decide_hook", "register_policy_tools"]


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


