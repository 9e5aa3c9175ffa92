"""A per-session lock file held while that session's MCP server is up, for `status`.

The per-user service holds one for each connected session; the stdio server (`serve`)
holds its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import IO

from .locks import held

__all__ = ["BEAT_STALE_S", "ServerBeacon", "server_is_live"]

# The server beats every second; `status` calls a server whose beat is older than this
# unresponsive.
BEAT_STALE_S = 10.0


def _safe_session(session_id: str) -> str:
    return "".join(c for c in session_id if c.isalnum() or c in "-_") or "default"


def _beacon_path(data_dir: Path, session_id: str) -> Path:
    return data_dir / "servers" / f"{_safe_session(session_id)}.lock"


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
        """Tells `status` the server's event loop is responsive, not only alive."""
        if self._fh is not None:
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def server_is_live(data_dir: Path, session_id: str) -> bool:
    return held(_beacon_path(data_dir, session_id))
