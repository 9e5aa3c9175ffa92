from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from smart_orchestrator.audit import AuditLog
from smart_orchestrator.store import SqliteStore
from smart_orchestrator.waves.sandbox import probe_sandbox

from ..conftest import REPO_ROOT


def _cli(*args: str, db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "smart_orchestrator.cli", "--db", str(db), *args],
                          capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)


def test_audit_verify_prints_count_and_head_when_intact(store: SqliteStore,
                                                         db_path: Path) -> None:
    AuditLog(store).record("x", n=1)
    head = store.audit_head().hash
    out = _cli("audit", "verify", db=db_path)
    assert out.returncode == 0
    assert f"1 events, head {head}" in out.stdout


def test_audit_verify_exits_1_and_names_the_edited_row(store: SqliteStore,
                                                        db_path: Path) -> None:
    log = AuditLog(store)
    for i in range(3):
        log.record("x", n=i)
    raw = sqlite3.connect(db_path, isolation_level=None)
    raw.execute("DROP TRIGGER audit_no_update")
    raw.execute("UPDATE audit SET kind = 'forged' WHERE seq = 2")
    out = _cli("audit", "verify", "--json", db=db_path)
    assert out.returncode == 1
    assert json.loads(out.stdout)["first_bad_seq"] == 2


def test_audit_export_writes_one_json_line_per_event(store: SqliteStore, db_path: Path) -> None:
    log = AuditLog(store)
    for i in range(3):
        log.record("x", n=i)
    out = _cli("audit", "export", db=db_path)
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["seq"] for r in rows] == [1, 2, 3]
    assert all(len(r["hash"]) == 64 for r in rows)


def test_status_reports_counts(store: SqliteStore, db_path: Path) -> None:
    AuditLog(store).record("x")
    out = _cli("status", "--json", db=db_path)
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert status["audit"]["events"] == 1 and status["audit"]["intact"]
    assert status["in_flight"] == [] and status["breakers"] == []
    # Whatever this machine offers, status says it as it is.
    assert status["wave_bash_sandbox"] == probe_sandbox("auto").note


def test_status_says_when_wave_agents_bash_is_not_confined(store: SqliteStore,
                                                          db_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "smart_orchestrator.cli", "--db", str(db_path),
                          "status"], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
                         env={**os.environ, "SMART_ORCHESTRATOR_WAVE_SANDBOX": "off"})
    assert "**Bash of spawn_wave agents:** off: Bash is not confined" in out.stdout


@pytest.mark.parametrize("content", [b"garbage" * 100, b"SQLite format 3\x00" + b"\xff" * 5000])
def test_corrupt_database_gives_one_line_and_no_traceback(tmp_path: Path, content: bytes) -> None:
    db = tmp_path / "state.db"
    db.write_bytes(content)
    out = _cli("audit", "verify", db=db)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert db.read_bytes() == content
