"""Finding and ending an agent's process tree.

Each agent process carries `AGENT_MARKER_ENV=<run>/<task>/<attempt>` in its environment,
so it can be found without reaching into the SDK that started it, and so a restarted
server can find agents a crashed predecessor left behind.
"""

from __future__ import annotations

import os

import psutil

__all__ = ["AGENT_MARKER_ENV", "agent_marker", "find_child", "find_marked", "kill_tree",
           "live_processes"]

AGENT_MARKER_ENV = "SMART_ORCHESTRATOR_WAVE_AGENT"


def agent_marker(run_id: str, task_id: str, attempt: int) -> str:
    return f"{run_id}/{task_id}/{attempt}"


def _marker_of(proc: psutil.Process) -> str | None:
    try:
        marker = proc.environ().get(AGENT_MARKER_ENV)
    except (psutil.Error, OSError):
        return None
    return str(marker) if marker is not None else None


def find_child(marker: str) -> int | None:
    """The pid of this process's direct child carrying `marker`, if it is running."""
    try:
        children = psutil.Process(os.getpid()).children()
    except psutil.Error:
        return None
    for child in children:
        if _marker_of(child) == marker:
            return int(child.pid)
    return None


def find_marked(prefix: str) -> list[int]:
    """Every live process of this user whose marker starts with `prefix`."""
    found = []
    for proc in psutil.process_iter():
        marker = _marker_of(proc)
        if marker is not None and marker.startswith(prefix) and proc.pid != os.getpid():
            found.append(int(proc.pid))
    return found


def kill_tree(pid: int) -> list[int]:
    """SIGKILL a process and all its descendants, listed first so none escapes.

    No wait: the root is our child and is reaped by whoever started it (the SDK); SIGKILL
    cannot be caught, so the tree is gone at once.
    """
    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True), root]
    except psutil.Error:
        return []
    killed = []
    for proc in procs:
        try:
            proc.kill()
            killed.append(int(proc.pid))
        except psutil.Error:
            continue
    return killed


def live_processes(pids: list[int]) -> list[int]:
    """The pids still running (zombies waiting to be reaped do not count)."""
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.Error:
            continue
    return alive
