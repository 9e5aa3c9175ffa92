"""Run `claude -p` with stream-json output and follow the main agent's tool calls live."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

__all__ = ["Session", "ToolCall", "run_session"]


@dataclass(slots=True)
class ToolCall:
    """One tool call of the main agent and, once it came back, its result."""

    id: str
    name: str
    input: dict[str, Any]
    called_at: float
    text: str | None = None
    is_error: bool = False
    returned_at: float | None = None

    def json(self) -> Any:
        """The result as JSON (MCP tools answer with their structured content)."""
        try:
            return json.loads(self.text or "")
        except ValueError:
            return None


@dataclass(slots=True)
class Session:
    started: float
    init: dict[str, Any] | None = None
    calls: list[ToolCall] = field(default_factory=list)
    result: dict[str, Any] | None = None
    returncode: int | None = None
    timed_out: bool = False
    stderr_path: Path | None = None

    def calls_to(self, name: str) -> list[ToolCall]:
        return [c for c in self.calls if c.name == name or c.name.endswith("__" + name)]

    def stderr_tail(self, chars: int = 1500) -> str:
        if self.stderr_path is None or not self.stderr_path.exists():
            return ""
        return self.stderr_path.read_text(errors="replace")[-chars:]


Listener = Callable[[str, Any], None]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(b.get("text", "") for b in content or []
                     if isinstance(b, dict) and b.get("type") == "text")


class _Reader:
    """Turns stream-json lines into `init`, `call`, `result` and `end` events."""

    def __init__(self, session: Session, listener: Listener) -> None:
        self.session, self.listener = session, listener
        self.by_id: dict[str, ToolCall] = {}

    def line(self, raw: str) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        kind = message.get("type")
        if kind == "system" and message.get("subtype") == "init":
            self.session.init = message
            self.listener("init", message)
        elif kind == "result":
            self.session.result = message
            self.listener("end", message)
        elif kind in ("assistant", "user") and message.get("parent_tool_use_id") is None:
            for block in (message.get("message") or {}).get("content") or []:
                if isinstance(block, dict):
                    self._block(block)

    def _block(self, block: dict[str, Any]) -> None:
        now = time.monotonic()
        if block.get("type") == "tool_use":
            call = ToolCall(str(block.get("id")), str(block.get("name")),
                            dict(block.get("input") or {}), now)
            self.by_id[call.id] = call
            self.session.calls.append(call)
            self.listener("call", call)
        elif block.get("type") == "tool_result":
            done = self.by_id.get(str(block.get("tool_use_id")))
            if done is None or done.returned_at is not None:
                return
            done.text, done.is_error = _text(block.get("content")), bool(block.get("is_error"))
            done.returned_at = now
            self.listener("result", done)

    def pump(self, stream: Iterable[str]) -> None:
        for raw in stream:
            self.line(raw)


def _stragglers(home: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.pid != os.getpid() and proc.environ().get("HOME") == home:
                found.append(proc)
    return found


def reap(home: str, grace_s: float = 5.0) -> None:
    """Hooks Claude Code starts as it exits (SessionEnd) can outlive it and still write to
    the session's folders: let them finish for `grace_s`, then stop them. The session's
    HOME is a fresh folder, so whatever runs with it is this session's."""
    procs = _stragglers(home)
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=grace_s)


def run_session(args: Sequence[str], *, env: Mapping[str, str], cwd: Path, timeout_s: float,
                stderr_path: Path, listener: Listener) -> Session:
    """Run the CLI to the end (or `timeout_s`, then kill its process group), then reap
    what it left running."""
    session = Session(time.monotonic(), stderr_path=stderr_path)
    reader = _Reader(session, listener)
    with stderr_path.open("w") as err:
        # A session of its own: on timeout the whole tree (hooks, MCP server) goes with it.
        proc = subprocess.Popen(list(args), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=err, text=True,
                                errors="replace", start_new_session=True)
        assert proc.stdout is not None
        pump = threading.Thread(target=reader.pump, args=(proc.stdout,), name="demo-stream",
                                daemon=True)
        pump.start()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            session.timed_out = True
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            pump.join(timeout=10)
            session.returncode = proc.wait()
    reap(env["HOME"])
    return session
