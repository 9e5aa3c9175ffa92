"""Token usage as Claude Code and the API report it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .pricing import Tokens

__all__ = ["MAX_TRANSCRIPT_BYTES", "tokens_from_usage", "transcript_usage"]

MAX_TRANSCRIPT_BYTES = 256 << 20


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def tokens_from_usage(usage: Any) -> Tokens:
    """An API `usage` object (the Agent tool's result carries one too) as Tokens."""
    if not isinstance(usage, Mapping):
        return Tokens()
    return Tokens(_count(usage.get("input_tokens")), _count(usage.get("output_tokens")),
                  _count(usage.get("cache_read_input_tokens")),
                  _count(usage.get("cache_creation_input_tokens")))


def transcript_usage(path: str | Path) -> tuple[Tokens, str | None] | None:
    """The usage summed over an agent's transcript (one entry per API message: Claude Code
    writes a line per content block, all carrying the message's usage), and the model of
    its last message. None when the file cannot be read."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_TRANSCRIPT_BYTES)
    except OSError:
        return None
    by_message: dict[str, Tokens] = {}
    model: str | None = None
    for n, line in enumerate(data.splitlines()):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        message = entry.get("message") if isinstance(entry, dict) else None
        if not isinstance(message, dict) or entry.get("type") != "assistant":
            continue
        raw_id = message.get("id")
        key = raw_id if isinstance(raw_id, str) else f"line{n}"
        by_message[key] = tokens_from_usage(message.get("usage"))
        if isinstance(message.get("model"), str):
            model = message["model"]
    total = Tokens()
    for tokens in by_message.values():
        total = total + tokens
    return total, model
