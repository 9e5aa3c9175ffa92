"""State store: a `Store` protocol, its repositories, two backends and a conformance suite.

SQLite (a file in the plugin data folder) is the default. `SMART_ORCHESTRATOR_STORE` set to
a `postgresql://` URL makes this machine share its state with a team (see docs/team.md).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import StoreError
from .base import AuditHead, AuditRecord, CheckpointBlob, CheckpointMeta, Store, WitnessedStore
from .sqlite import SqliteStore

__all__ = [
    "AuditHead",
    "AuditRecord",
    "CheckpointBlob",
    "CheckpointMeta",
    "SqliteStore",
    "Store",
    "WitnessedStore",
    "configured_location",
    "open_store",
]

STORE_ENV = "SMART_ORCHESTRATOR_STORE"
# The plugin option (`/plugin configure`), which .mcp.json passes to the server under its
# own name: an unset option expands to "" and must not hide the variable above.
OPTION_ENV = "SMART_ORCHESTRATOR_STORE_OPTION"


def configured_location() -> str:
    """`SMART_ORCHESTRATOR_STORE`, else the plugin's Team store option, when set (a team
    store's URL); else the SQLite file."""
    team = (os.environ.get(STORE_ENV, "").strip()
            or os.environ.get(OPTION_ENV, "").strip())
    if team:
        if not team.startswith(("postgresql://", "postgres://")):
            raise StoreError(f"{STORE_ENV} must be a postgresql:// URL",
                             hint="unset it to keep state in the local SQLite file")
        return team
    from ..paths import db_path

    return str(db_path())


def open_store(path: str | Path | None = None, *,
               readonly: bool = False) -> WitnessedStore:
    """Open the configured store, or the one at `path` (a file, or a postgresql:// URL)."""
    where = configured_location() if path is None else str(path)
    if where.startswith(("postgresql://", "postgres://")):
        from .postgres import PgStore

        return PgStore(where)
    return SqliteStore(where, readonly=readonly)
