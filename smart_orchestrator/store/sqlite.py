"""SQLite backend: WAL, busy timeout, BEGIN IMMEDIATE writes, checked on open.

Synchronous on purpose: decisions run in the service's worker threads and the CLI opens
it for one command; neither should pay for an event loop. Async code (the MCP server, the
wave loop) calls it from worker threads: the connection is shared under a lock (see
docs/architecture.md).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from ..canonical import GENESIS_HASH
from ..errors import StoreError
from ..witness import Checkpoint, Witness, WitnessError, witness_for
from . import witnessing
from ._files import abandon, folder_lock, ident, move_aside, sidecars
from ._sql import SQLITE, Dialect
from ._sql_ledger import SqlLedger, SqlRateGate
from ._sql_policy import SqlBreakers, SqlClaims, SqlLeases, SqlTrust
from ._sql_state import SqlAuditQueries, SqlGates, SqlWaves, append_link, iter_audit_rows
from .base import AuditHead, AuditRecord, CheckpointBlob, CheckpointMeta
from .migrations import APPLICATION_ID, MIGRATIONS

__all__ = ["SqliteStore"]

_SQLITE_MAGIC = b"SQLite format 3\x00"
# SQLite quotes damaged schema text in its messages, which then fail to decode as UTF-8.
_DB_ERRORS = (sqlite3.Error, UnicodeDecodeError)
_LATEST = MIGRATIONS[-1][0]
T = TypeVar("T")


def _now_us() -> int:
    return time.time_ns() // 1000


class SqliteStore:
    """One connection, serialised by a lock so a worker thread may share it."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 10.0,
                 readonly: bool = False, clock_us: Callable[[], int] = _now_us,
                 witness: Witness | None = None) -> None:
        self._path = Path(path)
        self._clock_us = clock_us
        self._lock = threading.RLock()
        self._readonly = readonly
        self._busy_timeout_s = busy_timeout_s
        self.witness: Witness = witness if witness is not None else witness_for(self._path)
        # Why the newest checkpoint could not be written, if it could not (shown by verify).
        self.witness_problem: str | None = None
        self._pending: list[AuditRecord] = []
        self._depth = 0  # transactions open on this connection (savepoints below the first)
        self._told_unwitnessed = False
        self._conn = self._open(busy_timeout_s)
        self.dialect: Dialect = SQLITE
        self.audit = SqlAuditQueries(self)
        self.leases = SqlLeases(self)
        self.breakers = SqlBreakers(self)
        self.claims = SqlClaims(self)
        self.trust = SqlTrust(self)
        self.waves = SqlWaves(self)
        self.gates = SqlGates(self)
        self.ledger = SqlLedger(self)
        self.rate_gate = SqlRateGate(self)
        self._ident = ident(self._path)
        self._side_idents = [ident(p) for p in sidecars(self._path)]
        if not readonly:
            try:
                self.reconcile_witness()
            except StoreError as exc:
                # An unreadable chain is named by verify; opening must still work.
                self.witness_problem = f"could not check the witness: {exc.reason}"

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
        if not self._readonly and not path.exists():
            _create_fresh(path)
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
        except _DB_ERRORS as exc:
            raise _translate(exc, path) from exc
        return conn

    @property
    def location(self) -> str:
        return str(self._path)

    def reopen(self) -> SqliteStore:
        return SqliteStore(self._path, busy_timeout_s=self._busy_timeout_s,
                           clock_us=self._clock_us)

    def close(self) -> None:
        with self._lock:
            if ident(self._path) == self._ident:
                self._conn.close()
            else:
                abandon(self._conn)

    # -- the witness -----------------------------------------------------------------
    def _ensure_current(self) -> None:
        if not self._readonly:
            self.follow_path()

    def follow_path(self) -> tuple[bool, AuditRecord | None]:
        """Writes go to the file now at the path: one deleted or replaced while open gets
        reopened (a fresh one made), and what the old one held is checked for loss.
        Returns whether it was reopened, and the gap row that recorded a loss."""
        now = ident(self._path)
        if now == self._ident:
            return False, None
        how = "deleted" if now is None else "replaced"
        if now is not None:
            # A file put in place of the open one: the log files at the path are still the
            # old file's (this connection's), and SQLite would replay them into it.
            with folder_lock(self._path):
                move_aside([p for p, mine in zip(sidecars(self._path), self._side_idents,
                                                  strict=True) if mine and ident(p) == mine])
        conn = self._open(self._busy_timeout_s)
        abandon(self._conn)
        self._conn, self._ident = conn, ident(self._path)
        self._side_idents = [ident(p) for p in sidecars(self._path)]
        return True, self.reconcile_witness(cause=f"{self._path.name} was {how} while open")

    def reconcile_witness(self, *, cause: str | None = None,
                          seen: Checkpoint | None = None) -> AuditRecord | None:
        """Check the chain against its witness (and `seen`, a head this process saw
        witnessed); record a loss as an `audit.gap` row. Returns that row, if any."""
        if self._readonly:
            return None
        with self._lock:
            if self.follow_path()[0]:
                seen = None  # a head seen in the replaced file says nothing about this one
            try:
                return witnessing.reconcile(self, self.witness, cause, seen, self._clock_us)
            except (OSError, WitnessError) as exc:
                self.witness_problem = f"cannot write witness {self.witness.location}: {exc}"
                return None

    def _witness_checkpoint(self, rec: AuditRecord) -> None:
        cp = Checkpoint(rec.seq, rec.hash, rec.ts_us, rec.kind == witnessing.GAP_KIND)
        try:
            if not cp.gap and self.witness.enrolled() and not self.witness.present():
                # Gone since this store opened: that is recorded, not quietly restarted.
                self.reconcile_witness(cause="the witness disappeared while open")
                return
            self.witness.append(cp)
            self.witness_problem = None
        except StoreError as exc:  # recording a gap failed; the caller's event is committed
            self.witness_problem = f"could not record a witness gap: {exc.reason}"
        except (OSError, WitnessError) as exc:
            # The event is committed; failing the caller would not uncommit it. Unless the
            # disk is full (which the next database write reports itself), the chain says,
            # once per store, that what follows is not witnessed.
            self.witness_problem = f"cannot write witness {self.witness.location}: {exc}"
            if cp.gap or self._told_unwitnessed or \
                    getattr(exc, "errno", None) in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                return
            self._told_unwitnessed = True
            with contextlib.suppress(StoreError), self._write() as conn:
                self._append(conn, witnessing.GAP_KIND, witnessing.unwritable_data(
                    self, self.witness, self.witness_problem))

    # -- plumbing --------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One unit of work. The outermost takes the write lock up front (BEGIN IMMEDIATE),
        so read-then-write is atomic; one opened inside it is a savepoint, and an error
        inside that rolls back the savepoint only. The witness checkpoint follows the
        outermost commit, outside the lock: one per transaction."""
        with self._lock:
            level = self._depth
            if level == 0:
                self._ensure_current()
            conn, name, mark = self._conn, f"sp{level}", len(self._pending)
            begin, end = ("BEGIN IMMEDIATE", "COMMIT") if level == 0 else \
                (f"SAVEPOINT {name}", f"RELEASE {name}")
            try:
                conn.execute(begin)
            except _DB_ERRORS as exc:
                raise _translate(exc, self._path) from exc
            self._depth = level + 1
            try:
                yield conn
                conn.execute(end)
            except BaseException as exc:
                del self._pending[mark:]
                if conn.in_transaction:
                    conn.execute("ROLLBACK" if level == 0 else f"ROLLBACK TO {name}")
                    if level:
                        conn.execute(f"RELEASE {name}")
                if isinstance(exc, _DB_ERRORS):
                    raise _translate(exc, self._path) from exc
                raise
            finally:
                self._depth = level
            if level:
                return
            pending, self._pending = self._pending[-1:], []
        if pending:
            self._witness_checkpoint(pending[0])

    _write = transaction

    @contextmanager
    def decision(self) -> Iterator[None]:
        yield  # each statement is a function call away: nothing to batch

    @contextmanager
    def idle(self) -> Iterator[None]:
        yield  # a decision holds nothing between its transactions

    def read_ahead(self, reads: Callable[[], object]) -> None:
        pass  # a read costs a function call here: nothing to gain

    @contextmanager
    def atomic(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._depth:
                yield self._conn
                return
        with self.transaction() as conn:
            yield conn

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            try:
                return fn(self._conn)
            except _DB_ERRORS as exc:
                raise _translate(exc, self._path) from exc

    # -- audit -----------------------------------------------------------------------
    def append_audit(self, kind: str, data: Mapping[str, Any]) -> AuditRecord:
        """Inside a caller's `transaction()` the row commits with the caller's state change
        or not at all."""
        with self._write() as conn:
            return self._append(conn, kind, data)

    def _append(self, conn: sqlite3.Connection, kind: str,
                data: Mapping[str, Any]) -> AuditRecord:
        record = append_link(conn, kind, data, self._clock_us())
        self._pending.append(record)
        return record

    def iter_audit(self, *, after_seq: int = 0) -> Iterator[AuditRecord]:
        return iter_audit_rows(self.query, after_seq)

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
        return [CheckpointBlob(CheckpointMeta(*r[:5]), _blob(r[5])) for r in rows]

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
        """SQLite's own check (the full one: only it finds an index that disagrees with its
        table), then the schema against the one the migrations create, which SQLite does
        not check. Empty when the file is sound."""
        rows = self._read(lambda c: c.execute("PRAGMA integrity_check(20)").fetchall())
        problems = [] if rows == [("ok",)] else [str(r[0]) for r in rows]
        schema = self._read(lambda c: c.execute(_SCHEMA_SQL).fetchall())
        expected = _expected_schema()
        problems += [f"schema entry {row[1]!r} is not the one the store created"
                     for row in schema if row not in expected]
        return problems

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._read(lambda c: c.execute(sql, args).fetchall())


_SCHEMA_SQL = ("SELECT type, name, tbl_name, sql FROM sqlite_master "
               "WHERE name NOT LIKE 'sqlite_stat%' ORDER BY name")


@functools.cache
def _expected_schema() -> frozenset[tuple[Any, ...]]:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        _migrate(conn)
        return frozenset(conn.execute(_SCHEMA_SQL).fetchall())
    finally:
        conn.close()


def _create_fresh(path: Path) -> None:
    """Create the database; `-wal`/`-shm` files left by a deleted one are moved aside
    first, or SQLite would replay the old database's log into the new one."""
    with folder_lock(path):
        if path.exists():
            return  # another process made it while this one waited
        move_aside(sidecars(path))
        _create(path)


def _blob(value: object) -> bytes:
    """A payload as stored; a damaged cell of another type fails the size and digest checks."""
    if isinstance(value, bytes):
        return value
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else b""


def _check_header(path: Path) -> None:
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror}") from exc
    if not head and not _has_wal(path):
        # New databases appear complete (see `_create`): an empty one lost its content.
        raise StoreError(f"{path} is empty: the database was truncated and its state is lost",
                         hint="move it aside to start afresh; nothing was changed")
    if head and head != _SQLITE_MAGIC:
        raise StoreError(f"{path} is not a SQLite database (corrupt or foreign file)",
                         hint="move it aside or set SMART_ORCHESTRATOR_DB; nothing was changed")


def _has_wal(path: Path) -> bool:
    """Before its first checkpoint a WAL database's content is all in its `-wal` file."""
    try:
        return path.with_name(path.name + "-wal").stat().st_size > 0
    except OSError:
        return False


def _create(path: Path) -> None:
    """Build a new database beside `path` and link it into place complete, so the file at
    `path` is never empty while in use and an empty one can be refused as truncated."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.new")
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            _migrate(conn)
        finally:
            conn.close()  # checkpoints the WAL into the file
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process created it first: theirs is used
    except (OSError, sqlite3.Error):
        pass  # no hard links here, or no room: the plain open that follows decides
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-wal"),
                         tmp.with_name(tmp.name + "-shm")):
            with contextlib.suppress(OSError):
                leftover.unlink()


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


def _translate(exc: sqlite3.Error | UnicodeDecodeError, path: Path) -> StoreError:
    if isinstance(exc, UnicodeDecodeError):
        return StoreError(f"{path} is corrupt (undecodable text in the database)",
                          hint="restore a backup or move it aside; nothing was changed")
    # SQLite may quote a damaged schema, newlines and all: keep the one line one line.
    text = " ".join(str(exc).split())
    text = text if len(text) <= 200 else text[:197] + "..."
    low = text.lower()
    if "disk is full" in low or "disk i/o" in low:
        return StoreError(f"no space left writing {path}; the write was rolled back",
                          hint="free disk space and retry")
    if "readonly" in low or "read-only" in low or "unable to open" in low:
        return StoreError(f"cannot write {path}: the file or its folder is read-only",
                          hint="make it writable or set SMART_ORCHESTRATOR_DB elsewhere")
    if "not a database" in low or "malformed" in low or "could not decode" in low:
        return StoreError(f"{path} is corrupt ({text})",
                          hint="restore a backup or move it aside; nothing was changed")
    if "locked" in low or "busy" in low:
        return StoreError(f"{path} stayed locked by another process ({text})",
                          hint="retry; if it persists, find the process holding it")
    if "append-only" in low:
        return StoreError(text)
    return StoreError(f"database error on {path}: {text}")
