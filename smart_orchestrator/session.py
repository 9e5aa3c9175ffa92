"""Which Claude Code session a piece of work is for.

A process started by Claude Code for one session learns it from its environment
(`CLAUDE_CODE_SESSION_ID`, `CLAUDE_PROJECT_DIR`, its parent process). The per-user service
serves every session of the user at once, so each connection binds its session here (a
context variable: tasks and worker threads started for that connection inherit it), and
the rest of the code asks `current()` instead of reading the environment.
"""

from __future__ import annotations

import os
from contextvars import ContextVar, Token
from pathlib import Path
from typing import NamedTuple

__all__ = ["SessionInfo", "bind", "bound", "current", "unbind"]


class SessionInfo(NamedTuple):
    session_id: str
    project_dir: Path
    claude_pid: int | None  # the Claude Code process: leases die with it
    policy_file: Path | None = None  # $SMART_ORCHESTRATOR_POLICY of the session, if set


_bound: ContextVar[SessionInfo | None] = ContextVar("smart_orchestrator_session", default=None)


def bind(info: SessionInfo) -> Token[SessionInfo | None]:
    return _bound.set(info)


def unbind(token: Token[SessionInfo | None]) -> None:
    _bound.reset(token)


def bound() -> SessionInfo | None:
    """The session a connection of the service bound, or None outside the service."""
    return _bound.get()


def current() -> SessionInfo:
    bound = _bound.get()
    if bound is not None:
        return bound
    pid = os.environ.get("CLAUDE_PID", "")
    policy = os.environ.get("SMART_ORCHESTRATOR_POLICY")
    return SessionInfo(os.environ.get("CLAUDE_CODE_SESSION_ID", ""),
                       Path(os.environ.get("CLAUDE_PROJECT_DIR") or os.getcwd()),
                       int(pid) if pid.isdigit() else os.getppid(),
                       Path(policy).expanduser() if policy else None)
