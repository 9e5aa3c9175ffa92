"""Corruption: bit flips and truncations of checkpoints and of the database file.

Every damage that changes what the store holds must be detected by something a user
runs (opening the store, `audit verify`, `status`, loading a checkpoint), a damaged
checkpoint copy is never restored as valid, and a file the store refuses is left as it was.
"""

from __future__ import annotations

import itertools
import json
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mcp import Client

from mcp_server.server import build_server
from smart_orchestrator.audit import AuditLog
from smart_orchestrator.canonical import sha256_hex
from smart_orchestrator.checkpoints import CheckpointError, Checkpoints
from smart_orchestrator.errors import StoreError
from smart_orchestrator.status import collect_status, render_markdown
from smart_orchestrator.store import SqliteStore

from ._figures import Figures
from ._util import examples, one_line, run_cli

SUITE = "corruption"
CP = "plan-state"


def _state(version: int) -> dict[str, Any]:
    # Sizes vary so that some copies spill into overflow pages.
    return {"version": version, "items": list(range(version * 150)),
            "note": f"checkpoint {version} " + "x" * (version * 97 % 700)}


# -- checkpoints: damage inside a live store ------------------------------------------------

@dataclass(frozen=True, slots=True)
class Damage:
    kind: str  # flip | truncate | digest | size
    where: int
    bit: int


damage = st.builds(Damage, st.sampled_from(["flip", "truncate", "digest", "size"]),
                   st.integers(0, 10**9), st.integers(0, 7))
plans = st.lists(st.one_of(st.none(), damage), min_size=1, max_size=6)


def _apply(conn: sqlite3.Connection, cp_id: int, payload: bytes, sha: str, d: Damage) -> None:
    if d.kind == "flip":
        raw = bytearray(payload)
        raw[d.where % len(raw)] ^= 1 << d.bit
        conn.execute("UPDATE checkpoints SET payload = ? WHERE id = ?", (bytes(raw), cp_id))
    elif d.kind == "truncate":
        conn.execute("UPDATE checkpoints SET payload = ? WHERE id = ?",
                     (payload[: d.where % len(payload)], cp_id))
    elif d.kind == "digest":
        i = d.where % len(sha)
        swapped = sha[:i] + ("0" if sha[i] != "0" else "1") + sha[i + 1:]
        conn.execute("UPDATE checkpoints SET sha256 = ? WHERE id = ?", (swapped, cp_id))
    else:
        conn.execute("UPDATE checkpoints SET size = size + ? WHERE id = ?",
                     (1 + d.where % 1000, cp_id))


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqliteStore]:
    """One store for every example: each uses checkpoint names of its own."""
    store = SqliteStore(tmp_path_factory.mktemp("cp") / "state.db")
    yield store
    store.close()


_names = itertools.count()


def check_checkpoint_damage(store: SqliteStore, plan: list[Damage | None],
                            figures: Figures) -> None:
    cps = Checkpoints(store)
    name = f"{CP}-{next(_names)}"
    metas = [cps.save(name, _state(v), keep=10) for v in range(len(plan))]
    with store.transaction() as raw:
        for meta, d in zip(metas, plan, strict=True):
            if d is not None:
                payload = raw.execute("SELECT payload FROM checkpoints WHERE id = ?",
                                      (meta.id,)).fetchone()[0]
                _apply(raw, meta.id, payload, meta.sha256, d)
    intact = [i for i, d in enumerate(plan) if d is None]
    figures.add(SUITE, "checkpoint trials (copies damaged in a live store)")
    figures.add(SUITE, "checkpoint copies damaged", len(plan) - len(intact))
    if not intact:
        with pytest.raises(CheckpointError, match="every stored copy") as info:
            cps.load(name)
        assert one_line(info.value.one_line())
        figures.add(SUITE, "checkpoint trials with every copy damaged: refused")
        return
    loaded = cps.load(name)
    newest = intact[-1]
    assert loaded.meta.id == metas[newest].id
    assert loaded.state == _state(newest), "restored content must be the saved content"
    skipped = [cp_id for cp_id, _ in loaded.skipped]
    assert skipped == [metas[i].id for i in range(len(plan) - 1, newest, -1)]
    assert loaded.fell_back == (newest != len(plan) - 1)
    if loaded.fell_back:
        note = loaded.note()
        assert f"fell back to #{metas[newest].id}" in note and "corrupt" in note
        figures.add(SUITE, "checkpoint trials restored from an older intact copy")


@examples(150)
@given(plan=plans)
def test_checkpoint_damage_restores_the_newest_intact_copy_short(
        shared_store: SqliteStore, figures: Figures, plan: list[Damage | None]) -> None:
    check_checkpoint_damage(shared_store, plan, figures)


@pytest.mark.slow
@examples(3000)
@given(plan=plans)
def test_checkpoint_damage_restores_the_newest_intact_copy_long(
        shared_store: SqliteStore, figures: Figures, plan: list[Damage | None]) -> None:
    check_checkpoint_damage(shared_store, plan, figures)


async def test_checkpoint_load_tool_names_the_damaged_copy_it_skipped(db_path: Path) -> None:
    async with Client(build_server()) as client:
        for v in range(3):
            saved = await client.call_tool("checkpoint_save", {"name": CP, "state": _state(v)})
            assert not saved.is_error
        raw = sqlite3.connect(db_path, isolation_level=None)
        raw.execute("UPDATE checkpoints SET payload = substr(payload, 1, 20) WHERE id = 3")
        raw.close()
        loaded = await client.call_tool("checkpoint_load", {"name": CP})
    data = loaded.structured_content
    assert data is not None and not loaded.is_error
    assert data["fell_back"] is True and data["state"] == _state(1)
    assert "#3 (truncated: 20 of" in data["note"] and "fell back to #2" in data["note"]


# -- the database file ----------------------------------------------------------------------

@dataclass(frozen=True, slots=True, repr=False)
class Reference:
    data: bytes
    audit: list[tuple[Any, ...]]
    head: list[tuple[Any, ...]]
    checkpoints: dict[int, tuple[Any, ...]]  # id -> (name, sha256, size, payload)
    states: dict[int, Any]
    other: dict[str, list[tuple[Any, ...]]]

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # hypothesis prints examples: not 180 KiB of bytes

    def __repr__(self) -> str:
        return f"Reference({len(self.data)} bytes)"


_OPERATIONAL = ("kv", "leases", "claims", "spawns", "agents", "breakers", "schema_migrations")


def _dump(path: Path) -> tuple[list[Any], list[Any], dict[int, tuple[Any, ...]],
                               dict[str, list[Any]], bool]:
    """What the file holds, read with plain sqlite3 (no store code): the oracle."""
    conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    conn.text_factory = bytes
    try:
        audit = conn.execute("SELECT * FROM audit ORDER BY seq").fetchall()
        head = conn.execute("SELECT * FROM audit_head").fetchall()
        cps = {r[0]: tuple(r[1:]) for r in conn.execute(
            "SELECT id, name, sha256, size, payload FROM checkpoints ORDER BY id")}
        other = {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
                 for t in _OPERATIONAL}
        sound = conn.execute("PRAGMA integrity_check").fetchall() == [(b"ok",)]
    finally:
        conn.close()
    return audit, head, cps, other, sound


def _build_reference(path: Path) -> Reference:
    store = SqliteStore(path)
    log = AuditLog(store)
    for i in range(80):
        log.record("policy.decision", i=i, decision="allow" if i % 3 else "deny",
                   session_id=f"session-{i % 4}", reason="r" * (i % 40))
    cps = Checkpoints(store)
    states = {}
    for v in range(4):
        states[cps.save(CP, _state(v)).id] = _state(v)
    store.kv_set("breaker:general", json.dumps({"state": "closed"}))
    with store.transaction() as conn:
        conn.execute("INSERT INTO claims (key, owner, ts_us) "
                     "VALUES ('PreToolUse:s:t', 'server', 1)")
        conn.execute("INSERT INTO leases VALUES "
                     "('s:t', 's', NULL, 'general', NULL, 1, 0, 1, 2, NULL)")
    store.close()
    audit, head, cps_rows, other, sound = _dump(path)
    assert sound
    return Reference(path.read_bytes(), audit, head, cps_rows, states, other)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return _build_reference(tmp_path_factory.mktemp("ref") / "state.db")


@dataclass(frozen=True, slots=True)
class FileDamage:
    kind: str  # flip | flips | truncate | zero-page
    where: int
    bit: int
    count: int


file_damage = st.builds(FileDamage, st.sampled_from(["flip", "flips", "truncate", "zero-page"]),
                        st.integers(0, 10**9), st.integers(0, 7), st.integers(2, 8))


def _damaged(data: bytes, d: FileDamage) -> bytes:
    raw = bytearray(data)
    if d.kind == "truncate":
        return bytes(raw[: d.where % len(raw)])
    if d.kind == "zero-page":
        page = d.where % (len(raw) // 4096)
        raw[page * 4096:(page + 1) * 4096] = bytes(4096)
        return bytes(raw)
    for k in range(1 if d.kind == "flip" else d.count):
        raw[(d.where * (k + 1) + 7919 * k) % len(raw)] ^= 1 << ((d.bit + k) % 8)
    return bytes(raw)


def check_file_damage(ref: Reference, where: Path, d: FileDamage, figures: Figures) -> str:
    """Apply `d` to a copy of the reference database, use it as a user would, judge."""
    path = where / "state.db"
    bad = _damaged(ref.data, d)
    path.write_bytes(bad)
    figures.add(SUITE, f"database trials: {d.kind}")
    try:
        store = SqliteStore(path)
    except StoreError as exc:
        assert one_line(exc.one_line()) and str(path) in exc.one_line()
        assert path.read_bytes() == bad, "a refused database must be left as it was"
        return "refused when opened"
    detected: list[str] = []
    loaded = None
    try:
        if not AuditLog(store).verify().ok:
            detected.append("audit chain check")
        try:
            loaded = Checkpoints(store).load(CP)
            if loaded.fell_back:
                detected.append("checkpoint fallback")
        except CheckpointError:
            detected.append("checkpoint refused")
        if store.integrity_problems():
            detected.append("integrity check in status")
    except StoreError as exc:
        assert one_line(exc.one_line())
        detected.append("refused when read")
    finally:
        store.close()
    if loaded is not None:
        assert loaded.state in ref.states.values(), \
            "a damaged checkpoint copy was restored as valid"
    try:
        audit, head, cps, other, sound = _dump(path)
    except (sqlite3.DatabaseError, UnicodeDecodeError):
        assert detected, f"unreadable database not reported ({d})"
        return detected[0]
    newest = max(ref.checkpoints)
    if (audit, head) != (ref.audit, ref.head) or not sound or \
            cps.get(newest) != ref.checkpoints[newest]:
        assert detected, f"damage to audit, the newest checkpoint or structure went " \
                         f"unreported ({d})"
    if detected:
        return detected[0]
    if cps != ref.checkpoints:
        # Load reads the newest copy only; an older one is checked if it is ever needed.
        return "latent: an older checkpoint copy damaged (never restored as valid)"
    if other != ref.other:
        return "undetected: value changed in a table without checksums"
    return "no effect (unused bytes)"


_EXPLAIN = {
    "undetected": "Values in the operational tables (kv, leases, claims, spawns, agents, "
                  "breakers, schema_migrations) carry no checksum: a flip inside one of their "
                  "values is not detectable. They hold short-lived state (leases expire, "
                  "claims are pruned); the audit chain and checkpoints, which are the record, "
                  "are covered.",
    "latent": "A damaged older checkpoint copy is not looked at while a newer intact copy "
              "exists; it is never restored as valid, and is reported if it is ever needed.",
    "fell back": "A damaged WAL frame makes SQLite ignore it and every later frame: the store "
                 "reopens at the last intact commit, whole and with its chain verifying, but "
                 "those newest transactions are lost. Copied alone into a fresh folder, as "
                 "here, nothing notices; beside its witness, the next writer records the "
                 "loss as an `audit.gap` (test_audit_witness.py).",
}


def _record(figures: Figures, label: str, verdict: str) -> None:
    figures.add(SUITE, f"{label}: {verdict}")
    for key, why in _EXPLAIN.items():
        if verdict.startswith(key):
            figures.note(SUITE, why)


@examples(150)
@given(d=file_damage)
def test_database_bit_flips_are_detected_short(reference: Reference,
                                               tmp_path_factory: pytest.TempPathFactory,
                                               figures: Figures, d: FileDamage) -> None:
    verdict = check_file_damage(reference, tmp_path_factory.mktemp("db"), d, figures)
    _record(figures, "database verdict", verdict)


@pytest.mark.slow
@examples(10000)
@given(d=file_damage)
def test_database_bit_flips_are_detected_long(reference: Reference,
                                              tmp_path_factory: pytest.TempPathFactory,
                                              figures: Figures, d: FileDamage) -> None:
    where = tmp_path_factory.mktemp("db")
    verdict = check_file_damage(reference, where, d, figures)
    _record(figures, "database verdict", verdict)
    shutil.rmtree(where, ignore_errors=True)


def test_database_truncated_to_zero_is_refused_not_recreated(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    AuditLog(store).record("x", n=1)
    store.close()
    path.write_bytes(b"")
    with pytest.raises(StoreError, match="is empty: the database was truncated"):
        SqliteStore(path)
    assert path.read_bytes() == b""
    out = run_cli("--db", str(path), "audit", "verify")
    assert out.returncode == 2 and one_line(out.stderr.decode())


def test_a_new_database_never_appears_empty(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    SqliteStore(path).close()
    assert path.read_bytes()[:16] == b"SQLite format 3\x00"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.db"]


def _raw(path: Path) -> sqlite3.Connection:
    """A connection that may write what only damage could: NULLs where NOT NULL stands."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER audit_no_update")
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute("UPDATE sqlite_master SET sql = replace(sql, 'NOT NULL', '') "
                 "WHERE name = 'audit'")
    conn.close()
    return sqlite3.connect(path, isolation_level=None)


@pytest.mark.parametrize("column,value", [("data", None), ("data", b"\x00\xff"),
                                           ("data", "{not json"), ("kind", b"\x01"),
                                           ("ts_us", "soon"), ("prev_hash", None)])
def test_damaged_audit_cells_are_named_not_crashed_on(tmp_path: Path, column: str,
                                                      value: Any) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    for i in range(5):
        AuditLog(store).record("x", n=i)
    store.close()
    raw = _raw(path)
    raw.execute(f"UPDATE audit SET {column} = ? WHERE seq = 3", (value,))
    raw.close()
    store = SqliteStore(path)
    report = AuditLog(store).verify()
    store.close()
    assert not report.ok and report.first_bad_seq == 3, report
    out = run_cli("--db", str(path), "audit", "verify")
    assert out.returncode == 1 and b"BROKEN at row seq=3" in out.stdout
    assert b"Traceback" not in out.stderr


def _flip_in_page(path: Path, page: int) -> None:
    raw = bytearray(path.read_bytes())
    end = page * 4096
    # The end of a page holds its cells: damage the last cell's key.
    raw[end - 3] ^= 0x20
    path.write_bytes(bytes(raw))


def test_status_reports_a_damaged_index(reference: Reference, tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(reference.data)
    conn = sqlite3.connect(path)
    [(root,)] = conn.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = 'checkpoints_by_name'").fetchall()
    conn.close()
    _flip_in_page(path, root)
    store = SqliteStore(path)
    assert AuditLog(store).verify().ok, "the tables themselves are intact"
    store.close()
    status = collect_status(str(path))
    assert status["integrity"]["ok"] is False
    assert "**Database:** DAMAGED" in render_markdown(status)


def test_cli_reports_damaged_databases_in_one_line(reference: Reference,
                                                   tmp_path: Path) -> None:
    for name, data in {"header": b"SQLite format 2\x00" + reference.data[16:],
                       "half": reference.data[: len(reference.data) // 2],
                       "first-page": _damaged(reference.data, FileDamage("zero-page", 0, 0, 1))
                       }.items():
        path = tmp_path / f"{name}.db"
        path.write_bytes(data)
        for args in (("status",), ("audit", "verify")):
            out = run_cli("--db", str(path), *args)
            err = out.stderr.decode()
            assert out.returncode == 2 and one_line(err) and str(path) in err, (name, err)
            assert path.read_bytes() == data


# -- the write-ahead log --------------------------------------------------------------------

@pytest.fixture(scope="module")
def wal_reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[bytes, bytes]]:
    """A database whose newest transactions are still only in its WAL."""
    path = tmp_path_factory.mktemp("wal") / "state.db"
    store = SqliteStore(path)
    for i in range(20):
        AuditLog(store).record("early", i=i)
    store.query("PRAGMA wal_checkpoint(TRUNCATE)")
    holder = SqliteStore(path)  # keeps the WAL from being checkpointed at close
    for i in range(30):
        AuditLog(store).record("late", i=i, pad="p" * 200)
    yield path.read_bytes(), path.with_name("state.db-wal").read_bytes()
    store.close()
    holder.close()


def check_wal_damage(ref: tuple[bytes, bytes], where: Path, d: FileDamage,
                     figures: Figures) -> str:
    main, wal = ref
    path = where / "state.db"
    path.write_bytes(main)
    path.with_name("state.db-wal").write_bytes(_damaged(wal, d) if d.kind != "zero-page"
                                               else wal[: d.where % len(wal)])
    figures.add(SUITE, "WAL trials")
    try:
        store = SqliteStore(path)
    except StoreError as exc:
        assert one_line(exc.one_line())
        return "refused"
    try:
        report = AuditLog(store).verify()
        count = store.audit_head().events
    except StoreError as exc:
        assert one_line(exc.one_line())
        return "refused"
    finally:
        store.close()
    assert report.ok, "a damaged WAL must leave a consistent chain: an earlier commit, whole"
    assert 20 <= count <= 50
    return "all transactions kept" if count == 50 else "fell back to an earlier commit"


@examples(60)
@given(d=file_damage)
def test_damaged_wal_leaves_a_whole_earlier_commit_short(
        wal_reference: tuple[bytes, bytes], tmp_path_factory: pytest.TempPathFactory,
        figures: Figures, d: FileDamage) -> None:
    verdict = check_wal_damage(wal_reference, tmp_path_factory.mktemp("wal"), d, figures)
    _record(figures, "WAL verdict", verdict)


@pytest.mark.slow
@examples(1000)
@given(d=file_damage)
def test_damaged_wal_leaves_a_whole_earlier_commit_long(
        wal_reference: tuple[bytes, bytes], tmp_path_factory: pytest.TempPathFactory,
        figures: Figures, d: FileDamage) -> None:
    where = tmp_path_factory.mktemp("wal")
    verdict = check_wal_damage(wal_reference, where, d, figures)
    _record(figures, "WAL verdict", verdict)
    shutil.rmtree(where, ignore_errors=True)


def test_checkpoint_digest_is_over_the_stored_bytes(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    meta = Checkpoints(store).save(CP, {"a": 1})
    [blob] = store.checkpoint_blobs(CP)
    store.close()
    assert meta.sha256 == sha256_hex(blob.payload) and meta.size == len(blob.payload)


@pytest.mark.parametrize("value", [None, 5, "text", b""])
def test_damaged_checkpoint_cells_are_skipped_not_crashed_on(tmp_path: Path,
                                                            value: Any) -> None:
    store = SqliteStore(tmp_path / "state.db")
    for v in range(2):
        Checkpoints(store).save(CP, _state(v))
    store.close()
    raw = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    raw.execute("PRAGMA writable_schema = ON")
    raw.execute("UPDATE sqlite_master SET sql = replace(sql, 'NOT NULL', '') "
                "WHERE name = 'checkpoints'")
    raw.close()
    raw = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    raw.execute("UPDATE checkpoints SET payload = ? WHERE id = 2", (value,))
    raw.close()
    store = SqliteStore(tmp_path / "state.db")
    loaded = Checkpoints(store).load(CP)
    store.close()
    assert loaded.meta.id == 1 and loaded.state == _state(0) and loaded.fell_back


def test_a_damaged_schema_is_reported_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    SqliteStore(path).close()
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA writable_schema = ON")
    raw.execute("UPDATE sqlite_master SET sql = CAST(? AS TEXT) WHERE name = 'claims'",
                (b"CREATE TABLE claims (\n  key \xff\xfe TEXT,\n  `owner TEXT\n)",))
    raw.close()
    before = path.read_bytes()
    with pytest.raises(StoreError) as info:
        SqliteStore(path)
    assert one_line(info.value.one_line()) and "is corrupt" in info.value.one_line()
    assert path.read_bytes() == before


def test_status_reports_a_damaged_schema_entry(tmp_path: Path) -> None:
    """A flip inside a table's CREATE statement that still parses: SQLite's own check
    passes, and the hooks' claims would fail at the next event."""
    path = tmp_path / "state.db"
    SqliteStore(path).close()
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA writable_schema = ON")
    raw.execute("UPDATE sqlite_master SET sql = replace(sql, 'owner', 'ownes') "
                "WHERE name = 'claims'")
    raw.close()
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    status = collect_status(str(path))
    assert status["integrity"]["ok"] is False
    assert "schema entry 'claims'" in render_markdown(status)
