from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from smart_orchestrator.errors import OrchestratorError
from smart_orchestrator.store import SqliteStore
from smart_orchestrator.waves import WaveConfig, WavePlan, WaveService
from smart_orchestrator.waves.admission import MIB, AdmissionConfig
from smart_orchestrator.waves.owner import owner_token
from smart_orchestrator.waves.recovery import ErrorClass, RetryPolicy
from smart_orchestrator.waves.state import WaveState
from tests.wave_fakes import FixedMetrics, ScriptedRunner, Step

CONFIG = WaveConfig(admission=AdmissionConfig(max_agents=4, memory_budget_bytes=4096 * MIB,
                                              reserve_bytes=0),
                    retry=RetryPolicy(initial_s=0.0), tick_s=0.01)
# pid 1 runs, but not since this start time: the owner is dead, not recycled.
DEAD_OWNER = f"{socket.gethostname()}:1:1"


def plan(*tasks: dict[str, Any]) -> WavePlan:
    return WavePlan.model_validate({"tasks": list(tasks)})


def t(task_id: str, *deps: str, **extra: Any) -> dict[str, Any]:
    return {"id": task_id, "prompt": f"do {task_id}", "depends_on": list(deps), **extra}


class Services:
    """Services on one database; each stands for a server process."""

    def __init__(self, db: Path, workdir: Path) -> None:
        self.db, self.workdir = db, workdir
        self.open: list[tuple[WaveService, SqliteStore]] = []

    def new(self, runner: ScriptedRunner, *, owner: str | None = None,
            metrics: FixedMetrics | None = None) -> WaveService:
        store = SqliteStore(self.db)
        service = WaveService(store, runner, CONFIG, metrics=metrics or FixedMetrics(),
                              owner=owner)
        self.open.append((service, store))
        return service

    def close(self) -> None:
        for service, store in self.open:
            service.close()
            store.close()


@pytest.fixture
def services(db_path: Path, tmp_path: Path) -> Iterator[Services]:
    workdir = tmp_path / "work"
    workdir.mkdir()
    s = Services(db_path, workdir)
    yield s
    s.close()


def test_spawn_returns_at_once_and_the_wave_runs_in_the_background(
        services: Services) -> None:
    gate = threading.Event()
    runner = ScriptedRunner({"a": Step(gate=gate)})
    service = services.new(runner)
    run_id = service.spawn(plan(t("a"), t("b", "a")), cwd=str(services.workdir))
    assert runner.wait_started("a")
    running = service.status(run_id)
    assert running.state == "running" and running.counts == {"running": 1, "pending": 1}
    assert running.admission is not None and "1 agents running" in running.admission
    gate.set()
    assert service.wait_until_done(run_id, 60)
    done = service.status(run_id)
    assert done.state == "completed" and done.reason == "all 2 tasks succeeded"
    assert done.levels == [["a"], ["b"]]
    view = {v.id: v for v in done.tasks}
    assert view["b"].depends_on == ("a",) and view["b"].level == 1
    assert view["a"].attempts == 1 and view["a"].output == "ok"
    assert view["a"].duration_s is not None and view["a"].cost_usd == 0.001
    assert done.version > running.version


def test_progress_waiters_wake_on_every_change(services: Services) -> None:
    gate = threading.Event()
    service = services.new(ScriptedRunner({"a": Step(gate=gate)}))
    run_id = service.spawn(plan(t("a")), cwd=str(services.workdir))
    seen = service.version(run_id)
    gate.set()
    assert service.wait_for_change(run_id, seen, 10) != seen


def test_list_runs_newest_first_with_counts(services: Services) -> None:
    service = services.new(ScriptedRunner())
    first = service.spawn(plan(t("a")), cwd=str(services.workdir))
    service.wait_until_done(first, 60)
    second = service.spawn(plan(t("a"), t("b")), cwd=str(services.workdir))
    service.wait_until_done(second, 60)
    runs = service.list_runs(limit=10)
    assert [r.run_id for r in runs[:2]] == [second, first]
    assert runs[0].counts == {"succeeded": 2} and runs[0].state == "completed"
    assert [r.run_id for r in service.list_runs(limit=10, state="failed")] == []


def _crashed_run(db: Path, workdir: Path) -> str:
    """A wave as a SIGKILLed server leaves it: a done, b mid-attempt, c never started."""
    store = SqliteStore(db)
    state = WaveState(store)
    state.create_run("w-crashed", plan(t("a"), t("b", "a"), t("c", "b")),
                     {"cwd": str(workdir), "max_concurrency": None}, DEAD_OWNER)
    state.start_attempt("w-crashed", "a", "full")
    state.end_attempt("w-crashed", "a", 1, outcome="succeeded", task_state="succeeded",
                      output="A-RESULT")
    state.start_attempt("w-crashed", "b", "full")
    store.close()
    return "w-crashed"


def test_resume_reruns_only_interrupted_and_unstarted_tasks(services: Services) -> None:
    run_id = _crashed_run(services.db, services.workdir)
    runner = ScriptedRunner()
    service = services.new(runner)
    before = service.status(run_id)
    assert before.state == "interrupted" and "resume_wave" in (before.reason or "")
    service.resume(run_id)
    assert service.wait_until_done(run_id, 60)
    after = service.status(run_id)
    assert after.state == "completed"
    assert runner.calls_for("a") == []
    assert [len(runner.calls_for(x)) for x in ("b", "c")] == [1, 1]
    assert "A-RESULT" in runner.calls_for("b")[0].request.prompt
    attempts = [(a.task_id, a.attempt, a.outcome) for a in WaveState(
        services.open[0][1]).attempts(run_id)]
    assert attempts == [("a", 1, "succeeded"), ("b", 1, "interrupted"),
                        ("b", 2, "succeeded"), ("c", 1, "succeeded")]


def test_a_stopped_server_leaves_its_wave_resumable(services: Services) -> None:
    never = threading.Event()
    first_runner = ScriptedRunner({"b": Step(gate=never)})
    first = services.new(first_runner)
    run_id = first.spawn(plan(t("a"), t("b", "a"), t("c", "b")), cwd=str(services.workdir))
    assert first_runner.wait_started("b")
    first.close()
    runner = ScriptedRunner()
    second = services.new(runner, owner="second-server-token")
    assert second.status(run_id).state == "interrupted"
    second.resume(run_id)
    assert second.wait_until_done(run_id, 60)
    final = second.status(run_id)
    assert final.state == "completed"
    assert runner.calls_for("a") == [] and len(runner.calls_for("b")) == 1
    assert {v.id: v.attempts for v in final.tasks} == {"a": 1, "b": 2, "c": 1}


def test_resume_refuses_finished_waves_and_waves_a_live_server_drives(
        services: Services) -> None:
    service = services.new(ScriptedRunner())
    done = service.spawn(plan(t("a")), cwd=str(services.workdir))
    service.wait_until_done(done, 60)
    with pytest.raises(OrchestratorError, match="already ended"):
        service.resume(done)
    store = SqliteStore(services.db)
    WaveState(store).create_run("w-live", plan(t("a")), {"cwd": "/"}, owner_token())
    store.close()
    with pytest.raises(OrchestratorError, match="still driven by a live server"):
        services.new(ScriptedRunner(), owner="another").resume("w-live")


def test_cancel_waits_for_running_agents_and_reports_cancelled(services: Services) -> None:
    never = threading.Event()
    runner = ScriptedRunner({"a": Step(gate=never), "b": Step(gate=never)})
    service = services.new(runner)
    run_id = service.spawn(plan(t("a"), t("b"), t("c", "a")), cwd=str(services.workdir))
    assert runner.wait_started("a") and runner.wait_started("b")
    status = service.cancel(run_id, reason="user changed their mind")
    assert status.state == "cancelled" and status.reason == "user changed their mind"
    assert {v.id: v.state for v in status.tasks} == {"a": "cancelled", "b": "cancelled",
                                                     "c": "cancelled"}
    assert runner.running == 0
    with pytest.raises(OrchestratorError, match="already ended"):
        service.cancel(run_id, reason="again")


def test_cancel_of_an_orphaned_wave_finishes_it_from_the_store(services: Services) -> None:
    run_id = _crashed_run(services.db, services.workdir)
    runner = ScriptedRunner()
    status = services.new(runner).cancel(run_id, reason="abandon it")
    assert status.state == "cancelled" and runner.calls == []
    assert {v.id: v.state for v in status.tasks} == {"a": "succeeded", "b": "cancelled",
                                                     "c": "cancelled"}


def test_quota_stop_is_reported_with_its_class(services: Services) -> None:
    runner = ScriptedRunner({"a": Step(error=ErrorClass.QUOTA, reason="Credit balance is too low")})
    service = services.new(runner)
    run_id = service.spawn(plan(t("a"), t("b", "a")), cwd=str(services.workdir))
    service.wait_until_done(run_id, 60)
    status = service.status(run_id)
    assert (status.state, status.stop_class) == ("failed", "quota")
    assert "Credit balance is too low" in (status.reason or "")


def test_resume_finishes_a_saga_a_crash_interrupted(services: Services) -> None:
    log = services.workdir / "undo.log"
    undo = {"command": [sys.executable, "-c", f"open({str(log)!r}, 'a').write('a\\n')"]}
    store = SqliteStore(services.db)
    state = WaveState(store)
    state.create_run("w-saga", plan(t("a", compensate=undo), t("b", "a")),
                     {"cwd": str(services.workdir)}, DEAD_OWNER)
    state.start_attempt("w-saga", "a", "full")
    state.end_attempt("w-saga", "a", 1, outcome="succeeded", task_state="succeeded")
    state.start_attempt("w-saga", "b", "full")
    state.end_attempt("w-saga", "b", 1, outcome="failed", task_state="failed",
                      error_class="bad_request", reason="no")
    state.merge_stats("w-saga", {"final": "failed"})
    state.set_run_state("w-saga", "compensating", reason="b failed")
    state.set_compensation("w-saga", "a", "running")
    store.close()
    runner = ScriptedRunner()
    service = services.new(runner)
    service.resume("w-saga")
    assert service.wait_until_done("w-saga", 60)
    status = service.status("w-saga")
    assert status.state == "failed" and runner.calls == []
    assert log.read_text() == "a\n"
    assert {v.id: v.compensation for v in status.tasks} == {"a": "done", "b": None}


@pytest.mark.parametrize("field", ["pragma", "name", "agent"])
def test_a_plan_with_a_credential_anywhere_is_refused_and_nothing_is_stored(
        services: Services, db_path: Path, field: str) -> None:
    key = "AKIAZ3MSJV4WKQ7NTB5R"
    body: dict[str, Any] = {"tasks": [t("a")]}
    if field == "pragma":  # a reviewed secret may reach an agent, never the store
        body["tasks"][0]["prompt"] = f"use {key}  # pragma: allowlist secret"
    elif field == "name":
        body["name"] = f"wave {key}"
    else:
        body["tasks"][0]["agent"] = {"system_prompt": f"you hold {key}"}
    service = services.new(ScriptedRunner())
    with pytest.raises(OrchestratorError, match="holds a credential"):
        service.spawn(WavePlan.model_validate(body), cwd=str(services.workdir))
    on_disk = b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*"))
    assert key.encode() not in on_disk


def test_outputs_and_failure_reasons_are_stored_without_credentials(
        services: Services, db_path: Path) -> None:
    key = "AKIAZ3MSJV4WKQ7NTB5R"
    runner = ScriptedRunner({
        "a": Step(answers=(f"found {key}  # pragma: allowlist secret",)),
        "b": Step(error=ErrorClass.CONFIG, reason=f"agent crashed printing {key}")})
    service = services.new(runner)
    # b after a: a failure that ends the wave would otherwise skip a if it came first.
    run_id = service.spawn(plan(t("a"), t("b", "a")), cwd=str(services.workdir))
    assert service.wait_until_done(run_id, 60)
    on_disk = b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*"))
    assert key.encode() not in on_disk
    view = {v.id: v for v in service.status(run_id).tasks}
    assert view["a"].output is not None and "[REDACTED:aws-access-key-id]" in view["a"].output
