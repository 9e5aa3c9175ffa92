"""Token usage as Claude Code and the API report it."""

from __future__ import annotations

import json
import os
import stat
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
    by_message: dict[str, Tokens] = {}
    model: str | None = None
    try:
        # A FIFO or a device put in the transcript's place must not hang the service.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        with os.fdopen(fd, "rb") as fh:
            # Line by line: the service holds one line at a time, not the transcript.
            for n, line in enumerate(fh):
                if fh.tell() > MAX_TRANSCRIPT_BYTES:
                    break
                model = _read_line(line, n, by_message) or model
    except OSError:
        return None
    total = Tokens()
    for tokens in by_message.values():
        total = total + tokens
    return total, model


def _read_line(line: bytes, n: int, by_message: dict[str, Tokens]) -> str | None:
    """Record an assistant entry's usage under its message id; its model, if it names one."""
    if b'"assistant"' not in line:
        return None
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    message = entry.get("message") if isinstance(entry, dict) else None
    if not isinstance(message, dict) or entry.get("type") != "assistant":
        return None
    raw_id = message.get("id")
    key = raw_id if isinstance(raw_id, str) else f"line{n}"
    by_message[key] = tokens_from_usage(message.get("usage"))
    model = message.get("model")
    return model if isinstance(model, str) else None
