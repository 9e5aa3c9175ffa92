"""The scripted model's request log: what Claude Code sent, how it was routed and answered."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .replies import Reply

__all__ = ["Kind", "ModelRequest", "ToolResult"]

# Who sent a request: the main agent, a subagent, a directly started agent, or a non-Messages call.
Kind = Literal["main", "subagent", "agent", "other"]


@dataclass(frozen=True, slots=True)
class ToolResult:
    """A tool_result block the CLI sent back, joined with the tool_use it answers."""

    tool_use_id: str
    is_error: bool
    text: str
    tool_name: str | None
    tool_input: dict[str, Any] | None


@dataclass(slots=True)
class ModelRequest:
    """One HTTP request as received, with its route and what was answered."""

    index: int
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    kind: Kind
    conversation: str
    turn: int
    received_at: float
    answered_at: float | None = None
    reply: Reply | None = None
    # True when no script or rule answered (or a rule raised: then `note` has the traceback).
    unscripted: bool = False
    note: str = ""

    @property
    def system_text(self) -> str:
        system = (self.body or {}).get("system", "")
        if isinstance(system, str):
            return system
        return "".join(b.get("text", "") for b in system if isinstance(b, dict))

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list((self.body or {}).get("messages", []))

    @property
    def prompt(self) -> str:
        """The last text block of the first user message: the `-p` or Agent prompt."""
        for message in self.messages:
            if message.get("role") == "user":
                texts = [b for b in _blocks(message.get("content")) if b.get("type") == "text"]
                return str(texts[-1].get("text", "")) if texts else ""
        return ""

    @property
    def first_user_text(self) -> str:
        """Text of the first user message; the prompt is its last text block."""
        for message in self.messages:
            if message.get("role") == "user":
                return _text_of(message.get("content"))
        return ""

    @property
    def tool_names(self) -> list[str]:
        return [t.get("name", "") for t in (self.body or {}).get("tools", [])]

    @property
    def tool_results(self) -> list[ToolResult]:
        """Every tool_result in the request, oldest first."""
        calls = {
            block["id"]: block
            for message in self.messages
            if message.get("role") == "assistant"
            for block in _blocks(message.get("content"))
            if block.get("type") == "tool_use"
        }
        results = []
        for message in self.messages:
            for block in _blocks(message.get("content")):
                if block.get("type") != "tool_result":
                    continue
                call = calls.get(block.get("tool_use_id", ""), {})
                results.append(ToolResult(
                    tool_use_id=block.get("tool_use_id", ""),
                    is_error=bool(block.get("is_error", False)),
                    text=_text_of(block.get("content")),
                    tool_name=call.get("name"),
                    tool_input=call.get("input"),
                ))
        return results

    @property
    def duration(self) -> float | None:
        return None if self.answered_at is None else self.answered_at - self.received_at


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content or [] if isinstance(b, dict)]


def _text_of(content: Any) -> str:
    return "\n".join(b.get("text", "") for b in _blocks(content) if b.get("type") == "text")
