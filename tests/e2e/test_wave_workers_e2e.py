"""Waves on workers: three `smart-orchestrator worker` processes, each posing as its own
machine (host id, data folder, checkout), serve one team store on PostgreSQL and clone a
bare repository on local disk as the wave's remote. Real agents (the bundled Claude Code
CLI) against the scripted model, offline.

The 10-trial SIGKILL loop is slow: `.venv/bin/python -m pytest -q -m slow
tests/e2e/test_wave_workers_e2e.py` (one trial stays in the default run).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from smart_orchestrator.store.postgres import PgStore
from smart_orchestrator.waves import WaveConfig, WavePlan, WaveService
from smart_orchestrator.waves.admission import MIB, AdmissionConfig
from smart_orchestrator.waves.recovery import ErrorClass, RetryPolicy
from tests.pg import fresh_schema_dsn
from tests.wave_fakes import ScriptedRunner, Step

from .harness import ModelRequest, ScriptedModel, offline_env, text, tool_use

REPO_ROOT = Path(__file__).resolve().parents[2]
MIDS = [f"m{n:02d}" for n in range(38)]
DEADLINE_S = 420.0


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def bare_remote(tmp: Path) -> Path:
    seed = tmp / "seed"
    seed.mkdir()
    git(seed, "init", "-q", "-b", "main")
    (seed / "README.md").write_text("team project\n")
    (seed / "shared.txt").write_text("one\ntwo\nthree\n")
    git(seed, "add", "-A")
    git(seed, "commit", "-q", "-m", "base")
    bare = tmp / "team.git"
    git(tmp, "clone", "-q", "--bare", str(seed), str(bare))
    return bare


def bash_task(task_id: str, *deps: str) -> dict[str, Any]:
    return {"id": task_id, "prompt": f"TASK-{task_id.upper()}: do your part",
            "depends_on": list(deps), "allowed_tools": ["Bash"], "timeout_s": 240}


def write(model: ScriptedModel, task_id: str, command: str, **reply: Any) -> None:
    model.agent(f"TASK-{task_id.upper()}:", [tool_use("Bash", {"command": command}),
                                            text(f"done {task_id}", **reply)])


class Team:
    """The team store, the remote, the workers and a driver in this process."""

    def __init__(self, tmp: Path, model: ScriptedModel, dirs: dict[str, Path],
                 monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp, self.model, self.dirs = tmp, model, dirs
        self.dsn = fresh_schema_dsn("workers")
        self.schema = f"dbos_{uuid.uuid4().hex[:10]}"
        self.remote = bare_remote(tmp)
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        monkeypatch.setenv("SMART_ORCHESTRATOR_DBOS_SCHEMA", self.schema)
        monkeypatch.setenv("SMART_ORCHESTRATOR_STORE", self.dsn)
        monkeypatch.setenv("SMART_ORCHESTRATOR_WORKTREES", str(tmp / "driver-worktrees"))
        self.store = PgStore(self.dsn)
        config = WaveConfig(admission=AdmissionConfig(max_agents=8,
                                                      memory_budget_bytes=4096 * MIB),
                            retry=RetryPolicy(initial_s=0.05, max_backoff_s=0.2),
                            tick_s=0.1, dispatch="workers")
        # The driver runs no agent: a runner that would fail every task proves it.
        self.service = WaveService(self.store, ScriptedRunner(default=Step(
            error=ErrorClass.BAD_REQUEST, reason="the driver ran an agent")), config)

    def start_worker(self, name: str, *, concurrency: int = 2, team: int = 6) -> None:
        env = offline_env(model_url=self.model.base_url, home=self.dirs["home"],
                          tmpdir=self.dirs["cctmp"])
        env.update(SMART_ORCHESTRATOR_STORE=self.dsn,
                   SMART_ORCHESTRATOR_HOST_ID=f"machine-{name}",
                   SMART_ORCHESTRATOR_DATA=str(self.tmp / f"data-{name}"),
                   SMART_ORCHESTRATOR_DBOS_SCHEMA=self.schema,
                   SMART_ORCHESTRATOR_WAVE_RETRY_BASE_S="0.05",
                   SMART_ORCHESTRATOR_WAVE_SANDBOX="off",
                   SMART_ORCHESTRATOR_WAVE_MEMORY_MB="4096",
                   PYTHONPATH=str(REPO_ROOT))
        log = self.tmp / f"worker-{name}-{len(self.logs)}.log"
        self.logs[name] = log
        with log.open("wb") as out:
            self.workers[name] = subprocess.Popen(
                [sys.executable, "-m", "smart_orchestrator.cli", "worker",
                 "--concurrency", str(concurrency), "--team-concurrency", str(team),
                 "--checkout", str(self.tmp / f"checkout-{name}"),
                 "--dead-after", "8", "--beat", "1"],
                env=env, cwd=str(self.tmp), stdout=out, stderr=subprocess.STDOUT)

    def wait_joined(self, count: int) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            joined = sum("serving the wave queue" in log.read_text(errors="replace")
                         for log in self.logs.values() if log.exists())
            if joined >= count:
                return
            for name, proc in self.workers.items():
                assert proc.poll() is None, f"worker {name} exited: {self.log(name)}"
            time.sleep(0.2)
        raise AssertionError("workers did not join: " + " | ".join(
            self.log(n) for n in self.logs))

    def log(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")[-3000:]

    def spawn(self, plan: dict[str, Any]) -> str:
        return self.service.spawn(WavePlan.model_validate(plan), cwd=str(self.tmp))

    def wait(self, run_id: str) -> Any:
        assert self.service.wait_until_done(run_id, DEADLINE_S), (
            self.service.status(run_id), {n: self.log(n) for n in self.logs})
        return self.service.status(run_id)

    def worker_of(self, run_id: str, task_id: str) -> str:
        """The worker whose agent runs the task now."""
        prefix = f"{run_id}/{task_id}/"
        pids = {p.pid: n for n, p in self.workers.items() if p.poll() is None}
        for proc in psutil.process_iter():
            try:
                marker = proc.environ().get("SMART_ORCHESTRATOR_WAVE_AGENT", "")
                if not marker.startswith(prefix):
                    continue
                for parent in proc.parents():
                    if parent.pid in pids:
                        return pids[parent.pid]
            except psutil.Error:
                continue
        raise AssertionError(f"no worker runs {task_id}")

    def close(self) -> None:
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.service.close()
        self.store.close()


@pytest.fixture
def team(tmp_path: Path, scripted_model: ScriptedModel, claude_dirs: dict[str, Path],
         monkeypatch: pytest.MonkeyPatch) -> Iterator[Team]:
    t = Team(tmp_path, scripted_model, claude_dirs, monkeypatch)
    try:
        yield t
    finally:
        t.close()


def _fan_out_fan_in(team: Team) -> dict[str, Any]:
    write(team.model, "root", "echo root > root.txt")
    for mid in MIDS:
        write(team.model, mid, f"mkdir -p out && echo {mid} > out/{mid}.txt")
    write(team.model, "sink", "ls out | wc -l > count.txt && cat count.txt")
    tasks = [bash_task("root"), *(bash_task(m, "root") for m in MIDS),
             bash_task("sink", *MIDS)]
    return {"name": "fan", "remote": str(team.remote), "gates": False, "tasks": tasks}


def _attempts(store: PgStore, run_id: str) -> list[tuple[str, int, str | None]]:
    return [(a[0], a[1], a[5]) for a in store.waves.attempts(run_id)]


def _audit(store: PgStore, kind: str, run_id: str | None = None) -> list[dict[str, Any]]:
    rows = [dict(r.data) for r in store.iter_audit() if r.kind == kind]
    return [r for r in rows if run_id is None or r.get("run_id") == run_id]


def _sigkill_trial(team: Team) -> None:
    for name in ("a", "b", "c"):
        team.start_worker(name)
    team.wait_joined(3)
    victim_task = "m05"
    started = threading.Event()

    def hold_first(request: ModelRequest) -> Any:
        # The victim's first agent stays busy until its worker is killed.
        if f"TASK-{victim_task.upper()}:" in request.first_user_text \
                and not started.is_set():
            started.set()
            return tool_use("Bash", {"command": "sleep 1"}, delay=120)
        return None

    team.model.on(hold_first)
    run_id = team.spawn(_fan_out_fan_in(team))
    assert started.wait(DEADLINE_S), "the victim task never started"
    deadline = time.monotonic() + 60
    while True:
        try:
            victim = team.worker_of(run_id, victim_task)
            break
        except AssertionError:
            assert time.monotonic() < deadline, "the victim's agent was never seen"
            time.sleep(0.2)
    team.workers[victim].send_signal(signal.SIGKILL)
    team.workers[victim].wait(30)
    # The killed machine comes back: a new worker process with its host id and checkout.
    team.start_worker(victim)
    status = team.wait(run_id)

    assert status.state == "completed", status.reason
    assert {v.id: v.state for v in status.tasks} == {
        t: "succeeded" for t in ["root", *MIDS, "sink"]}
    attempts = _attempts(team.store, run_id)
    succeeded = sorted(t for t, _, outcome in attempts if outcome == "succeeded")
    assert succeeded == sorted(["root", *MIDS, "sink"]), "every task done exactly once"
    others = [(t, n, o) for t, n, o in attempts if o != "succeeded"]
    assert others and all(o == "interrupted" for _, _, o in others), others
    assert (victim_task, 1, "interrupted") in others
    by_task = {v.id: v.attempts for v in status.tasks}
    for task_id, _, _ in others:  # honest attempts: the killed one counts
        assert by_task[task_id] == 2
    ends = _audit(team.store, "wave.agent_end", run_id)
    assert sorted(e["task_id"] for e in ends if e["outcome"] == "succeeded") == succeeded
    recovered = _audit(team.store, "wave.task_recovered", run_id)
    assert {r["task_id"] for r in recovered} == {t for t, _, _ in others}
    assert _audit(team.store, "wave.worker_lost"), "a live worker noticed the dead one"
    # The fan-in agent saw every fanned-out result merged, and so does the remote.
    [count] = [r for r in team.model.tool_results("TASK-SINK:")]
    assert count.text.strip() == str(len(MIDS)), count
    branch = status.stats["worktrees"]["result_branch"]
    files = git(team.remote, "ls-tree", "-r", "--name-only", branch).split()
    assert sorted(f for f in files if f.startswith("out/")) == [f"out/{m}.txt" for m in MIDS]
    assert {"root.txt", "count.txt", "README.md"} <= set(files)
    # Every machine took part; the driver (this process) ran no agent.
    hosts = {e["host"] for e in _audit(team.store, "wave.agent_start", run_id)}
    assert hosts >= {"machine-a", "machine-b", "machine-c"}, hosts
    assert all(e["executor"] != victim for e in recovered)
    for name, proc in team.workers.items():
        assert proc.poll() is None, f"worker {name} died: {team.log(name)}"


def test_a_sigkilled_worker_loses_no_task_and_none_runs_twice(team: Team) -> None:
    _sigkill_trial(team)


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(10))
def test_a_sigkilled_worker_loses_no_task_ten_trials(team: Team, trial: int) -> None:
    _sigkill_trial(team)


def test_a_merge_conflict_between_tasks_on_two_workers_is_that_tasks_outcome(
        team: Team) -> None:
    team.start_worker("a", concurrency=1, team=2)
    team.start_worker("b", concurrency=1, team=2)
    team.wait_joined(2)
    right_wrote = threading.Event()

    def left_waits(request: ModelRequest) -> Any:
        # Both edit the base: the left one finishes only after the right one has written.
        if "TASK-RIGHT:" in request.first_user_text and request.tool_results:
            right_wrote.set()
        if "TASK-LEFT:" in request.first_user_text and request.tool_results:
            right_wrote.wait(DEADLINE_S)
        return None

    team.model.on(left_waits)
    write(team.model, "left", "printf 'one\\nLEFT\\nthree\\n' > shared.txt")
    write(team.model, "right", "printf 'one\\nRIGHT\\nthree\\n' > shared.txt")
    run_id = team.spawn({"remote": str(team.remote), "gates": False,
                         "tasks": [bash_task("left"), bash_task("right")]})
    status = team.wait(run_id)
    assert status.state == "partial", status.reason
    failed = [v for v in status.tasks if v.state == "failed"]
    assert len(failed) == 1, status.tasks
    [loser] = failed
    winner = "right" if loser.id == "left" else "left"
    assert loser.error_class == "merge_conflict" and loser.attempts == 1
    assert "shared.txt" in (loser.reason or "") and winner in (loser.reason or "")
    branch = status.stats["worktrees"]["result_branch"]
    assert git(team.remote, "show", f"{branch}:shared.txt") == f"one\n{winner.upper()}\nthree"
    # Each worker (one agent at most) took one of the two.
    hosts = sorted(e["host"] for e in _audit(team.store, "wave.agent_start", run_id))
    assert hosts == ["machine-a", "machine-b"]
