from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from smart_orchestrator.audit import AuditLog
from smart_orchestrator.errors import StoreError
from smart_orchestrator.store import SqliteStore
from smart_orchestrator.store.hostid import host_id
from smart_orchestrator.store.migrations import MIGRATIONS
from smart_orchestrator.store.repos import BreakerRow


def test_opens_in_wal_mode_with_migrations_recorded(store: SqliteStore) -> None:
    assert store.query("PRAGMA journal_mode") == [("wal",)]
    versions = store.query("SELECT version FROM schema_migrations ORDER BY version")
    assert [v for (v,) in versions] == [m[0] for m in MIGRATIONS]


def test_reopening_does_not_reapply_migrations(db_path: Path) -> None:
    SqliteStore(db_path).close()
    again = SqliteStore(db_path)
    assert again.query("SELECT count(*) FROM schema_migrations") == [(len(MIGRATIONS),)]


def test_refuses_a_file_that_is_not_sqlite_and_leaves_it_untouched(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is my thesis, not a database" * 10)
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a SQLite database"):
        SqliteStore(path)
    assert path.read_bytes() == before


def test_refuses_a_foreign_sqlite_database_and_leaves_it_untouched(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.execute("INSERT INTO invoices VALUES (7)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="another application"):
        SqliteStore(path)
    assert sqlite3.connect(path).execute("SELECT id FROM invoices").fetchall() == [(7,)]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_directory_gives_one_clear_line(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    with pytest.raises(StoreError, match="read-only"):
        SqliteStore(ro / "state.db")


def test_uncreatable_data_directory_gives_one_clear_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create data directory") as info:
        SqliteStore(blocker / "sub" / "state.db")
    assert "\n" not in str(info.value)


def test_readonly_open_of_missing_database_says_nothing_ran_yet(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no state database"):
        SqliteStore(tmp_path / "none.db", readonly=True)
    assert not (tmp_path / "none.db").exists()


def test_truncated_database_is_reported_and_not_overwritten(store: SqliteStore,
                                                            db_path: Path) -> None:
    for i in range(50):
        store.append_audit("k", {"i": i, "pad": "x" * 200})
    store.query("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    raw = db_path.read_bytes()
    db_path.write_bytes(raw[: len(raw) // 3])
    truncated = db_path.read_bytes()
    with pytest.raises(StoreError):
        s = SqliteStore(db_path)
        list(s.iter_audit())
        assert s.integrity_problems() == []
    assert db_path.read_bytes() == truncated


def test_failed_write_keeps_previous_state(store: SqliteStore) -> None:
    store.kv_set("k", "before")
    with pytest.raises(RuntimeError), store.transaction() as conn:
        conn.execute("INSERT INTO kv VALUES ('k2', 'v')")
        raise RuntimeError("crash mid-transaction")
    assert store.kv_get("k") == "before"
    assert store.kv_get("k2") is None


def test_migrates_a_state_db_written_before_rows_named_their_host(tmp_path: Path) -> None:
    # state-v7.db was written by the store as it was at schema version 7: three audit
    # events, a lease, a claim with its decision, an open breaker.
    path = tmp_path / "state.db"
    path.write_bytes((Path(__file__).parent / "data" / "state-v7.db").read_bytes())
    store = SqliteStore(path)
    assert store.query("PRAGMA user_version") == [(MIGRATIONS[-1][0],)]
    assert AuditLog(store).verify().ok
    assert [r.data["decision"] for r in store.audit.events(kinds=("policy.decision",))] == \
        ["allow", "deny", "deny"]
    assert [r.id for r in store.leases.rows()] == ["L1"]
    assert store.leases.count(host=host_id()) == 1  # rows from before hosts are this host's
    assert store.claims.get("k") == ("hook:1", "{}")
    assert store.breakers.get("explore") == BreakerRow("explore", "open", 5, (1.0, 2.0),
                                                       None, None)
    store.append_audit("after", {"n": 1})
    assert AuditLog(store).verify().events == 4
    store.close()


def test_store_setting_comes_from_the_variable_then_the_plugin_option(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from smart_orchestrator.store import configured_location

    monkeypatch.setenv("SMART_ORCHESTRATOR_DB", str(tmp_path / "state.db"))
    monkeypatch.delenv("SMART_ORCHESTRATOR_STORE", raising=False)
    monkeypatch.setenv("SMART_ORCHESTRATOR_STORE_OPTION", "")  # an unset option
    assert configured_location() == str(tmp_path / "state.db")
    monkeypatch.setenv("SMART_ORCHESTRATOR_STORE_OPTION", "postgresql://a@h/team")
    assert configured_location() == "postgresql://a@h/team"
    monkeypatch.setenv("SMART_ORCHESTRATOR_STORE", "postgresql://b@h/ci")
    assert configured_location() == "postgresql://b@h/ci"
    monkeypatch.setenv("SMART_ORCHESTRATOR_STORE", "/not/a/url")
    with pytest.raises(StoreError, match="must be a postgresql:// URL"):
        configured_location()


def test_status_reads_a_state_db_from_before_hosts_without_migrating_it(
        tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes((Path(__file__).parent / "data" / "state-v7.db").read_bytes())
    store = SqliteStore(path, readonly=True)
    assert [(r.id, r.host) for r in store.leases.rows()] == [("L1", host_id())]
    assert store.query("PRAGMA user_version") == [(7,)]
    store.close()
