"""Numbered schema migrations. Append only: a shipped migration is never edited."""

from __future__ import annotations

__all__ = ["APPLICATION_ID", "MIGRATIONS"]

# Written into the database header so a foreign SQLite file is never mistaken for ours.
APPLICATION_ID = 0x534D4F52  # "SMOR"

MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (1, "audit chain and checkpoints", """
CREATE TABLE audit (
    seq       INTEGER PRIMARY KEY,
    ts_us     INTEGER NOT NULL,
    kind      TEXT    NOT NULL,
    data      TEXT    NOT NULL,
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL UNIQUE
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: UPDATE rejected'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: DELETE rejected'); END;
CREATE TABLE audit_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    count INTEGER NOT NULL,
    seq   INTEGER NOT NULL,
    hash  TEXT    NOT NULL
);
CREATE TABLE checkpoints (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    created_us INTEGER NOT NULL,
    sha256     TEXT    NOT NULL,
    size       INTEGER NOT NULL,
    payload    BLOB    NOT NULL
);
CREATE INDEX checkpoints_by_name ON checkpoints (name, id);
CREATE TABLE kv (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""),
)
