"""SQLite backend: WAL, busy timeout, BEGIN IMMEDIATE writes, checked on open.

Synchronous on purpose: command hooks open it on every tool call and must not pay for an
event loop. Async callers go through `smart_orchestrator.store.aio.AsyncStore`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from ..audit import chain_hash
from ..canonical import GENESIS_HASH
from ..errors import StoreError
from .base import AuditHead, AuditRecord, CheckpointBlob, CheckpointMeta
from .migrations import APPLICATION_ID, MIGRATIONS

__all__ = ["SqliteStore"]

_SQLITE_MAGIC = b"SQLite format 3\x00"
_LATEST = MIGRATIONS[-1][0]
T = TypeVar("T")


def _now_us() -> int:
    return time.time_ns() // 1000


class SqliteStore:
    """One connection, serialised by a lock so a worker thread may share it."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 10.0,
                 readonly: bool = False, clock_us: Callable[[], int] = _now_us) -> None:
        self._path = Path(path)
        self._clock_us = clock_us
        self._lock = threading.RLock()
        self._readonly = readonly
        self._conn = self._open(busy_timeout_s)

    # -- opening ---------------------------------------------------------------------
    def _open(self, busy_timeout_s: float) -> sqlite3.Connection:
        path = self._path
        if not self._readonly:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create data directory {path.parent}: {exc.strerror}",
                                 hint="set SMART_ORCHESTRATOR_DB to a writable path") from exc
        if self._readonly and not path.exists():
            raise StoreError(f"no state database at {path} yet",
                             hint="it is created when the plugin first runs")
        _check_header(path)
        try:
            if self._readonly:
                conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True,
                                       timeout=busy_timeout_s, isolation_level=None,
                                       check_same_thread=False)
            else:
                conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None,
                                       check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            if not self._readonly:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
            _check_foreign(conn, path)
            if not self._readonly:
                _migrate(conn)
            elif conn.execute("PRAGMA user_version").fetchone()[0] == 0:
                raise StoreError(f"{path} holds no Smart Orchestrator state yet")
        except sqlite3.Error as exc:
            raise _translate(exc, path) from exc
        return conn

    @property
    def location(self) -> str:
        return str(self._path)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- plumbing --------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE takes the write lock up front, so read-then-write is atomic."""
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise _translate(exc, self._path) from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise _translate(exc, self._path) from exc
                raise

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            try:
                return fn(self._conn)
            except sqlite3.Error as exc:
                raise _translate(exc, self._path) from exc

    # -- audit -----------------------------------------------------------------------
    def append_audit(self, kind: str, data: Mapping[str, Any]) -> AuditRecord:
        with self._write() as conn:
            head = conn.execute("SELECT count, seq, hash FROM audit_head WHERE id = 1").fetchone()
            count, last_seq, prev = head if head else (0, 0, GENESIS_HASH)
            seq, ts_us = last_seq + 1, self._clock_us()
            digest = chain_hash(prev, seq, ts_us, kind, data)
            conn.execute(
                "INSERT INTO audit (seq, ts_us, kind, data, prev_hash, hash) VALUES (?,?,?,?,?,?)",
                (seq, ts_us, kind, json.dumps(data, sort_keys=True), prev, digest))
            conn.execute(
                "INSERT INTO audit_head (id, count, seq, hash) VALUES (1, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET count = excluded.count, seq = excluded.seq, "
                "hash = excluded.hash", (count + 1, seq, digest))
        return AuditRecord(seq, ts_us, kind, dict(data), prev, digest)

    def iter_audit(self, *, after_seq: int = 0) -> Iterator[AuditRecord]:
        batch = 1000
        while True:
            rows = self.query("SELECT seq, ts_us, kind, data, prev_hash, hash FROM audit "
                              "WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, batch))
            for seq, ts_us, kind, data, prev, digest in rows:
                yield AuditRecord(seq, ts_us, kind, _loads(data), prev, digest)
            if len(rows) < batch:
                return
            after_seq = rows[-1][0]

    def audit_head(self) -> AuditHead:
        row = self._read(lambda c: c.execute(
            "SELECT count, seq, hash FROM audit_head WHERE id = 1").fetchone())
        return AuditHead(*row) if row else AuditHead(0, 0, GENESIS_HASH)

    # -- checkpoints -----------------------------------------------------------------
    def put_checkpoint(self, name: str, payload: bytes, sha256: str, *,
                       keep: int) -> CheckpointMeta:
        created = self._clock_us()
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO checkpoints (name, created_us, sha256, size, payload) "
                "VALUES (?,?,?,?,?)", (name, created, sha256, len(payload), payload))
            conn.execute(
                "DELETE FROM checkpoints WHERE name = ? AND id NOT IN "
                "(SELECT id FROM checkpoints WHERE name = ? ORDER BY id DESC LIMIT ?)",
                (name, name, keep))
        assert cur.lastrowid is not None
        return CheckpointMeta(cur.lastrowid, name, created, sha256, len(payload))

    def checkpoint_blobs(self, name: str) -> list[CheckpointBlob]:
        rows = self._read(lambda c: c.execute(
            "SELECT id, name, created_us, sha256, size, payload FROM checkpoints "
            "WHERE name = ? ORDER BY id DESC", (name,)).fetchall())
        return [CheckpointBlob(CheckpointMeta(*r[:5]), bytes(r[5])) for r in rows]

    def list_checkpoints(self, name: str | None = None) -> list[CheckpointMeta]:
        sql = "SELECT id, name, created_us, sha256, size FROM checkpoints"
        args: tuple[str, ...] = ()
        if name is not None:
            sql, args = sql + " WHERE name = ?", (name,)
        rows = self._read(lambda c: c.execute(sql + " ORDER BY name, id DESC", args).fetchall())
        return [CheckpointMeta(*r) for r in rows]

    # -- key/value -------------------------------------------------------------------
    def kv_get(self, key: str) -> str | None:
        row = self._read(lambda c: c.execute("SELECT value FROM kv WHERE key = ?",
                                             (key,)).fetchone())
        return None if row is None else str(row[0])

    def kv_set(self, key: str, value: str) -> None:
        with self._write() as conn:
            conn.execute("INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) "
                         "DO UPDATE SET value = excluded.value", (key, value))

    # -- maintenance -----------------------------------------------------------------
    def integrity_problems(self) -> list[str]:
        """SQLite's own page-level check; empty when the file is sound."""
        rows = self._read(lambda c: c.execute("PRAGMA quick_check").fetchall())
        return [] if rows == [("ok",)] else [str(r[0]) for r in rows]

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """For core modules that keep their own tables in this database."""
        with self._write() as conn:
            yield conn

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._read(lambda c: c.execute(sql, args).fetchall())


def _loads(text: str) -> Mapping[str, Any]:
    value = json.loads(text)
    return value if isinstance(value, dict) else {"_": value}


def _check_header(path: Path) -> None:
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror}") from exc
    if head and head != _SQLITE_MAGIC:
        raise StoreError(f"{path} is not a SQLite database (corrupt or foreign file)",
                         hint="move it aside or set SMART_ORCHESTRATOR_DB; nothing was changed")


def _check_foreign(conn: sqlite3.Connection, path: Path) -> None:
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    if app_id == APPLICATION_ID:
        return
    tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if app_id != 0 or tables:
        raise StoreError(f"{path} is a SQLite database of another application",
                         hint="point SMART_ORCHESTRATOR_DB elsewhere; nothing was changed")


def _migrate(conn: sqlite3.Connection) -> None:
    if conn.execute("PRAGMA user_version").fetchone()[0] >= _LATEST:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Re-read under the write lock: another process may have migrated meanwhile.
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        if current == 0:
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
                         "name TEXT NOT NULL, applied_us INTEGER NOT NULL)")
        for version, name, sql in MIGRATIONS:
            if version <= current:
                continue
            for statement in _split_sql(sql):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)",
                         (version, name, _now_us()))
            conn.execute(f"PRAGMA user_version = {version}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _split_sql(script: str) -> list[str]:
    """Split on statement ends, keeping trigger bodies (BEGIN ... END;) whole."""
    statements, buf = [], ""
    for line in script.strip().splitlines():
        buf += line + "\n"
        if sqlite3.complete_statement(buf):
            statements.append(buf.strip())
            buf = ""
    if buf.strip():
        statements.append(buf.strip())
    return statements


def _translate(exc: sqlite3.Error, path: Path) -> StoreError:
    text = str(exc)
    low = text.lower()
    if "disk is full" in low or "disk i/o" in low:
        return StoreError(f"no space left writing {path}; the write was rolled back",
                          hint="free disk space and retry")
    if "readonly" in low or "read-only" in low or "unable to open" in low:
        return StoreError(f"cannot write {path}: the file or its folder is read-only",
                          hint="make it writable or set SMART_ORCHESTRATOR_DB elsewhere")
    if "not a database" in low or "malformed" in low:
        return StoreError(f"{path} is corrupt ({text})",
                          hint="restore a backup or move it aside; nothing was changed")
    if "locked" in low or "busy" in low:
        return StoreError(f"{path} stayed locked by another process ({text})",
                          hint="retry; if it persists, find the process holding it")
    if "append-only" in low:
        return StoreError(text)
    return StoreError(f"database error on {path}: {text}")
