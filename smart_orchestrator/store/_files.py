"""Files under an open database: noticing it was deleted or replaced, and what to do with
the log files the old one left."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["abandon", "folder_lock", "ident", "move_aside", "sidecars"]


def ident(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


_ABANDONED: list[sqlite3.Connection] = []


def abandon(conn: sqlite3.Connection) -> None:
    """Never close a connection whose file was deleted or replaced: SQLite removes the
    `-wal` and `-shm` files by name on close, and those names now belong to the new
    database. The connection is kept alive (and leaked at exit) instead."""
    import ctypes

    _ABANDONED.append(conn)
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(conn))


def sidecars(path: Path) -> list[Path]:
    return [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]


@contextmanager
def folder_lock(path: Path) -> Iterator[None]:
    """Serialises making a database and clearing the log files a gone one left."""
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        yield
        return
    try:
        fcntl.flock(dir_fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(dir_fd)


def move_aside(files: list[Path]) -> None:
    stamp = time.time_ns() // 1000
    for orphan in files:
        if not orphan.exists():
            continue  # a read-only folder refuses even a rename of nothing
        # One that cannot be moved is left to the open that follows, which then fails.
        with contextlib.suppress(OSError):
            orphan.rename(orphan.with_name(f"{orphan.name}.orphaned-{stamp}"))
