"""The session transcripts hooks named lately, so one session's hook can hear another
session's main agent waiting out a 429 (Claude Code writes that retry only to its own
session's transcript, and the waiting session runs no hook meanwhile)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["LiveTranscripts"]


class LiveTranscripts:
    """Thread-safe: the service decides hook calls in worker threads. Bounded, newest
    kept: a transcript not named for `keep_s` (its session idle or gone) is dropped."""

    def __init__(self, *, most: int = 32, keep_s: float = 900.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._most, self._keep_s, self._clock = most, keep_s, clock
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def note(self, path: str) -> None:
        now = self._clock()
        with self._lock:
            self._seen[path] = now
            self._seen.move_to_end(path)
            while len(self._seen) > self._most:
                self._seen.popitem(last=False)

    def forget(self, path: str) -> None:
        with self._lock:
            self._seen.pop(path, None)

    def recent(self) -> list[str]:
        """Newest first."""
        cutoff = self._clock() - self._keep_s
        with self._lock:
            for path in [p for p, at in self._seen.items() if at < cutoff]:
                del self._seen[path]
            return list(reversed(self._seen))
