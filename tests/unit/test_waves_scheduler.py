from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

from smart_orchestrator.audit import AuditLog
from smart_orchestrator.policy.config import BreakerPolicy
from smart_orchestrator.policy.shared import PolicyBreaker
from smart_orchestrator.store import SqliteStore
from smart_orchestrator.waves.admission import MIB, AdmissionConfig, ResourceManager
from smart_orchestrator.waves.agents import AgentRequest
from smart_orchestrator.waves.plan import WavePlan
from smart_orchestrator.waves.recovery import ErrorClass, RetryPolicy
from smart_orchestrator.waves.scheduler import RunOptions, WaveContext, WaveRun
from smart_orchestrator.waves.state import WaveState
from tests.wave_fakes import FixedMetrics, ScriptedRunner, Step, policy_engines

SCHEMA = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}


class Harness:
    def __init__(self, store: SqliteStore, workdir: Path, runner: ScriptedRunner, *,
                 metrics: FixedMetrics | None = None, budget_mib: int = 10_000,
                 max_agents: int = 4, breaker_threshold: int = 5) -> None:
        self.state = WaveState(store)
        self.audit = AuditLog(store)
        self.store = store
        self.runner = runner
        self.sleeps: list[float] = []
        self.workdir = workdir
        admission = AdmissionConfig(max_agents=max_agents, memory_budget_bytes=budget_mib * MIB,
                                    agent_estimate_bytes=256 * MIB, reserve_bytes=0)
        self.resources = ResourceManager(admission, metrics or FixedMetrics())
        self.ctx = WaveContext(
            state=self.state, audit=self.audit, runner=runner, resources=self.resources,
            breaker=PolicyBreaker(policy_engines(
                store, breaker=BreakerPolicy(failure_threshold=breaker_threshold))),
            retry=RetryPolicy(max_attempts=3, initial_s=0.5), sleep=self._sleep, tick_s=0.01)
        self.wave: WaveRun | None = None

    async def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await anyio.lowlevel.checkpoint()

    def prepare(self, plan: WavePlan, *, run_id: str = "w1",
                max_concurrency: int | None = None) -> WaveRun:
        options = RunOptions(cwd=str(self.workdir), max_concurrency=max_concurrency)
        self.state.create_run(run_id, plan, options.to_json(), "test-owner")
        self.wave = WaveRun(self.ctx, run_id, plan, options)
        return self.wave

    async def run(self, plan: WavePlan, **kw: Any) -> str:
        return await self.prepare(plan, **kw).drive()

    def tasks(self, run_id: str = "w1") -> dict[str, Any]:
        return {t.task_id: t for t in self.state.tasks(run_id)}


def plan(*tasks: dict[str, Any], **extra: Any) -> WavePlan:
    return WavePlan.model_validate({"tasks": list(tasks), **extra})


def t(task_id: str, *deps: str, **extra: Any) -> dict[str, Any]:
    return {"id": task_id, "prompt": f"do {task_id}", "depends_on": list(deps), **extra}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


def _opens(gate: threading.Event, when_task: str) -> Any:
    def probe(request: AgentRequest) -> None:
        if request.task_id == when_task:
            gate.set()
    return probe


async def test_runs_in_dependency_order_with_independent_tasks_overlapping(
        store: SqliteStore, workdir: Path) -> None:
    b_may_end, c_may_end = threading.Event(), threading.Event()
    # Each of b and c can only finish once the other has started, whichever starts first:
    # the two must overlap.
    opens = {"c": b_may_end, "b": c_may_end}
    runner = ScriptedRunner({"b": Step(gate=b_may_end), "c": Step(gate=c_may_end)},
                            probe=lambda r: opens[r.task_id].set() if r.task_id in opens else None)
    h = Harness(store, workdir, runner)
    final = await h.run(plan(t("a"), t("b", "a"), t("c", "a"), t("d", "b", "c")))
    assert final == "completed"
    ev = runner.events
    assert ev.index(("end", "a")) < min(ev.index(("start", "b")), ev.index(("start", "c")))
    assert ev.index(("start", "d")) > max(ev.index(("end", "b")), ev.index(("end", "c")))
    assert runner.max_running == 2
    assert "### b\nok\n\n### c\nok" in runner.calls_for("d")[0].request.prompt


async def test_starts_a_task_as_soon_as_its_own_dependencies_succeed(
        store: SqliteStore, workdir: Path) -> None:
    gate = threading.Event()
    runner = ScriptedRunner({"slow": Step(gate=gate)}, probe=_opens(gate, "after_fast"))
    h = Harness(store, workdir, runner)
    final = await h.run(plan(t("slow"), t("fast"), t("after_fast", "fast")))
    assert final == "completed"
    assert runner.events.index(("start", "after_fast")) < runner.events.index(("end", "slow"))


async def test_higher_priority_ready_tasks_start_first(store: SqliteStore,
                                                       workdir: Path) -> None:
    runner = ScriptedRunner()
    h = Harness(store, workdir, runner)
    await h.run(plan(t("x"), t("y", priority=5), t("z", priority=1)), max_concurrency=1)
    assert [task for kind, task in runner.events if kind == "start"] == ["y", "z", "x"]
    assert runner.max_running == 1


async def test_dependents_of_a_failed_task_are_skipped_and_the_wave_is_partial(
        store: SqliteStore, workdir: Path) -> None:
    runner = ScriptedRunner({"a": Step(error=ErrorClass.BAD_REQUEST, reason="bad prompt")})
    h = Harness(store, workdir, runner)
    final = await h.run(plan(t("a"), t("b", "a"), t("c"), t("d", "b")))
    tasks = h.tasks()
    assert final == "partial"
    assert (tasks["a"].state, tasks["a"].error_class) == ("failed", "bad_request")
    assert tasks["b"].state == "skipped" and tasks["b"].reason == "skipped: dependency 'a' failed"
    assert tasks["d"].reason == "skipped: dependency 'b' skipped"
    assert tasks["c"].state == "succeeded"
    assert runner.calls_for("b") == [] and runner.calls_for("d") == []
    run = h.state.run("w1")
    assert "1 of 4 tasks succeeded" in (run.reason or "") and "a failed" in (run.reason or "")


async def test_transient_failures_retry_with_backoff_and_less_context(
        store: SqliteStore, workdir: Path) -> None:
    fail = Step(error=ErrorClass.SERVER, reason="500")
    runner = ScriptedRunner({"b": [fail, fail, Step()]})
    h = Harness(store, workdir, runner)
    final = await h.run(plan(t("a"), t("b", "a", context="BACKGROUND")))
    assert final == "completed"
    prompts = [c.request.prompt for c in runner.calls_for("b")]
    assert "BACKGROUND" in prompts[0] and "### a" in prompts[0]
    assert "BACKGROUND" not in prompts[1] and "### a" in prompts[1]
    assert "BACKGROUND" not in prompts[2] and prompts[2].startswith("do b")
    assert len(prompts[0]) > len(prompts[1]) >= len(prompts[2])
    assert len(h.sleeps) == 2 and h.sleeps[0] < h.sleeps[1]
    attempts = [a for a in h.state.attempts("w1") if a.task_id == "b"]
    assert [(a.context, a.outcome) for a in attempts] == [
        ("full", "retrying"), ("minimal", "retrying"), ("essential", "succeeded")]
    assert h.tasks()["b"].attempts == 3


async def test_gives_up_after_the_attempt_bound(store: SqliteStore, workdir: Path) -> None:
    runner = ScriptedRunner({"a": Step(error=ErrorClass.TIMEOUT, reason="no answer")})
    h = Harness(store, workdir, runner)
    assert await h.run(plan(t("a"))) == "failed"
    task = h.tasks()["a"]
    assert (task.state, task.error_class, task.attempts) == ("failed", "timeout", 3)
    assert task.reason == "gave up after 3 attempts: no answer"


async def test_quota_error_stops_the_wave_without_retrying(store: SqliteStore,
                                                           workdir: Path) -> None:
    runner = ScriptedRunner({"a": Step(error=ErrorClass.QUOTA, reason="Credit balance is too low")})
    h = Harness(store, workdir, runner)
    final = await h.run(plan(t("a", priority=1), t("b"), t("c", "a")), max_concurrency=1)
    tasks = h.tasks()
    assert final == "failed"
    assert len(runner.calls_for("a")) == 1 and runner.calls_for("b") == []
    assert tasks["b"].state == "skipped"
    assert tasks["b"].reason == ("not started: quota error in task 'a': Credit balance is "
                                 "too low")
    run = h.state.run("w1")
    assert run.stop_class == "quota" and "wave stopped: quota error" in (run.reason or "")
    assert h.sleeps == []


async def test_breaker_opens_for_an_agent_type_and_its_dependents_are_skipped(
        store: SqliteStore, workdir: Path) -> None:
    broken = Step(error=ErrorClass.SERVER, reason="overloaded")
    runner = ScriptedRunner({"a": broken, "c": broken})
    h = Harness(store, workdir, runner, breaker_threshold=2)
    flaky = {"name": "flaky"}
    final = await h.run(plan(t("a", agent=flaky, priority=2), t("b", "a"),
                             t("c", agent=flaky, priority=1), t("d")), max_concurrency=1)
    tasks = h.tasks()
    assert final == "partial"
    assert len(runner.calls_for("a")) == 2, "the third attempt is refused by the breaker"
    assert tasks["a"].error_class == "breaker_open"
    assert "circuit breaker for agent type 'flaky' is open" in (tasks["a"].reason or "")
    assert tasks["b"].state == "skipped" and "'a' failed" in (tasks["b"].reason or "")
    assert runner.calls_for("c") == [] and tasks["c"].error_class == "breaker_open"
    assert tasks["d"].state == "succeeded", "other agent types are unaffected"


async def test_invalid_json_then_valid_json_passes_after_one_reformat(
        store: SqliteStore, workdir: Path) -> None:
    runner = ScriptedRunner({"a": Step(answers=("not json", '{"n": 1}'))})
    h = Harness(store, workdir, runner)
    assert await h.run(plan(t("a", output_schema=SCHEMA))) == "completed"
    assert h.tasks()["a"].output == '{"n":1}'
    (call,) = runner.calls_for("a")
    assert len(call.follow_ups) == 1 and "no JSON value" in call.follow_ups[0]
    assert [a.reformats for a in h.state.attempts("w1")] == [1]


async def test_output_still_invalid_after_two_reformats_fails_with_the_errors(
        store: SqliteStore, workdir: Path) -> None:
    runner = ScriptedRunner({"a": Step(answers=("x", '{"n": "one"}', '{"m": 1}'))})
    h = Harness(store, workdir, runner)
    assert await h.run(plan(t("a", output_schema=SCHEMA))) == "failed"
    task = h.tasks()["a"]
    assert task.error_class == "invalid_output" and task.attempts == 1
    assert "after 2 reformat request(s): 'n' is a required property" in (task.reason or "")
    audit = str([r.data for r in store.iter_audit()])
    assert "required property" not in audit, "reasons quoting output reach audit as digests"


def _logger(path: Path, name: str) -> dict[str, Any]:
    code = f"open({str(path)!r}, 'a').write({name!r} + '\\n')"
    return {"command": [sys.executable, "-c", code]}


async def test_failed_wave_compensates_completed_tasks_in_reverse_order(
        store: SqliteStore, workdir: Path) -> None:
    log = workdir / "undo.log"
    runner = ScriptedRunner({"c": Step(error=ErrorClass.BAD_REQUEST)})
    h = Harness(store, workdir, runner)
    final = await h.run(plan(t("a", compensate=_logger(log, "a")),
                             t("b", "a", compensate=_logger(log, "b")),
                             t("c", "b"), t("d", "c", compensate=_logger(log, "d")),
                             on_failure="compensate"))
    tasks = h.tasks()
    assert final == "failed"
    assert log.read_text() == "b\na\n"
    assert (tasks["a"].compensation, tasks["b"].compensation) == ("done", "done")
    assert (h.state.run("w1").reason or "").endswith("compensations: done a b")
    assert tasks["d"].state == "skipped" and tasks["d"].compensation is None
    kinds = [r.kind for r in store.iter_audit()]
    assert kinds.count("wave.compensate_end") == 2


async def test_partial_wave_keeps_its_completed_work(store: SqliteStore,
                                                     workdir: Path) -> None:
    log = workdir / "undo.log"
    runner = ScriptedRunner({"b": Step(error=ErrorClass.BAD_REQUEST)})
    h = Harness(store, workdir, runner)
    assert await h.run(plan(t("a", compensate=_logger(log, "a")), t("b"))) == "partial"
    assert not log.exists() and h.tasks()["a"].compensation is None


async def test_a_failing_compensation_is_reported_not_hidden(store: SqliteStore,
                                                             workdir: Path) -> None:
    runner = ScriptedRunner({"b": Step(error=ErrorClass.BAD_REQUEST)})
    h = Harness(store, workdir, runner)
    undo = {"command": [sys.executable, "-c", "import sys; sys.exit('cannot undo')"]}
    await h.run(plan(t("a", compensate=undo), t("b", "a"), on_failure="compensate"))
    task = h.tasks()["a"]
    assert task.compensation == "failed" and task.compensation_reason == "exit 1: cannot undo"


async def test_after_a_quota_stop_agent_compensations_are_not_attempted(
        store: SqliteStore, workdir: Path) -> None:
    log = workdir / "undo.log"
    runner = ScriptedRunner({"c": Step(error=ErrorClass.QUOTA, reason="credit")})
    h = Harness(store, workdir, runner)
    await h.run(plan(t("a", compensate={"prompt": "undo a"}),
                     t("b", compensate=_logger(log, "b")), t("c", "a", "b")))
    tasks = h.tasks()
    assert tasks["a"].compensation == "skipped"
    assert "agent compensation not attempted" in (tasks["a"].compensation_reason or "")
    assert tasks["b"].compensation == "done" and log.read_text() == "b\n"
    assert runner.calls_for("a", purpose="compensation") == []


async def test_prompt_compensation_runs_an_agent_with_the_task_result(
        store: SqliteStore, workdir: Path) -> None:
    runner = ScriptedRunner({"a": Step(answers=("created file x",)),
                             "b": Step(error=ErrorClass.BAD_REQUEST)})
    h = Harness(store, workdir, runner)
    await h.run(plan(t("a", compensate={"prompt": "Delete what you created."}), t("b", "a"),
                     on_failure="compensate"))
    (call,) = runner.calls_for("a", purpose="compensation")
    assert call.request.prompt.startswith("Delete what you created.")
    assert "created file x" in call.request.prompt
    assert h.tasks()["a"].compensation == "done"


async def test_every_state_change_is_stored_before_the_agent_starts(
        store: SqliteStore, workdir: Path) -> None:
    seen: list[tuple[str, int, str]] = []

    def probe(request: AgentRequest) -> None:
        task = {r.task_id: r for r in WaveState(store).tasks("w1")}[request.task_id]
        starts = [r for r in store.iter_audit() if r.kind == "wave.agent_start"
                  and r.data["task_id"] == request.task_id
                  and r.data["attempt"] == request.attempt]
        seen.append((task.state, task.attempts, "logged" if starts else "missing"))

    runner = ScriptedRunner({"a": [Step(error=ErrorClass.CRASH), Step()]}, probe=probe)
    h = Harness(store, workdir, runner)
    await h.run(plan(t("a")))
    assert seen == [("running", 1, "logged"), ("running", 2, "logged")]


async def test_audit_chain_records_each_agent_start_and_end_without_text(
        store: SqliteStore, workdir: Path) -> None:
    runner = ScriptedRunner({"a": Step(answers=("SECRET OUTPUT",))})
    h = Harness(store, workdir, runner)
    await h.run(plan(t("a"), t("b", "a")))
    records = list(store.iter_audit())
    starts = [r for r in records if r.kind == "wave.agent_start"]
    ends = [r for r in records if r.kind == "wave.agent_end"]
    assert [r.data["task_id"] for r in starts] == ["a", "b"] == [r.data["task_id"] for r in ends]
    assert all("sha256" in r.data["prompt"] for r in starts)
    assert "SECRET OUTPUT" not in str([r.data for r in records])
    assert ends[0].data["output"]["bytes"] == len("SECRET OUTPUT")
    assert AuditLog(store).verify().ok


async def test_cancel_stops_the_running_agent_and_starts_nothing_new(
        store: SqliteStore, workdir: Path) -> None:
    never = threading.Event()
    runner = ScriptedRunner({"a": Step(gate=never)})
    h = Harness(store, workdir, runner)
    wave = h.prepare(plan(t("a"), t("b", "a"), t("c", "a")))
    result: list[str] = []
    async with anyio.create_task_group() as tg:
        async def drive() -> None:
            result.append(await wave.drive())
        tg.start_soon(drive)
        assert await anyio.to_thread.run_sync(runner.wait_started, "a")
        wave.cancel("stopped by the user")
    tasks = h.tasks()
    assert result == ["cancelled"]
    assert (tasks["a"].state, tasks["a"].reason) == ("cancelled", "stopped by the user")
    assert (tasks["b"].state, tasks["b"].reason) == ("cancelled",
                                                     "not started: stopped by the user")
    assert h.state.run("w1").state == "cancelled"
    assert runner.calls_for("b") == []


async def test_admission_never_runs_more_agents_than_the_memory_budget_fits(
        store: SqliteStore, workdir: Path) -> None:
    gate = threading.Event()
    starts: list[str] = []

    def probe(request: AgentRequest) -> None:
        starts.append(request.task_id)
        if len(starts) >= 2:  # two agents overlap from here on
            gate.set()

    runner = ScriptedRunner(default=Step(gate=gate), probe=probe)
    h = Harness(store, workdir, runner, budget_mib=600)  # two agents of ~256 MiB
    assert await h.run(plan(*[t(f"t{i}") for i in range(6)])) == "completed"
    assert runner.max_running == 2


async def test_unreadable_metrics_run_one_agent_at_a_time(store: SqliteStore,
                                                          workdir: Path) -> None:
    runner = ScriptedRunner()
    h = Harness(store, workdir, runner, metrics=FixedMetrics(ok=False))
    assert await h.run(plan(*[t(f"t{i}") for i in range(4)])) == "completed"
    assert runner.max_running == 1
    assert h.wave is not None and h.wave.max_running == 1


async def test_budget_too_small_for_one_agent_fails_the_wave_saying_why(
        store: SqliteStore, workdir: Path) -> None:
    runner = ScriptedRunner()
    h = Harness(store, workdir, runner, budget_mib=100)
    assert await h.run(plan(t("a"), t("b"))) == "failed"
    run = h.state.run("w1")
    assert run.stop_class == "config" and "memory budget 100 MiB" in (run.reason or "")
    assert runner.calls == []


async def test_records_tokens_cost_and_stats(store: SqliteStore, workdir: Path) -> None:
    runner = ScriptedRunner(default=Step(tokens=(100, 20), cost_usd=0.25))
    h = Harness(store, workdir, runner)
    await h.run(plan(t("a"), t("b")))
    task = h.tasks()["a"]
    assert (task.input_tokens, task.output_tokens, task.cost_usd) == (100, 20, 0.25)
    stats = h.state.run("w1").stats
    assert stats["max_running"] == 2 and stats["memory_budget_bytes"] == 10_000 * MIB
