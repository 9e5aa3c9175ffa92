from __future__ import annotations

import pytest

from smart_orchestrator.checkpoints import CheckpointError, Checkpoints
from smart_orchestrator.store import SqliteStore


def _corrupt(store: SqliteStore, cp_id: int, payload: bytes) -> None:
    with store.transaction() as conn:
        conn.execute("UPDATE checkpoints SET payload = ? WHERE id = ?", (payload, cp_id))


def test_round_trips_state(store: SqliteStore) -> None:
    cps = Checkpoints(store)
    cps.save("wave-1", {"done": ["a", "b"], "n": 2})
    loaded = cps.load("wave-1")
    assert loaded.state == {"done": ["a", "b"], "n": 2}
    assert not loaded.fell_back


def test_load_returns_the_newest(store: SqliteStore) -> None:
    cps = Checkpoints(store)
    for i in range(3):
        cps.save("w", {"i": i})
    assert cps.load("w").state == {"i": 2}


@pytest.mark.parametrize("damage", [
    pytest.param(lambda p: p[: len(p) // 2], id="truncated"),
    pytest.param(lambda p: bytes([p[0] ^ 0x01]) + p[1:], id="bit-flip"),
    pytest.param(lambda p: b"", id="emptied"),
])
def test_corrupt_newest_falls_back_to_previous_and_says_so(store: SqliteStore, damage) -> None:  # type: ignore[no-untyped-def]
    cps = Checkpoints(store)
    cps.save("w", {"i": 1})
    newest = cps.save("w", {"i": 2, "pad": "x" * 50})
    blob = store.checkpoint_blobs("w")[0].payload
    _corrupt(store, newest.id, damage(blob))
    loaded = cps.load("w")
    assert loaded.state == {"i": 1}
    assert loaded.fell_back
    assert f"#{newest.id}" in loaded.note()


def test_all_copies_corrupt_is_an_error_not_a_guess(store: SqliteStore) -> None:
    cps = Checkpoints(store)
    meta = cps.save("w", {"i": 1})
    _corrupt(store, meta.id, b"{")
    with pytest.raises(CheckpointError, match="every stored copy"):
        cps.load("w")


def test_retention_keeps_last_n_per_name(store: SqliteStore) -> None:
    cps = Checkpoints(store, keep=3)
    for i in range(6):
        cps.save("a", {"i": i})
    cps.save("b", {"i": 0})
    assert [m.name for m in cps.list("a")] == ["a"] * 3
    assert cps.load("a").state == {"i": 5}
    assert len(cps.list()) == 4


@pytest.mark.parametrize("name", ["", "../etc", "a b", "x" * 200])
def test_rejects_bad_names(store: SqliteStore, name: str) -> None:
    with pytest.raises(CheckpointError, match="invalid checkpoint name"):
        Checkpoints(store).save(name, {})


def test_rejects_non_json_state(store: SqliteStore) -> None:
    with pytest.raises(CheckpointError, match="not plain JSON"):
        Checkpoints(store).save("a", {"x": float("nan")})


def test_missing_checkpoint_is_a_clear_error(store: SqliteStore) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint named"):
        Checkpoints(store).load("nothing")
