"""PostgreSQL backend: the team store several machines share (psycopg 3).

Same contract as `SqliteStore`, and the same repositories run the same SQL (`_sql`). What
SQLite's `BEGIN IMMEDIATE` gives for free, one writer at a time, comes here from a
transaction-level advisory lock that every outermost transaction takes first: a
read-then-write (a limit counted, then a lease taken; the chain's head read, then the next
link appended) is exact across every machine. Inner transactions are savepoints.

A hook decision (`decision()`) is one pipeline and one server transaction: its units of
work are savepoints in it, the client waits only for results it reads, and COMMIT is
awaited once at its end, which is what makes a distant store cost a few round trips per
decision rather than one per statement.

Faults: a lost connection fails the call in hand with one line (`StoreError`); a hook
decision then fails closed. The next call connects again. A write is never retried once
its transaction began, so nothing is decided twice; only opening a transaction, which has
done nothing yet, and reads are retried once on a fresh connection, and a decision whose
connection was found dead before anything of it reached the server (`StoreUnapplied`).

Each machine keeps a witness of the chain rows it appended, in its own data folder: a row
rewritten in the shared database by anyone is found by `audit verify` on a machine that
wrote or saw it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import conninfo

from ..canonical import GENESIS_HASH
from ..errors import StoreError, StoreUnapplied
from ..witness import Checkpoint, Witness, WitnessError, witness_for
from . import witnessing
from ._sql import POSTGRES, Dialect
from ._sql_ledger import SqlLedger, SqlRateGate
from ._sql_policy import SqlBreakers, SqlClaims, SqlLeases, SqlTrust
from ._sql_state import SqlAuditQueries, SqlGates, SqlWaves, append_link, iter_audit_rows
from .base import AuditHead, AuditRecord, CheckpointBlob, CheckpointMeta
from .hostid import host_id
from .pg_schema import PG_MIGRATIONS

__all__ = ["PgStore", "is_postgres_url", "redact"]

# Both halves of the advisory lock key: "SMOR", and the schema's hash (two stores in one
# database, as the tests make, do not wait for each other).
_LOCK_CLASS = 0x534D4F52
_LATEST = PG_MIGRATIONS[-1][0]
_LOCK = f"SELECT pg_advisory_xact_lock({_LOCK_CLASS}, hashtext(current_schema()))"
_BEGIN_LOCKED = f"BEGIN; {_LOCK}"
_HEAD = "SELECT count, seq, hash FROM audit_head WHERE id = 1"


def is_postgres_url(text: str) -> bool:
    return text.startswith(("postgresql://", "postgres://"))


def redact(dsn: str) -> str:
    """The DSN without its password, for messages and `location`."""
    try:
        parts = conninfo.conninfo_to_dict(dsn)
    except psycopg.Error:
        return "postgresql://(unparseable DSN)"
    host, port = parts.get("host") or "localhost", parts.get("port") or "5432"
    user = f"{parts['user']}@" if parts.get("user") else ""
    return f"postgresql://{user}{host}:{port}/{parts.get('dbname') or ''}"


def _now_us() -> int:
    return time.time_ns() // 1000


@functools.lru_cache(maxsize=512)
def _pg(sql: str) -> str:
    """`?` placeholders as psycopg's `%s` (the repositories write `?` for both backends)."""
    return sql.replace("%", "%%").replace("?", "%s")


class _Exec:
    """The connection as the repositories use it: `execute(sql, args)` with `?`."""

    def __init__(self, conn: psycopg.Connection[Any], pipe: psycopg.Pipeline | None = None,
                 heard: Callable[[], None] = lambda: None,
                 writes: Callable[[], None] = lambda: None) -> None:
        self._conn = conn
        self._pipe = pipe
        self._heard = heard
        self._writes = writes

    def execute(self, sql: str, args: Any = (), /) -> Any:
        if sql.lstrip()[:6].upper() != "SELECT":
            self._writes()
        cur = self._conn.execute(_pg(sql), tuple(args))
        return cur if self._pipe is None else _Piped(cur, self._pipe, self._heard)


class _Piped:
    """A statement sent in a decision's pipeline. Rows are waited for by the cursor
    itself when read; the count of changed rows only once asked for, so a write whose
    count nobody reads costs no round trip of its own."""

    def __init__(self, cur: psycopg.Cursor[Any], pipe: psycopg.Pipeline,
                 heard: Callable[[], None]) -> None:
        self._cur = cur
        self._pipe = pipe
        self._heard = heard

    @property
    def rowcount(self) -> int:
        if self._cur.pgresult is None:
            self._pipe.sync()
            self._heard()
        return self._cur.rowcount

    def fetchone(self) -> Any:
        row = self._cur.fetchone()
        self._heard()
        return row

    def fetchall(self) -> list[Any]:
        rows = self._cur.fetchall()
        self._heard()
        return rows


class PgStore:
    """One connection, serialised by a lock so worker threads may share it."""

    def __init__(self, dsn: str, *, clock_us: Callable[[], int] = _now_us,
                 connect_timeout_s: float = 5.0, lock_timeout_s: float = 30.0,
                 witness: Witness | None = None) -> None:
        self._dsn = dsn
        self._clock_us = clock_us
        self._connect_timeout_s = connect_timeout_s
        self._lock_timeout_s = lock_timeout_s
        self._lock = threading.RLock()
        self._depth = 0
        self._pending: list[AuditRecord] = []
        self._conn: psycopg.Connection[Any] | None = None
        # An open decision (`decision()`): its statements share a pipeline, and its
        # commits are confirmed, and its chain rows witnessed, when it ends.
        self._decisions = 0
        self._pipe: psycopg.Pipeline | None = None
        self._pipe_exit: contextlib.ExitStack | None = None
        self._unconfirmed: list[AuditRecord] = []
        # Whether the server answered anything in this decision, or was sent a COMMIT:
        # until either, a dead connection means nothing of it was applied.
        self._heard = self._sent_commit = False
        self._owner: int | None = None  # the thread whose decision holds the connection
        # The decision's server transaction is open (between its units of work), and the
        # chain head as read when it began, or as this decision's last append left it.
        self._tail = False
        self._failed: StoreError | None = None  # what ended this decision's transaction
        self._head_cur: psycopg.Cursor[Any] | None = None
        self._head: tuple[int, int, str] | None = None
        # Reads sent ahead in this decision (`read_ahead`), by statement and arguments.
        self._ahead: dict[tuple[str, tuple[Any, ...]], psycopg.Cursor[Any]] = {}
        self._reading_ahead = False
        self.dialect: Dialect = POSTGRES
        self.audit = SqlAuditQueries(self)
        self.leases = SqlLeases(self)
        self.breakers = SqlBreakers(self)
        self.claims = SqlClaims(self)
        self.trust = SqlTrust(self)
        self.waves = SqlWaves(self)
        self.gates = SqlGates(self)
        self.ledger = SqlLedger(self)
        self.rate_gate = SqlRateGate(self)
        self.witness_problem: str | None = None
        with self._lock:
            self._connection()
        self.witness = witness if witness is not None else _local_witness(dsn, self._schema)
        try:
            self.reconcile_witness()
        except StoreError as exc:
            # An unreadable chain is named by verify; opening must still work.
            self.witness_problem = f"could not check the witness: {exc.reason}"

    # -- connection ------------------------------------------------------------------
    @property
    def location(self) -> str:
        return redact(self._dsn)

    def _error(self, exc: psycopg.Error) -> StoreError:
        error = _translate(exc, self.location)
        # A server or driver message may quote the connection string: never its password.
        secret = _password(self._dsn)
        if secret and (secret in error.reason or secret in (error.hint or "")):
            return StoreError(error.reason.replace(secret, "***"),
                              hint=(error.hint or "").replace(secret, "***") or None)
        return error

    def reopen(self) -> PgStore:
        return PgStore(self._dsn, clock_us=self._clock_us,
                       connect_timeout_s=self._connect_timeout_s,
                       lock_timeout_s=self._lock_timeout_s, witness=self.witness)

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(
                self._dsn, autocommit=True, application_name="smart-orchestrator",
                connect_timeout=max(1, int(self._connect_timeout_s)),
                # A server gone without a goodbye is noticed in seconds, not hours.
                keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=3)
            conn.execute(
                "SELECT set_config('smart_orchestrator.host', %s, false), "
                "set_config('smart_orchestrator.writer', %s, false), "
                "set_config('lock_timeout', %s, false)",
                (host_id(), f"{os.getpid()}@{host_id()}",
                 f"{int(self._lock_timeout_s * 1000)}ms"))
            row = conn.execute("SELECT current_schema()").fetchone()
            if row is None or row[0] is None:
                raise StoreError(f"team store {self.location} has no schema to write in",
                                 hint="set search_path, or create the schema named in it")
            self._schema = str(row[0])
            _migrate(conn, self._schema)
        except psycopg.Error as exc:
            raise self._error(exc) from exc
        return conn

    def _connection(self) -> psycopg.Connection[Any]:
        if self._failed is not None and self._decisions:
            raise type(self._failed)(self._failed.reason, hint=self._failed.hint)
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                conn.close()
            self._conn = None
            conn = self._conn = self._connect()
        return conn

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        """Forget the connection and whatever it had in flight: the server rolls back the
        open transaction of a connection that closes, so nothing half done commits."""
        conn, self._conn = self._conn, None
        # Chain rows whose commit was not confirmed yet may not exist: not witnessed.
        self._pipe, self._pipe_exit, self._unconfirmed = None, None, []
        self._ahead.clear()
        self._tail, self._head, self._head_cur = False, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _pipe_failure(self, exc: psycopg.Error) -> StoreError:
        unapplied = isinstance(exc, psycopg.OperationalError) and not self._heard \
            and not self._sent_commit
        self._drop()
        error = self._error(exc)
        failure = StoreUnapplied(error.reason, hint=error.hint) if unapplied else error
        if self._decisions:
            # The decision's transaction is gone with the connection, and with it every
            # unit of work it did: the rest of it must not go on as if they stood.
            self._failed = failure
        return failure

    def _answered(self) -> None:
        self._heard = True

    # -- decisions ---------------------------------------------------------------------
    @contextmanager
    def decision(self) -> Iterator[None]:
        """The statements of one decision travel together: each is sent as it comes, and
        the client waits only where it reads a result. Transactions keep their meaning
        (the server runs BEGIN, the writers' lock, the writes and COMMIT as they arrive,
        in order); only the confirmation of their COMMITs is awaited once, at the end,
        and a failure then raises here, so the caller's decision fails closed. Chain rows
        are witnessed after that confirmation. The connection is this decision's until it
        ends, or until it waits (`idle`)."""
        with self._lock:
            if self._decisions:
                self._decisions += 1
                try:
                    yield
                finally:
                    self._decisions -= 1
                return
            self._failed = None
            self._open_pipeline()
            self._decisions, self._owner = 1, threading.get_ident()
            self._heard = self._sent_commit = False
            try:
                yield
            finally:
                failed = self._failed
                self._decisions, self._owner, self._failed = 0, None, None
                confirmed = self._close_pipeline()
                if failed is not None:
                    # Even if the caller carried on past it: a decision whose transaction
                    # failed has no result, and one that never reached the server may be
                    # made again (`StoreUnapplied`).
                    raise type(failed)(failed.reason, hint=failed.hint)
        for rec in confirmed:
            self._witness(rec)

    @contextmanager
    def idle(self) -> Iterator[None]:
        """A decision about to wait (for room to start an agent): what it sent is
        confirmed, and other threads may use the store until it goes on. Inside a
        transaction nothing is let go: the transaction must stay whole."""
        with self._lock:
            mine = self._owner == threading.get_ident() and not self._depth
            if mine:
                confirmed = self._close_pipeline()
                saved, self._decisions, self._owner = self._decisions, 0, None
        if not mine:
            yield
            return
        self._lock.release()  # the decision's own hold: free for others while it waits
        try:
            for rec in confirmed:
                self._witness(rec)
            yield
        finally:
            self._lock.acquire()
            self._decisions, self._owner = saved, threading.get_ident()
            self._open_pipeline()

    def read_ahead(self, reads: Callable[[], object]) -> None:
        """Send now, without waiting, the reads `reads` makes (its results are dropped);
        the same reads made later in this decision take these answers and cost no round
        trip of their own. Only reads outside transactions; any write sent after them
        drops what was read ahead, so no read misses this decision's own writes."""
        with self._lock:
            if self._pipe is None or self._depth:
                return
            self._reading_ahead = True
            try:
                reads()
            finally:
                self._reading_ahead = False

    def _open_pipeline(self) -> None:
        conn = self._connection()
        stack = contextlib.ExitStack()
        try:
            self._pipe = stack.enter_context(conn.pipeline())
        except psycopg.Error as exc:
            self._drop()
            raise self._error(exc) from exc
        self._pipe_exit, self._unconfirmed = stack, []

    def _close_pipeline(self) -> list[AuditRecord]:
        """Wait for every answer still due; the chain rows now known committed."""
        stack, confirmed = self._pipe_exit, _to_witness(self._unconfirmed)
        if stack is None:
            return []  # dropped on a failure: nothing is known committed
        try:
            if self._tail and self._conn is not None:
                self._sent_commit = True
                self._conn.execute("COMMIT")
            self._pipe, self._pipe_exit, self._unconfirmed = None, None, []
            self._tail, self._head, self._head_cur = False, None, None
            self._ahead.clear()
            stack.close()  # one Sync: the COMMIT, and all before it, answered
        except psycopg.Error as exc:
            # Which statements ran is unknown: the connection goes, and with it any
            # transaction still open there.
            raise self._pipe_failure(exc) from exc
        return confirmed

    # -- transactions ----------------------------------------------------------------
    def _begin(self) -> psycopg.Connection[Any]:
        """BEGIN and the writers' lock; on a connection found dead here (the server
        restarted since), once more on a new one: nothing was done yet."""
        for attempt in (1, 2):
            conn = self._connection()
            try:
                # One round trip: both statements in one message.
                conn.execute(_BEGIN_LOCKED)
                return conn
            except psycopg.OperationalError as exc:
                _rollback_quietly(conn)
                if attempt == 2 or not conn.broken:
                    raise self._error(exc) from exc
            except psycopg.Error as exc:
                _rollback_quietly(conn)
                raise self._error(exc) from exc
        raise AssertionError("unreachable")

    @contextmanager
    def transaction(self) -> Iterator[_Exec]:
        """As `SqliteStore.transaction`: the outermost serialises writers, an inner one is
        a savepoint whose failure undoes only its own writes."""
        with self._lock:
            level = self._depth
            pipe = self._pipe
            if self._reading_ahead:
                raise AssertionError("read_ahead is for reads outside transactions")
            name = f"sp{level}" if level else "unit"
            if pipe is not None:
                conn = self._connection()
                try:
                    # Queued, not awaited: the first result read waits for these too. The
                    # decision's first unit of work begins its one server transaction, with
                    # the writers' lock and the chain head its audit rows will link to;
                    # each unit is a savepoint in it, so one that fails undoes only its
                    # own writes. It commits when the decision ends or waits.
                    if level == 0 and not self._tail:
                        conn.execute("BEGIN")
                        conn.execute(_LOCK)
                        self._head_cur, self._head = conn.execute(_HEAD + " FOR UPDATE"), None
                        self._tail = True
                    conn.execute(f"SAVEPOINT {name}")
                except psycopg.Error as exc:
                    raise self._pipe_failure(exc) from exc
            elif level == 0:
                conn = self._begin()
            else:
                conn = self._connection()
                try:
                    conn.execute(f"SAVEPOINT sp{level}")
                except psycopg.Error as exc:
                    raise self._error(exc) from exc
            mark = len(self._pending)
            self._depth = level + 1
            try:
                yield _Exec(conn, pipe, self._answered, self._ahead.clear)
                conn.execute(f"RELEASE SAVEPOINT {name}" if pipe is not None or level
                             else "COMMIT")
            except BaseException as exc:
                del self._pending[mark:]
                if pipe is not None and isinstance(exc, psycopg.Error):
                    # A statement failed somewhere in the pipeline: which of them ran is
                    # unknown here, so the whole connection goes, and its transaction.
                    raise self._pipe_failure(exc) from exc
                if pipe is not None and (isinstance(exc, StoreError) or self._pipe is not pipe):
                    self._drop()
                elif pipe is not None:
                    self._head = None  # a row this unit appended is undone: read it anew
                    try:
                        conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
                        conn.execute(f"RELEASE SAVEPOINT {name}")
                    except psycopg.Error as failed:
                        raise self._pipe_failure(failed) from exc
                elif level == 0:
                    _rollback_quietly(conn)
                elif not conn.broken:
                    try:
                        conn.execute(f"ROLLBACK TO SAVEPOINT sp{level}")
                        conn.execute(f"RELEASE SAVEPOINT sp{level}")
                    except psycopg.Error:
                        pass  # the outer transaction fails with the error that follows
                if isinstance(exc, psycopg.Error):
                    raise self._error(exc) from exc
                raise
            finally:
                self._depth = level
            if level:
                return
            pending, self._pending = _to_witness(self._pending), []
            if pipe is not None:
                self._unconfirmed += pending
                return
        for rec in pending:
            self._witness(rec)

    @contextmanager
    def atomic(self) -> Iterator[_Exec]:
        with self._lock:
            if self._depth:
                yield _Exec(self._connection(), self._pipe, self._answered, self._ahead.clear)
                return
        with self.transaction() as conn:
            yield conn

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            for attempt in (1, 2):
                conn = self._connection()
                try:
                    if self._pipe is not None and not self._depth:
                        if self._reading_ahead:
                            if (sql, args) not in self._ahead:  # sent already: still good
                                self._ahead[(sql, args)] = conn.execute(_pg(sql), args)
                            return []
                        sent = self._ahead.pop((sql, args), None)
                        if sent is not None:
                            rows = sent.fetchall()
                            self._heard = True
                            return rows
                    rows = conn.execute(_pg(sql), args).fetchall()
                    self._heard = True
                    return rows
                except psycopg.OperationalError as exc:
                    # A read outside a transaction is safe to repeat once the link is back;
                    # not in a pipeline, where writes may have gone before it.
                    if self._pipe is not None:
                        raise self._pipe_failure(exc) from exc
                    if attempt == 2 or self._depth or not conn.broken:
                        raise self._error(exc) from exc
                except psycopg.Error as exc:
                    if self._pipe is not None:
                        raise self._pipe_failure(exc) from exc
                    raise self._error(exc) from exc
        raise AssertionError("unreachable")

    # -- audit -----------------------------------------------------------------------
    def append_audit(self, kind: str, data: Mapping[str, Any]) -> AuditRecord:
        with self.transaction() as conn:
            # The lock taken by the outermost transaction already serialises appenders;
            # the head row's lock says so where it matters, should that ever change.
            # A gap row is what the check would append: it goes on as it is.
            check = None if kind == witnessing.GAP_KIND else \
                (lambda *head: self._continuity(conn, *head))
            known = self._known_head()
            record = append_link(conn, kind, data, self._clock_us(), head_lock=" FOR UPDATE",
                                 check_head=check, head=known)
            if known is not None:
                # Unless a gap row went first: then read it anew next time.
                self._head = (known[0] + 1, record.seq, record.hash) \
                    if record.seq == known[1] + 1 else None
            self._pending.append(record)
            return record

    def _known_head(self) -> tuple[int, int, str] | None:
        """The chain head inside a decision's transaction, without a round trip of its
        own: read with its BEGIN, then kept by its appends."""
        if self._pipe is None or not self._tail:
            return None
        if self._head is None and self._head_cur is not None:
            cur, self._head_cur = self._head_cur, None
            row = cur.fetchone()
            self._heard = True
            self._head = (int(row[0]), int(row[1]), str(row[2])) if row else \
                (0, 0, GENESIS_HASH)
        return self._head

    def _continuity(self, conn: _Exec, count: int, seq: int, head: str) -> tuple[int, int, str]:
        """Before a row goes on the chain: has the chain gone back, or parted, from what
        this machine witnessed (a restore, another database at this address)? Then a gap
        row goes first, in the same transaction, so no new row passes for an old one.
        Costs a read of the local witness only; rows appended by others since (a chain
        longer than the witness) are checked by `reconcile_witness`."""
        try:
            latest = self.witness.latest()
        except WitnessError:
            return count, seq, head  # named by verify; a gap needs a witness to compare
        if latest is None or latest.seq < seq or (latest.seq == seq and latest.head == head):
            return count, seq, head
        found = witnessing.assess(self, self.witness)
        if not isinstance(found, witnessing.Finding) or \
                witnessing.already_recorded(self, found) is not None:
            return count, seq, head
        gap = append_link(conn, witnessing.GAP_KIND, witnessing.gap_data(
            self, found, self.witness, "the team store's chain went back or parted from "
            "this machine's witness"), self._clock_us())
        self._pending.append(gap)
        return count + 1, gap.seq, gap.hash

    def iter_audit(self, *, after_seq: int = 0) -> Iterator[AuditRecord]:
        return iter_audit_rows(self.query, after_seq)

    def audit_head(self) -> AuditHead:
        rows = self.query("SELECT count, seq, hash FROM audit_head WHERE id = 1")
        return AuditHead(*rows[0]) if rows else AuditHead(0, 0, GENESIS_HASH)

    # -- the local witness -----------------------------------------------------------
    def _witness(self, rec: AuditRecord) -> None:
        cp = Checkpoint(rec.seq, rec.hash, rec.ts_us, rec.kind == witnessing.GAP_KIND)
        try:
            self.witness.append(cp)
            self.witness_problem = None
        except StoreError as exc:  # the caller's event is committed all the same
            self.witness_problem = f"could not record a witness gap: {exc.reason}"
        except (OSError, WitnessError) as exc:
            # The event is committed; failing the caller would not uncommit it.
            self.witness_problem = f"cannot write witness {self.witness.location}: {exc}"

    def follow_path(self) -> tuple[bool, AuditRecord | None]:
        return False, None  # no file to be replaced under an open connection

    def reconcile_witness(self, *, cause: str | None = None,
                          seen: Checkpoint | None = None) -> AuditRecord | None:
        """Check the chain against this machine's witness (and `seen`, a head this process
        saw witnessed); record a loss as an `audit.gap` row. Returns that row, if any.
        A machine new to the team store starts witnessing at the chain's head."""
        with self._lock:
            try:
                return witnessing.reconcile(self, self.witness, cause, seen, self._clock_us)
            except (OSError, WitnessError) as exc:
                self.witness_problem = f"cannot write witness {self.witness.location}: {exc}"
                return None

    # -- checkpoints -----------------------------------------------------------------
    def put_checkpoint(self, name: str, payload: bytes, sha256: str, *,
                       keep: int) -> CheckpointMeta:
        created = self._clock_us()
        with self.transaction() as conn:
            row = conn.execute(
                "INSERT INTO checkpoints (name, created_us, sha256, size, payload) "
                "VALUES (?,?,?,?,?) RETURNING id",
                (name, created, sha256, len(payload), payload)).fetchone()
            conn.execute(
                "DELETE FROM checkpoints WHERE name = ? AND id NOT IN "
                "(SELECT id FROM checkpoints WHERE name = ? ORDER BY id DESC LIMIT ?)",
                (name, name, keep))
        assert row is not None
        return CheckpointMeta(int(row[0]), name, created, sha256, len(payload))

    def checkpoint_blobs(self, name: str) -> list[CheckpointBlob]:
        rows = self.query("SELECT id, name, created_us, sha256, size, payload FROM checkpoints "
                          "WHERE name = ? ORDER BY id DESC", (name,))
        return [CheckpointBlob(CheckpointMeta(*r[:5]), bytes(r[5])) for r in rows]

    def list_checkpoints(self, name: str | None = None) -> list[CheckpointMeta]:
        sql = "SELECT id, name, created_us, sha256, size FROM checkpoints"
        args: tuple[str, ...] = ()
        if name is not None:
            sql, args = sql + " WHERE name = ?", (name,)
        return [CheckpointMeta(*r) for r in self.query(sql + " ORDER BY name, id DESC", args)]

    # -- key/value -------------------------------------------------------------------
    def kv_get(self, key: str) -> str | None:
        rows = self.query("SELECT value FROM kv WHERE key = ?", (key,))
        return None if not rows else str(rows[0][0])

    def kv_set(self, key: str, value: str) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) "
                         "DO UPDATE SET value = excluded.value", (key, value))

    # -- maintenance -----------------------------------------------------------------
    def integrity_problems(self) -> list[str]:
        """The schema version, and the triggers that keep the audit table insert-only."""
        problems = []
        version = self.query("SELECT max(version) FROM schema_migrations")[0][0]
        if version != _LATEST:
            problems.append(f"schema version {version}, expected {_LATEST}")
        triggers = {r[0] for r in self.query(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = to_regclass('audit') "
            "AND NOT tgisinternal")}
        problems += [f"trigger {t} that keeps the audit table append-only is missing"
                     for t in ("audit_no_update", "audit_no_truncate") if t not in triggers]
        return problems


def _to_witness(records: list[AuditRecord]) -> list[AuditRecord]:
    """One checkpoint per transaction, the newest row's; and one for a gap row in it,
    which starts the witness's new epoch."""
    gaps = [r for r in records if r.kind == witnessing.GAP_KIND][-1:]
    return gaps + [r for r in records[-1:] if r not in gaps]


def _password(dsn: str) -> str:
    try:
        return str(conninfo.conninfo_to_dict(dsn).get("password") or "")
    except psycopg.Error:
        return ""


def _local_witness(dsn: str, schema: str) -> Witness:
    from ..paths import data_dir

    parts = conninfo.conninfo_to_dict(dsn)
    ident = "|".join(str(parts.get(k) or "") for k in ("host", "port", "dbname")) + "|" + schema
    digest = hashlib.sha256(ident.encode()).hexdigest()[:12]
    folder = data_dir()
    # A machine that only ever used the team store may have no data folder yet.
    with contextlib.suppress(OSError):  # then writing the witness says why
        folder.mkdir(parents=True, exist_ok=True)
    return witness_for(folder / f"team-{digest}.db")


def _rollback_quietly(conn: psycopg.Connection[Any]) -> None:
    if conn.broken or conn.closed:
        return
    with contextlib.suppress(psycopg.Error):  # the error being raised says more
        conn.execute("ROLLBACK")


def _migrate(conn: psycopg.Connection[Any], schema: str) -> None:
    if conn.execute("SELECT to_regclass('schema_migrations')").fetchone() not in (None, (None,)):
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
        if row is not None and row[0] >= _LATEST:
            return
    with conn.transaction():
        conn.execute(_BEGIN_LOCKED.removeprefix("BEGIN; "))
        # Created under the lock: machines opening a new schema at once would otherwise
        # race in CREATE TABLE IF NOT EXISTS (a duplicate pg_type row).
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY "
                     "KEY, name TEXT NOT NULL, applied_us BIGINT NOT NULL)")
        # Re-read under the lock: another machine may have migrated meanwhile.
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations"
                           ).fetchone()
        current = int(row[0]) if row else 0
        for version, name, sql in PG_MIGRATIONS:
            if version <= current:
                continue
            conn.execute(sql.encode())  # one script, several statements
            conn.execute("INSERT INTO schema_migrations VALUES (%s, %s, %s)",
                         (version, name, _now_us()))


def _translate(exc: psycopg.Error, where: str) -> StoreError:
    text = " ".join(str(exc).split())
    text = text if len(text) <= 200 else text[:197] + "..."
    if "append-only" in text:
        return StoreError(text.split(" CONTEXT:")[0])
    if isinstance(exc, psycopg.OperationalError):
        return StoreError(f"team store {where} unreachable ({text})",
                          hint="check the server and the network; the call was not applied")
    if isinstance(exc, psycopg.errors.LockNotAvailable):
        return StoreError(f"team store {where} stayed locked by another writer ({text})",
                          hint="retry; if it persists, find the session holding it")
    return StoreError(f"database error on team store {where}: {text}")
