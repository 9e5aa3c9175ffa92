"""Which server process drives a wave, and whether it is still alive.

The token names a process by host, pid and start time, so a recycled pid is never taken
for the server that crashed.
"""

from __future__ import annotations

import os
import socket

import psutil

__all__ = ["owner_alive", "owner_token"]


def owner_token(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    try:
        started = int(psutil.Process(pid).create_time() * 1000)
    except psutil.Error:
        started = 0
    return f"{socket.gethostname()}:{pid}:{started}"


def owner_alive(owner: str | None, me: str) -> bool:
    """True when `owner` is a live process other than `me` (unknown hosts count as alive)."""
    if owner is None or owner == me:
        return False
    try:
        host, pid_text, _ = owner.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != socket.gethostname():
        return True  # another machine cannot be checked: assume it still drives the wave
    return psutil.pid_exists(pid) and owner_token(pid) == owner
