"""Command results by (git tree, check definition): an unchanged tree is not re-run.

Only verdicts the code decides are cached (exit codes); a timeout, a cancel or a command
that could not start says more about the machine than the tree, so it runs again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..store.base import Store
from ..store.repos import GateRow
from .models import CheckResult

__all__ = ["GateCache"]

KEEP_US = 30 * 86_400 * 1_000_000


def _now_us() -> int:
    return time.time_ns() // 1000


class GateCache:
    def __init__(self, store: Store, *, clock_us: Callable[[], int] = _now_us) -> None:
        self._store = store
        self._now = clock_us

    def get(self, tree: str, key: str) -> tuple[str, int | None, int, str, str, int] | None:
        row = self._store.gates.get(tree, key)
        if row is None:
            return None
        return (row.status, row.exit_code, row.duration_ms, row.output_tail,
                row.output_sha256, row.output_bytes)

    def put(self, tree: str, key: str, result: CheckResult) -> None:
        if result.status not in ("passed", "failed"):
            return
        now = self._now()
        self._store.gates.put(tree, key, result.name, result.tier, GateRow(
            result.status, result.exit_code, result.duration_ms, result.output_tail,
            result.output_sha256, result.output_bytes), now_us=now, keep_after_us=now - KEEP_US)
