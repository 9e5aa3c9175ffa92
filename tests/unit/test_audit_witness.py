"""The audit chain against its witness: rewrites that keep the chain self-consistent."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from smart_orchestrator.audit import AuditLog, chain_hash
from smart_orchestrator.audit_check import check_audit
from smart_orchestrator.audit_guard import AuditGuard
from smart_orchestrator.canonical import GENESIS_HASH
from smart_orchestrator.store import SqliteStore
from smart_orchestrator.witness import Checkpoint, witness_for

from ..conftest import REPO_ROOT


def _filled(path: Path, n: int = 10) -> SqliteStore:
    store = SqliteStore(path)
    log = AuditLog(store)
    for i in range(n):
        log.record("policy.decision", decision="allow", i=i)
    return store


def _rewrite(path: Path, events: list[tuple[str, dict[str, object]]], *, keep: int = 0) -> None:
    """What an attacker with sqlite3 does: drop the triggers, keep the first `keep` rows,
    write `events` after them with correct hashes and a matching head."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER audit_no_delete")
    prev = GENESIS_HASH
    if keep:
        prev = conn.execute("SELECT hash FROM audit WHERE seq = ?", (keep,)).fetchone()[0]
    conn.execute("DELETE FROM audit WHERE seq > ?", (keep,))
    seq = keep
    for kind, data in events:
        seq += 1
        digest = chain_hash(prev, seq, 1_000_000 + seq, kind, data)
        conn.execute("INSERT INTO audit VALUES (?,?,?,?,?,?)",
                     (seq, 1_000_000 + seq, kind, json.dumps(data, sort_keys=True), prev, digest))
        prev = digest
    conn.execute("UPDATE audit_head SET count = ?, seq = ?, hash = ?", (seq, seq, prev))
    conn.close()


def _verify_cli(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "smart_orchestrator.cli", "--db", str(path),
                           "audit", "verify", *extra], capture_output=True, text=True,
                          timeout=60, cwd=REPO_ROOT)


def _check(path: Path) -> tuple[int, str]:
    store = SqliteStore(path, readonly=True)
    try:
        report = check_audit(store)
    finally:
        store.close()
    return report.exit_code, report.one_line()


def _gaps(path: Path) -> list[dict[str, object]]:
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT data FROM audit WHERE kind = 'audit.gap' ORDER BY seq").fetchall()
    conn.close()
    return [json.loads(r[0]) for r in rows]


def test_intact_witnessed_chain_verifies(db_path: Path) -> None:
    _filled(db_path).close()
    code, line = _check(db_path)
    assert code == 0 and "witnessed to seq 10" in line, line
    out = _verify_cli(db_path, "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["witnessed_seq"] == 10


def test_key_file_is_private_and_witness_has_a_line_per_write(db_path: Path) -> None:
    _filled(db_path, 4).close()
    witness = witness_for(db_path)
    assert stat.S_IMODE(witness.key_path.stat().st_mode) == 0o600
    assert [w.checkpoint.seq for w in witness.lines() if w.checkpoint] == [1, 2, 3, 4]


def test_delete_rows_and_rehash_is_caught(db_path: Path) -> None:
    _filled(db_path).close()
    conn = sqlite3.connect(db_path)
    kept = [(k, json.loads(d)) for k, d in conn.execute(
        "SELECT kind, data FROM audit WHERE seq NOT IN (4, 5) ORDER BY seq")]
    conn.close()
    _rewrite(db_path, kept)
    code, line = _check(db_path)
    assert code == 1
    assert "witness has seq 10" in line and "only 8 rows" in line, line


def test_wipe_and_fresh_chain_of_the_same_length_is_caught(db_path: Path) -> None:
    _filled(db_path).close()
    _rewrite(db_path, [("policy.decision", {"decision": "allow", "i": i}) for i in range(12)])
    code, line = _check(db_path)
    assert code == 1 and "differs from witnessed head at seq 1: rows rewritten" in line, line


def test_rewrite_after_a_prefix_names_where_it_still_matches(db_path: Path) -> None:
    _filled(db_path).close()
    _rewrite(db_path, [("policy.decision", {"decision": "deny"})] * 5, keep=5)
    code, line = _check(db_path)
    assert code == 1 and "at seq 6: rows rewritten (it matches the witness up to seq 5)" in line


def test_tail_delete_plus_head_edit_is_caught(db_path: Path) -> None:
    _filled(db_path).close()
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("DROP TRIGGER audit_no_delete")
    conn.execute("DELETE FROM audit WHERE seq > 7")
    conn.execute("UPDATE audit_head SET count = 7, seq = 7, "
                 "hash = (SELECT hash FROM audit WHERE seq = 7)")
    conn.close()
    assert AuditLog(SqliteStore(db_path, readonly=True)).verify().ok, "self-consistent"
    code, line = _check(db_path)
    assert code == 1 and "witness has seq 10" in line and "only 7 rows" in line


@pytest.mark.parametrize("damage", ["delete", "empty", "truncate-mid-line", "edit-head",
                                    "edit-seq", "key-replaced", "key-deleted", "garbage-line"])
def test_witness_damage_is_named(db_path: Path, damage: str) -> None:
    _filled(db_path).close()
    witness = witness_for(db_path)
    data = witness.path.read_bytes()
    if damage == "delete":
        witness.path.unlink()
    elif damage == "empty":
        witness.path.write_bytes(b"")
    elif damage == "truncate-mid-line":
        witness.path.write_bytes(data[:-20])
    elif damage == "edit-head":
        witness.path.write_bytes(data.replace(b'"head":"', b'"head":"0', 1))
    elif damage == "edit-seq":
        witness.path.write_bytes(data.replace(b'{"seq":10,', b'{"seq":9,', 1))
    elif damage == "key-replaced":
        witness.key_path.write_text(os.urandom(32).hex())
    elif damage == "key-deleted":
        witness.key_path.unlink()
    elif damage == "garbage-line":
        witness.path.write_bytes(data + b"not json\n")
    code, line = _check(db_path)
    assert code == 1, line
    expected = {"delete": "missing or empty", "empty": "missing or empty",
                "truncate-mid-line": "cut short", "edit-head": "not signed",
                "edit-seq": "not signed", "key-replaced": "not signed",
                "key-deleted": "key", "garbage-line": "malformed"}[damage]
    assert expected in line, line


@pytest.mark.parametrize("damage", ["delete", "key-replaced", "truncate-mid-line"])
def test_a_writer_records_witness_damage_as_a_gap_once(db_path: Path, damage: str) -> None:
    _filled(db_path).close()
    witness = witness_for(db_path)
    if damage == "delete":
        witness.path.unlink()
    elif damage == "key-replaced":
        witness.key_path.write_text(os.urandom(32).hex())
    else:
        witness.path.write_bytes(witness.path.read_bytes()[:-20])
    SqliteStore(db_path).close()
    size = witness.path.stat().st_size
    for _ in range(3):  # later opens see the recorded gap and add nothing
        SqliteStore(db_path).close()
    assert witness.path.stat().st_size == size
    [gap] = _gaps(db_path)
    assert gap["code"] in ("witness_missing", "witness_bad")
    code, line = _check(db_path)
    assert code == 3 and "seq 11 records a gap" in line, line


def test_database_deleted_between_processes_starts_with_a_gap(db_path: Path) -> None:
    _filled(db_path).close()
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        (db_path.parent / name).unlink(missing_ok=True)
    store = SqliteStore(db_path)
    AuditLog(store).record("after", n=1)
    store.close()
    [gap] = _gaps(db_path)
    assert (gap["lost_from"], gap["lost_to"], gap["code"]) == (1, 10, "lost")
    code, line = _check(db_path)
    assert code == 3 and "seq 1 records a gap, seq 1..10 lost" in line, line


def test_database_deleted_while_open_is_noticed_on_the_next_write(db_path: Path) -> None:
    store = _filled(db_path)
    db_path.unlink()  # the -wal and -shm stay behind, as after a plain `rm state.db`
    AuditLog(store).record("after", n=1)
    store.close()
    [gap] = _gaps(db_path)
    assert gap["code"] == "lost" and gap["cause"] == "state.db was deleted while open"
    conn = sqlite3.connect(db_path)
    kinds = [k for (k,) in conn.execute("SELECT kind FROM audit ORDER BY seq")]
    assert kinds == ["audit.gap", "after"], "the old log was not replayed into the new file"
    assert _check(db_path)[0] == 3


def test_database_replaced_by_an_older_copy_records_what_was_lost(db_path: Path,
                                                                 tmp_path: Path) -> None:
    store = _filled(db_path, 5)
    store.query("PRAGMA wal_checkpoint(TRUNCATE)")
    old = tmp_path / "old.db"
    shutil.copy(db_path, old)
    for i in range(5):
        AuditLog(store).record("later", i=i)
    os.replace(old, db_path)  # a new file at the path, as `mv` or `cp` to a temp + rename does
    AuditLog(store).record("after", n=1)
    store.close()
    [gap] = _gaps(db_path)
    assert (gap["lost_from"], gap["lost_to"]) == (6, 10)
    code, line = _check(db_path)
    assert code == 3 and "seq 6 records a gap, seq 6..10 lost" in line, line


def test_older_copy_before_any_writer_opens_fails_verify(db_path: Path, tmp_path: Path) -> None:
    store = _filled(db_path, 5)
    store.query("PRAGMA wal_checkpoint(TRUNCATE)")
    old = tmp_path / "old.db"
    shutil.copy(db_path, old)
    for i in range(5):
        AuditLog(store).record("later", i=i)
    store.close()
    os.replace(old, db_path)
    code, line = _check(db_path)
    assert code == 1 and "witness has seq 10" in line and "only 5 rows" in line


def test_rewrite_then_open_records_the_rewrite_not_hides_it(db_path: Path) -> None:
    _filled(db_path).close()
    _rewrite(db_path, [("policy.decision", {"decision": "allow"})] * 10)
    SqliteStore(db_path).close()
    [gap] = _gaps(db_path)
    assert gap["code"] == "rewritten"
    code, line = _check(db_path)
    assert code == 3 and "rows rewritten" in line


def test_forged_gap_row_without_the_key_is_caught(db_path: Path) -> None:
    _filled(db_path).close()
    # An attacker who writes a plausible gap row but cannot sign a gap checkpoint.
    _rewrite(db_path, [("audit.gap", {"code": "lost", "problem": "nothing to see"})])
    code, line = _check(db_path)
    assert code == 1 and "witness has seq 10" in line


def test_witness_truncated_at_a_line_boundary_is_only_a_note(db_path: Path) -> None:
    _filled(db_path).close()
    witness = witness_for(db_path)
    lines = witness.path.read_bytes().splitlines(keepends=True)
    witness.path.write_bytes(b"".join(lines[:6]))
    code, line = _check(db_path)
    # Indistinguishable from a crash between a commit and its checkpoint: reported, not
    # failed (docs/policy.md). The chain up to seq 6 is still pinned.
    assert code == 0 and "seq 7..10 not witnessed yet" in line, line


def test_seen_head_catches_witness_truncation_plus_rewrite(db_path: Path) -> None:
    store = _filled(db_path)
    seen = witness_for(db_path).latest()
    assert seen is not None and seen.seq == 10
    witness = witness_for(db_path)
    lines = witness.path.read_bytes().splitlines(keepends=True)
    witness.path.write_bytes(b"".join(lines[:5]))
    _rewrite(db_path, [("x", {})] * 5, keep=5)
    assert _check(db_path)[0] == 0, "undetectable from the files alone"
    gap = store.reconcile_witness(seen=seen)
    store.close()
    assert gap is not None and gap.data["code"] == "rewritten"
    assert _check(db_path)[0] == 3


def test_legacy_chain_without_witness_or_key_is_enrolled(db_path: Path) -> None:
    _filled(db_path, 3).close()
    witness = witness_for(db_path)
    witness.path.unlink()
    witness.key_path.unlink()
    assert _check(db_path)[0] == 1, "unwitnessed rows do not pass as intact"
    SqliteStore(db_path).close()
    assert _gaps(db_path) == []
    assert _check(db_path)[0] == 0


def test_new_database_in_an_empty_folder_creates_no_witness(db_path: Path) -> None:
    SqliteStore(db_path).close()
    assert sorted(p.name for p in db_path.parent.iterdir()) == ["state.db"]


def _append_many(path: str, n: int) -> None:
    store = SqliteStore(path)
    log = AuditLog(store)
    for i in range(n):
        if i % 3:
            log.record("w", pid=os.getpid(), i=i)
        else:
            with store.transaction():  # two events, one checkpoint
                log.record("a", i=i)
                log.record("b", i=i)
    store.close()


def test_many_processes_keep_witness_and_chain_consistent(db_path: Path) -> None:
    SqliteStore(db_path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(db_path), 30)) for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    code, line = _check(db_path)
    assert code == 0, line
    assert "witnessed to seq 240" in line, line
    assert _gaps(db_path) == []


def test_guard_records_a_deleted_database_without_any_write(db_path: Path) -> None:
    store = _filled(db_path)
    guard = AuditGuard(store)
    assert guard.check() is None
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        (db_path.parent / name).unlink(missing_ok=True)
    gap = guard.check()
    assert gap is not None and gap.seq == 1
    assert (gap.data["lost_from"], gap.data["lost_to"]) == (1, 10)
    assert gap.data["cause"] == "state.db was deleted while open"
    assert guard.check() is None, "recorded once"
    store.close()
    assert _check(db_path)[0] == 3


def test_guard_catches_witness_truncation_with_a_rewrite(db_path: Path) -> None:
    store = _filled(db_path)
    guard = AuditGuard(store)
    guard.check()
    witness = witness_for(db_path)
    lines = witness.path.read_bytes().splitlines(keepends=True)
    witness.path.write_bytes(b"".join(lines[:4]))
    _rewrite(db_path, [("x", {})] * 6, keep=4)
    gap = guard.check()
    store.close()
    assert gap is not None and gap.data["code"] == "rewritten"
    assert gap.data["witnessed_seq"] == 10


def test_guard_catches_witness_and_key_deleted(db_path: Path) -> None:
    store = _filled(db_path)
    guard = AuditGuard(store)
    guard.check()
    witness = witness_for(db_path)
    witness.path.unlink()
    witness.key_path.unlink()
    gap = guard.check()
    store.close()
    assert gap is not None and gap.data["code"] == "witness_missing"
    assert _check(db_path)[0] == 3


def test_guard_does_not_double_record_a_gap_another_process_wrote(db_path: Path) -> None:
    store = _filled(db_path)
    guard = AuditGuard(store)
    guard.check()
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        (db_path.parent / name).unlink(missing_ok=True)
    other = SqliteStore(db_path)  # e.g. a hook: records the gap when it opens
    AuditLog(other).record("hook", n=1)
    other.close()
    assert guard.check() is None
    store.close()
    assert len(_gaps(db_path)) == 1


def test_a_replayed_old_witness_line_does_not_verify(db_path: Path) -> None:
    _filled(db_path).close()
    witness = witness_for(db_path)
    lines = witness.path.read_bytes().splitlines(keepends=True)
    witness.path.write_bytes(b"".join(lines) + lines[2])  # valid MAC, wrong place
    code, line = _check(db_path)
    assert code == 1 and "witness line 11 is not signed" in line, line


def test_witness_pointed_at_dev_null_is_refused(db_path: Path) -> None:
    _filled(db_path).close()
    witness = witness_for(db_path)
    witness.path.unlink()
    witness.path.symlink_to("/dev/null")
    store = SqliteStore(db_path)
    AuditLog(store).record("more", n=1)
    assert store.witness_problem and "cannot" in store.witness_problem
    store.close()
    code, line = _check(db_path)
    assert code == 1 and "cannot open witness" in line, line


def test_an_unwritable_witness_is_said_once_in_the_chain(db_path: Path) -> None:
    store = _filled(db_path, 3)
    witness = witness_for(db_path)
    witness.path.unlink()
    witness.path.mkdir()  # not writable as a file, whoever runs this
    log = AuditLog(store)
    for i in range(3):
        log.record("more", n=i)
    store.close()
    gaps = _gaps(db_path)
    assert [g["code"] for g in gaps] == ["witness_unwritable"], gaps
    code, line = _check(db_path)
    assert code == 1 and "not a regular file" in line, line


def test_a_gap_does_not_launder_a_rewrite_made_before_it(db_path: Path) -> None:
    _filled(db_path).close()
    witness = witness_for(db_path)
    # Cut the witness mid-line and rewrite the chain: the next writer records only that
    # the witness is damaged, on top of the rewritten chain.
    witness.path.write_bytes(witness.path.read_bytes()[:-20])
    _rewrite(db_path, [("policy.decision", {"decision": "allow"})] * 10)
    SqliteStore(db_path).close()
    [gap] = _gaps(db_path)
    assert gap["code"] == "witness_bad"
    code, line = _check(db_path)
    assert code == 1 and "before a recorded gap that does not account for it" in line, line


def test_an_older_copy_keeps_its_witnessed_prefix_bound(db_path: Path, tmp_path: Path) -> None:
    store = _filled(db_path, 5)
    store.query("PRAGMA wal_checkpoint(TRUNCATE)")
    old = tmp_path / "old.db"
    shutil.copy(db_path, old)
    for i in range(5):
        AuditLog(store).record("later", i=i)
    store.close()
    os.replace(old, db_path)
    SqliteStore(db_path).close()  # records seq 6..10 lost
    assert _check(db_path)[0] == 3
    # Rows 1..5 were witnessed before the gap and the gap says nothing about them.
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("DROP TRIGGER audit_no_update")
    conn.execute("UPDATE audit SET data = '{\"decision\":\"deny\"}' WHERE seq = 2")
    conn.close()
    code, line = _check(db_path)
    assert code == 1 and "BROKEN at row seq=2" in line, line


def test_guard_notices_database_witness_and_key_all_deleted(db_path: Path) -> None:
    store = _filled(db_path)
    guard = AuditGuard(store)
    guard.check()
    witness = witness_for(db_path)
    for path in (witness.path, witness.key_path, *[db_path.parent / n for n in
                                                   ("state.db", "state.db-wal", "state.db-shm")]):
        path.unlink(missing_ok=True)
    gap = guard.check()
    store.close()
    assert gap is not None and gap.data["code"] == "seen_lost", gap
    assert gap.data["witnessed_seq"] == 10
    assert _check(db_path)[0] == 3


def test_commits_lost_to_a_damaged_wal_are_recorded_not_silent(db_path: Path) -> None:
    store = _filled(db_path, 5)
    store.query("PRAGMA wal_checkpoint(TRUNCATE)")
    holder = SqliteStore(db_path)  # keeps the newest commits in the WAL at close
    for i in range(5):
        AuditLog(store).record("late", i=i, pad="p" * 200)
    wal = db_path.with_name("state.db-wal")
    main, log = db_path.read_bytes(), wal.read_bytes()
    store.close()
    holder.close()
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        (db_path.parent / name).unlink(missing_ok=True)
    db_path.write_bytes(main)
    wal.write_bytes(log[: len(log) // 2])  # SQLite drops the damaged frame and all after it
    SqliteStore(db_path).close()
    [gap] = _gaps(db_path)
    assert gap["code"] == "lost" and gap["lost_to"] == 10 and gap["lost_from"] <= 10, gap
    assert _check(db_path)[0] == 3


def test_many_processes_finding_the_database_gone_record_one_gap(db_path: Path) -> None:
    _filled(db_path).close()
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        (db_path.parent / name).unlink(missing_ok=True)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(db_path), 5)) for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    [gap] = _gaps(db_path)
    assert (gap["lost_from"], gap["lost_to"]) == (1, 10)
    store = SqliteStore(db_path, readonly=True)
    report = check_audit(store)
    store.close()
    assert report.exit_code == 3 and not report.problems, report
    assert report.chain.events == 1 + 6 * 7  # the gap, then 5 calls of 1 or 2 events each



def test_a_first_checkpoint_in_flight_does_not_look_like_a_deleted_witness(tmp_path: Path
                                                                           ) -> None:
    # A checker holding the witness lock must never find the key (the sign that the witness
    # was used) while the first checkpoint is still waiting for that lock: it would record
    # the witness as deleted.
    witness = witness_for(tmp_path / "state.db")
    appended = threading.Event()
    with witness.hold():
        writer = threading.Thread(target=lambda: (witness.append(Checkpoint(1, "ab" * 32, 1)),
                                                  appended.set()))
        writer.start()
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            assert not witness.enrolled(), "the key appeared before its first checkpoint"
            time.sleep(0.01)
        assert witness.latest() is None
    writer.join(30)
    assert appended.is_set() and witness.enrolled()
    latest = witness.latest()
    assert latest is not None and latest.seq == 1
