"""Running Claude Code with this repository loaded as the plugin under test."""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .harness import ClaudeRun

PLUGIN = "smart-orchestrator"
SERVER = f"plugin:{PLUGIN}:orchestrator"
MCP_PREFIX = f"mcp__plugin_{PLUGIN}_orchestrator"


def plugin_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The plugin starts `python3` from PATH: make it this test run's interpreter."""
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           # Each test has its own HOME, so its own per-user service: let it end soon
           # after the session instead of idling for the default quarter of an hour.
           "SMART_ORCHESTRATOR_SERVICE_IDLE_S": "5"}
    env.update(extra or {})
    return env


def plugin_data(home: Path) -> Path:
    return home / ".claude" / "plugins" / "data" / f"{PLUGIN}-inline"


def audit_rows(home: Path, kind: str | None = None) -> list[tuple[int, int, str, str]]:
    db = plugin_data(home) / "state.db"
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        sql = "SELECT seq, ts_us, kind, data FROM audit"
        rows = conn.execute(sql + (" WHERE kind = ?" if kind else "") + " ORDER BY seq",
                            (kind,) if kind else ()).fetchall()
    finally:
        conn.close()
    return rows


def wait_for_audit(home: Path, kind: str, count: int = 1,
                   timeout: float = 60.0) -> list[tuple[int, int, str, str]]:
    """Rows written by background (async) hooks may land after the CLI exits."""
    deadline = time.monotonic() + timeout
    while True:
        rows = audit_rows(home, kind)
        if len(rows) >= count or time.monotonic() >= deadline:
            return rows
        time.sleep(0.1)


def run_plugin(run_claude: Callable[..., ClaudeRun], repo_root: Path, prompt: str = "go",
               *, env: dict[str, str] | None = None, **kwargs: Any) -> ClaudeRun:
    kwargs.setdefault("timeout", 180)
    run = run_claude(prompt, plugin_dir=kwargs.pop("plugin_dir", repo_root),
                     env=plugin_env(env), **kwargs)
    run.assert_plugin_loaded(PLUGIN)
    return run


def data_folder_files(home: Path) -> dict[Path, bytes]:
    """Every file under the plugin's data folder, in one consistent pass: a file that
    vanishes mid-pass (a WAL checkpointed away, a bytecode cache's temporary file renamed)
    makes the pass start again."""
    folder = plugin_data(home)
    for _ in range(20):
        try:
            return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        except FileNotFoundError:
            continue
    raise AssertionError(f"files under {folder} kept vanishing")
