"""The one place where a policy `Decision` becomes Claude Code's hook output.

Used by the `policy_check` hooks (the service, the stdio server), the shim's answers
without the service (`hook_call.fail_closed`) and the wave agents' SDK callbacks, so an
allow, a deny or a block reads the same everywhere. Standard library only: the shim
imports it before any dependency is installed.
"""

from __future__ import annotations

from typing import Any

from smart_orchestrator.policy.decision import Decision, Verdict

__all__ = ["REDACTED_REASON", "hook_output"]

REDACTED_REASON = "Smart Orchestrator redacted credentials from the prompt"


def hook_output(decision: Decision) -> dict[str, Any]:
    """The hook's JSON output, with Claude Code's names; `{}` when nothing is decided."""
    out: dict[str, Any] = {}
    specific: dict[str, Any] = {}
    if decision.verdict is Verdict.DENY:
        specific.update(permissionDecision="deny",
                        permissionDecisionReason=decision.reason or "denied")
    elif decision.verdict is Verdict.ALLOW:
        specific.update(permissionDecision="allow",
                        updatedInput=dict(decision.updated_input or {}),
                        permissionDecisionReason=decision.reason or REDACTED_REASON)
    elif decision.verdict is Verdict.REWRITE:
        # No permissionDecision: Claude Code applies the input and asks its own rules
        # about it, as it would have about the original.
        specific.update(updatedInput=dict(decision.updated_input or {}))
    elif decision.verdict is Verdict.BLOCK:
        out.update(decision="block", reason=decision.reason or "blocked")
    if decision.additional_context:
        specific["additionalContext"] = decision.additional_context
    if decision.updated_output is not None:
        specific["updatedToolOutput"] = decision.updated_output
    if decision.suppress_prompt:
        specific["suppressOriginalPrompt"] = True
    if specific:
        out["hookSpecificOutput"] = {"hookEventName": decision.event, **specific}
    if decision.system_message:
        out["systemMessage"] = decision.system_message
    return out
