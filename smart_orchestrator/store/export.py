"""Copy a machine's SQLite state into an empty team store, audit chain and all.

The chain's rows are copied as they are (their hashes cover seq, time, kind and data, not
where they are stored), with the head, so the team store verifies to the same head the
laptop did. Everything lands in one transaction: a failed export leaves the team store
as empty as it was. What is only meaningful for a moment is left behind: event claims and
the spawn-rate log.
"""

from __future__ import annotations

from typing import NamedTuple

from ..audit import AuditLog, VerifyReport
from ..errors import StoreError
from .base import Store
from .hostid import host_id
from .postgres import PgStore
from .sqlite import SqliteStore

__all__ = ["ExportReport", "export_store"]

# table -> (columns copied, order read in); leases get their host added.
_TABLES: tuple[tuple[str, str, str], ...] = (
    ("audit", "seq, ts_us, kind, data, prev_hash, hash", "seq"),
    ("audit_head", "id, count, seq, hash", "id"),
    ("checkpoints", "name, created_us, sha256, size, payload", "id"),
    ("kv", "key, value", "key"),
    ("breakers", "agent_type, state, opened_us, failures, trial_owner, trial_expires_us",
     "agent_type"),
    ("agents", "agent_id, session_id, agent_type, depth, started_us, stopped_us", "agent_id"),
    ("leases", "id, session_id, agent_id, agent_type, owner_pid, depth, background, "
               "acquired_us, expires_us, host", "acquired_us, id"),
    ("policy_trust", "project, config, digest, origin, updated_us", "project"),
    ("policy_pins", "session_id, project, config, digest, pinned_us", "rowid"),
    ("policy_changes", "session_id, change, ts_us", "session_id, change"),
    ("wave_runs", "run_id, name, state, created_us, updated_us, finished_us, plan, options, "
                  "owner, reason, stop_class, stats", "created_us, run_id"),
    ("wave_tasks", "run_id, task_id, position, state, attempts, started_us, finished_us, "
                   "input_tokens, output_tokens, cost_usd, error_class, reason, output, "
                   "compensation, compensation_reason", "run_id, position"),
    ("wave_attempts", "run_id, task_id, attempt, context, started_us, finished_us, outcome, "
                      "error_class, reason, reformats, pid", "run_id, task_id, attempt"),
    ("gate_results", "tree, check_key, name, tier, status, exit_code, duration_ms, "
                     "output_tail, output_sha256, output_bytes, finished_us", "tree, check_key"),
)


class ExportReport(NamedTuple):
    rows: dict[str, int]
    source: VerifyReport
    target: VerifyReport

    def one_line(self) -> str:
        total = sum(self.rows.values())
        return (f"copied {total} rows ({self.rows.get('audit', 0)} audit events); team store "
                f"{self.target.one_line()}")


def export_store(source: SqliteStore, target: PgStore) -> ExportReport:
    before = AuditLog(source).verify()
    if not before.ok:
        raise StoreError(f"the local chain does not verify ({before.one_line()})",
                         hint="run `smart-orchestrator audit verify`; nothing was copied")
    if target.audit_head().events or target.list_checkpoints() or target.leases.count():
        raise StoreError(f"team store {target.location} already holds state",
                         hint="export into an empty store (a new database or schema); "
                              "nothing was copied")
    counts: dict[str, int] = {}
    with target.transaction() as conn:
        for table, columns, order in _TABLES:
            select, args = columns, tuple[str, ...]()
            if table == "leases":  # rows from before hosts were recorded are this one's
                select, args = columns.replace("host", "coalesce(host, ?)"), (host_id(),)
            rows = source.query(f"SELECT {select} FROM {table} ORDER BY {order}", args)
            marks = ",".join("?" * len(columns.split(",")))
            for row in rows:
                conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", row)
            counts[table] = len(rows)
    after = AuditLog(target).verify()
    if not (after.ok and after.events == before.events and after.head_hash == before.head_hash):
        raise StoreError(f"the copied chain does not match the local one ({after.one_line()})")
    _record(target, before)
    return ExportReport(counts, before, AuditLog(target).verify())


def _record(target: Store, source: VerifyReport) -> None:
    AuditLog(target).record("store.imported", events=source.events, head=source.head_hash,
                            host=host_id())
