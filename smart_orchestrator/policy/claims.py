"""Exactly-once handling of a hook event that two hooks receive.

The plugin registers two hooks on PreToolUse(Agent): an `mcp_tool` hook answered by the
warm MCP server, and a cheap command hook as the gate of last resort (an `mcp_tool` hook
whose server is not connected is skipped, which would let the call through unchecked).
Whichever claims the event first decides it; the other answers "no decision". The command
hook gives a live server a short head start before claiming itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from ..store.sqlite import SqliteStore

__all__ = ["ServerBeacon", "claim", "claim_key", "server_is_live", "wait_for_claim"]

CLAIM_TTL_S = 24 * 3600


def claim_key(event: str, session_id: str, tool_use_id: str, agent_id: str) -> str:
    return f"{event}:{session_id}:{tool_use_id or agent_id}"


def claim(store: SqliteStore, key: str, owner: str, now: float | None = None) -> bool:
    now_us = int((now if now is not None else time.time()) * 1e6)
    with store.transaction() as conn:
        cur = conn.execute("INSERT OR IGNORE INTO claims VALUES (?, ?, ?)", (key, owner, now_us))
        if now_us % 97 == 0:  # occasional pruning keeps the table small without a daemon
            conn.execute("DELETE FROM claims WHERE ts_us < ?", (now_us - CLAIM_TTL_S * 10**6,))
        return cur.rowcount == 1


def wait_for_claim(store: SqliteStore, key: str, grace_s: float,
                   sleep: Callable[[float], None] = time.sleep) -> str | None:
    """The owner of `key` once someone claims it, or None after `grace_s`."""
    deadline = time.monotonic() + grace_s
    while True:
        try:
            row = store.query("SELECT owner FROM claims WHERE key = ?", (key,))
        except sqlite3.Error:
            row = []
        if row:
            return str(row[0][0])
        if time.monotonic() >= deadline:
            return None
        sleep(0.005)


def _beacon_path(data_dir: Path, session_id: str) -> Path:
    safe = "".join(c for c in session_id if c.isalnum() or c in "-_") or "default"
    return data_dir / "servers" / f"{safe}.lock"


class ServerBeacon:
    """Held by a running MCP server: an exclusive lock on a per-session file."""

    def __init__(self, data_dir: Path, session_id: str) -> None:
        self.path = _beacon_path(data_dir, session_id)
        self._fh: IO[str] | None = None

    def hold(self) -> bool:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = self.path.open("a+")
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        fh.truncate(0)
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        return True

    def beat(self) -> None:
        """Tells hooks the server is responsive, not only alive (see hooks/run.sh)."""
        if self._fh is not None:
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def server_is_live(data_dir: Path, session_id: str) -> bool:
    path = _beacon_path(data_dir, session_id)
    try:
        with path.open("r") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
            return False
    except OSError:
        return False
