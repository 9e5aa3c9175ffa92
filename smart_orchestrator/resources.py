"""System and process-tree metrics from psutil, with a safe answer when they fail.

Admission decisions (hooks and waves) read these. When metrics cannot be read, callers
get `ok=False` and must fall back to their most conservative setting, and say so.
"""

from __future__ import annotations

import os
from typing import NamedTuple

__all__ = ["SystemSnapshot", "pid_alive", "process_tree_rss", "sample_system"]


class SystemSnapshot(NamedTuple):
    ok: bool
    available_bytes: int = 0
    total_bytes: int = 0
    cpu_percent: float = 0.0
    cpu_count: int = 1
    error: str | None = None

    @property
    def available_fraction(self) -> float:
        return self.available_bytes / self.total_bytes if self.total_bytes else 0.0


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, but not ours to signal
    return True


def sample_system() -> SystemSnapshot:
    fast = _from_proc()
    if fast is not None:
        return fast
    try:
        import psutil

        mem = psutil.virtual_memory()
        # interval=None compares with the previous call: non-blocking, 0.0 on the first.
        cpu = psutil.cpu_percent(interval=None)
        return SystemSnapshot(True, int(mem.available), int(mem.total), float(cpu),
                              psutil.cpu_count() or 1)
    except Exception as exc:  # psutil raises platform-specific errors; any means "unknown"
        return SystemSnapshot(False, error=f"{type(exc).__name__}: {exc}")


def _from_proc() -> SystemSnapshot | None:
    """Linux's own figures, read directly: what psutil reads too, without its ~10 ms
    import, which matters in a hook process. Elsewhere, or on any surprise, psutil."""
    try:
        with open("/proc/meminfo", "rb") as fh:
            fields = dict(line.split(b":", 1) for line in fh.read().splitlines() if b":" in line)
        total = int(fields[b"MemTotal"].split()[0]) * 1024
        available = int(fields[b"MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError, IndexError):
        return None
    import os

    return SystemSnapshot(True, available, total, 0.0, os.cpu_count() or 1)


def process_tree_rss(pid: int) -> int:
    """Resident memory of a process and all its descendants; 0 if it is gone."""
    try:
        import psutil

        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except Exception:  # gone, or not readable: nothing to count
        return 0
    total = 0
    for proc in procs:
        try:
            total += int(proc.memory_info().rss)
        except Exception:  # a child exited between listing and reading
            continue
    return total
