"""Load: eight sessions of hook traffic against one store, and a wave of real agents.

Hooks: eight processes each drive one session's sequence (PreToolUse(Agent),
SubagentStart, the subagent's tool calls, SubagentStop, PostToolUse) through the policy
engine, each event delivered twice at once to the one decider. Every event is decided
exactly once, every lease is released, the machine cap is never exceeded, the chain
verifies, and nothing errs.

Waves: real agents (the bundled Claude Code CLI) against the scripted model, under the
admission a server gets by default on this machine: memory stays under the budget and
every task is accounted for.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from smart_orchestrator.audit import AuditLog
from smart_orchestrator.store import SqliteStore
from smart_orchestrator.waves import WaveConfig, WavePlan, WaveService
from smart_orchestrator.waves.runner import SdkAgentRunner

from ..e2e.harness import ScriptedModel, find_claude_bin, offline_env, text
from ._figures import Figures
from ._util import PYTHON, REPO_ROOT

SUITE = "load"
SESSIONS = 8
MACHINE_CAP = 4


class LeaseWatcher:
    """Polls the lease count from its own connection while the load runs."""

    def __init__(self, db: Path) -> None:
        self._db = db
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        conn = sqlite3.connect(f"file:{self._db}?mode=ro", uri=True, timeout=30)
        try:
            while not self._stop.wait(0.01):
                with_retry = conn.execute("SELECT count(*) FROM leases").fetchone()[0]
                self.peak = max(self.peak, with_retry)
                self.samples += 1
        finally:
            conn.close()

    def __enter__(self) -> LeaseWatcher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)


def _project(tmp: Path) -> Path:
    project = tmp / "project"
    (project / ".claude").mkdir(parents=True, exist_ok=True)
    # The machine cap below the number of sessions makes them contend for slots. Load and
    # memory limits are off: other work on this machine must not decide the outcome.
    (project / ".claude" / "smart-orchestrator.toml").write_text(
        f"[admission]\nmax_in_flight_machine = {MACHINE_CAP}\nwait_timeout_s = 120\n"
        "spawns_per_minute = 100000\nmax_load_percent = 1000000\n"
        "min_available_memory_mb = 0\n")
    return project


def run_hook_load(tmp: Path, agents_per_session: int, figures: Figures) -> None:
    db = tmp / "data" / "state.db"
    project = _project(tmp)
    SqliteStore(db).close()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "CLAUDE_PROJECT_DIR": str(project),
           "SMART_ORCHESTRATOR_DATA": str(db.parent), "CLAUDE_PID": str(os.getpid())}
    started = time.monotonic()
    with LeaseWatcher(db) as watcher:
        procs = [subprocess.Popen([PYTHON, "-m", "tests.reliability._load_worker", str(db),
                                   f"session{n}", str(agents_per_session), str(n)],
                                  cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
                 for n in range(SESSIONS)]
        outputs = [p.communicate(timeout=1800) for p in procs]
    elapsed = time.monotonic() - started
    totals: Counter[str] = Counter()
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0 and "Traceback" not in err, err[-3000:]
        totals.update(json.loads(out))
    _check_store(db, totals, agents_per_session)
    assert watcher.peak <= MACHINE_CAP, f"{watcher.peak} leases at once"
    key = f"{SESSIONS} sessions at once, {agents_per_session} spawns each"
    figures.put(SUITE, f"{key}: subagent spawns (PreToolUse(Agent))",
                SESSIONS * agents_per_session)
    figures.put(SUITE, f"{key}: hook events, each decided exactly once", totals["events"])
    figures.put(SUITE, f"{key}: most leases held at once (cap {MACHINE_CAP})", watcher.peak)
    figures.put(SUITE, f"{key}: spawns denied (admission wait ran out)", totals["denied"])
    figures.put(SUITE, f"{key}: hook events per second (two deciders race for each)",
                round(totals["events"] / elapsed, 1))


def _check_store(db: Path, totals: Counter[str], per_session: int) -> None:
    store = SqliteStore(db)
    try:
        report = AuditLog(store).verify()
        assert report.ok, report.one_line()
        assert store.integrity_problems() == []
        assert totals["decided"] == totals["events"], "some event was decided twice or never"
        claims = store.query("SELECT owner, count(*) FROM claims GROUP BY owner")
        assert sum(n for _, n in claims) == totals["events"]
        kinds = dict(store.query("SELECT kind, count(*) FROM audit GROUP BY kind"))
        spawns = SESSIONS * per_session
        decisions = store.query("SELECT json_extract(data, '$.decision'), count(*) FROM audit "
                                "WHERE kind = 'policy.decision' GROUP BY 1")
        assert sum(n for _, n in decisions) == spawns, decisions
        assert dict(decisions).get("allow", 0) == totals["allowed"]
        assert kinds.get("agent.start", 0) == totals["event:SubagentStart"]
        assert kinds.get("agent.stop", 0) == totals["event:SubagentStop"]
        assert kinds.get("tool.use", 0) == totals["subagent_tools"]
        assert kinds.get("agent.end", 0) + kinds.get("agent.launched", 0) == \
            totals["event:PostToolUse"]
        assert "policy.error" not in kinds, "the engine failed on some event"
        assert store.query("SELECT count(*) FROM leases") == [(0,)], "a lease was not released"
    finally:
        store.close()


def test_eight_sessions_of_hook_traffic_against_one_store_short(tmp_path: Path,
                                                                figures: Figures) -> None:
    run_hook_load(tmp_path, 6, figures)


@pytest.mark.slow
def test_eight_sessions_of_hook_traffic_against_one_store_long(tmp_path: Path,
                                                               figures: Figures) -> None:
    run_hook_load(tmp_path, 100, figures)


# -- a wave of real agents -------------------------------------------------------------------

class TreeMemory:
    """Peak resident memory of every process below this one, sampled every 50 ms."""

    def __init__(self) -> None:
        self.peak = 0
        self.min_available = psutil.virtual_memory().available
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.05):
            total = 0
            for child in me.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    continue
            self.peak = max(self.peak, total)
            self.min_available = min(self.min_available, psutil.virtual_memory().available)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.fixture
def agents_env(tmp_path: Path) -> Iterator[tuple[ScriptedModel, dict[str, str], Path]]:
    claude = find_claude_bin()
    if claude is None:
        pytest.skip("the bundled Claude Code CLI is missing")
    dirs = {n: tmp_path / n for n in ("work", "home", "cctmp")}
    for d in dirs.values():
        d.mkdir()
    with ScriptedModel() as model:
        env = offline_env(model_url=model.base_url, home=dirs["home"], tmpdir=dirs["cctmp"])
        yield model, env, dirs["work"]


def run_wave_load(tmp: Path, model: ScriptedModel, env: dict[str, str], work: Path,
                  tasks: int, figures: Figures, memory_mb: int | None = None) -> None:
    middle = [f"m{i:03d}" for i in range(tasks - 2)]
    for tid in ["first", *middle, "last"]:
        model.agent(f"TASK-{tid}:", [text(f"result of {tid}", delay=0.5)])
    plan = WavePlan.model_validate({"name": "load", "tasks": [
        {"id": "first", "prompt": "TASK-first: start"},
        *({"id": m, "prompt": f"TASK-{m}: part", "depends_on": ["first"]} for m in middle),
        {"id": "last", "prompt": "TASK-last: gather", "depends_on": middle}]})
    store = SqliteStore(tmp / "state.db")
    # What a server gets by default on this machine, or with a tight memory budget.
    config = WaveConfig.from_env({} if memory_mb is None else
                                 {"SMART_ORCHESTRATOR_WAVE_MEMORY_MB": str(memory_mb)})
    service = WaveService(SqliteStore(store.location),
                          SdkAgentRunner(cli_path=find_claude_bin(), extra_env=env), config)
    started = time.monotonic()
    try:
        with TreeMemory() as memory:
            run_id = service.spawn(plan, cwd=str(work))
            assert service.wait_until_done(run_id, 60 + tasks * 20), service.status(run_id)
        status = service.status(run_id)
    finally:
        service.close()
    elapsed = time.monotonic() - started
    assert status.state == "completed", status.reason
    budget = status.stats["memory_budget_bytes"]
    assert status.stats["peak_tree_rss_bytes"] <= budget
    assert memory.peak <= budget, f"agents used {memory.peak} bytes, budget {budget}"
    assert memory.min_available > 512 * 2**20, "the machine came close to running out"
    done = store.query("SELECT task_id, count(*) FROM wave_attempts WHERE run_id = ? AND "
                       "outcome = 'succeeded' GROUP BY task_id", (run_id,))
    assert len(done) == tasks and all(n == 1 for _, n in done)
    ends = store.query("SELECT count(*) FROM audit WHERE kind = 'wave.agent_end' AND "
                       "json_extract(data, '$.outcome') = 'succeeded'")
    assert ends == [(tasks,)]
    assert AuditLog(store).verify().ok
    for tid in ["first", *middle, "last"]:
        assert len(model.requests_for(f"TASK-{tid}:")) == 1, tid
    store.close()
    key = f"wave of {tasks} real agents" + (f", {memory_mb} MiB budget" if memory_mb else "")
    figures.put(SUITE, f"{key}: tasks completed", tasks)
    figures.put(SUITE, f"{key}: most agents at once (admission's choice)",
                status.stats["max_running"])
    figures.put(SUITE, f"{key}: peak agent memory (MiB)", round(memory.peak / 2**20))
    figures.put(SUITE, f"{key}: memory budget (MiB)", round(budget / 2**20))
    figures.put(SUITE, f"{key}: wall time (s)", round(elapsed, 1))


def test_a_wave_of_real_agents_stays_in_a_tight_memory_budget_short(
        tmp_path: Path, agents_env: tuple[ScriptedModel, dict[str, str], Path],
        figures: Figures) -> None:
    run_wave_load(tmp_path, *agents_env, tasks=8, figures=figures, memory_mb=700)


@pytest.mark.slow
def test_a_hundred_task_wave_stays_in_its_memory_budget_long(
        tmp_path: Path, agents_env: tuple[ScriptedModel, dict[str, str], Path],
        figures: Figures) -> None:
    run_wave_load(tmp_path, *agents_env, tasks=100, figures=figures)


@pytest.mark.slow
def test_a_wave_stays_in_a_tight_memory_budget_long(
        tmp_path: Path, agents_env: tuple[ScriptedModel, dict[str, str], Path],
        figures: Figures) -> None:
    run_wave_load(tmp_path, *agents_env, tasks=40, figures=figures, memory_mb=700)


def test_the_load_worker_counts_what_it_sends(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from ._load_worker import session

    monkeypatch.setenv("CLAUDE_PROJECT_DIR", str(_project(tmp_path)))
    monkeypatch.setenv("SMART_ORCHESTRATOR_DATA", str(tmp_path))
    db = tmp_path / "state.db"
    SqliteStore(db).close()
    counts = session(str(db), "solo", 2, 0)
    assert counts["events"] == counts["decided"] > 0
    rows: Any = SqliteStore(db).query("SELECT count(*) FROM leases")
    assert rows == [(0,)]
