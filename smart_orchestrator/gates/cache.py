"""Command results by (git tree, check definition): an unchanged tree is not re-run.

Only verdicts the code decides are cached (exit codes); a timeout, a cancel or a command
that could not start says more about the machine than the tree, so it runs again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..store.sqlite import SqliteStore
from .models import CheckResult

__all__ = ["GateCache"]

KEEP_US = 30 * 86_400 * 1_000_000


def _now_us() -> int:
    return time.time_ns() // 1000


class GateCache:
    def __init__(self, store: SqliteStore, *, clock_us: Callable[[], int] = _now_us) -> None:
        self._store = store
        self._now = clock_us

    def get(self, tree: str, key: str) -> tuple[str, int | None, int, str, str, int] | None:
        rows = self._store.query(
            "SELECT status, exit_code, duration_ms, output_tail, output_sha256, output_bytes "
            "FROM gate_results WHERE tree = ? AND check_key = ?", (tree, key))
        if not rows:
            return None
        status, code, ms, tail, digest, size = rows[0]
        return str(status), code, int(ms), str(tail), str(digest), int(size)

    def put(self, tree: str, key: str, result: CheckResult) -> None:
        if result.status not in ("passed", "failed"):
            return
        now = self._now()
        with self._store.transaction() as conn:
            conn.execute(
                "INSERT INTO gate_results (tree, check_key, name, tier, status, exit_code, "
                "duration_ms, output_tail, output_sha256, output_bytes, finished_us) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (tree, check_key) DO UPDATE SET "
                "status = excluded.status, exit_code = excluded.exit_code, "
                "duration_ms = excluded.duration_ms, output_tail = excluded.output_tail, "
                "output_sha256 = excluded.output_sha256, output_bytes = excluded.output_bytes, "
                "finished_us = excluded.finished_us",
                (tree, key, result.name, result.tier, result.status, result.exit_code,
                 result.duration_ms, result.output_tail, result.output_sha256,
                 result.output_bytes, now))
            conn.execute("DELETE FROM gate_results WHERE finished_us < ?", (now - KEEP_US,))
