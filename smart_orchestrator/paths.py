"""Where state lives: one rule, used by the server, the hooks, the CLI and the launcher.

Standard library only: `bin/smart-orchestrator` imports this before any dependency exists.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

__all__ = ["PLUGIN_NAME", "DataDir", "data_dir", "db_path", "installed_plugin_data",
           "locate_data_dir", "project_dir"]

PLUGIN_NAME = "smart-orchestrator"
_FALLBACK = Path("~/.local/share/smart-orchestrator")


class DataDir(NamedTuple):
    path: Path
    origin: str  # how it was found, for `status`


def data_dir() -> Path:
    return locate_data_dir().path


def locate_data_dir() -> DataDir:
    """`$SMART_ORCHESTRATOR_DATA`, else `$CLAUDE_PLUGIN_DATA`, else the installed plugin's
    data folder, else a per-user folder.

    Claude Code sets CLAUDE_PLUGIN_DATA for hooks and MCP servers. A person running the
    CLI in a terminal has neither variable, and wants the state the plugin is actually
    using, not an empty folder of its own.
    """
    for var in ("SMART_ORCHESTRATOR_DATA", "CLAUDE_PLUGIN_DATA"):
        value = os.environ.get(var)
        if value:
            return DataDir(Path(value).expanduser(), f"${var}")
    installed = installed_plugin_data()
    if installed is not None:
        return DataDir(installed, "the installed plugin's data folder")
    return DataDir(_FALLBACK.expanduser(), "the per-user default (no installed plugin found)")


def installed_plugin_data() -> Path | None:
    """Claude Code keeps a plugin's data in `<config>/plugins/data/<plugin>-<source>`. With
    several (the plugin installed from two marketplaces, or loaded with --plugin-dir) the
    one whose state changed last is the one in use."""
    config = Path(os.environ.get("CLAUDE_CONFIG_DIR") or "~/.claude").expanduser()
    try:
        found = [p for p in (config / "plugins" / "data").glob(f"{PLUGIN_NAME}-*")
                 if p.is_dir()]
    except OSError:
        return None
    if not found:
        return None
    return max(found, key=_last_change)


def _last_change(folder: Path) -> float:
    for name in ("state.db-wal", "state.db", "venv"):
        try:
            return (folder / name).stat().st_mtime
        except OSError:
            continue
    return 0.0


def db_path() -> Path:
    explicit = os.environ.get("SMART_ORCHESTRATOR_DB")
    if explicit:
        return Path(explicit).expanduser()
    return data_dir() / "state.db"


def project_dir() -> Path:
    from .session import current

    return current().project_dir
