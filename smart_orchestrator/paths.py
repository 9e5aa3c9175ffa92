"""Where state lives: one rule, used by the server, the hooks and the CLI alike."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_dir", "db_path", "project_dir"]

_FALLBACK = Path("~/.local/share/smart-orchestrator")


def data_dir() -> Path:
    """`$SMART_ORCHESTRATOR_DATA`, else `$CLAUDE_PLUGIN_DATA`, else a per-user folder.

    Claude Code sets CLAUDE_PLUGIN_DATA for hooks and MCP servers; a person running the
    CLI in a shell usually has neither, and gets the per-user folder.
    """
    for var in ("SMART_ORCHESTRATOR_DATA", "CLAUDE_PLUGIN_DATA"):
        value = os.environ.get(var)
        if value:
            return Path(value).expanduser()
    return _FALLBACK.expanduser()


def db_path() -> Path:
    explicit = os.environ.get("SMART_ORCHESTRATOR_DB")
    if explicit:
        return Path(explicit).expanduser()
    return data_dir() / "state.db"


def project_dir() -> Path:
    return Path(os.environ.get("CLAUDE_PROJECT_DIR") or os.getcwd())
