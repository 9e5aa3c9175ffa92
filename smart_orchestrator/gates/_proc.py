"""Run one gate command: its own process group, a timeout, the output's tail and digest.

A command runs without a shell in a new session, so a timeout or a cancel kills the whole
group (test runners fork workers). Whatever the command leaves running after it exits is
killed too: a gate must not leave processes behind. The full output is hashed while it
streams; only the last `tail_chars` characters are kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = ["ProcResult", "ProcessRunner"]

_CHUNK = 65536


@dataclass(frozen=True, slots=True)
class ProcResult:
    exit_code: int | None
    duration_s: float
    tail: str
    sha256: str
    total_bytes: int
    timed_out: bool = False
    cancelled: bool = False
    start_error: str | None = None


class _Collector:
    def __init__(self, tail_bytes: int) -> None:
        self.hash = hashlib.sha256()
        self.total = 0
        self.tail = bytearray()
        self._limit = tail_bytes
        self.done = threading.Event()

    def drain(self, stream: IO[bytes]) -> None:
        read = getattr(stream, "read1", None) or stream.read
        try:
            while chunk := read(_CHUNK):
                self.hash.update(chunk)
                self.total += len(chunk)
                self.tail += chunk
                if len(self.tail) > 2 * self._limit:
                    del self.tail[:-self._limit]
        except (OSError, ValueError):
            pass  # the pipe was closed under us after a kill
        finally:
            self.done.set()


class ProcessRunner:
    """Runs commands one at a time; `cancel()` from any thread kills the running one."""

    def __init__(self, *, term_grace_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._grace = term_grace_s
        self._clock = clock
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()
        with self._lock:
            if self._proc is not None:
                _kill_group(self._proc.pid, signal.SIGKILL)

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def run(self, argv: list[str], *, cwd: Path, env: Mapping[str, str], timeout_s: float,
            tail_chars: int) -> ProcResult:
        start = self._clock()
        if self._cancelled.is_set():
            return ProcResult(None, 0.0, "", hashlib.sha256().hexdigest(), 0, cancelled=True)
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        except OSError as exc:
            why = f"cannot start {argv[0]!r}: {exc.strerror or exc}"
            return ProcResult(None, self._clock() - start, why,
                              hashlib.sha256(why.encode()).hexdigest(), 0, start_error=why)
        with self._lock:
            self._proc = proc
            if self._cancelled.is_set():  # cancelled while it was starting
                _kill_group(proc.pid, signal.SIGKILL)
        collector = _Collector(tail_chars * 4)
        threading.Thread(target=collector.drain, args=(proc.stdout,), daemon=True,
                         name="gate-output").start()
        timed_out = False
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            self._stop(proc)
        finally:
            with self._lock:
                self._proc = None
            _kill_group(proc.pid, signal.SIGKILL)  # leftovers of a command that exited
        # A process that left the group can keep the pipe open; do not wait on it forever.
        collector.done.wait(timeout=5.0)
        tail = bytes(collector.tail).decode("utf-8", "replace")[-tail_chars:]
        return ProcResult(None if timed_out else proc.returncode, self._clock() - start, tail,
                          collector.hash.hexdigest(), collector.total, timed_out=timed_out,
                          cancelled=self._cancelled.is_set())

    def _stop(self, proc: subprocess.Popen[bytes]) -> None:
        _kill_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=self._grace)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid, signal.SIGKILL)
            proc.wait()


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
