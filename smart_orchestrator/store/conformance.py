"""Contract tests every `Store` backend must pass: `run_store_conformance(make_store)`.

`make_store(path)` opens a backend at a fresh location; it is called more than once for
the same location to check durability across reopen.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..audit import AuditLog
from ..canonical import sha256_hex
from .base import Store

__all__ = ["CHECKS", "run_store_conformance"]

MakeStore = Callable[[Path], Store]


def _audit_chain_survives_reopen(make: MakeStore, where: Path) -> None:
    store = make(where)
    for i in range(5):
        store.append_audit("test", {"i": i})
    store.close()
    again = make(where)
    report = AuditLog(again).verify()
    assert report.ok and report.events == 5, report.one_line()
    assert again.audit_head().seq == 5
    again.close()


def _audit_records_come_back_in_order(make: MakeStore, where: Path) -> None:
    store = make(where)
    written = [store.append_audit("k", {"n": n}) for n in range(3)]
    read = list(store.iter_audit())
    assert [r.hash for r in read] == [w.hash for w in written]
    assert [r.data["n"] for r in read] == [0, 1, 2]
    assert next(iter(store.iter_audit(after_seq=2))).seq == 3
    store.close()


def _checkpoints_newest_first_with_retention(make: MakeStore, where: Path) -> None:
    store = make(where)
    for i in range(4):
        payload = f'{{"i":{i}}}'.encode()
        store.put_checkpoint("cp", payload, sha256_hex(payload), keep=2)
    blobs = store.checkpoint_blobs("cp")
    assert [b.payload for b in blobs] == [b'{"i":3}', b'{"i":2}']
    assert [m.name for m in store.list_checkpoints()] == ["cp", "cp"]
    assert store.list_checkpoints("other") == []
    store.close()


def _kv_round_trips(make: MakeStore, where: Path) -> None:
    store = make(where)
    assert store.kv_get("a") is None
    store.kv_set("a", "1")
    store.kv_set("a", "2")
    assert store.kv_get("a") == "2"
    store.close()


CHECKS: dict[str, Callable[[MakeStore, Path], None]] = {
    "audit_chain_survives_reopen": _audit_chain_survives_reopen,
    "audit_records_come_back_in_order": _audit_records_come_back_in_order,
    "checkpoints_newest_first_with_retention": _checkpoints_newest_first_with_retention,
    "kv_round_trips": _kv_round_trips,
}


def run_store_conformance(make: MakeStore, workdir: Path) -> None:
    for name, check in CHECKS.items():
        where = workdir / name
        where.mkdir(parents=True, exist_ok=True)
        check(make, where / "state.db")
