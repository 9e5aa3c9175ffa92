"""Durable wave state: runs, tasks and attempts in the store's own tables (migration 3).

Every transition is a compare-and-set on the state it leaves, in one `BEGIN IMMEDIATE`
transaction, so a task is started only from `pending`/`retrying` and finished only by the
attempt that is running: no task finishes twice, even with two servers on one database.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..canonical import canonical_json
from ..errors import OrchestratorError
from ..store.sqlite import SqliteStore
from .plan import WavePlan

if TYPE_CHECKING:
    from ..audit import AuditLog

__all__ = [
    "TERMINAL_RUN_STATES",
    "AttemptRecord",
    "RunRecord",
    "StateConflict",
    "TaskRecord",
    "WaveState",
]

TERMINAL_RUN_STATES = frozenset({"completed", "failed", "partial", "cancelled"})
_TASK_COLS = ("task_id, position, state, attempts, started_us, finished_us, input_tokens, "
              "output_tokens, cost_usd, error_class, reason, output, compensation, "
              "compensation_reason")
_RUN_COLS = ("run_id, name, state, created_us, updated_us, finished_us, plan, options, owner, "
             "reason, stop_class, stats")


class StateConflict(OrchestratorError):
    """A transition found the row in another state than expected."""


@dataclass(frozen=True, slots=True)
class TaskRecord:
    task_id: str
    position: int
    state: str
    attempts: int
    started_us: int | None
    finished_us: int | None
    input_tokens: int
    output_tokens: int
    cost_usd: float
    error_class: str | None
    reason: str | None
    output: str | None
    compensation: str | None
    compensation_reason: str | None


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: str
    name: str | None
    state: str
    created_us: int
    updated_us: int
    finished_us: int | None
    plan_json: str
    options: dict[str, Any]
    owner: str | None
    reason: str | None
    stop_class: str | None
    stats: dict[str, Any]

    def plan(self) -> WavePlan:
        return WavePlan.model_validate_json(self.plan_json)


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    task_id: str
    attempt: int
    context: str
    started_us: int
    finished_us: int | None
    outcome: str | None
    error_class: str | None
    reason: str | None
    reformats: int
    pid: int | None


def _now_us() -> int:
    return time.time_ns() // 1000


class WaveState:
    def __init__(self, store: SqliteStore, *, clock_us: Callable[[], int] = _now_us) -> None:
        self._store = store
        self._now = clock_us

    # -- runs ----------------------------------------------------------------------------
    def create_run(self, run_id: str, plan: WavePlan, options: dict[str, Any],
                   owner: str) -> None:
        now = self._now()
        plan_json = canonical_json(plan.model_dump(mode="json")).decode()
        with self._store.transaction() as conn:
            conn.execute(
                f"INSERT INTO wave_runs ({_RUN_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (run_id, plan.name, "running", now, now, None, plan_json,
                 json.dumps(options, sort_keys=True), owner, None, None, "{}"))
            conn.executemany(
                "INSERT INTO wave_tasks (run_id, task_id, position, state) VALUES (?,?,?,?)",
                [(run_id, t.id, i, "pending") for i, t in enumerate(plan.tasks)])

    def run(self, run_id: str) -> RunRecord:
        rows = self._store.query(f"SELECT {_RUN_COLS} FROM wave_runs WHERE run_id = ?",
                                 (run_id,))
        if not rows:
            raise OrchestratorError(f"no wave run {run_id!r}",
                                    hint="list_runs shows the known runs")
        return _run_record(rows[0])

    def list_runs(self, *, limit: int, state: str | None = None) -> list[RunRecord]:
        sql, args = f"SELECT {_RUN_COLS} FROM wave_runs", tuple[str, ...]()
        if state is not None:
            sql, args = sql + " WHERE state = ?", (state,)
        rows = self._store.query(sql + " ORDER BY created_us DESC, run_id LIMIT ?",
                                 (*args, limit))
        return [_run_record(r) for r in rows]

    def claim(self, run_id: str, owner: str | None, *, previous: str | None) -> bool:
        """Take over driving a run from `previous` (checked dead by the caller); None
        releases it."""
        with self._store.transaction() as conn:
            cur = conn.execute(
                "UPDATE wave_runs SET owner = ?, updated_us = ? WHERE run_id = ? AND "
                "owner IS ?", (owner, self._now(), run_id, previous))
            return cur.rowcount == 1

    def set_run_state(self, run_id: str, state: str, *, reason: str | None = None,
                      stop_class: str | None = None) -> None:
        now = self._now()
        finished = now if state in TERMINAL_RUN_STATES else None
        with self._store.transaction() as conn:
            conn.execute(
                "UPDATE wave_runs SET state = ?, reason = coalesce(?, reason), "
                "stop_class = coalesce(?, stop_class), updated_us = ?, finished_us = ?, "
                "owner = CASE WHEN ? IS NULL THEN owner ELSE NULL END WHERE run_id = ?",
                (state, _redact(reason), stop_class, now, finished, finished, run_id))

    def merge_stats(self, run_id: str, stats: dict[str, Any]) -> None:
        with self._store.transaction() as conn:
            row = conn.execute("SELECT stats FROM wave_runs WHERE run_id = ?",
                               (run_id,)).fetchone()
            merged = {**json.loads(row[0]), **stats} if row else stats
            conn.execute("UPDATE wave_runs SET stats = ? WHERE run_id = ?",
                         (json.dumps(merged, sort_keys=True), run_id))

    # -- tasks ---------------------------------------------------------------------------
    def tasks(self, run_id: str) -> list[TaskRecord]:
        rows = self._store.query(f"SELECT {_TASK_COLS} FROM wave_tasks WHERE run_id = ? "
                                 "ORDER BY position", (run_id,))
        return [TaskRecord(*r) for r in rows]

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        rows = self._store.query(
            "SELECT task_id, attempt, context, started_us, finished_us, outcome, error_class, "
            "reason, reformats, pid FROM wave_attempts WHERE run_id = ? "
            "ORDER BY started_us, task_id, attempt", (run_id,))
        return [AttemptRecord(*r) for r in rows]

    def start_attempt(self, run_id: str, task_id: str, context: str) -> int:
        """pending/retrying -> running; returns the attempt number."""
        now = self._now()
        with self._store.transaction() as conn:
            cur = conn.execute(
                "UPDATE wave_tasks SET state = 'running', attempts = attempts + 1, "
                "started_us = coalesce(started_us, ?) WHERE run_id = ? AND task_id = ? AND "
                "state IN ('pending', 'retrying')", (now, run_id, task_id))
            if cur.rowcount != 1:
                raise StateConflict(f"task {task_id!r} of {run_id} is not startable")
            attempt = int(conn.execute(
                "SELECT attempts FROM wave_tasks WHERE run_id = ? AND task_id = ?",
                (run_id, task_id)).fetchone()[0])
            conn.execute(
                "INSERT INTO wave_attempts (run_id, task_id, attempt, context, started_us) "
                "VALUES (?,?,?,?,?)", (run_id, task_id, attempt, _redact(context), now))
        return attempt

    def set_attempt_pid(self, run_id: str, task_id: str, attempt: int, pid: int) -> None:
        with self._store.transaction() as conn:
            conn.execute("UPDATE wave_attempts SET pid = ? WHERE run_id = ? AND task_id = ? "
                         "AND attempt = ?", (pid, run_id, task_id, attempt))

    def end_attempt(self, run_id: str, task_id: str, attempt: int, *, outcome: str,
                    task_state: str, error_class: str | None = None,
                    reason: str | None = None, reformats: int = 0, input_tokens: int = 0,
                    output_tokens: int = 0, cost_usd: float = 0.0,
                    output: str | None = None,
                    audit: tuple[AuditLog, str, dict[str, Any]] | None = None) -> None:
        """Close the running attempt and move its task on, in one transaction, with its
        audit row when given: a crash can never keep the one without the other."""
        output, reason = _redact(output), _redact(reason)
        now = self._now()
        finished = now if task_state in ("succeeded", "failed", "cancelled") else None
        with self._store.transaction() as conn:
            cur = conn.execute(
                "UPDATE wave_tasks SET state = ?, finished_us = ?, error_class = ?, "
                "reason = ?, output = coalesce(?, output), "
                "input_tokens = input_tokens + ?, output_tokens = output_tokens + ?, "
                "cost_usd = cost_usd + ? WHERE run_id = ? AND task_id = ? AND "
                "state = 'running' AND attempts = ?",
                (task_state, finished, error_class, reason, output, input_tokens,
                 output_tokens, cost_usd, run_id, task_id, attempt))
            if cur.rowcount != 1:
                raise StateConflict(f"attempt {attempt} of task {task_id!r} is not the "
                                    "running one")
            conn.execute(
                "UPDATE wave_attempts SET finished_us = ?, outcome = ?, error_class = ?, "
                "reason = ?, reformats = ? WHERE run_id = ? AND task_id = ? AND attempt = ?",
                (now, outcome, error_class, reason, reformats, run_id, task_id, attempt))
            if audit is not None:
                log, kind, fields = audit
                log.record_in(conn, kind, **fields)

    def fail_unstarted(self, run_id: str, task_id: str, *, state: str, error_class: str | None,
                       reason: str) -> bool:
        """pending/retrying -> failed, skipped or cancelled, with the reason."""
        with self._store.transaction() as conn:
            cur = conn.execute(
                "UPDATE wave_tasks SET state = ?, error_class = ?, reason = ?, finished_us = ? "
                "WHERE run_id = ? AND task_id = ? AND state IN ('pending', 'retrying')",
                (state, error_class, _redact(reason), self._now(), run_id, task_id))
            return cur.rowcount == 1

    def reset_interrupted(self, run_id: str) -> list[str]:
        """After a crash: running/retrying tasks go back to pending, their attempt closed."""
        now = self._now()
        note = "interrupted: the server driving the wave stopped; re-run on resume"
        with self._store.transaction() as conn:
            ids = [r[0] for r in conn.execute(
                "SELECT task_id FROM wave_tasks WHERE run_id = ? AND "
                "state IN ('running', 'retrying') ORDER BY position", (run_id,))]
            conn.execute(
                "UPDATE wave_attempts SET finished_us = ?, outcome = 'interrupted', "
                "reason = ? WHERE run_id = ? AND finished_us IS NULL", (now, note, run_id))
            conn.execute(
                "UPDATE wave_tasks SET state = 'pending', reason = ? WHERE run_id = ? AND "
                "state IN ('running', 'retrying')", (note, run_id))
        return ids

    def set_compensation(self, run_id: str, task_id: str, status: str,
                         reason: str | None = None) -> None:
        with self._store.transaction() as conn:
            conn.execute("UPDATE wave_tasks SET compensation = ?, compensation_reason = ? "
                         "WHERE run_id = ? AND task_id = ?",
                         (status, _redact(reason), run_id, task_id))


def _run_record(row: Sequence[Any]) -> RunRecord:
    (run_id, name, state, created, updated, finished, plan, options, owner, reason,
     stop_class, stats) = row
    return RunRecord(run_id, name, state, created, updated, finished, plan,
                     json.loads(options), owner, reason, stop_class, json.loads(stats))


def _redact(text: str | None) -> str | None:
    """Outputs, contexts and reasons (which can quote an agent's error) are stored, and
    outputs handed to dependent tasks: credentials are not kept, pragma or not."""
    from ..scrub import scrub_text

    return scrub_text(text) if text else text
