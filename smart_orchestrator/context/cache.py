"""What progressive context reads from disk, kept between prompts.

Files are keyed by (path, mtime, size), so an edited file is read again; the file list and
the environment summary expire after `ttl_s`. One cache serves any number of prompts and
threads (a wave's agents share one).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

__all__ = ["ContextCache"]

MAX_FILE_BYTES = 1024 * 1024
MAX_INDEX_FILES = 50_000
_SKIP_DIRS = frozenset({".git", "node_modules", ".venv", "venv", "__pycache__", "dist", "build",
                        ".mypy_cache", ".ruff_cache", ".pytest_cache", "target", ".tox"})


class ContextCache:
    def __init__(self, *, max_files: int = 256, ttl_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._files: OrderedDict[str, tuple[tuple[int, int], str | None]] = OrderedDict()
        self._max_files = max_files
        self._ttl = ttl_s
        self._clock = clock
        self._timed: dict[tuple[str, str], tuple[float, object]] = {}
        self.reads = 0  # disk reads, for tests and the benchmark

    def text(self, path: Path) -> str | None:
        """The file's text, or None when it is missing, binary or too large."""
        try:
            st = path.stat()
        except OSError:
            return None
        key, stamp = str(path), (st.st_mtime_ns, st.st_size)
        with self._lock:
            hit = self._files.get(key)
            if hit is not None and hit[0] == stamp:
                self._files.move_to_end(key)
                return hit[1]
        value = _read_text(path, st.st_size)
        with self._lock:
            self.reads += 1
            self._files[key] = (stamp, value)
            self._files.move_to_end(key)
            while len(self._files) > self._max_files:
                self._files.popitem(last=False)
        return value

    def timed(self, kind: str, root: Path, compute: Callable[[], object]) -> object:
        key = (kind, str(root))
        now = self._clock()
        with self._lock:
            hit = self._timed.get(key)
            if hit is not None and now - hit[0] < self._ttl:
                return hit[1]
        value = compute()
        with self._lock:
            self._timed[key] = (now, value)
        return value

    def file_index(self, root: Path) -> tuple[str, ...]:
        value = self.timed("index", root, lambda: _list_files(root))
        assert isinstance(value, tuple)
        return value


def _read_text(path: Path, size: int) -> str | None:
    if size > MAX_FILE_BYTES:
        return None
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", "replace")


def _list_files(root: Path) -> tuple[str, ...]:
    """Project files as repository-relative paths: git's view when there is one."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=root,
                             capture_output=True, timeout=30, check=True).stdout
        return tuple(p for p in out.decode("utf-8", "replace").split("\0") if p)[:MAX_INDEX_FILES]
    except (OSError, subprocess.SubprocessError):
        pass
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS and not d.startswith(".")]
        rel = Path(dirpath).relative_to(root)
        found += [(rel / f).as_posix() for f in filenames]
        if len(found) >= MAX_INDEX_FILES:
            break
    return tuple(sorted(found)[:MAX_INDEX_FILES])
