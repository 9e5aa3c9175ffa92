"""`policy_accept`: the model may ask for a weaker policy; only the user's answer in Claude
Code's own dialog (an MCP elicitation) grants it.

The question is rendered from the file as it is when asked, and the MCP SDK accepts an
answer only for the exact question the client was shown, so a file changed while the
dialog was open is asked about again, never accepted unseen. The tool refuses while any
settings source configures a hook that could answer the dialog in the user's place.
"""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resolve import Elicit, Resolve
from pydantic import BaseModel, Field

from smart_orchestrator.audit import AuditLog
from smart_orchestrator.errors import OrchestratorError
from smart_orchestrator.policy.acceptance import Proposal, answering_hooks, prepare
from smart_orchestrator.policy.config import policy_path
from smart_orchestrator.policy.trust import accept, project_key, trusted
from smart_orchestrator.session import current

from .state import AppState

__all__ = ["register_accept_tools"]

HOOKS_REFUSAL = ("policy_accept refuses while a hook could answer the confirmation in the "
                 "user's place (an Elicitation or ElicitationResult hook, which any settings "
                 "file can add): ")


class Confirmation(BaseModel):
    trust: bool = Field(title="Trust this policy for new sessions of this project")


class PolicyAcceptResult(BaseModel):
    accepted: bool
    digest: str = Field(description="the proposed policy's digest")
    before: str | None = Field(description="the trusted policy's digest before")
    weakened: list[str]
    message: str


def proposal(ctx: Context[AppState, Any]) -> Proposal:
    caps = ctx.client_capabilities
    elicitation = caps.elicitation if caps is not None else None
    if elicitation is None or (elicitation.form is None and elicitation.url is not None):
        raise ToolError("policy_accept needs a client that can ask the user (MCP form "
                        "elicitation); this one cannot: run `smart-orchestrator policy "
                        "accept` in a terminal of your own")
    info = current()
    try:
        hooks = answering_hooks(info.project_dir, claude_pid=info.claude_pid)
        if hooks:
            raise ToolError(HOOKS_REFUSAL + hooks[0])
        store = ctx.request_context.lifespan_context.require_store()
        found = prepare(store, info.project_dir, policy_path(info.project_dir))
        trust = trusted(store, info.project_dir)
    except OrchestratorError as exc:
        raise ToolError(exc.one_line()) from exc
    if found.changes_nothing(trust.config.secrets.baseline_sha256 if trust else None):
        raise ToolError(f"nothing to accept: {found.path} is the trusted policy "
                        f"({found.digest[:12]})")
    return found

def question(found: Annotated[Proposal, Resolve(proposal)]) -> Elicit[Confirmation]:
    return Elicit("Smart Orchestrator: the assistant asks you to trust a changed policy "
                  "for new sessions.\n" + "\n".join(found.lines()) + "\nOnly you can "
                  "confirm this; decline unless you made this change yourself.",
                  Confirmation)


def register_accept_tools(server: MCPServer[AppState]) -> None:
    @server.tool()
    def policy_accept(
            ctx: Context[AppState, Any],
            found: Annotated[Proposal, Resolve(proposal)],
            answer: Annotated[ElicitationResult[Confirmation], Resolve(question)],
    ) -> PolicyAcceptResult:
        """Ask the user, in Claude Code's own dialog, to trust the project's policy file
        (and secrets baseline) as they are now for new sessions. Weakening changes take
        effect only if the user confirms there."""
        store = ctx.request_context.lifespan_context.require_store()
        info = current()
        granted = isinstance(answer, AcceptedElicitation) and answer.data.trust
        hooks = answering_hooks(info.project_dir, claude_pid=info.claude_pid)
        if granted and hooks:  # added while the dialog was open: the answer is not the user's
            _declined(store, found, info.session_id, "hook:" + hooks[0])
            raise ToolError(HOOKS_REFUSAL + hooks[0])
        if not granted:
            _declined(store, found, info.session_id, answer.action)
            return PolicyAcceptResult(accepted=False, digest=found.digest, before=found.before,
                                      weakened=list(found.weakened),
                                      message="The user did not confirm: nothing changed.")
        try:
            new, _ = accept(store, info.project_dir, found.config, found.baseline_sha256,
                            channel=f"elicitation:session:{info.session_id}")
        except OrchestratorError as exc:
            raise ToolError(exc.one_line()) from exc
        return PolicyAcceptResult(accepted=True, digest=new, before=found.before,
                                  weakened=list(found.weakened),
                                  message=f"Accepted {new[:12]}: new sessions start with it; "
                                  "this session keeps its pinned policy.")


def _declined(store: Any, found: Proposal, session_id: str, answer: str) -> None:
    AuditLog(store).record("policy.accept_declined", project=project_key(found.project),
                           session_id=session_id, before=found.before, after=found.digest,
                           weakened=list(found.weakened), answer=answer)
