"""SQL repositories: audit reads, wave state and gate results."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..audit import chain_hash
from ..canonical import GENESIS_HASH
from ._sql import Executor
from .base import AuditRecord
from .repos import AttemptRow, GateRow, RunRow, TaskRow

if TYPE_CHECKING:
    from ._sql import Dialect, SqlBackend

__all__ = ["SqlAuditQueries", "SqlGates", "SqlWaves", "append_link", "audit_record",
           "iter_audit_rows"]


def audit_record(row: Sequence[Any]) -> AuditRecord:
    seq, ts_us, kind, data, prev, digest = row
    return AuditRecord(seq, _int(ts_us), _text(kind), _loads(data), _text(prev), _text(digest))


def append_link(conn: Executor, kind: str, data: Mapping[str, Any], ts_us: int, *,
                head_lock: str = "",
                check_head: Callable[[int, int, str], tuple[int, int, str]] | None = None,
                head: tuple[int, int, str] | None = None) -> AuditRecord:
    """The chain's next row and head, written through `conn` inside the caller's
    transaction. `head_lock` is appended to the head's SELECT (PostgreSQL's FOR UPDATE);
    `head`, when given, is the head (count, seq, hash) read already in this transaction;
    `check_head` sees the head before the row goes on, and returns the head to go on
    from (another, when it appended a row first)."""
    if head is None:
        head = conn.execute("SELECT count, seq, hash FROM audit_head WHERE id = 1" +
                            head_lock).fetchone()
    count, last_seq, prev = head if head else (0, 0, GENESIS_HASH)
    if check_head is not None:
        count, last_seq, prev = check_head(count, last_seq, prev)
    seq = last_seq + 1
    digest = chain_hash(prev, seq, ts_us, kind, data)
    conn.execute("INSERT INTO audit (seq, ts_us, kind, data, prev_hash, hash) "
                 "VALUES (?,?,?,?,?,?)",
                 (seq, ts_us, kind, json.dumps(data, sort_keys=True), prev, digest))
    conn.execute("INSERT INTO audit_head (id, count, seq, hash) VALUES (1, ?, ?, ?) "
                 "ON CONFLICT (id) DO UPDATE SET count = excluded.count, "
                 "seq = excluded.seq, hash = excluded.hash", (count + 1, seq, digest))
    return AuditRecord(seq, ts_us, kind, dict(data), prev, digest)


def iter_audit_rows(query: Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]],
                    after_seq: int = 0) -> Iterator[AuditRecord]:
    """The chain from `after_seq` on, read in batches so a long chain is never held whole."""
    batch = 1000
    while True:
        rows = query("SELECT seq, ts_us, kind, data, prev_hash, hash FROM audit "
                     "WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, batch))
        for row in rows:
            yield audit_record(row)
        if len(rows) < batch:
            return
        after_seq = rows[-1][0]


def _loads(text: object) -> Mapping[str, Any]:
    # A damaged row must reach the chain check, which names it, not crash the reader.
    try:
        value = json.loads(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return {"_unreadable": True}
    return value if isinstance(value, dict) else {"_": value}


def _int(value: object) -> int:
    return value if isinstance(value, int) else -1  # damaged: fails the chain check


def _text(value: object) -> str:
    return value if isinstance(value, str) else repr(value)  # damaged: fails the chain check


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _where(dialect: Dialect, kinds: Sequence[str] | None, kind_prefix: str | None,
           match: Mapping[str, str] | None, since_us: int | None,
           until_us: int | None) -> tuple[str, list[Any]]:
    parts, args = ["1 = 1"], list[Any]()
    if kinds is not None:
        parts.append(f"kind IN ({','.join('?' * len(kinds))})")
        args += list(kinds)
    if kind_prefix is not None:
        parts.append("kind LIKE ? ESCAPE '\\'")
        args.append(_like_prefix(kind_prefix))
    for field, value in (match or {}).items():
        # The field is a path the caller chose in code, never data: still quoted as one.
        parts.append(f"{dialect.json_text} = ?")
        args += [dialect.json_path(field), value]
    if since_us is not None:
        parts.append("ts_us >= ?")
        args.append(since_us)
    if until_us is not None:
        parts.append("ts_us < ?")
        args.append(until_us)
    return " AND ".join(parts), args


class SqlAuditQueries:
    def __init__(self, store: SqlBackend) -> None:
        self._s = store

    def events(self, *, kinds: Sequence[str] | None = None, kind_prefix: str | None = None,
               match: Mapping[str, str] | None = None, since_us: int | None = None,
               until_us: int | None = None, limit: int | None = None,
               newest_first: bool = False) -> list[AuditRecord]:
        where, args = _where(self._s.dialect, kinds, kind_prefix, match, since_us, until_us)
        sql = (f"SELECT seq, ts_us, kind, data, prev_hash, hash FROM audit WHERE {where} "
               f"ORDER BY seq {'DESC' if newest_first else 'ASC'}")
        if limit is not None:
            sql, args = sql + " LIMIT ?", [*args, limit]
        return [audit_record(r) for r in self._s.query(sql, tuple(args))]

    def count(self, *, kind_prefix: str | None = None,
              match: Mapping[str, str] | None = None) -> int:
        where, args = _where(self._s.dialect, None, kind_prefix, match, None, None)
        return int(self._s.query(f"SELECT count(*) FROM audit WHERE {where}", tuple(args))[0][0])

    def first_seq(self, *, kind_prefix: str, last: int) -> int | None:
        rows = self._s.query("SELECT min(seq) FROM (SELECT seq FROM audit WHERE kind LIKE ? "
                             "ESCAPE '\\' ORDER BY seq DESC LIMIT ?)",
                             (_like_prefix(kind_prefix), last))
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    def hash_at(self, seq: int) -> str | None:
        found = self._s.query("SELECT hash FROM audit WHERE seq = ?", (seq,))
        return str(found[0][0]) if found else None

    def tail(self) -> tuple[int, str]:
        found = self._s.query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
        return (int(found[0][0]), str(found[0][1])) if found else (0, GENESIS_HASH)


_TASK_COLS = ("task_id, position, state, attempts, started_us, finished_us, input_tokens, "
              "output_tokens, cost_usd, error_class, reason, output, compensation, "
              "compensation_reason")
_RUN_COLS = ("run_id, name, state, created_us, updated_us, finished_us, plan, options, owner, "
             "reason, stop_class, stats")


class SqlWaves:
    def __init__(self, store: SqlBackend) -> None:
        self._s = store

    def available(self) -> bool:
        return bool(self._s.query(self._s.dialect.has_table, ("wave_runs",)))

    def create_run(self, run: RunRow, task_ids: Sequence[str]) -> None:
        with self._s.atomic() as conn:
            conn.execute(f"INSERT INTO wave_runs ({_RUN_COLS}) VALUES "
                         "(?,?,?,?,?,?,?,?,?,?,?,?)", tuple(run))
            for i, task_id in enumerate(task_ids):
                conn.execute("INSERT INTO wave_tasks (run_id, task_id, position, state) "
                             "VALUES (?,?,?,?)", (run.run_id, task_id, i, "pending"))

    def run(self, run_id: str) -> RunRow | None:
        rows = self._s.query(f"SELECT {_RUN_COLS} FROM wave_runs WHERE run_id = ?", (run_id,))
        return RunRow(*rows[0]) if rows else None

    def runs(self, *, limit: int, state: str | None = None) -> list[RunRow]:
        sql, args = f"SELECT {_RUN_COLS} FROM wave_runs", tuple[str, ...]()
        if state is not None:
            sql, args = sql + " WHERE state = ?", (state,)
        rows = self._s.query(sql + " ORDER BY created_us DESC, run_id LIMIT ?", (*args, limit))
        return [RunRow(*r) for r in rows]

    def next_run_after(self, created_us: int) -> int | None:
        rows = self._s.query("SELECT min(created_us) FROM wave_runs WHERE created_us > ?",
                             (created_us,))
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    def _change(self, sql: str, args: tuple[object, ...]) -> int:
        with self._s.atomic() as conn:
            return int(conn.execute(sql, args).rowcount)

    def set_owner(self, run_id: str, owner: str | None, previous: str | None,
                  now_us: int) -> bool:
        if previous is None:
            return self._change("UPDATE wave_runs SET owner = ?, updated_us = ? "
                                "WHERE run_id = ? AND owner IS NULL",
                                (owner, now_us, run_id)) == 1
        return self._change("UPDATE wave_runs SET owner = ?, updated_us = ? WHERE run_id = ? "
                            "AND owner = ?", (owner, now_us, run_id, previous)) == 1

    def set_state(self, run_id: str, state: str, reason: str | None, stop_class: str | None,
                  now_us: int, finished_us: int | None) -> None:
        self._change(
            "UPDATE wave_runs SET state = ?, reason = coalesce(?, reason), "
            "stop_class = coalesce(?, stop_class), updated_us = ?, finished_us = ?, "
            "owner = CASE WHEN ? THEN NULL ELSE owner END WHERE run_id = ?",
            (state, reason, stop_class, now_us, finished_us, finished_us is not None, run_id))

    def merge_stats(self, run_id: str, stats: Mapping[str, Any]) -> None:
        with self._s.atomic() as conn:
            row = conn.execute("SELECT stats FROM wave_runs WHERE run_id = ?",
                               (run_id,)).fetchone()
            merged = {**json.loads(row[0]), **stats} if row else dict(stats)
            conn.execute("UPDATE wave_runs SET stats = ? WHERE run_id = ?",
                         (json.dumps(merged, sort_keys=True), run_id))

    def tasks(self, run_id: str) -> list[TaskRow]:
        rows = self._s.query(f"SELECT {_TASK_COLS} FROM wave_tasks WHERE run_id = ? "
                             "ORDER BY position", (run_id,))
        return [TaskRow(*r) for r in rows]

    def attempts(self, run_id: str) -> list[AttemptRow]:
        rows = self._s.query(
            "SELECT task_id, attempt, context, started_us, finished_us, outcome, error_class, "
            "reason, reformats, pid FROM wave_attempts WHERE run_id = ? "
            "ORDER BY started_us, task_id, attempt", (run_id,))
        return [AttemptRow(*r) for r in rows]

    def start_attempt(self, run_id: str, task_id: str, context: str | None,
                      now_us: int) -> int | None:
        with self._s.atomic() as conn:
            cur = conn.execute(
                "UPDATE wave_tasks SET state = 'running', attempts = attempts + 1, "
                "started_us = coalesce(started_us, ?) WHERE run_id = ? AND task_id = ? AND "
                "state IN ('pending', 'retrying')", (now_us, run_id, task_id))
            if cur.rowcount != 1:
                return None
            attempt = int(conn.execute(
                "SELECT attempts FROM wave_tasks WHERE run_id = ? AND task_id = ?",
                (run_id, task_id)).fetchone()[0])
            conn.execute(
                "INSERT INTO wave_attempts (run_id, task_id, attempt, context, started_us) "
                "VALUES (?,?,?,?,?)", (run_id, task_id, attempt, context, now_us))
        return attempt

    def set_attempt_pid(self, run_id: str, task_id: str, attempt: int, pid: int) -> None:
        self._change("UPDATE wave_attempts SET pid = ? WHERE run_id = ? AND task_id = ? "
                     "AND attempt = ?", (pid, run_id, task_id, attempt))

    def end_attempt(self, run_id: str, task_id: str, attempt: int, *, outcome: str,
                    task_state: str, finished_us: int | None, now_us: int,
                    error_class: str | None, reason: str | None, reformats: int,
                    input_tokens: int, output_tokens: int, cost_usd: float,
                    output: str | None) -> bool:
        with self._s.atomic() as conn:
            cur = conn.execute(
                "UPDATE wave_tasks SET state = ?, finished_us = ?, error_class = ?, "
                "reason = ?, output = coalesce(?, output), "
                "input_tokens = input_tokens + ?, output_tokens = output_tokens + ?, "
                "cost_usd = cost_usd + ? WHERE run_id = ? AND task_id = ? AND "
                "state = 'running' AND attempts = ?",
                (task_state, finished_us, error_class, reason, output, input_tokens,
                 output_tokens, cost_usd, run_id, task_id, attempt))
            if cur.rowcount != 1:
                return False
            conn.execute(
                "UPDATE wave_attempts SET finished_us = ?, outcome = ?, error_class = ?, "
                "reason = ?, reformats = ? WHERE run_id = ? AND task_id = ? AND attempt = ?",
                (now_us, outcome, error_class, reason, reformats, run_id, task_id, attempt))
        return True

    def fail_unstarted(self, run_id: str, task_id: str, *, state: str,
                       error_class: str | None, reason: str | None, now_us: int) -> bool:
        return self._change(
            "UPDATE wave_tasks SET state = ?, error_class = ?, reason = ?, finished_us = ? "
            "WHERE run_id = ? AND task_id = ? AND state IN ('pending', 'retrying')",
            (state, error_class, reason, now_us, run_id, task_id)) == 1

    def reset_interrupted(self, run_id: str, note: str, now_us: int) -> list[str]:
        with self._s.atomic() as conn:
            ids = [str(r[0]) for r in conn.execute(
                "SELECT task_id FROM wave_tasks WHERE run_id = ? AND "
                "state IN ('running', 'retrying') ORDER BY position", (run_id,))]
            conn.execute(
                "UPDATE wave_attempts SET finished_us = ?, outcome = 'interrupted', "
                "reason = ? WHERE run_id = ? AND finished_us IS NULL", (now_us, note, run_id))
            conn.execute(
                "UPDATE wave_tasks SET state = 'pending', reason = ? WHERE run_id = ? AND "
                "state IN ('running', 'retrying')", (note, run_id))
        return ids

    def reset_task(self, run_id: str, task_id: str, note: str, now_us: int) -> bool:
        with self._s.atomic() as conn:
            moved = conn.execute(
                "UPDATE wave_tasks SET state = 'pending', reason = ? WHERE run_id = ? AND "
                "task_id = ? AND state IN ('running', 'retrying')", (note, run_id, task_id))
            if not moved.rowcount:
                return False
            conn.execute(
                "UPDATE wave_attempts SET finished_us = ?, outcome = 'interrupted', "
                "reason = ? WHERE run_id = ? AND task_id = ? AND finished_us IS NULL",
                (now_us, note, run_id, task_id))
        return True

    def set_compensation(self, run_id: str, task_id: str, status: str,
                         reason: str | None) -> None:
        self._change("UPDATE wave_tasks SET compensation = ?, compensation_reason = ? "
                     "WHERE run_id = ? AND task_id = ?", (status, reason, run_id, task_id))


class SqlGates:
    def __init__(self, store: SqlBackend) -> None:
        self._s = store

    def get(self, tree: str, key: str) -> GateRow | None:
        rows = self._s.query(
            "SELECT status, exit_code, duration_ms, output_tail, output_sha256, output_bytes "
            "FROM gate_results WHERE tree = ? AND check_key = ?", (tree, key))
        if not rows:
            return None
        status, code, ms, tail, digest, size = rows[0]
        return GateRow(str(status), code, int(ms), str(tail), str(digest), int(size))

    def put(self, tree: str, key: str, name: str, tier: int, row: GateRow, *, now_us: int,
            keep_after_us: int) -> None:
        with self._s.atomic() as conn:
            conn.execute(
                "INSERT INTO gate_results (tree, check_key, name, tier, status, exit_code, "
                "duration_ms, output_tail, output_sha256, output_bytes, finished_us) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (tree, check_key) DO UPDATE SET "
                "status = excluded.status, exit_code = excluded.exit_code, "
                "duration_ms = excluded.duration_ms, output_tail = excluded.output_tail, "
                "output_sha256 = excluded.output_sha256, output_bytes = excluded.output_bytes, "
                "finished_us = excluded.finished_us",
                (tree, key, name, tier, *row, now_us))
            conn.execute("DELETE FROM gate_results WHERE finished_us < ?", (keep_after_us,))
