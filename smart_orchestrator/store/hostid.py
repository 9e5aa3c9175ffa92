"""A stable id of this machine, written beside the rows a host owns.

Rows shared through a team store say which machine wrote them: a lease's owner pid means
something only on its own host. `SMART_ORCHESTRATOR_HOST_ID` overrides (containers that
share a machine id, tests posing as several machines); otherwise a digest of the OS's
machine id, so the id stays the same across reboots and names no hardware.
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket

__all__ = ["host_id"]

_SOURCES = ("/etc/machine-id", "/var/lib/dbus/machine-id")


def host_id() -> str:
    override = os.environ.get("SMART_ORCHESTRATOR_HOST_ID", "").strip()
    return override[:64] if override else _from_machine()


@functools.cache
def _from_machine() -> str:
    for source in _SOURCES:
        try:
            with open(source, encoding="ascii") as fh:
                raw = fh.read().strip()
        except (OSError, ValueError):
            continue
        if raw:
            return "h-" + hashlib.sha256(b"smart-orchestrator:" + raw.encode()).hexdigest()[:16]
    name = socket.gethostname() or "localhost"
    return "n-" + hashlib.sha256(b"smart-orchestrator:" + name.encode()).hexdigest()[:16]
