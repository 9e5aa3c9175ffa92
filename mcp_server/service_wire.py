"""What the shim and the service agree on: where the socket is, the plugin's stamp, limits.

Standard library only: the shim imports this before any dependency is installed.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["MAX_LINE", "plugin_stamp", "ready_marker", "service_lock", "socket_path"]

MAX_LINE = 128 * 1024 * 1024  # one MCP message; a 5 MB prompt is well inside
ROOT = Path(__file__).resolve().parent.parent
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path holds 108 bytes with the terminating NUL


def plugin_stamp() -> str:
    """Which code a service runs: a plugin update installs into a new folder, and a
    version bump in place changes the version."""
    from smart_orchestrator import __version__

    return f"{__version__}:{ROOT}"


def run_dir(data: Path) -> Path:
    return data / "run"


def service_lock(data: Path) -> Path:
    path = run_dir(data) / "service.lock"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def ready_marker(data: Path) -> Path:
    """Written by a service that is up: the SessionStart hook checks it without Python."""
    return data / "service.json"


def socket_path(data: Path) -> Path:
    """In the data folder's private `run/` folder; when that path is too long for a Unix
    socket, in a private per-user folder under the temporary directory instead."""
    natural = run_dir(data) / "service.sock"
    if len(os.fsencode(natural)) <= _SUN_PATH_MAX:
        return natural
    digest = hashlib.sha256(os.fsencode(data.resolve())).hexdigest()[:20]
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or "/tmp") / f"smart-orchestrator-{os.getuid()}"
    return base / f"{digest}.sock"


def private_dir_ok(folder: Path) -> str | None:
    """None when `folder` is ours and only ours; otherwise why not (someone else could
    have made it first, to answer in our service's place)."""
    try:
        st = folder.stat()
    except OSError as exc:
        return f"cannot use {folder}: {exc.strerror}"
    if st.st_uid != os.getuid():
        return f"{folder} belongs to another user"
    if st.st_mode & 0o077:
        return f"{folder} is open to other users (mode {st.st_mode & 0o777:o})"
    return None
