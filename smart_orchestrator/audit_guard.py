"""A long-running process's watch over the audit chain and its witness.

A hook process sees the files once; the MCP server lives for the whole session and so can
notice what happens between writes: the database deleted or replaced (its file changes
under the open connection), or the witness losing entries this process saw. Whatever it
notices is recorded in the chain as an `audit.gap`, at once, not at the next write.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .store.witnessing import GAP_KIND
from .witness import Checkpoint, WitnessError

if TYPE_CHECKING:
    from .store.base import AuditRecord, WitnessedStore

__all__ = ["AuditGuard"]


class AuditGuard:
    def __init__(self, store: WitnessedStore) -> None:
        self._store = store
        self._seen: Checkpoint | None = None
        self._last_gap: str | None = None

    def check(self) -> AuditRecord | None:
        """Compare the database with its witness and with the newest head seen witnessed
        before; returns the gap row recorded, if any."""
        store = self._store
        _, recorded = store.follow_path()
        # A gap recorded since the last look (by this process on reopening, or another)
        # starts a new epoch: the head seen before it is accounted for there.
        if recorded is None:
            seen = self._seen if self._newest_gap() == self._last_gap else None
            recorded = store.reconcile_witness(seen=seen)
        try:
            latest = store.witness.latest()
        except WitnessError:
            latest = None
        if latest is not None and (self._seen is None or recorded is not None
                                   or latest.gap or latest.seq >= self._seen.seq):
            self._seen = latest
        self._last_gap = self._newest_gap()
        return recorded

    def _newest_gap(self) -> str | None:
        rows = self._store.audit.events(kinds=(GAP_KIND,), newest_first=True, limit=1)
        return rows[0].hash if rows else None
