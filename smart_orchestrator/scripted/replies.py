"""What the scripted model answers: assistant turns and API errors, and their wire encoding.

A script is a list of entries. A `Turn` is one assistant message; an `ApiError` is an HTTP
error served *before* the turn that follows it (the CLI retries the same turn), so
`[rate_limit_error(), text("ok")]` is "turn 0 fails once with 429, then succeeds".
"""

from __future__ import annotations

import itertools
import json
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ApiError",
    "Reply",
    "TextBlock",
    "ToolUseBlock",
    "Turn",
    "agent_call",
    "api_error",
    "authentication_error",
    "credit_balance_error",
    "invalid_request_error",
    "overloaded_error",
    "rate_limit_error",
    "send_message",
    "server_error",
    "task_stop",
    "text",
    "tool_use",
    "turn",
    "with_usage",
    "workflow_call",
]

_ALNUM = string.ascii_letters + string.digits
_ids = itertools.count(1)


def new_id(prefix: str) -> str:
    """An Anthropic-looking id (`toolu_01...`, `msg_01...`), unique within the process."""
    tail = "".join(secrets.choice(_ALNUM) for _ in range(16))
    return f"{prefix}_01{next(_ids):06d}{tail}"


@dataclass(frozen=True, slots=True)
class TextBlock:
    text: str


@dataclass(frozen=True, slots=True)
class ToolUseBlock:
    name: str
    input: Mapping[str, Any]
    # None: a fresh id is minted each time the block is served.
    id: str | None = None


Block = TextBlock | ToolUseBlock


@dataclass(frozen=True, slots=True)
class Turn:
    """One assistant message, served after `delay` seconds."""

    blocks: tuple[Block, ...]
    delay: float = 0.0
    stop_reason: str | None = None
    # Token counts the message reports (input, output, cache_read, cache_write); None: a
    # token's worth. Budgets are tested against what the model says it used.
    usage: Mapping[str, int] | None = None

    @property
    def effective_stop_reason(self) -> str:
        if self.stop_reason is not None:
            return self.stop_reason
        has_tool = any(isinstance(b, ToolUseBlock) for b in self.blocks)
        return "tool_use" if has_tool else "end_turn"


@dataclass(frozen=True, slots=True)
class ApiError:
    """An HTTP error reply in Anthropic's shape, served `times` times to its conversation's
    turn before the turn's next entry (`None` repeats it forever)."""

    status: int
    error_type: str
    message: str
    retry_after: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    times: int | None = 1
    delay: float = 0.0


Reply = Turn | ApiError


def text(value: str, *, delay: float = 0.0, usage: Mapping[str, int] | None = None) -> Turn:
    return Turn((TextBlock(value),), delay=delay, usage=usage)


def with_usage(reply: Turn, **tokens: int) -> Turn:
    """The same message reporting these token counts (`input`, `output`, `cache_read`,
    `cache_write`)."""
    return Turn(reply.blocks, reply.delay, reply.stop_reason, dict(tokens))


def tool_use(
    name: str, input: Mapping[str, Any], *, id: str | None = None, delay: float = 0.0
) -> Turn:
    return Turn((ToolUseBlock(name, dict(input), id),), delay=delay)


def agent_call(
    prompt: str,
    *,
    description: str = "scripted subtask",
    subagent_type: str = "general-purpose",
    background: bool = False,
    delay: float = 0.0,
    **extra: Any,
) -> Turn:
    """An `Agent` tool call. Foreground by default: the CLI's own default is background."""
    args = {
        "description": description,
        "prompt": prompt,
        "subagent_type": subagent_type,
        "run_in_background": background,
        **extra,
    }
    return tool_use("Agent", args, delay=delay)


def workflow_call(script: str, *, delay: float = 0.0, **extra: Any) -> Turn:
    """A `Workflow` tool call running `script` (JavaScript whose `agent()` calls start
    agents). Claude Code asks permission for it: allow `Workflow` in the run."""
    return tool_use("Workflow", {"script": script, **extra}, delay=delay)


def send_message(to: str, message: Any, *, summary: str | None = None, delay: float = 0.0,
                 **extra: Any) -> Turn:
    """A `SendMessage` call: queues for a running agent, resumes a finished one."""
    args: dict[str, Any] = {"to": to, "message": message, **extra}
    if summary is not None:
        args["summary"] = summary
    return tool_use("SendMessage", args, delay=delay)


def task_stop(task_id: str, *, delay: float = 0.0) -> Turn:
    """A `TaskStop` call: stops a background agent or workflow by its id."""
    return tool_use("TaskStop", {"task_id": task_id}, delay=delay)


def turn(*parts: Turn | Block, delay: float = 0.0, stop_reason: str | None = None,
         usage: Mapping[str, int] | None = None) -> Turn:
    """Merge blocks into one assistant message, e.g. several parallel `agent_call`s."""
    blocks: list[Block] = []
    for part in parts:
        blocks.extend(part.blocks if isinstance(part, Turn) else (part,))
    return Turn(tuple(blocks), delay=delay, stop_reason=stop_reason, usage=usage)


def api_error(
    status: int,
    error_type: str,
    message: str,
    *,
    retry_after: float | None = None,
    headers: Mapping[str, str] | None = None,
    times: int | None = 1,
    delay: float = 0.0,
) -> ApiError:
    return ApiError(status, error_type, message, retry_after, dict(headers or {}), times, delay)


def rate_limit_error(*, retry_after: float | None = 0, times: int | None = 1) -> ApiError:
    return api_error(
        429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit",
        retry_after=retry_after, times=times,
    )


def overloaded_error(*, retry_after: float | None = None, times: int | None = 1) -> ApiError:
    return api_error(529, "overloaded_error", "Overloaded", retry_after=retry_after,
                     times=times)


def server_error(*, times: int | None = 1) -> ApiError:
    return api_error(500, "api_error", "Internal server error", times=times)


def invalid_request_error(message: str = "invalid request", *, times: int | None = 1) -> ApiError:
    return api_error(400, "invalid_request_error", message, times=times)


def authentication_error(*, times: int | None = 1) -> ApiError:
    return api_error(401, "authentication_error", "invalid x-api-key", times=times)


def credit_balance_error(*, times: int | None = 1) -> ApiError:
    """The API's quota/billing refusal: a 400 whose text the CLI matches literally."""
    return api_error(
        400,
        "invalid_request_error",
        "Your credit balance is too low to access the Anthropic API. "
        "Please go to Plans & Billing to upgrade or purchase credits.",
        times=times,
    )


# ---- wire encoding -------------------------------------------------------------------------

def _usage(output_tokens: int, scripted: Mapping[str, int] | None = None) -> dict[str, Any]:
    given = scripted or {}
    return {
        "input_tokens": int(given.get("input", 10)),
        "cache_creation_input_tokens": int(given.get("cache_write", 0)),
        "cache_read_input_tokens": int(given.get("cache_read", 0)),
        "output_tokens": int(given.get("output", output_tokens)),
    }


def materialize(reply: Turn) -> list[dict[str, Any]]:
    """Content blocks as the API returns them, minting tool-use ids where none was scripted."""
    content: list[dict[str, Any]] = []
    for block in reply.blocks:
        if isinstance(block, TextBlock):
            content.append({"type": "text", "text": block.text})
        else:
            content.append({
                "type": "tool_use",
                "id": block.id or new_id("toolu"),
                "name": block.name,
                "input": dict(block.input),
            })
    return content


def message_json(content: list[dict[str, Any]], stop_reason: str, model: str,
                 usage: Mapping[str, int] | None = None) -> dict[str, Any]:
    return {
        "id": new_id("msg"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": _usage(5, usage),
    }


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def sse_body(content: list[dict[str, Any]], stop_reason: str, model: str,
             usage: Mapping[str, int] | None = None) -> bytes:
    # The input and cache counts come with message_start, the output count with
    # message_delta, as the API streams them.
    first = _usage(1, usage)
    start = message_json([], stop_reason, model) | {"stop_reason": None, "usage": first}
    events = [_event("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(content):
        opening: dict[str, Any]
        if block["type"] == "text":
            opening = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": block["text"]}
        else:
            opening = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        events += [
            _event("content_block_start",
                   {"type": "content_block_start", "index": index, "content_block": opening}),
            _event("content_block_delta",
                   {"type": "content_block_delta", "index": index, "delta": delta}),
            _event("content_block_stop", {"type": "content_block_stop", "index": index}),
        ]
    events += [
        _event("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": _usage(5, usage)["output_tokens"]},
        }),
        _event("message_stop", {"type": "message_stop"}),
    ]
    return b"".join(events)


def error_json(error: ApiError, request_id: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": error.error_type, "message": error.message},
        "request_id": request_id,
    }


def error_headers(error: ApiError, request_id: str) -> dict[str, str]:
    headers = {"request-id": request_id, **error.headers}
    if error.retry_after is not None:
        headers.setdefault("retry-after", f"{error.retry_after:g}")
    return headers
