"""Is a lock file held? Standard library only (the shim uses it before any dependency)."""

from __future__ import annotations

import fcntl
from pathlib import Path

__all__ = ["held"]


def held(path: Path) -> bool:
    """True while some process holds an exclusive `flock` on `path` (a live server's beacon,
    a running service's lock). A missing file is not held."""
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
