"""Crash consistency: the process driving a wave is SIGKILLed at a random moment.

A new process resumes the wave from the store. Every task must end succeeded with exactly
one succeeded attempt (and one succeeded `wave.agent_end` in the audit log), tasks that
had finished are not run again, nothing is left open, no agent of the dead process
survives, and the audit chain verifies.

Short and long (scripted) runs drive waves with stand-in agents in a child process; the
long run adds trials of the real thing: the MCP server over stdio, real agents (the
bundled Claude Code CLI) against the scripted model, `spawn_wave`, SIGKILL, a new server,
`resume_wave`.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
from mcp import Client, StdioServerParameters

from smart_orchestrator.audit import AuditLog
from smart_orchestrator.errors import OrchestratorError
from smart_orchestrator.store import SqliteStore
from smart_orchestrator.waves._proc import AGENT_MARKER_ENV

from ..e2e.harness import ScriptedModel, find_claude_bin, offline_env, text
from ._crash_worker import SleepyRunner, service
from ._figures import Figures
from ._util import PYTHON, REPO_ROOT

SUITE = "crash"


def random_plan(rng: random.Random, *, low: int, high: int,
                prefix: str = "") -> dict[str, Any]:
    """A random DAG: each task depends on up to two earlier ones."""
    ids = [f"t{i}" for i in range(rng.randint(low, high))]
    tasks = []
    for i, tid in enumerate(ids):
        deps = rng.sample(ids[:i], k=min(i, rng.choice([0, 0, 1, 2])))
        tasks.append({"id": tid, "prompt": f"{prefix}TASK-{tid}: part {i}",
                      "depends_on": deps})
    return {"name": "crash-trial", "tasks": tasks}


def check_consistent(db: Path, run_id: str, plan: dict[str, Any]) -> dict[str, int]:
    """The invariants after resume; returns counts for the figures."""
    ids = {t["id"] for t in plan["tasks"]}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        (state,) = conn.execute("SELECT state FROM wave_runs WHERE run_id = ?",
                                (run_id,)).fetchone()
        tasks = dict(conn.execute("SELECT task_id, state FROM wave_tasks WHERE run_id = ?",
                                  (run_id,)).fetchall())
        succeeded = dict(conn.execute(
            "SELECT task_id, count(*) FROM wave_attempts WHERE run_id = ? AND "
            "outcome = 'succeeded' GROUP BY task_id", (run_id,)).fetchall())
        open_attempts = conn.execute("SELECT count(*) FROM wave_attempts WHERE run_id = ? "
                                     "AND finished_us IS NULL", (run_id,)).fetchone()[0]
        outcomes = dict(conn.execute("SELECT outcome, count(*) FROM wave_attempts WHERE "
                                     "run_id = ? GROUP BY outcome", (run_id,)).fetchall())
        counted = dict(conn.execute("SELECT task_id, attempts FROM wave_tasks WHERE "
                                    "run_id = ?", (run_id,)).fetchall())
        rows = dict(conn.execute("SELECT task_id, count(*) FROM wave_attempts WHERE "
                                 "run_id = ? GROUP BY task_id", (run_id,)).fetchall())
        ends = dict(conn.execute(
            "SELECT json_extract(data, '$.task_id'), count(*) FROM audit WHERE kind = "
            "'wave.agent_end' AND json_extract(data, '$.run_id') = ? AND "
            "json_extract(data, '$.outcome') = 'succeeded' GROUP BY 1", (run_id,)).fetchall())
    finally:
        conn.close()
    assert state == "completed", (state, tasks)
    assert set(tasks) == ids, "a task was lost"
    assert all(s == "succeeded" for s in tasks.values()), tasks
    assert succeeded == {tid: 1 for tid in ids}, f"not exactly once: {succeeded}"
    assert set(ends) <= ids and all(n == 1 for n in ends.values()), f"audit twice: {ends}"
    assert open_attempts == 0, "an attempt was left open"
    assert counted == rows, "attempt counts disagree with attempt rows"
    store = SqliteStore(db)
    try:
        report = AuditLog(store).verify()
        assert report.ok, report.one_line()
        assert store.integrity_problems() == []
    finally:
        store.close()
    # A missing success row is the known gap pinned by
    # test_a_kill_between_a_task_s_end_and_its_audit_row_loses_no_audit_row.
    return {"attempts": sum(rows.values()), "interrupted": outcomes.get("interrupted", 0),
            "audit_lost": len(ids - set(ends))}


def wait_for_progress(db: Path, run_id: str, finished: int, timeout_s: float = 120) -> None:
    """Until `finished` tasks of the run have ended (or the run has): a random point of the
    wave to kill at, whatever its speed."""
    deadline = time.monotonic() + timeout_s
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        while time.monotonic() < deadline:
            done = conn.execute("SELECT count(*) FROM wave_tasks WHERE run_id = ? AND "
                                "finished_us IS NOT NULL", (run_id,)).fetchone()[0]
            ended = conn.execute("SELECT finished_us FROM wave_runs WHERE run_id = ?",
                                 (run_id,)).fetchone()
            if done >= finished or (ended and ended[0] is not None):
                return
            time.sleep(0.005)
    finally:
        conn.close()


def _reap(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)  # reaped: a zombie would still look like a live owner


def scripted_trial(tmp: Path, seed: int, figures: Figures) -> None:
    rng = random.Random(seed)
    plan = random_plan(rng, low=4, high=14)
    plan_file = tmp / "plan.json"
    plan_file.write_text(json.dumps(plan))
    db = tmp / "state.db"
    SqliteStore(db).close()
    proc = subprocess.Popen([PYTHON, "-m", "tests.reliability._crash_worker", str(db),
                             str(plan_file), str(tmp), str(seed)], cwd=REPO_ROOT,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    assert run_id.startswith("w"), proc.stderr.read() if proc.stderr else ""
    wait_for_progress(db, run_id, rng.randrange(len(plan["tasks"])))
    time.sleep(rng.uniform(0.0, 0.15))
    _reap(proc)
    figures.add(SUITE, "SIGKILL trials (child process, stand-in agents)")
    runner = SleepyRunner(seed + 1, flaky=False)
    resumer = service(str(db), runner)
    try:
        try:
            before = resumer.status(run_id)
            resumer.resume(run_id)
        except OrchestratorError as exc:
            assert "already ended" in exc.reason, exc.reason
            figures.add(SUITE, "trials where the wave had finished before the kill")
        else:
            figures.add(SUITE, "trials killed mid-wave, then resumed")
            assert resumer.wait_until_done(run_id, 120)
            finished_before = {t.id for t in before.tasks if t.state == "succeeded"}
            rerun = {tid for tid, _ in runner.ran}
            assert not finished_before & rerun, "a finished task ran again"
            figures.add(SUITE, "tasks finished before the kill, kept (not run again)",
                        len(finished_before))
            figures.add(SUITE, "tasks run by the resumed wave", len(rerun))
    finally:
        resumer.close()
    counts = check_consistent(db, run_id, plan)
    figures.add(SUITE, "attempts interrupted by the kill, recorded and re-run",
                counts["interrupted"])
    figures.add(SUITE, "tasks in these waves", len(plan["tasks"]))
    figures.add(SUITE, "tasks whose `wave.agent_end` audit row the kill lost",
                counts["audit_lost"])


@pytest.mark.parametrize("seed", range(6))
def test_a_killed_wave_resumes_with_every_task_done_exactly_once_short(
        tmp_path: Path, figures: Figures, seed: int) -> None:
    scripted_trial(tmp_path, seed, figures)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 150))
def test_a_killed_wave_resumes_with_every_task_done_exactly_once_long(
        tmp_path: Path, figures: Figures, seed: int) -> None:
    scripted_trial(tmp_path, seed, figures)


def test_a_kill_between_a_task_s_end_and_its_audit_row_loses_no_audit_row(
        tmp_path: Path) -> None:
    plan = {"tasks": [{"id": "only", "prompt": "TASK-only: do it"}]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    db = tmp_path / "state.db"
    SqliteStore(db).close()
    proc = subprocess.Popen([PYTHON, "-m", "tests.reliability._crash_worker", str(db),
                             str(tmp_path / "plan.json"), str(tmp_path), "0"], cwd=REPO_ROOT,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT),
                                 "SMART_ORCHESTRATOR_TEST_KILL_BEFORE_AUDIT": "wave.agent_end"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    assert proc.wait(60) == -signal.SIGKILL
    resumer = service(str(db), SleepyRunner(1, flaky=False))
    try:
        # The kill came inside the transaction that ends the task: neither the end nor its
        # audit row was kept, so resume runs the task again and audits it once.
        resumer.resume(run_id)
        assert resumer.wait_until_done(run_id, 60)
    finally:
        resumer.close()
    counts = check_consistent(db, run_id, plan)
    assert counts["audit_lost"] == 0


# -- the real thing: the MCP server, real agents ---------------------------------------------

def _server_params(tmp: Path, model: ScriptedModel, dirs: dict[str, Path]
                   ) -> StdioServerParameters:
    env = offline_env(model_url=model.base_url, home=dirs["home"], tmpdir=dirs["cctmp"])
    env.update(SMART_ORCHESTRATOR_DB=str(tmp / "server.db"),
               SMART_ORCHESTRATOR_DATA=str(tmp / "data"),
               SMART_ORCHESTRATOR_WAVE_RETRY_BASE_S="0.05",
               CLAUDE_PROJECT_DIR=str(dirs["work"]), PYTHONPATH=str(REPO_ROOT))
    return StdioServerParameters(command=PYTHON, args=["-m", "mcp_server"], env=env,
                                 cwd=str(dirs["work"]))


def _servers() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True)
            if "mcp_server" in " ".join(p.cmdline())]


def _agents(run_id: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(AGENT_MARKER_ENV, "").startswith(run_id + "/") and \
                    proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


async def _call(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    content: dict[str, Any] = result.structured_content
    return content


async def real_trial(tmp: Path, seed: int, figures: Figures) -> None:
    rng = random.Random(seed)
    dirs = {n: tmp / n for n in ("work", "home", "cctmp")}
    for d in dirs.values():
        d.mkdir()
    plan = random_plan(rng, low=3, high=6)
    with ScriptedModel() as model:
        for task in plan["tasks"]:
            model.agent(f"TASK-{task['id']}:",
                        [text(f"result of {task['id']}", delay=rng.uniform(0.2, 1.5))])
        params = _server_params(tmp, model, dirs)
        finished, jitter = rng.randrange(len(plan["tasks"])), rng.uniform(0.0, 1.0)
        with anyio.fail_after(300):
            try:
                async with Client(params) as client:
                    run_id = (await _call(client, "spawn_wave", {"plan": plan}))["run_id"]
                    await anyio.to_thread.run_sync(wait_for_progress, tmp / "server.db",
                                                   run_id, finished)
                    await anyio.sleep(jitter)
                    [server] = _servers()
                    server.send_signal(signal.SIGKILL)
                    await anyio.to_thread.run_sync(server.wait, 30)
            except Exception:  # the client sees its server die: expected
                pass
            figures.add(SUITE, "SIGKILL trials (real MCP server, real agents)")
            async with Client(params) as client:
                before = await _call(client, "wave_status", {"run_id": run_id})
                if before["state"] == "completed":
                    figures.add(SUITE, "real trials where the wave had finished before the "
                                       "kill")
                else:
                    assert before["state"] == "interrupted", before
                    figures.add(SUITE, "real trials killed mid-wave, then resumed")
                    done = await _call(client, "resume_wave", {"run_id": run_id,
                                                               "wait_s": 240})
                    assert done["state"] == "completed", done
                verified = await _call(client, "audit_verify", {})
                assert verified["ok"], verified
        assert _agents(run_id) == [], "an agent of the killed server outlived the resume"
        kept = {t["id"] for t in before["tasks"] if t["state"] == "succeeded"}
        for tid in kept:
            assert len(model.requests_for(f"TASK-{tid}:")) == 1, f"{tid} ran again"
    counts = check_consistent(tmp / "server.db", run_id, plan)
    figures.add(SUITE, "real trials: attempts interrupted by the kill, re-run",
                counts["interrupted"])
    figures.add(SUITE, "real trials: tasks finished before the kill, kept", len(kept))
    figures.add(SUITE, "real trials: tasks in these waves", len(plan["tasks"]))
    figures.add(SUITE, "real trials: tasks whose `wave.agent_end` audit row the kill lost",
                counts["audit_lost"])


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(45))
async def test_a_killed_server_resumes_its_wave_of_real_agents_long(
        tmp_path: Path, figures: Figures, seed: int) -> None:
    if find_claude_bin() is None:
        pytest.skip("the bundled Claude Code CLI is missing")
    await real_trial(tmp_path, seed, figures)


def test_the_plan_generator_makes_acyclic_plans() -> None:
    for seed in range(50):
        plan = random_plan(random.Random(seed), low=1, high=10)
        seen: set[str] = set()
        for task in plan["tasks"]:
            assert set(task["depends_on"]) <= seen
            seen.add(task["id"])
