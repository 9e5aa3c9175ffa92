"""Waves on DBOS Transact: workflow ids from the run, records in DBOS's own system database,
resume through DBOS, a finished task's workflow never run twice, and DBOS kept off the
import path of the service and the hooks."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from smart_orchestrator.waves import WaveService
from smart_orchestrator.waves.durable import system_database_url, task_workflow_id
from tests.unit.test_waves_service import CONFIG, Services, plan, t
from tests.wave_fakes import FixedMetrics, ScriptedRunner, Step

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def services(db_path: Path, tmp_path: Path) -> Iterator[Services]:
    workdir = tmp_path / "work"
    workdir.mkdir()
    opened = Services(db_path, workdir)
    yield opened
    opened.close()


def workflows(db: Path) -> dict[str, tuple[str, str]]:
    """workflow id -> (name, status), read straight from DBOS's SQLite system database."""
    conn = sqlite3.connect(f"file:{db.with_name('dbos.sqlite')}?mode=ro", uri=True)
    try:
        return {wid: (name, status) for wid, name, status in conn.execute(
            "SELECT workflow_uuid, name, status FROM workflow_status")}
    finally:
        conn.close()


def settle(db: Path) -> dict[str, tuple[str, str]]:
    """The wave's workflow records its end just after the run's: wait for it, bounded."""
    deadline = time.monotonic() + 90
    found = workflows(db)
    while any(s == "PENDING" for _, s in found.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
        found = workflows(db)
    return found


def test_the_system_database_is_a_file_beside_the_store_or_the_team_postgresql() -> None:
    assert system_database_url("/x/data/state.db") == "sqlite:////x/data/dbos.sqlite"
    team = "postgresql://so@db.example:5432/team"
    assert system_database_url(team) == team


def test_a_wave_and_each_of_its_tasks_are_workflows_named_by_run_and_task(
        services: Services) -> None:
    service = services.new(ScriptedRunner())
    run_id = service.spawn(plan(t("a"), t("b", "a"), t("c", "a")), cwd=str(services.workdir))
    assert service.wait_until_done(run_id, 60)
    assert service.status(run_id).state == "completed"
    found = settle(services.db)
    assert found[run_id] == ("smart_orchestrator.wave", "SUCCESS")
    for task_id in ("a", "b", "c"):
        assert found[task_workflow_id(run_id, task_id)] == ("smart_orchestrator.wave_task",
                                                            "SUCCESS")


def test_a_stopped_server_leaves_its_workflows_pending_and_resume_runs_them_in_dbos(
        services: Services) -> None:
    never = threading.Event()
    first_runner = ScriptedRunner({"b": Step(gate=never)})
    first = services.new(first_runner)
    run_id = first.spawn(plan(t("a"), t("b", "a"), t("c", "b")), cwd=str(services.workdir))
    assert first_runner.wait_started("b")
    first.close()
    stopped = workflows(services.db)
    assert stopped[run_id][1] == "PENDING"
    assert stopped[task_workflow_id(run_id, "a")][1] == "SUCCESS"
    assert stopped[task_workflow_id(run_id, "b")][1] == "PENDING"
    assert task_workflow_id(run_id, "c") not in stopped  # never started
    runner = ScriptedRunner()
    second = services.new(runner, owner="second-server-token")
    second.resume(run_id)
    assert second.wait_until_done(run_id, 90)
    assert second.status(run_id).state == "completed"
    assert runner.calls_for("a") == []
    assert len(runner.calls_for("b")) == 1 and len(runner.calls_for("c")) == 1
    settle(services.db)
    assert {wid: s for wid, (_, s) in workflows(services.db).items()} == {
        wid: "SUCCESS" for wid in (run_id, *(task_workflow_id(run_id, x) for x in "abc"))}


def test_a_task_whose_workflow_ended_is_not_run_again_even_if_the_store_disagrees(
        services: Services) -> None:
    """The durable record wins: a task re-opened in the store (by hand, by a bug) is not
    run a second time; it fails, saying why, and the wave does not loop on it."""
    first = services.new(ScriptedRunner())
    run_id = first.spawn(plan(t("a"), t("b", "a")), cwd=str(services.workdir))
    assert first.wait_until_done(run_id, 60)
    settle(services.db)  # the edits below must come after DBOS's own last writes
    conn = sqlite3.connect(services.db)
    with conn:
        conn.execute("UPDATE wave_runs SET state = 'running', finished_us = NULL, "
                     "owner = NULL WHERE run_id = ?", (run_id,))
        conn.execute("UPDATE wave_tasks SET state = 'pending', finished_us = NULL "
                     "WHERE run_id = ? AND task_id = 'b'", (run_id,))
    conn.close()
    # The wave's own workflow ended too: resume invokes it, and DBOS returns its record.
    conn = sqlite3.connect(services.db.with_name("dbos.sqlite"))
    with conn:
        conn.execute("UPDATE workflow_status SET status = 'PENDING' WHERE workflow_uuid = ?",
                     (run_id,))
    conn.close()
    runner = ScriptedRunner()
    second = services.new(runner, owner="second-server-token")
    second.resume(run_id)
    assert second.wait_until_done(run_id, 90)
    assert runner.calls_for("b") == []
    final = second.status(run_id)
    b = next(v for v in final.tasks if v.id == "b")
    assert b.state == "failed" and "durable engine recorded" in (b.reason or "")


def test_neither_the_service_nor_the_hook_path_imports_dbos() -> None:
    code = ("import sys, mcp_server.service, mcp_server.server, mcp_server.policy_tools, "
            "mcp_server.wave_tools, smart_orchestrator.waves; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('dbos', 'sqlalchemy')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_a_wave_whose_workflow_ended_is_not_driven_twice_and_does_not_hang(
        services: Services) -> None:
    first = services.new(ScriptedRunner())
    run_id = first.spawn(plan(t("a")), cwd=str(services.workdir))
    assert first.wait_until_done(run_id, 60)
    settle(services.db)
    conn = sqlite3.connect(services.db)
    with conn:
        conn.execute("UPDATE wave_runs SET state = 'running', finished_us = NULL, "
                     "owner = NULL WHERE run_id = ?", (run_id,))
    conn.close()
    runner = ScriptedRunner()
    second = services.new(runner, owner="second-server-token")
    second.resume(run_id)
    assert second.wait_until_done(run_id, 90) and not second.busy()
    final = second.status(run_id)
    assert final.state == "failed" and "recorded this wave's workflow as ended" in (
        final.reason or "")
    assert runner.calls == []


@pytest.mark.skipif(not os.environ.get("SMART_ORCHESTRATOR_TEST_PG_DSN"),
                    reason="no throwaway PostgreSQL (SMART_ORCHESTRATOR_TEST_PG_DSN)")
def test_on_the_team_postgresql_the_same_code_keeps_its_workflows_there(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    from smart_orchestrator.store import open_store

    dsn = os.environ["SMART_ORCHESTRATOR_TEST_PG_DSN"]
    monkeypatch.setenv("SMART_ORCHESTRATOR_STORE", dsn)
    store = open_store()
    service = WaveService(store, ScriptedRunner(), CONFIG, metrics=FixedMetrics())
    try:
        run_id = service.spawn(plan(t("a"), t("b", "a")), cwd=str(tmp_path))
        assert service.wait_until_done(run_id, 60)
        assert service.status(run_id).state == "completed"
    finally:
        service.close()
        store.close()
    with psycopg.connect(dsn) as conn:
        rows = dict(conn.execute(
            "SELECT workflow_uuid, status FROM dbos.workflow_status WHERE workflow_uuid "
            "LIKE %s", (run_id + "%",)).fetchall())
    assert rows == {run_id: "SUCCESS", task_workflow_id(run_id, "a"): "SUCCESS",
                    task_workflow_id(run_id, "b"): "SUCCESS"}
