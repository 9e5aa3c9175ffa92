"""What the policy decided about one hook event, as a value.

The engine returns a `Decision`; the adapters turn it into what their caller reads
(`mcp_server/hook_output.py` writes Claude Code's hook output, for the MCP hooks and the
wave agents' SDK callbacks alike), so the core holds no hook-output wire names.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Decision", "Verdict", "block", "deny", "note", "passed"]


class Verdict(enum.Enum):
    PASS = "pass"    # nothing to stop: the action goes ahead as it is
    ALLOW = "allow"  # a tool call goes ahead with its input rewritten (`updated_input`)
    # A tool call goes ahead rewritten, still through the user's permission rules (a
    # confined Bash line is no more permitted than the line it replaces).
    REWRITE = "rewrite"
    DENY = "deny"    # a tool call does not run (PreToolUse)
    BLOCK = "block"  # a result, a prompt or an agent's stop is held back, with the reason


@dataclass(frozen=True, slots=True)
class Decision:
    event: str = ""
    verdict: Verdict = Verdict.PASS
    reason: str | None = None
    updated_input: Mapping[str, Any] | None = None
    # A tool's output rewritten in its own shape (None: unchanged).
    updated_output: Any = None
    # Shown to the user.
    system_message: str | None = None
    # Added to the model's context beside the result.
    additional_context: str | None = None
    # A prompt kept out of the conversation (UserPromptSubmit).
    suppress_prompt: bool = False

    @property
    def denied(self) -> bool:
        return self.verdict is Verdict.DENY

    @property
    def empty(self) -> bool:
        return self == Decision(self.event)


def passed(event: str = "") -> Decision:
    return Decision(event)


def deny(reason: str) -> Decision:
    return Decision("PreToolUse", Verdict.DENY, reason)


def block(event: str, reason: str, **rest: Any) -> Decision:
    return Decision(event, Verdict.BLOCK, reason, **rest)


def note(event: str, message: str) -> Decision:
    """A message for the user, nothing stopped (warn mode)."""
    return Decision(event, system_message=message)
