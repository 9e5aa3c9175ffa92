"""State store: a `Store` protocol, its SQLite backend and a conformance suite."""

from __future__ import annotations

from pathlib import Path

from .base import AuditHead, AuditRecord, CheckpointBlob, CheckpointMeta, Store
from .sqlite import SqliteStore

__all__ = [
    "AuditHead",
    "AuditRecord",
    "CheckpointBlob",
    "CheckpointMeta",
    "SqliteStore",
    "Store",
    "open_store",
]


def open_store(path: str | Path | None = None, *, readonly: bool = False) -> SqliteStore:
    """Open the configured store (`SMART_ORCHESTRATOR_DB`, else the plugin data folder)."""
    if path is None:
        from ..paths import db_path

        path = db_path()
    return SqliteStore(path, readonly=readonly)
