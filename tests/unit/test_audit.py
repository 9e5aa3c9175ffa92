from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from smart_orchestrator.audit import AuditLog, sanitize
from smart_orchestrator.canonical import digest_text
from smart_orchestrator.errors import StoreError
from smart_orchestrator.store import SqliteStore


def _fill(store: SqliteStore, n: int = 5) -> AuditLog:
    log = AuditLog(store)
    for i in range(n):
        log.record("agent.decision", i=i, decision="allow")
    return log


def _raw(db: Path) -> sqlite3.Connection:
    """A writer that bypasses the store, as an attacker with file access would."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("DROP TRIGGER IF EXISTS audit_no_update")
    conn.execute("DROP TRIGGER IF EXISTS audit_no_delete")
    return conn


def test_intact_chain_reports_count_and_head(store: SqliteStore) -> None:
    log = _fill(store)
    report = log.verify()
    assert report.ok and report.events == 5
    assert report.head_hash == store.audit_head().hash


def test_update_and_delete_are_rejected_by_triggers(store: SqliteStore) -> None:
    _fill(store)
    with pytest.raises(StoreError, match="append-only"), store.transaction() as conn:
        conn.execute("UPDATE audit SET kind = 'x' WHERE seq = 2")
    with pytest.raises(StoreError, match="append-only"), store.transaction() as conn:
        conn.execute("DELETE FROM audit WHERE seq = 2")


def test_edited_row_is_named(store: SqliteStore, db_path: Path) -> None:
    log = _fill(store)
    _raw(db_path).execute("UPDATE audit SET data = '{\"i\": 99}' WHERE seq = 3")
    report = log.verify()
    assert not report.ok and report.first_bad_seq == 3
    assert "edited" in (report.problem or "")


def test_deleted_row_is_named(store: SqliteStore, db_path: Path) -> None:
    log = _fill(store)
    _raw(db_path).execute("DELETE FROM audit WHERE seq = 2")
    report = log.verify()
    assert not report.ok and report.first_bad_seq == 2


def test_deleted_tail_is_detected_through_the_head(store: SqliteStore, db_path: Path) -> None:
    log = _fill(store)
    _raw(db_path).execute("DELETE FROM audit WHERE seq = 5")
    report = log.verify()
    assert not report.ok and "tail" in (report.problem or "")


def test_reordered_rows_are_detected(store: SqliteStore, db_path: Path) -> None:
    log = _fill(store)
    conn = _raw(db_path)
    rows = conn.execute("SELECT seq, ts_us, kind, data, prev_hash, hash FROM audit "
                        "WHERE seq IN (2, 3) ORDER BY seq").fetchall()
    conn.execute("DELETE FROM audit WHERE seq IN (2, 3)")
    conn.execute("INSERT INTO audit VALUES (2, ?, ?, ?, ?, ?)", rows[1][1:])
    conn.execute("INSERT INTO audit VALUES (3, ?, ?, ?, ?, ?)", rows[0][1:])
    report = log.verify()
    assert not report.ok and report.first_bad_seq == 2


def test_sanitize_replaces_long_text_by_its_digest() -> None:
    prompt = "secret plan " * 100
    clean = sanitize({"reason": "too long", "note": prompt, "nested": {"x": [prompt]}})
    assert clean["reason"] == "too long"
    assert clean["note"] == {"digest": digest_text(prompt)}
    assert prompt not in repr(clean)


def _append_many(db: str, n: int) -> None:
    store = SqliteStore(db)
    for i in range(n):
        store.append_audit("load", {"pid": multiprocessing.current_process().pid, "i": i})
    store.close()


def test_eight_processes_appending_at_once_keep_one_intact_chain(db_path: Path) -> None:
    SqliteStore(db_path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(db_path), 500)) for _ in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    store = SqliteStore(db_path)
    report = AuditLog(store).verify()
    assert report.ok, report.one_line()
    assert report.events == 4000
