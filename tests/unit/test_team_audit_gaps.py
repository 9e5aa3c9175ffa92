"""A team store's chain losing witnessed rows is recorded as an `audit.gap`, as a local
SQLite file's is: a database restored from an older dump, its tail cut by someone who
could disable the triggers, or another database put at the same address. `audit verify`
then names the gap. Rows other machines appended are not a loss."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from smart_orchestrator.audit import AuditLog, chain_hash
from smart_orchestrator.audit_check import check_audit
from smart_orchestrator.audit_guard import AuditGuard
from smart_orchestrator.store.postgres import PgStore
from smart_orchestrator.store.witnessing import GAP_KIND
from smart_orchestrator.witness import Witness, witness_for
from tests.pg import fresh_schema_dsn


@pytest.fixture
def dsn(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    monkeypatch.setenv("SMART_ORCHESTRATOR_DATA", str(tmp_path / "data"))
    return fresh_schema_dsn("gaps")


def _machine(tmp_path: Path, name: str) -> Witness:
    (tmp_path / name).mkdir(exist_ok=True)
    return witness_for(tmp_path / name / "team.db")


def _filled(dsn: str, witness: Witness, n: int, kind: str = "event") -> PgStore:
    store = PgStore(dsn, witness=witness)
    log = AuditLog(store)
    for i in range(n):
        log.record(kind, i=i)
    return store


def _cut_to(dsn: str, keep: int) -> None:
    """What restoring an older dump leaves: the chain and its head as they were at `keep`
    (done the way only the database's owner can, past the insert-only triggers)."""
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        conn.execute("ALTER TABLE audit DISABLE TRIGGER USER")
        conn.execute("DELETE FROM audit WHERE seq > %s", (keep,))
        conn.execute("UPDATE audit_head SET count = %s, seq = %s, hash = "
                     "(SELECT hash FROM audit WHERE seq = %s)", (keep, keep, keep))
        conn.execute("ALTER TABLE audit ENABLE TRIGGER USER")


def _gaps(store: PgStore) -> list[dict[str, object]]:
    return [r.data for r in store.iter_audit() if r.kind == GAP_KIND]


def test_a_restore_to_an_older_dump_is_a_gap_on_the_next_open(dsn: str, tmp_path: Path) -> None:
    witness = _machine(tmp_path, "a")
    _filled(dsn, witness, 6).close()
    _cut_to(dsn, 3)
    store = PgStore(dsn, witness=witness)
    gaps = _gaps(store)
    assert len(gaps) == 1, gaps
    assert gaps[0]["code"] == "lost" and (gaps[0]["lost_from"], gaps[0]["lost_to"]) == (4, 6)
    report = check_audit(store)
    assert report.chain.ok and not report.problems, report
    assert report.gaps and "4" in report.gaps[0] and "6" in report.gaps[0], report.gaps
    assert not report.ok  # named, not passed over
    # Opening again, or from another process of this machine, records it once.
    store.close()
    again = PgStore(dsn, witness=witness)
    assert len(_gaps(again)) == 1
    AuditLog(again).record("after", n=1)
    assert len(_gaps(again)) == 1 and check_audit(again).problems == ()
    again.close()


def test_a_restore_under_an_open_store_is_noticed_at_its_next_write(dsn: str,
                                                                   tmp_path: Path) -> None:
    store = _filled(dsn, _machine(tmp_path, "a"), 5)
    _cut_to(dsn, 2)
    AuditLog(store).record("after", n=1)  # seq 3 again: this machine witnessed seq 5
    gaps = _gaps(store)
    assert [g["code"] for g in gaps] == ["lost"], gaps
    assert gaps[0]["witnessed_seq"] == 5
    report = check_audit(store)
    assert report.chain.ok and not report.problems and len(report.gaps) == 1, report
    store.close()


def test_a_tail_cut_and_regrown_to_the_same_length_is_a_gap(dsn: str, tmp_path: Path) -> None:
    # Cut to 2, then 3 new rows: the chain is as long as before, its rows 3..5 are not the
    # ones this machine witnessed.
    witness = _machine(tmp_path, "a")
    _filled(dsn, witness, 5).close()
    _cut_to(dsn, 2)
    _filled(dsn, _machine(tmp_path, "intruder"), 3, kind="forged").close()
    store = PgStore(dsn, witness=witness)
    gaps = _gaps(store)
    assert [g["code"] for g in gaps] == ["rewritten"], gaps
    assert len(check_audit(store).gaps) == 1
    store.close()


def test_another_database_at_the_same_address_is_a_gap(dsn: str, tmp_path: Path) -> None:
    witness = _machine(tmp_path, "a")
    _filled(dsn, witness, 4).close()
    schema = dsn.rsplit("search_path%3D", 1)[1]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{schema}"')
    store = PgStore(dsn, witness=witness)  # an empty store where the chain was
    gaps = _gaps(store)
    assert [g["code"] for g in gaps] == ["lost"], gaps
    assert (gaps[0]["lost_from"], gaps[0]["lost_to"]) == (1, 4)
    assert len(check_audit(store).gaps) == 1
    store.close()


def test_the_default_witness_records_it_too(dsn: str) -> None:
    # No witness passed: the one in this machine's data folder, as the service uses.
    _filled(dsn, None, 3).close()  # type: ignore[arg-type]
    _cut_to(dsn, 1)
    store = PgStore(dsn)
    assert [g["code"] for g in _gaps(store)] == ["lost"]
    store.close()


def test_rows_other_machines_appended_are_no_gap(dsn: str, tmp_path: Path) -> None:
    a = _filled(dsn, _machine(tmp_path, "a"), 3)
    b = _filled(dsn, _machine(tmp_path, "b"), 4)
    AuditLog(a).record("a.again", n=1)  # seq 8: rows 4..7 are b's
    AuditLog(b).record("b.again", n=1)
    a.close()
    b.close()
    for name in ("a", "b"):
        store = PgStore(dsn, witness=_machine(tmp_path, name))
        assert _gaps(store) == []
        report = check_audit(store)
        assert report.ok, report
        store.close()


def test_a_rewritten_row_another_machine_witnessed_is_named_by_that_machine(
        dsn: str, tmp_path: Path) -> None:
    a = _filled(dsn, _machine(tmp_path, "a"), 3)
    a.close()
    # Row 2 rewritten and the chain re-hashed from there: consistent, but not what `a` saw.
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        rows = conn.execute("SELECT seq, ts_us, kind, data FROM audit ORDER BY seq").fetchall()
        conn.execute("ALTER TABLE audit DISABLE TRIGGER USER")
        prev = conn.execute("SELECT hash FROM audit WHERE seq = 1").fetchone()[0]
        for seq, ts, kind, data in rows[1:]:
            import json
            fields = json.loads(data) | ({"i": 99} if seq == 2 else {})
            digest = chain_hash(prev, seq, ts, kind, fields)
            conn.execute("UPDATE audit SET data = %s, prev_hash = %s, hash = %s WHERE seq = %s",
                         (json.dumps(fields, sort_keys=True), prev, digest, seq))
            prev = digest
        conn.execute("UPDATE audit_head SET hash = %s", (prev,))
        conn.execute("ALTER TABLE audit ENABLE TRIGGER USER")
    b = PgStore(dsn, witness=_machine(tmp_path, "b"))  # never saw it: enrolls, no gap
    assert _gaps(b) == []
    b.close()
    store = PgStore(dsn, witness=_machine(tmp_path, "a"))
    assert [g["code"] for g in _gaps(store)] == ["rewritten"]
    store.close()


def test_the_service_guard_records_a_restore_without_any_write(dsn: str,
                                                               tmp_path: Path) -> None:
    store = _filled(dsn, _machine(tmp_path, "a"), 4)
    guard = AuditGuard(store)
    assert guard.check() is None
    _cut_to(dsn, 1)
    recorded = guard.check()
    assert recorded is not None and recorded.kind == GAP_KIND
    assert guard.check() is None  # once
    assert len(_gaps(store)) == 1
    store.close()
