"""Pieces of the wave worker that need no second process: the result branch shared through
a remote by two clones, who counts as dead, and bad input to `smart-orchestrator worker`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import psutil
import pytest

from smart_orchestrator.cli import main
from smart_orchestrator.errors import OrchestratorError
from smart_orchestrator.store import SqliteStore
from smart_orchestrator.store.hostid import host_id
from smart_orchestrator.waves import worker as worker_module
from smart_orchestrator.waves.worker import Worker, heartbeat_key
from smart_orchestrator.waves.worktrees import MergeConflict, Workspaces
from tests.unit.test_waves_worktrees import git, make_repo
from tests.wave_fakes import FixedMetrics, ScriptedRunner, shared_policy


def remote_with_base(tmp: Path) -> tuple[Path, str]:
    seed = make_repo(tmp / "seed")
    bare = tmp / "team.git"
    git(tmp, "clone", "-q", "--bare", str(seed), str(bare))
    return bare, git(seed, "rev-parse", "HEAD")


def on_worker(bare: Path, base: str, checkout: Path, run_id: str = "w1") -> Workspaces:
    data = {"repo": "/elsewhere/repo", "base": base, "root": "/elsewhere", "remote": str(bare),
            "shared": True}
    return Workspaces.on_worker(run_id, data, checkout)


def test_two_workers_merge_into_the_remotes_result_branch_each_from_its_own_clone(
        tmp_path: Path) -> None:
    bare, base = remote_with_base(tmp_path)
    one, two = on_worker(bare, base, tmp_path / "m1"), on_worker(bare, base, tmp_path / "m2")
    assert one.repo != two.repo and Path(one.repo).is_dir() and Path(two.repo).is_dir()
    # Both start from the base; the second merges onto the head the first pushed.
    a, b = one.open("a"), two.open("b")
    (a / "a.txt").write_text("from a\n")
    (b / "b.txt").write_text("from b\n")
    one.deliver("a")
    two.deliver("b")
    branch = one.result_branch
    files = set(git(bare, "ls-tree", "--name-only", branch).split())
    assert {"a.txt", "b.txt", "README.md"} <= files
    assert {f"smart-orchestrator/w1/{x}" for x in ("a", "b", "result")} <= set(
        git(bare, "branch", "--list", "smart-orchestrator/w1/*").replace("*", "").split())
    # A dependent opened afterwards, on either machine, starts from both results.
    c = one.open("c")
    assert (c / "a.txt").exists() and (c / "b.txt").exists()
    # The driver's view at the end: the remote's head, nothing left to push.
    done = on_worker(bare, base, tmp_path / "driver").finish(keep=[])
    assert done["pushed_to_remote"] is True
    assert done["result_commit"] == git(bare, "rev-parse", branch)


def test_conflicting_edits_from_two_clones_fail_the_later_task_and_keep_the_result(
        tmp_path: Path) -> None:
    bare, base = remote_with_base(tmp_path)
    one, two = on_worker(bare, base, tmp_path / "m1"), on_worker(bare, base, tmp_path / "m2")
    left, right = one.open("left"), two.open("right")
    (left / "shared.txt").write_text("one\nLEFT\nthree\n")
    (right / "shared.txt").write_text("one\nRIGHT\nthree\n")
    one.deliver("left")
    with pytest.raises(MergeConflict) as caught:
        two.deliver("right")
    assert caught.value.paths == ["shared.txt"] and "left" in caught.value.reason
    assert git(bare, "show", f"{one.result_branch}:shared.txt") == "one\nLEFT\nthree"


def test_a_wave_without_a_shared_remote_cannot_be_worked_elsewhere(tmp_path: Path) -> None:
    with pytest.raises(OrchestratorError, match="no shared remote"):
        Workspaces.on_worker("w1", {"repo": "/r", "base": "0" * 40, "root": "/x",
                                    "remote": None}, tmp_path)


def make_worker(store: SqliteStore, tmp: Path, **kw: object) -> Worker:
    policy = shared_policy(store)
    return Worker(store, ScriptedRunner(), checkout=tmp / "checkout", concurrency=2,
                  metrics=FixedMetrics(), breaker=policy["breaker"], slots=policy["slots"],
                  **kw)  # type: ignore[arg-type]


def beat(store: SqliteStore, executor: str, **fields: object) -> None:
    store.kv_set(heartbeat_key(executor), json.dumps(fields))


def test_who_counts_as_dead(store: SqliteStore, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(worker_module.time, "monotonic", lambda: clock[0])
    w = make_worker(store, tmp_path, dead_after_s=10.0, beat_s=1.0)
    me = psutil.Process()
    started = int(me.create_time() * 1000)
    assert w._dead("never-beat")
    beat(store, "stopped", host="elsewhere", pid=1, beat_us=1, stopped=True)
    assert w._dead("stopped")
    # Same host, a process that is not the one that wrote the heartbeat: dead at once.
    beat(store, "gone", host=host_id(), pid=os.getpid(), started_ms=started - 5, beat_us=1)
    assert w._dead("gone")
    beat(store, "here", host=host_id(), pid=os.getpid(), started_ms=started, beat_us=1)
    assert not w._dead("here")
    # Another machine: only a heartbeat that stops changing for dead_after_s, measured
    # on this worker's clock (the remote clock's value is only compared for change).
    beat(store, "far", host="elsewhere", pid=1, beat_us=5)
    assert not w._dead("far")
    clock[0] += 9
    assert not w._dead("far")
    beat(store, "far", host="elsewhere", pid=1, beat_us=3)  # a clock that went back
    clock[0] += 9
    assert not w._dead("far"), "it changed: alive"
    clock[0] += 10.5
    assert w._dead("far")


def test_a_worker_refuses_limits_that_cannot_hold(store: SqliteStore, tmp_path: Path) -> None:
    with pytest.raises(OrchestratorError, match="below"):
        make_worker(store, tmp_path, team_concurrency=1)
    with pytest.raises(OrchestratorError, match="heartbeat"):
        make_worker(store, tmp_path, dead_after_s=1.0, beat_s=2.0)


@pytest.mark.parametrize("argv", [
    ["worker", "--concurrency", "0"], ["worker", "--concurrency", "two"],
    ["worker", "--dead-after", "-1"], ["worker", "--team-concurrency", "0"],
])
def test_bad_worker_arguments_are_one_line_errors(argv: list[str],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("smart-orchestrator worker: error:")


def test_the_driver_follows_workers_ends_and_a_failed_workflow_fails_its_task_once(
        store: SqliteStore, tmp_path: Path) -> None:
    import anyio

    from smart_orchestrator.waves.plan import WavePlan
    from smart_orchestrator.waves.scheduler import RunOptions, WaveRun
    from tests.unit.test_waves_scheduler import Harness

    h = Harness(store, tmp_path, ScriptedRunner())
    calls: list[str] = []

    async def on_a_worker(run: WaveRun, task_id: str) -> None:
        # Stands in for a worker: it records the task in the store, the driver reads it.
        calls.append(task_id)
        attempt = h.state.start_attempt(run.run_id, task_id, "full")
        if task_id == "a":
            raise RuntimeError("worker bug after the attempt started")
        error = "quota" if task_id == "q" else None
        h.state.end_attempt(run.run_id, task_id, attempt,
                            outcome="succeeded" if error is None else "failed",
                            task_state="succeeded" if error is None else "failed",
                            error_class=error, reason=error, output=f"out {task_id}")

    h.ctx.run_task = on_a_worker
    plan = WavePlan.model_validate({"tasks": [
        {"id": "a", "prompt": "a"}, {"id": "b", "prompt": "b"},
        {"id": "c", "prompt": "c", "depends_on": ["a"]},
        {"id": "d", "prompt": "d", "depends_on": ["b"]}]})
    options = RunOptions(cwd=str(tmp_path), on_workers=True)
    h.state.create_run("w1", plan, options.to_json(), "test-owner")
    final = anyio.run(WaveRun(h.ctx, "w1", plan, options).drive)
    tasks = h.tasks()
    assert final == "partial"
    assert (tasks["a"].state, tasks["a"].error_class) == ("failed", "crash")
    assert "worker bug" in (tasks["a"].reason or "")
    assert [x.outcome for x in h.state.attempts("w1") if x.task_id == "a"] == ["interrupted"]
    assert tasks["c"].state == "skipped" and tasks["b"].state == tasks["d"].state == "succeeded"
    assert sorted(calls) == ["a", "b", "d"], "a failed workflow is not followed again"
    # The driver admitted nothing itself: workers do.
    assert h.resources.stats().running == 0


def test_a_wave_stopping_error_on_a_worker_stops_the_wave(store: SqliteStore,
                                                        tmp_path: Path) -> None:
    import anyio

    from smart_orchestrator.waves.plan import WavePlan
    from smart_orchestrator.waves.scheduler import RunOptions, WaveRun
    from tests.unit.test_waves_scheduler import Harness

    h = Harness(store, tmp_path, ScriptedRunner())

    async def on_a_worker(run: WaveRun, task_id: str) -> None:
        attempt = h.state.start_attempt(run.run_id, task_id, "full")
        h.state.end_attempt(run.run_id, task_id, attempt, outcome="failed",
                            task_state="failed", error_class="quota", reason="credit")

    h.ctx.run_task = on_a_worker
    plan = WavePlan.model_validate({"tasks": [
        {"id": "q", "prompt": "q"}, {"id": "later", "prompt": "l", "depends_on": ["x"]},
        {"id": "x", "prompt": "x", "depends_on": ["q"]}]})
    options = RunOptions(cwd=str(tmp_path), on_workers=True)
    h.state.create_run("w1", plan, options.to_json(), "test-owner")
    final = anyio.run(WaveRun(h.ctx, "w1", plan, options).drive)
    assert final == "failed"
    assert {k: v.state for k, v in h.tasks().items()} == {
        "q": "failed", "x": "skipped", "later": "skipped"}
    run = h.state.run("w1")
    assert run.stop_class == "quota" and "quota error in task 'q'" in (run.reason or "")


def _worker_run(store: SqliteStore, tmp_path: Path, runner: ScriptedRunner
                ) -> tuple[str, str]:
    """A one-task wave for workers, admitted by a driver (its estimate reserved), and the
    task run once by a worker in this process: (the wave's id, the task's state)."""
    import anyio

    from smart_orchestrator.budget import Budget
    from smart_orchestrator.budget.waves import WaveBudget
    from smart_orchestrator.policy.config import BudgetPolicy
    from smart_orchestrator.waves.plan import WavePlan
    from smart_orchestrator.waves.scheduler import RunOptions
    from smart_orchestrator.waves.state import WaveState

    bare, base = remote_with_base(tmp_path)
    budget = WaveBudget(store, lambda: Budget(store, BudgetPolicy(), project="proj"))
    plan = WavePlan.model_validate({"remote": str(bare), "tasks": [{"id": "t", "prompt": "t"}]})
    spaces = {"repo": "/elsewhere/repo", "base": base, "root": "/elsewhere",
              "remote": str(bare), "shared": True}
    options = RunOptions(cwd=str(tmp_path), on_workers=True, workspaces=spaces)
    WaveState(store).create_run("w1", plan, options.to_json(), "driver")
    assert budget.admit("w1", "t", "general-purpose", None, "t") is None  # the driver's part
    worker = Worker(store, runner, checkout=tmp_path / "checkout", concurrency=1,
                    metrics=FixedMetrics(), budget=budget, **shared_policy(store))
    [task] = plan.tasks

    async def run_once() -> str:
        return await worker._run("w1", task, "pending", options.to_json(), anyio.CancelScope())

    return "w1", anyio.run(run_once)


def test_a_worker_settles_what_its_agent_used(store: SqliteStore, tmp_path: Path) -> None:
    from tests.wave_fakes import Step

    run_id, state = _worker_run(store, tmp_path, ScriptedRunner(
        {"t": Step(tokens=(1200, 340))}))
    assert state == "succeeded"
    [row] = store.ledger.rows(run_id=run_id)
    assert (row.state, row.input_tokens, row.output_tokens) == ("settled", 1200, 340)
    [cost] = [r.data for r in store.iter_audit() if r.kind == "wave.agent_cost"]
    assert cost["cost"]["input_tokens"] == 1200 and cost["task_id"] == "t"


def test_a_usage_limit_on_a_worker_holds_the_task_and_the_team_until_its_reset(
        store: SqliteStore, tmp_path: Path) -> None:
    import time

    from smart_orchestrator.budget.ratelimit import RATE_SCOPE
    from smart_orchestrator.waves.recovery import ErrorClass
    from tests.wave_fakes import Step

    reset = int(time.time()) + 3600
    run_id, state = _worker_run(store, tmp_path, ScriptedRunner({"t": Step(
        error=ErrorClass.SESSION_LIMIT, reason=f"Claude AI usage limit reached|{reset}")}))
    # Not a failure: back to pending for the driver, which waits for the reset.
    assert state == "pending"
    gate = store.rate_gate.get(RATE_SCOPE)
    assert gate is not None and gate.until_us == reset * 1_000_000
    [row] = store.ledger.rows(run_id=run_id)
    assert row.state == "reserved", "settled when the task finally ends"
