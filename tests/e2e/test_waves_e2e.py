"""Waves of real agents: the bundled Claude Code CLI through claude-agent-sdk, offline."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
from mcp import Client, StdioServerParameters

from mcp_server.wave_tools import wave_policy_hooks
from smart_orchestrator.policy.config import BreakerPolicy
from smart_orchestrator.store import SqliteStore
from smart_orchestrator.waves import AGENT_MARKER_ENV, WaveConfig, WavePlan, WaveService
from smart_orchestrator.waves.admission import MIB, AdmissionConfig
from smart_orchestrator.waves.recovery import RetryPolicy
from smart_orchestrator.waves.runner import SdkAgentRunner
from smart_orchestrator.waves.sandbox import SandboxMode, probe_sandbox
from tests.wave_fakes import shared_policy

from .harness import (
    ModelRequest,
    ScriptedModel,
    credit_balance_error,
    offline_env,
    rate_limit_error,
    server_error,
    text,
    tool_use,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def plan(*tasks: dict[str, Any]) -> WavePlan:
    return WavePlan.model_validate({"tasks": list(tasks)})


def t(task_id: str, *deps: str, **extra: Any) -> dict[str, Any]:
    return {"id": task_id, "prompt": f"TASK-{task_id.upper()}: do it",
            "depends_on": list(deps), **extra}


class Waves:
    def __init__(self, tmp: Path, model: ScriptedModel, dirs: dict[str, Path],
                 claude_bin: Path) -> None:
        self.tmp, self.model, self.dirs, self.claude_bin = tmp, model, dirs, claude_bin
        self._open: list[tuple[WaveService, SqliteStore]] = []
        self.store = SqliteStore(tmp / "state.db")

    def service(self, *, breaker_threshold: int = 3, max_agents: int = 4,
                policy: bool = False, sandbox: SandboxMode = "auto") -> WaveService:
        env = offline_env(model_url=self.model.base_url, home=self.dirs["home"],
                          tmpdir=self.dirs["cctmp"])
        store = SqliteStore(self.tmp / "state.db")
        config = WaveConfig(
            admission=AdmissionConfig(max_agents=max_agents, memory_budget_bytes=3072 * MIB),
            retry=RetryPolicy(initial_s=0.05, max_backoff_s=0.2),
            tick_s=0.1)
        hooks = wave_policy_hooks(store) if policy else None
        runner = SdkAgentRunner(cli_path=self.claude_bin, extra_env=env, make_hooks=hooks,
                                sandbox=sandbox)
        service = WaveService(store, runner, config, **shared_policy(
            store, breaker=BreakerPolicy(failure_threshold=breaker_threshold)))
        self._open.append((service, store))
        return service

    def run(self, service: WaveService, wave: WavePlan, **kw: Any) -> Any:
        run_id = service.spawn(wave, cwd=str(self.dirs["work"]), **kw)
        assert service.wait_until_done(run_id, 90), service.status(run_id)
        return service.status(run_id)

    def close(self) -> None:
        for service, store in self._open:
            service.close()
            store.close()
        self.store.close()


@pytest.fixture
def waves(tmp_path: Path, scripted_model: ScriptedModel, claude_dirs: dict[str, Path],
          claude_bin: Path) -> Iterator[Waves]:
    w = Waves(tmp_path, scripted_model, claude_dirs, claude_bin)
    yield w
    w.close()


def _only(model: ScriptedModel, name: str) -> ModelRequest:
    [request] = model.requests_for(name)
    return request


def _overlap(a: ModelRequest, b: ModelRequest) -> bool:
    assert a.answered_at is not None and b.answered_at is not None
    return a.received_at < b.answered_at and b.received_at < a.answered_at


def test_three_level_dag_runs_in_dependency_order_with_independent_tasks_overlapping(
        waves: Waves, scripted_model: ScriptedModel) -> None:
    for name in ("A", "B", "C", "D"):
        # Each agent lives a while, so the memory sampler sees the tree.
        scripted_model.agent(f"TASK-{name}:", [text(f"result {name}", delay=1.0)])
    # B and C each answer only once both have asked: if the wave ran them one after the
    # other, the first would wait for the second in vain and the wave would fail.
    both = threading.Barrier(2)

    def meet(request: ModelRequest) -> None:
        if request.kind == "agent" and any(f"TASK-{n}:" in request.first_user_text
                                           for n in "BC") and request.turn == 0:
            both.wait(150)

    scripted_model.on(meet)
    status = waves.run(waves.service(), plan(t("a"), t("b", "a"), t("c", "a"),
                                             t("d", "b", "c")))
    assert status.state == "completed", status
    a, b, c, d = (_only(scripted_model, f"TASK-{n}:") for n in "ABCD")
    assert a.answered_at is not None and b.answered_at is not None
    assert c.answered_at is not None
    assert a.answered_at < min(b.received_at, c.received_at)
    assert _overlap(b, c), "independent tasks of one level run at the same time"
    assert d.received_at > max(b.answered_at, c.answered_at)
    assert "result B" in d.first_user_text and "result C" in d.first_user_text
    assert status.stats["max_running"] == 2
    assert 0 < status.stats["peak_tree_rss_bytes"] <= status.stats["memory_budget_bytes"]
    scripted_model.assert_no_unscripted()


def test_invalid_json_then_valid_json_passes_after_one_reformat(
        waves: Waves, scripted_model: ScriptedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    # As inside a Claude Code session: the nested agent must still start.
    monkeypatch.setenv("CLAUDECODE", "1")
    monkeypatch.setenv("CLAUDE_CODE_SESSION_ID", "outer-session")
    scripted_model.agent("TASK-J:", [text("Sure! The count is three."), text('{"count": 3}')])
    schema = {"type": "object", "required": ["count"],
              "properties": {"count": {"type": "integer"}}}
    status = waves.run(waves.service(), plan(t("j", output_schema=schema)))
    [task] = status.tasks
    assert (status.state, task.attempts, task.reformats) == ("completed", 1, 1)
    assert task.output == '{"count":3}'
    turns = scripted_model.requests_for("TASK-J:")
    assert [r.turn for r in turns] == [0, 1]
    assert "did not satisfy the required JSON Schema" in str(turns[1].messages[-1])


def test_a_task_that_keeps_failing_opens_the_breaker_and_its_dependents_are_skipped(
        waves: Waves, scripted_model: ScriptedModel) -> None:
    scripted_model.agent("TASK-F:", [server_error(times=None)])
    scripted_model.agent("TASK-OK:", [text("fine")])
    flaky = {"name": "flaky"}
    status = waves.run(waves.service(breaker_threshold=2),
                       plan(t("f", agent=flaky, priority=2), t("g", "f"),
                            t("h", agent=flaky, priority=1), t("ok")), max_concurrency=1)
    tasks = {v.id: v for v in status.tasks}
    assert status.state == "partial", status.reason
    # Two attempts, each retried once by Claude Code itself; the third is refused.
    assert len(scripted_model.requests_for("TASK-F:")) == 4
    assert tasks["f"].error_class == "breaker_open"
    assert "agent type 'flaky' is open" in (tasks["f"].reason or "")
    assert tasks["g"].state == "skipped" and tasks["g"].reason == "skipped: dependency 'f' failed"
    assert tasks["h"].error_class == "breaker_open" and tasks["h"].attempts == 0
    assert tasks["ok"].state == "succeeded"
    assert scripted_model.requests_for("TASK-G:") == []


def test_rate_limit_reply_is_retried(waves: Waves, scripted_model: ScriptedModel) -> None:
    # Claude Code retries the first 429 itself; the second fails the attempt, and the
    # wave tries again.
    scripted_model.agent("TASK-R:", [rate_limit_error(times=2), text("made it")])
    status = waves.run(waves.service(), plan(t("r")))
    [task] = status.tasks
    assert (status.state, task.attempts, task.output) == ("completed", 2, "made it")
    assert [type(r.reply).__name__ for r in scripted_model.requests_for("TASK-R:")] == [
        "ApiError", "ApiError", "Turn"]


def test_agents_get_progressive_context_and_retries_get_less(
        waves: Waves, scripted_model: ScriptedModel) -> None:
    work = waves.dirs["work"]
    (work / "CLAUDE.md").write_text("House rule: MEMORY-MARKER.\n")
    (work / "ledger.py").write_text("LEDGER_MARKER = 1\n")
    scripted_model.agent("TASK-A:", [text("A-RESULT " * 400)])
    # Claude Code retries the first 500 itself; the second fails the attempt.
    scripted_model.agent("TASK-B:", [server_error(times=2), text("b done")])
    status = waves.run(waves.service(), plan(
        t("a"), t("b", "a", prompt="TASK-B: fix ledger.py", context="BACKGROUND-MARKER")))
    assert status.state == "completed", status
    full, retried, minimal = (r.first_user_text for r in scripted_model.requests_for("TASK-B:"))
    assert retried == full
    for marker in ("BACKGROUND-MARKER", "## Environment", "MEMORY-MARKER", "LEDGER_MARKER",
                   "A-RESULT"):
        assert marker in full, marker
    assert "LEDGER_MARKER" in minimal and "A-RESULT" in minimal
    for marker in ("BACKGROUND-MARKER", "## Environment"):
        assert marker not in minimal, marker
    assert len(minimal) < len(full)
    starts = [e for e in waves.store.iter_audit()
              if e.kind == "wave.agent_start" and e.data["task_id"] == "b"]
    assert [e.data["context"] for e in starts] == ["full", "minimal"]
    assert starts[0].data["context_levels"] == [1, 2, 3, 4]
    assert starts[0].data["context_tokens"] > starts[1].data["context_tokens"] > 0
    assert all(e.data["context_budget"] == 8000 for e in starts)


def _sandbox_or_skip() -> None:
    confinement = probe_sandbox("auto")
    if not confinement.available:
        if os.environ.get("SMART_ORCHESTRATOR_TEST_REQUIRE_SANDBOX"):
            pytest.fail(f"the Bash sandbox must work here: {confinement.note}")
        pytest.skip(confinement.note)


def test_bash_in_a_wave_agent_cannot_write_outside_the_waves_folder(
        waves: Waves, scripted_model: ScriptedModel, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    _sandbox_or_skip()
    outside = tmp_path / "outside"
    outside.mkdir()
    (waves.dirs["home"] / ".ssh").mkdir()
    (waves.dirs["home"] / ".ssh" / "config").write_text("SSH-CANARY\n")
    data = tmp_path / "plugin-data"
    data.mkdir()
    (data / "state-canary.txt").write_text("STATE-CANARY\n")
    monkeypatch.setenv("SMART_ORCHESTRATOR_DATA", str(data))
    # Spelled so that no pattern on the command text could catch it: the OS must.
    command = (f"echo in > inside.txt; echo out > {outside}/x.txt; echo rc=$?; "
               f"touch $HOME/.bashrc-planted; echo home=$?; d=.s; cat ~/${{d}}sh/config; "
               f"echo ssh=$?; cat {data}/state-canary.txt; echo data=$?")
    scripted_model.agent("TASK-B:", [tool_use("Bash", {"command": command}), text("tried")])
    status = waves.run(waves.service(), plan(t("b", allowed_tools=["Bash"])))
    assert status.state == "completed", status
    [result] = scripted_model.tool_results("TASK-B:")
    assert "rc=1" in result.text and "Read-only file system" in result.text, result.text
    for refused in ("home=1", "ssh=1", "data=1"):
        assert refused in result.text, result.text
    assert "SSH-CANARY" not in result.text and "STATE-CANARY" not in result.text
    assert (waves.dirs["work"] / "inside.txt").read_text() == "in\n"
    assert not (outside / "x.txt").exists()
    assert not (waves.dirs["home"] / ".bashrc-planted").exists()
    assert status.stats["bash_sandbox"].startswith("on:")
    [start] = [e for e in waves.store.iter_audit() if e.kind == "wave.agent_start"]
    assert start.data["bash_sandbox"] is True


def test_sandboxed_bash_reaches_only_the_tasks_network_domains(
        waves: Waves, scripted_model: ScriptedModel) -> None:
    """Offline, the allowed name can only be this machine, which the sandbox's proxy may
    still refuse as a loopback address: what matters is that the allowlist let it pass."""
    _sandbox_or_skip()
    host = socket.gethostname()
    command = f"curl -s -m 5 http://{host}:9/; echo rc=$?"
    # Two agents start at once in one folder: Claude Code's sandbox bind-mounts
    # `.claude/routines`, which the other agent's CLI may be creating at that moment
    # (bwrap then fails to find it). Made beforehand, as a used project has it.
    (waves.dirs["work"] / ".claude" / "routines").mkdir(parents=True, exist_ok=True)
    for name in ("ALLOWED", "DENIED"):
        scripted_model.agent(f"TASK-{name}:", [tool_use("Bash", {"command": command}),
                                               text("tried")])
    status = waves.run(waves.service(), plan(
        t("allowed", allowed_tools=["Bash"], network_domains=[host]),
        t("denied", allowed_tools=["Bash"])))
    assert status.state == "completed", status
    [allowed] = scripted_model.tool_results("TASK-ALLOWED:")
    [denied] = scripted_model.tool_results("TASK-DENIED:")
    assert "blocked by network allowlist" in denied.text, denied.text
    assert "blocked by network allowlist" not in allowed.text, allowed.text
    # Past the allowlist: refused only if this machine's name is a loopback address.
    assert "deny network-outbound" not in allowed.text or "loopback" in allowed.text


def test_with_the_sandbox_off_the_wave_says_bash_was_not_confined(
        waves: Waves, scripted_model: ScriptedModel) -> None:
    scripted_model.agent("TASK-O:", [text("nothing to run")])
    service = waves.service(sandbox="off")
    status = waves.run(service, plan(t("o", allowed_tools=["Bash"])))
    assert status.stats["bash_sandbox"] == "off: Bash is not confined (sandbox mode off)"


def test_quota_error_stops_the_wave(waves: Waves, scripted_model: ScriptedModel) -> None:
    scripted_model.agent("TASK-Q:", [credit_balance_error(times=None)])
    scripted_model.agent("TASK-S:", [text("never needed")])
    status = waves.run(waves.service(), plan(t("q", priority=1), t("s"), t("u", "q")),
                       max_concurrency=1)
    tasks = {v.id: v for v in status.tasks}
    assert (status.state, status.stop_class) == ("failed", "quota")
    assert len(scripted_model.requests_for("TASK-Q:")) == 1, "never retried into the wall"
    assert tasks["q"].error_class == "quota"
    assert tasks["s"].state == "skipped" and "quota error in task 'q'" in (tasks["s"].reason or "")
    assert scripted_model.requests_for("TASK-S:") == []


def _agent_processes(run_id: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            marker = proc.environ().get(AGENT_MARKER_ENV, "")
            if marker.startswith(run_id + "/") and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _seen(model: ScriptedModel, marker: str) -> threading.Event:
    """An event set when the model first receives a request whose prompt has `marker`."""
    event = threading.Event()

    def rule(request: ModelRequest) -> None:
        if marker in request.first_user_text:
            event.set()

    model.on(rule)
    return event


def test_cancel_wave_leaves_no_agent_process_behind(waves: Waves,
                                                    scripted_model: ScriptedModel) -> None:
    for name in ("X", "Y"):
        scripted_model.agent(f"TASK-{name}:", [text("too late", delay=60)])
    seen = [_seen(scripted_model, f"TASK-{n}:") for n in ("X", "Y")]
    service = waves.service()
    run_id = service.spawn(plan(t("x"), t("y"), t("z", "x")), cwd=str(waves.dirs["work"]))
    assert all(event.wait(30) for event in seen)
    assert len(_agent_processes(run_id)) == 2
    status = service.cancel(run_id, reason="stop now", wait_s=30)
    assert status.state == "cancelled" and status.reason == "stop now"
    assert {v.id: v.state for v in status.tasks} == {"x": "cancelled", "y": "cancelled",
                                                     "z": "cancelled"}
    assert _agent_processes(run_id) == []


def test_every_tool_call_of_a_wave_agent_goes_through_the_policy(
        waves: Waves, scripted_model: ScriptedModel) -> None:
    work = waves.dirs["work"]
    (work / "notes.txt").write_text("inside the project")
    (work.parent / "outside.txt").write_text("not for this task")
    scripted_model.agent("TASK-P:", [tool_use("Read", {"file_path": "../outside.txt"}),
                                     tool_use("Read", {"file_path": str(work / "notes.txt")}),
                                     text("read what I was allowed to")])
    status = waves.run(waves.service(policy=True), plan(t("p", allowed_tools=["Read"])))
    assert status.state == "completed", status.reason
    denied, allowed = scripted_model.tool_results("TASK-P:")
    assert denied.is_error and "outside the folders this task may use" in denied.text
    assert not allowed.is_error and "inside the project" in allowed.text
    rows = [r.data for r in waves.store.iter_audit() if r.kind == "tool.use"]
    agent = f"wave:{status.run_id}:p"
    assert [(r["agent_id"], r["decision"]) for r in rows] == [(agent, "deny"), (agent, "allow")]


def test_a_task_past_its_timeout_has_its_process_tree_killed(
        waves: Waves, scripted_model: ScriptedModel) -> None:
    scripted_model.agent("TASK-T:", [text("too late", delay=60)])
    seen = _seen(scripted_model, "TASK-T:")
    service = waves.service()
    run_id = service.spawn(plan(t("t", timeout_s=2)), cwd=str(waves.dirs["work"]))
    assert seen.wait(30)
    assert len(_agent_processes(run_id)) == 1
    assert service.wait_until_done(run_id, 60)
    [task] = service.status(run_id).tasks
    assert (task.state, task.error_class, task.attempts) == ("failed", "timeout", 3)
    assert "no answer within 2 s; process tree killed" in (task.reason or "")
    assert task.duration_s is not None and task.duration_s < 20
    assert _agent_processes(run_id) == []


# -- crash and resume, over stdio with the real MCP client ---------------------------------

def _server(tmp: Path, model: ScriptedModel, dirs: dict[str, Path]) -> StdioServerParameters:
    env = offline_env(model_url=model.base_url, home=dirs["home"], tmpdir=dirs["cctmp"])
    env.update(SMART_ORCHESTRATOR_DB=str(tmp / "server.db"),
               SMART_ORCHESTRATOR_DATA=str(tmp / "data"),
               SMART_ORCHESTRATOR_WAVE_RETRY_BASE_S="0.05",
               PYTHONPATH=str(REPO_ROOT))
    return StdioServerParameters(command=sys.executable, args=["-m", "mcp_server"],
                                 env=env, cwd=str(dirs["work"]))


def _server_pids() -> list[int]:
    me = psutil.Process(os.getpid())
    return [p.pid for p in me.children(recursive=True)
            if "mcp_server" in " ".join(p.cmdline())]


async def _call(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def test_resume_after_sigkill_finishes_every_task_exactly_once(
        tmp_path: Path, scripted_model: ScriptedModel, claude_dirs: dict[str, Path],
        claude_bin: Path) -> None:
    b_started = threading.Event()

    def slow_first_b(request: ModelRequest) -> Any:
        if "TASK-B:" in request.first_user_text and not b_started.is_set():
            b_started.set()
            return text("B from the killed server", delay=60)
        return None

    scripted_model.on(slow_first_b)
    for name in ("A", "B", "C"):
        scripted_model.agent(f"TASK-{name}:", [text(f"result {name}")])
    wave = {"tasks": [t("a"), t("b", "a"), t("c", "b")]}
    params = _server(tmp_path, scripted_model, claude_dirs)

    with anyio.fail_after(120):
        try:
            async with Client(params) as client:
                run_id = (await _call(client, "spawn_wave", {"plan": wave}))["run_id"]
                assert await anyio.to_thread.run_sync(b_started.wait, 60)
                [pid] = _server_pids()
                os.kill(pid, signal.SIGKILL)
                await anyio.to_thread.run_sync(psutil.Process(pid).wait, 10)
        except Exception:  # the client notices its server died: expected here
            pass
        leftovers = _agent_processes(run_id)
        assert len(leftovers) == 1, "the killed server's agent for b is still running"

        async with Client(params) as client:
            before = await _call(client, "wave_status", {"run_id": run_id})
            assert before["state"] == "interrupted"
            assert {x["id"]: x["state"] for x in before["tasks"]} == {
                "a": "succeeded", "b": "running", "c": "pending"}
            done = await _call(client, "resume_wave", {"run_id": run_id, "wait_s": 60})

    assert done["state"] == "completed", done
    assert {x["id"]: x["attempts"] for x in done["tasks"]} == {"a": 1, "b": 2, "c": 1}
    assert [len(scripted_model.requests_for(f"TASK-{n}:")) for n in "ABC"] == [1, 2, 1]
    assert _agent_processes(run_id) == [], "resume killed the orphaned agent"
    conn = sqlite3.connect(tmp_path / "server.db")
    try:
        finished = conn.execute("SELECT task_id, count(*) FROM wave_attempts WHERE run_id = ? "
                                "AND outcome = 'succeeded' GROUP BY task_id",
                                (run_id,)).fetchall()
        ends = conn.execute("SELECT count(*) FROM audit WHERE kind = 'wave.agent_end' AND "
                            "json_extract(data, '$.outcome') = 'succeeded' AND "
                            "json_extract(data, '$.run_id') = ?", (run_id,)).fetchone()
        resumed = conn.execute("SELECT data FROM audit WHERE kind = 'wave.resume'").fetchall()
    finally:
        conn.close()
    assert sorted(finished) == [("a", 1), ("b", 1), ("c", 1)]
    assert ends == (3,)
    assert '"killed_leftover_processes": 1' in resumed[0][0] or \
        '"killed_leftover_processes":1' in resumed[0][0]
