"""`store export`: a laptop's SQLite state moves into an empty team store, chain intact."""

from __future__ import annotations

from pathlib import Path

import pytest

from smart_orchestrator.audit import AuditLog
from smart_orchestrator.checkpoints import Checkpoints
from smart_orchestrator.cli import main
from smart_orchestrator.policy.breaker import CircuitBreakers
from smart_orchestrator.policy.config import BreakerPolicy
from smart_orchestrator.store import SqliteStore
from smart_orchestrator.store.postgres import PgStore
from smart_orchestrator.waves.plan import WavePlan
from smart_orchestrator.waves.state import WaveState
from tests.pg import fresh_schema_dsn


@pytest.fixture
def laptop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SMART_ORCHESTRATOR_DATA", str(tmp_path / "data"))
    path = tmp_path / "laptop" / "state.db"
    store = SqliteStore(path)
    log = AuditLog(store)
    for i in range(5):
        log.record("policy.decision", decision="allow", i=i, session_id="s1")
    Checkpoints(store).save("plan", {"step": 2})
    breakers = CircuitBreakers(store, BreakerPolicy(failure_threshold=1), clock=lambda: 100.0)
    breakers.record("flaky", ok=False)
    plan = WavePlan.model_validate({"name": "w", "tasks": [{"id": "a", "prompt": "p"}]})
    WaveState(store).create_run("run-1", plan, {}, "owner-1")
    store.leases.put(["L1"], session_id="s1", agent_type="explore", owner_pid=None, depth=1,
                     background=False, now_us=1, expires_us=2**60)
    store.close()
    return path


def test_export_copies_state_and_keeps_the_chain_verifiable(laptop: Path) -> None:
    dsn = fresh_schema_dsn("export")
    assert main(["--db", str(laptop), "store", "export", "--to", dsn]) == 0
    local = SqliteStore(laptop, readonly=True)
    team = PgStore(dsn)
    before, after = AuditLog(local).verify(), AuditLog(team).verify()
    assert after.ok and after.events == before.events + 1, after.one_line()
    copied = list(team.iter_audit())
    assert [r.hash for r in copied[:-1]] == [r.hash for r in local.iter_audit()]
    assert copied[-1].kind == "store.imported" and copied[-1].data["head"] == before.head_hash
    assert Checkpoints(team).load("plan").state == {"step": 2}
    row = team.breakers.get("flaky")
    assert row is not None and row.state == "open"
    assert WaveState(team).run("run-1").owner == "owner-1"
    assert [t.task_id for t in WaveState(team).tasks("run-1")] == ["a"]
    assert [r.id for r in team.leases.rows()] == ["L1"]
    # Once is enough: a second export into the now-populated store is refused.
    with pytest.raises(Exception, match="already holds state"):
        from smart_orchestrator.store.export import export_store

        export_store(local, team)
    assert AuditLog(team).verify().events == after.events
    local.close()
    team.close()


def test_export_refuses_a_local_chain_that_does_not_verify(
        laptop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import sqlite3

    conn = sqlite3.connect(laptop)
    conn.execute("DROP TRIGGER audit_no_update")
    conn.execute("UPDATE audit SET data = '{\"i\": 99}' WHERE seq = 2")
    conn.commit()
    conn.close()
    dsn = fresh_schema_dsn("export")
    assert main(["--db", str(laptop), "store", "export", "--to", dsn]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "does not verify" in err, err
    team = PgStore(dsn)
    assert team.audit_head().events == 0 and team.list_checkpoints() == []
    team.close()


def test_team_limits_are_kept_in_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "state.db"
    assert main(["--db", str(db), "store", "team-limits", "--max-in-flight", "2"]) == 0
    assert "2 agents in flight, no limit spawns" in capsys.readouterr().out
    assert SqliteStore(db).kv_get("team.max_in_flight") == "2"


def test_release_host_frees_a_dead_machines_leases(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "state.db"
    store = SqliteStore(db)
    store.leases.put(["L1", "L2"], session_id="s", agent_type="explore", owner_pid=None,
                     depth=1, background=False, now_us=1, expires_us=2**60)
    host = store.leases.rows()[0].host
    store.close()
    assert main(["--db", str(db), "store", "release-host", host]) == 0
    assert "released 2 lease(s)" in capsys.readouterr().out
    store = SqliteStore(db)
    assert store.leases.count() == 0
    assert [r.data for r in store.audit.events(kinds=("store.host_released",))] == \
        [{"host": host, "leases": 2}]
    store.close()
