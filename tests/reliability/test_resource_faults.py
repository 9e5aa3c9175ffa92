"""Resource faults: a full disk, a locked database, a read-only data folder, no metrics.

Each must give one clear line, leave the database intact (the chain verifies, SQLite's
integrity check passes, nothing half-written), deny subagent calls rather than let them
through, and fall back to admitting one agent at a time when metrics are missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import signal
import subprocess
import textwrap
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from mcp_server.hook_output import hook_output as rendered
from smart_orchestrator.audit import AuditLog
from smart_orchestrator.checkpoints import Checkpoints
from smart_orchestrator.errors import StoreError
from smart_orchestrator.policy import EngineFactory
from smart_orchestrator.store import SqliteStore
from smart_orchestrator.waves import WaveConfig, WavePlan, WaveService
from smart_orchestrator.waves.admission import MIB, AdmissionConfig, ResourceManager
from smart_orchestrator.waves.recovery import RetryPolicy
from tests.wave_fakes import ScriptedRunner, Step

from ..unit.policy_payloads import post_agent, pre_agent
from ._figures import Figures
from ._util import HOOK_SNIPPET, PYTHON, REPO_ROOT, denied, one_line, run_cli, run_hook

SUITE = "resource_faults"


def _sound(path: Path, *, events: int | None = None) -> None:
    store = SqliteStore(path)
    try:
        report = AuditLog(store).verify()
        assert report.ok, report.one_line()
        assert store.integrity_problems() == []
        if events is not None:
            assert report.events == events
    finally:
        store.close()


def _seed(path: Path, n: int = 10) -> None:
    store = SqliteStore(path)
    for i in range(n):
        AuditLog(store).record("seed", i=i)
    store.close()


def _project(tmp: Path, admission: str = "wait_timeout_s = 0") -> Path:
    project = tmp / "project"
    (project / ".claude").mkdir(parents=True, exist_ok=True)
    # The machine's own load is not what these tests are about: a shared machine's would
    # deny for CPU load.
    (project / ".claude" / "smart-orchestrator.toml").write_text(
        f"[admission]\n{admission}\nmax_load_percent = 100000\n")
    return project


# -- a full disk: a file-size limit ---------------------------------------------------------

_WRITE_UNTIL_FULL = textwrap.dedent("""
    import json, random, resource, signal, sys
    from smart_orchestrator.audit import AuditLog
    from smart_orchestrator.checkpoints import Checkpoints
    from smart_orchestrator.errors import StoreError
    from smart_orchestrator.store import SqliteStore
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails, EFBIG
    store = SqliteStore(sys.argv[1])
    limit, rng = int(sys.argv[2]), random.Random(int(sys.argv[3]))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    done, last_checkpoint, error = {"audit": 0, "checkpoint": 0, "kv": 0}, None, None
    try:
        for i in range(100000):
            op = rng.choice(["audit", "audit", "checkpoint", "kv"])
            if op == "audit":
                AuditLog(store).record("fill", i=i, pad="z" * rng.randrange(300))
            elif op == "checkpoint":
                state = {"i": i, "blob": "c" * rng.randrange(20000)}
                Checkpoints(store).save("state", state, keep=3)
                last_checkpoint = i
            else:
                store.kv_set(f"k{rng.randrange(50)}", "v" * rng.randrange(2000))
            done[op] += 1
    except StoreError as exc:
        error = exc.one_line()
    print(json.dumps({"done": done, "last_checkpoint": last_checkpoint, "error": error}))
""")


def check_full_disk(tmp: Path, limit: int, seed: int, figures: Figures) -> None:
    path = tmp / "state.db"
    _seed(path)
    out = subprocess.run([PYTHON, "-c", _WRITE_UNTIL_FULL, str(path), str(limit), str(seed)],
                         capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
                         env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, check=False)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    result = json.loads(out.stdout)
    assert result["error"] and one_line(result["error"]), result
    assert "no space left" in result["error"] and str(path) in result["error"]
    _sound(path, events=10 + result["done"]["audit"])
    if result["last_checkpoint"] is not None:
        store = SqliteStore(path)
        loaded = Checkpoints(store).load("state")
        store.close()
        assert loaded.state["i"] == result["last_checkpoint"] and not loaded.fell_back
    figures.add(SUITE, "full disk trials (file-size limit): write refused in one line, "
                       "database intact, last checkpoint restorable")
    figures.add(SUITE, "writes completed before the disk filled", sum(result["done"].values()))


@pytest.mark.parametrize("limit_kib", [96, 256])
def test_full_disk_stops_writes_with_one_line_and_keeps_the_database_intact(
        tmp_path: Path, figures: Figures, limit_kib: int) -> None:
    check_full_disk(tmp_path, limit_kib * 1024, limit_kib, figures)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(60))
def test_full_disk_at_random_limits_long(tmp_path: Path, figures: Figures, seed: int) -> None:
    limit = random.Random(seed).randrange(8 * 1024, 2 * 1024 * 1024)
    check_full_disk(tmp_path, limit, seed, figures)


def _fsize_limit(limit: int) -> Any:
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_hook_on_a_full_disk_denies_the_subagent_call(tmp_path: Path, figures: Figures) -> None:
    data = tmp_path / "data"
    _seed(data / "state.db")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "SMART_ORCHESTRATOR_DATA": str(data),
           "CLAUDE_PROJECT_DIR": str(_project(tmp_path))}
    env.pop("SMART_ORCHESTRATOR_DB", None)
    out = subprocess.run([PYTHON, "-c", HOOK_SNIPPET, "PreToolUse"],
                         input=json.dumps(pre_agent(tool_use_id="toolu_full")).encode(),
                         capture_output=True, timeout=60, env=env, cwd=REPO_ROOT,
                         preexec_fn=_fsize_limit(1024), check=False)
    assert out.returncode == 0 and b"Traceback" not in out.stderr
    decision = json.loads(out.stdout)
    assert denied(decision), decision
    assert "no space left" in decision["hookSpecificOutput"]["permissionDecisionReason"]
    _sound(data / "state.db", events=10)
    figures.add(SUITE, "full disk: PreToolUse(Agent) denied")


# -- a full disk: a real 1 MiB tmpfs ---------------------------------------------------------

@contextlib.contextmanager
def _mounted(target: Path, *args: str) -> Iterator[None]:
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here ({done.stderr.strip() or 'mount failed'}): needs "
                    "CAP_SYS_ADMIN")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False, capture_output=True)


def test_a_filled_tmpfs_refuses_writes_then_recovers_when_space_returns(
        tmp_path: Path, figures: Figures) -> None:
    disk = tmp_path / "disk"
    with _mounted(disk, "-t", "tmpfs", "-o", "size=1m", "tmpfs"):
        path = disk / "state.db"
        store = SqliteStore(path)
        log = AuditLog(store)
        written = 0
        with pytest.raises(StoreError) as info:
            for i in range(100_000):
                log.record("fill", i=i, pad="y" * 250)
                written += 1
        assert one_line(info.value.one_line()) and "no space left" in info.value.one_line()
        _fill(disk / "filler")
        engine = EngineFactory(store, source="command", project_dir=_project(tmp_path))
        decision = rendered(engine.decide(pre_agent(tool_use_id="toolu_tmpfs")))
        assert denied(decision), decision
        store.close()
        _sound(path, events=written)
        # Space comes back: the store works again, from where it stopped.
        (disk / "filler").unlink()
        subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)
        store = SqliteStore(path)
        AuditLog(store).record("after", ok=True)
        store.close()
        _sound(path, events=written + 1)
    figures.add(SUITE, "full disk (1 MiB tmpfs): writes refused, decision denied, intact")


def _fill(filler: Path) -> None:
    """Take every byte left, so even the smallest write fails."""
    with filler.open("wb", buffering=0) as fh:
        for size in (65536, 4096, 512, 64, 1):
            with contextlib.suppress(OSError):
                while True:
                    fh.write(b"\0" * size)


# -- a locked database -----------------------------------------------------------------------

_HOLD_LOCK = textwrap.dedent("""
    import sqlite3, sys, time
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    conn.execute("INSERT INTO kv VALUES ('held', 'by another process')")
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    conn.execute("ROLLBACK")
""")


@contextlib.contextmanager
def _locked(path: Path, seconds: float) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([PYTHON, "-c", _HOLD_LOCK, str(path), str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        proc.wait(timeout=seconds + 30)


def test_a_database_locked_too_long_gives_one_line_and_denies(tmp_path: Path,
                                                              figures: Figures) -> None:
    path = tmp_path / "state.db"
    _seed(path)
    with _locked(path, 1.5):
        store = SqliteStore(path, busy_timeout_s=0.3)
        with pytest.raises(StoreError, match="stayed locked by another process") as info:
            AuditLog(store).record("x")
        assert one_line(info.value.one_line())
        engine = EngineFactory(store, source="command", project_dir=_project(tmp_path))
        decision = rendered(engine.decide(pre_agent(tool_use_id="toolu_locked")))
        assert denied(decision), decision
        store.close()
    _sound(path, events=10)
    assert SqliteStore(path).kv_get("held") is None, "the holder's write was rolled back"
    figures.add(SUITE, "locked database: one line, PreToolUse(Agent) denied, intact")


def test_a_briefly_locked_database_only_delays_the_hook(tmp_path: Path, figures: Figures,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    _seed(data / "state.db")
    monkeypatch.setenv("SMART_ORCHESTRATOR_DATA", str(data))
    monkeypatch.delenv("SMART_ORCHESTRATOR_DB", raising=False)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT),
           "CLAUDE_PROJECT_DIR": str(_project(tmp_path))}
    with _locked(data / "state.db", 1.0):
        out = subprocess.run([PYTHON, "-c", HOOK_SNIPPET, "PreToolUse"],
                             input=json.dumps(pre_agent(tool_use_id="toolu_wait")).encode(),
                             capture_output=True, timeout=60, env=env, cwd=REPO_ROOT,
                             check=False)
    assert out.returncode == 0 and b"Traceback" not in out.stderr
    assert not denied(json.loads(out.stdout or b"{}")), out.stdout
    # The seeds, the first use's policy.trusted and policy.pinned, the decision.
    _sound(data / "state.db", events=13)
    figures.add(SUITE, "briefly locked database: hook waited, then decided normally")


# -- a read-only data folder -----------------------------------------------------------------

@pytest.fixture
def read_only_data(tmp_path: Path) -> Iterator[Path]:
    """A data folder holding a sound database, then bind-mounted read-only over itself."""
    data = tmp_path / "data"
    _seed(data / "state.db")
    with _mounted(data, "--bind", str(data)):
        done = subprocess.run(["mount", "-o", "remount,ro,bind", str(data)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"cannot remount read-only: {done.stderr.strip()}")
        yield data


def test_a_read_only_data_folder_gives_one_line_and_denies(read_only_data: Path,
                                                           tmp_path: Path,
                                                           figures: Figures) -> None:
    path = read_only_data / "state.db"
    before = path.read_bytes()
    with pytest.raises(StoreError) as info:
        SqliteStore(path)
    message = info.value.one_line()
    assert one_line(message) and "read-only" in message, message
    env = {"SMART_ORCHESTRATOR_DATA": str(read_only_data),
           "CLAUDE_PROJECT_DIR": str(_project(tmp_path))}
    out = run_hook("PreToolUse", json.dumps(pre_agent(tool_use_id="toolu_ro")).encode(),
                   env=env)
    assert out.returncode == 0 and b"Traceback" not in out.stderr
    decision = json.loads(out.stdout)
    assert denied(decision) and "read-only" in \
        decision["hookSpecificOutput"]["permissionDecisionReason"], decision
    status = run_cli("--db", str(path), "status", "--json")
    assert b"Traceback" not in status.stderr
    if status.returncode == 0:
        assert json.loads(status.stdout)["audit"]["intact"] is True
        figures.add(SUITE, "read-only data folder: status still reads the database")
    else:
        assert status.returncode == 2 and one_line(status.stderr.decode())
        figures.note(SUITE, "On a read-only data folder `status` cannot open the database "
                            "(SQLite needs to write its WAL index): it says so in one line.")
    assert path.read_bytes() == before
    figures.add(SUITE, "read-only data folder: one line, PreToolUse(Agent) denied, unchanged")


def test_a_new_database_in_a_read_only_folder_gives_one_line(tmp_path: Path) -> None:
    data = tmp_path / "empty"
    data.mkdir()
    with _mounted(data, "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs"):
        with pytest.raises(StoreError) as info:
            SqliteStore(data / "state.db")
        assert one_line(info.value.one_line()) and "read-only" in info.value.one_line()
        assert list(data.iterdir()) == []


# -- system metrics failing ------------------------------------------------------------------

@pytest.fixture
def psutil_broken(monkeypatch: pytest.MonkeyPatch) -> None:
    """psutil raises, and /proc/meminfo cannot be read either."""
    def fail(*_a: Any, **_k: Any) -> Any:
        raise psutil.AccessDenied(pid=None, name="simulated")

    monkeypatch.setattr("smart_orchestrator.resources._from_proc", lambda: None)
    for name in ("virtual_memory", "cpu_percent", "Process"):
        monkeypatch.setattr(psutil, name, fail)


def test_policy_admission_admits_one_agent_at_a_time_without_metrics(
        psutil_broken: None, store: SqliteStore, tmp_path: Path, figures: Figures) -> None:
    factory = EngineFactory(store, source="command", project_dir=_project(tmp_path))
    session = str(uuid.uuid4())
    first = rendered(factory.decide(pre_agent(tool_use_id="toolu_a", session=session)))
    assert not denied(first)
    assert "system metrics unavailable" in first.get("systemMessage", ""), first
    second = rendered(factory.decide(pre_agent(tool_use_id="toolu_b", session=str(uuid.uuid4()))))
    assert denied(second)
    assert "limit 1" in second["hookSpecificOutput"]["permissionDecisionReason"]
    factory.decide(post_agent(tool_use_id="toolu_a", session=session))
    third = rendered(factory.decide(pre_agent(tool_use_id="toolu_c", session=session)))
    assert not denied(third), third
    figures.add(SUITE, "metrics failing: hook admission fell back to one agent")


def test_wave_admission_runs_one_agent_at_a_time_without_metrics(
        psutil_broken: None, tmp_path: Path, figures: Figures) -> None:
    manager = ResourceManager(AdmissionConfig(max_agents=4))
    assert manager.try_admit("a").admitted
    refused = manager.try_admit("b")
    assert not refused.admitted and "system metrics unavailable" in refused.reason
    store = SqliteStore(tmp_path / "state.db")
    gate = threading.Event()
    runner = ScriptedRunner({"t0": Step(gate=gate)}, default=Step(answers=("done",)))
    config = WaveConfig(admission=AdmissionConfig(max_agents=4),
                        retry=RetryPolicy(initial_s=0.0), tick_s=0.01, sample_s=0.05)
    service = WaveService(SqliteStore(store.location), runner, config)
    try:
        plan = WavePlan.model_validate({"tasks": [{"id": f"t{i}", "prompt": f"task {i}"}
                                                  for i in range(4)]})
        run_id = service.spawn(plan, cwd=str(tmp_path))
        assert runner.wait_started("t0")
        running = service.status(run_id)
        gate.set()
        assert service.wait_until_done(run_id, 30)
        status = service.status(run_id)
    finally:
        gate.set()
        service.close()
        store.close()
    assert running.admission is not None and "system metrics unavailable" in running.admission
    assert status.state == "completed", status.reason
    assert runner.max_running == 1
    assert status.stats["memory_budget_bytes"] <= 256 * MIB
    figures.add(SUITE, "metrics failing: waves ran one agent at a time and said so")


def test_process_tree_measurement_survives_vanished_processes(psutil_broken: None) -> None:
    from smart_orchestrator.resources import process_tree_rss, sample_system

    assert process_tree_rss(os.getpid()) == 0
    snap = sample_system()
    assert not snap.ok and snap.error and "AccessDenied" in snap.error
