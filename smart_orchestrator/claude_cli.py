"""Locate the Claude Code CLI that ships inside the claude-agent-sdk wheel."""

from __future__ import annotations

import os
import shutil
from importlib.util import find_spec
from pathlib import Path

from .errors import OrchestratorError

__all__ = ["PLUGIN_ROOT", "bundled_claude", "clean_agent_env"]

PLUGIN_ROOT = Path(__file__).resolve().parent.parent


def bundled_claude() -> Path:
    """The bundled binary, else `claude` on PATH; found without importing the SDK."""
    spec = find_spec("claude_agent_sdk")
    if spec and spec.submodule_search_locations:
        for base in spec.submodule_search_locations:
            candidate = Path(base) / "_bundled" / "claude"
            if candidate.exists():
                return candidate
    on_path = shutil.which("claude")
    if on_path:
        return Path(on_path)
    raise OrchestratorError("Claude Code CLI not found",
                            hint="pip install claude-agent-sdk, or put `claude` on PATH")


def clean_agent_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a nested Claude Code process.

    A process started by Claude Code inherits CLAUDECODE=1, and a child CLI that sees it
    refuses to start; the session's own identifiers must not leak into the child either.
    """
    drop = {"CLAUDECODE", "CLAUDE_CODE_SESSION_ID", "CLAUDE_CODE_ENTRYPOINT",
            "CLAUDE_CODE_CHILD_SESSION", "CLAUDE_CODE_MESSAGING_SOCKET",
            "CLAUDE_CODE_MESSAGING_TOKEN", "CLAUDE_ENV_FILE", "CLAUDE_PID"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(extra or {})
    return env
