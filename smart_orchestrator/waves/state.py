"""Durable wave state: runs, tasks and attempts in the store's own tables (migration 3).

Every transition is a compare-and-set on the state it leaves, in one transaction, so a
task is started only from `pending`/`retrying` and finished only by the attempt that is
running: no task finishes twice, even with two servers on one database.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..canonical import canonical_json
from ..errors import OrchestratorError
from ..store.base import Store
from ..store.repos import RunRow, TaskRow
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


class StateConflict(OrchestratorError):
    """A transition found the row in another state than expected."""


# A task as the store keeps it; its fields are already plain values.
TaskRecord = TaskRow


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
    def __init__(self, store: Store, *, clock_us: Callable[[], int] = _now_us) -> None:
        self._store = store
        self._waves = store.waves
        self._now = clock_us

    @property
    def store(self) -> Store:
        return self._store

    # -- runs ----------------------------------------------------------------------------
    def create_run(self, run_id: str, plan: WavePlan, options: dict[str, Any],
                   owner: str) -> None:
        now = self._now()
        plan_json = canonical_json(plan.model_dump(mode="json")).decode()
        self._waves.create_run(
            RunRow(run_id, plan.name, "running", now, now, None, plan_json,
                   json.dumps(options, sort_keys=True), owner, None, None, "{}"),
            [t.id for t in plan.tasks])

    def run(self, run_id: str) -> RunRecord:
        row = self._waves.run(run_id)
        if row is None:
            raise OrchestratorError(f"no wave run {run_id!r}",
                                    hint="list_runs shows the known runs")
        return _run_record(row)

    def list_runs(self, *, limit: int, state: str | None = None) -> list[RunRecord]:
        return [_run_record(r) for r in self._waves.runs(limit=limit, state=state)]

    def claim(self, run_id: str, owner: str | None, *, previous: str | None) -> bool:
        """Take over driving a run from `previous` (checked dead by the caller); None
        releases it."""
        return self._waves.set_owner(run_id, owner, previous, self._now())

    def set_run_state(self, run_id: str, state: str, *, reason: str | None = None,
                      stop_class: str | None = None) -> None:
        now = self._now()
        finished = now if state in TERMINAL_RUN_STATES else None
        self._waves.set_state(run_id, state, _redact(reason), stop_class, now, finished)

    def merge_stats(self, run_id: str, stats: dict[str, Any]) -> None:
        self._waves.merge_stats(run_id, stats)

    # -- tasks ---------------------------------------------------------------------------
    def tasks(self, run_id: str) -> list[TaskRecord]:
        return self._waves.tasks(run_id)

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        return [AttemptRecord(*r) for r in self._waves.attempts(run_id)]

    def start_attempt(self, run_id: str, task_id: str, context: str) -> int:
        """pending/retrying -> running; returns the attempt number."""
        attempt = self._waves.start_attempt(run_id, task_id, _redact(context), self._now())
        if attempt is None:
            raise StateConflict(f"task {task_id!r} of {run_id} is not startable")
        return attempt

    def set_attempt_pid(self, run_id: str, task_id: str, attempt: int, pid: int) -> None:
        self._waves.set_attempt_pid(run_id, task_id, attempt, pid)

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
        with self._store.transaction():
            if not self._waves.end_attempt(
                    run_id, task_id, attempt, outcome=outcome, task_state=task_state,
                    finished_us=finished, now_us=now, error_class=error_class, reason=reason,
                    reformats=reformats, input_tokens=input_tokens,
                    output_tokens=output_tokens, cost_usd=cost_usd, output=output):
                raise StateConflict(f"attempt {attempt} of task {task_id!r} is not the "
                                    "running one")
            if audit is not None:
                log, kind, fields = audit
                log.record(kind, **fields)

    def fail_unstarted(self, run_id: str, task_id: str, *, state: str, error_class: str | None,
                       reason: str) -> bool:
        """pending/retrying -> failed, skipped or cancelled, with the reason."""
        return self._waves.fail_unstarted(run_id, task_id, state=state,
                                          error_class=error_class, reason=_redact(reason),
                                          now_us=self._now())

    def reset_interrupted(self, run_id: str) -> list[str]:
        """After a crash: running/retrying tasks go back to pending, their attempt closed."""
        note = "interrupted: the server driving the wave stopped; re-run on resume"
        return self._waves.reset_interrupted(run_id, note, self._now())

    def reset_task(self, run_id: str, task_id: str, note: str) -> bool:
        """A task another process left running (it died) back to pending, its attempt
        closed `interrupted`."""
        return self._waves.reset_task(run_id, task_id, note, self._now())

    def set_compensation(self, run_id: str, task_id: str, status: str,
                         reason: str | None = None) -> None:
        self._waves.set_compensation(run_id, task_id, status, _redact(reason))


def _run_record(row: RunRow) -> RunRecord:
    return RunRecord(row.run_id, row.name, row.state, row.created_us, row.updated_us,
                     row.finished_us, row.plan_json, json.loads(row.options), row.owner,
                     row.reason, row.stop_class, json.loads(row.stats))


def _redact(text: str | None) -> str | None:
    """Outputs, contexts and reasons (which can quote an agent's error) are stored, and
    outputs handed to dependent tasks: credentials are not kept, pragma or not."""
    from ..scrub import scrub_text

    return scrub_text(text) if text else text
