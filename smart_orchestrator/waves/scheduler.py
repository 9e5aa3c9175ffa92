"""Driving one wave: start each task as soon as its dependencies succeed, within admission.

The driver is a task group plus admission: each task runs in its own cancel scope and
writes its own result to the store, so one failure never cancels a sibling. Tasks whose
dependencies failed are skipped with the reason; a wave-stopping error or a cancel closes
everything not yet started. The final state is `completed` only if every task succeeded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from ..audit import AuditLog
from ..budget.waves import WaveBudget
from ..canonical import digest_text
from ..errors import OrchestratorError
from ..store.base import Store
from ._breaker import Breaker
from .admission import ResourceManager
from .agents import AgentRunner
from .attempts import TaskDriver
from .plan import TaskSpec, WavePlan, dependency_levels
from .recovery import ErrorClass, RetryPolicy
from .saga import Compensator
from .state import RunRecord, TaskRecord, WaveState

__all__ = ["RunOptions", "WaveContext", "WaveRun"]

_BAD = frozenset({"failed", "skipped", "cancelled"})
_SAGA = "<saga>"


@dataclass(frozen=True, slots=True)
class RunOptions:
    cwd: str
    max_concurrency: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    workspaces: dict[str, Any] | None = None  # Workspaces.to_json(), None: shared folder
    # Tasks go to the team's queue and run on workers (`smart-orchestrator worker`);
    # admission is theirs, the driver only enqueues and follows.
    on_workers: bool = False

    def to_json(self) -> dict[str, Any]:
        # The environment is not stored: it may hold credentials.
        return {"cwd": self.cwd, "max_concurrency": self.max_concurrency,
                "workspaces": self.workspaces, "on_workers": self.on_workers}


@dataclass(slots=True)
class WaveContext:
    """What every wave of one server shares."""

    state: WaveState
    audit: AuditLog
    runner: AgentRunner
    resources: ResourceManager
    breaker: Breaker
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep
    tick_s: float = 0.25
    notify: Callable[[str], None] = lambda _run_id: None
    # Runs a task's body durably (a DBOS workflow per task); None runs it in place.
    run_task: Callable[[WaveRun, str], Awaitable[object]] | None = None
    budget: WaveBudget | None = None  # caps and the rate gate, at task admission

    def settle(self, run_id: str, task: TaskSpec, **where: Any) -> None:
        """Charge a task that ended what its agents used here, with an audit row."""
        if self.budget is None:
            return
        cost = self.budget.settle(run_id, task.id, task.agent.model)
        if cost is not None:
            self.audit.record("wave.agent_cost", run_id=run_id, task_id=task.id,
                              agent_type=task.agent_type, cost=cost, **where)


@dataclass(slots=True)
class _Stop:
    reason: str
    error_class: ErrorClass | None


class WaveRun:
    def __init__(self, ctx: WaveContext, run_id: str, plan: WavePlan,
                 options: RunOptions) -> None:
        self.run_id = run_id
        self._ctx = ctx
        self._plan = plan
        self._options = options
        self._order = [tid for level in dependency_levels(plan) for tid in level]
        self._position = {t.id: i for i, t in enumerate(plan.tasks)}
        self._tasks = {t.id: t for t in plan.tasks}
        self._status: dict[str, str] = {}
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._bodies: dict[str, anyio.CancelScope] = {}
        self._loaded = anyio.Event()
        self._stop: _Stop | None = None
        self._cancel_reason: str | None = None
        self._compensate_on_cancel = False
        self._finished = False
        self._wake = anyio.Event()
        self.waiting_reason: str | None = None
        self.max_running = 0
        self.done = anyio.Event()
        self._driver = TaskDriver(ctx, run_id, options, self)

    # -- called by TaskDriver --------------------------------------------------------------
    def status_of(self, task_id: str) -> str:
        return self._status[task_id]

    def set_status(self, task_id: str, status: str) -> None:
        self._status[task_id] = status
        self._ctx.notify(self.run_id)

    def may_retry(self) -> bool:
        return self._stop is None and self._cancel_reason is None

    def stop_wave(self, reason: str, error_class: ErrorClass | None) -> None:
        if self._stop is None:
            self._stop = _Stop(reason, error_class)
            self._wake.set()

    def task_failed(self, task_id: str, reason: str) -> None:
        if self._plan.on_failure == "compensate":
            self.stop_wave(f"task {task_id!r} failed and the plan compensates on failure: "
                           f"{reason}", None)

    @property
    def cancel_reason(self) -> str | None:
        return self._cancel_reason

    @property
    def on_workers(self) -> bool:
        return self._options.on_workers

    # -- control ---------------------------------------------------------------------------
    def cancel(self, reason: str, *, compensate: bool = False) -> None:
        """Stop running agents (their trees are killed) and start nothing new."""
        if self._cancel_reason is not None or self._finished:
            return
        self._ctx.state.set_run_state(self.run_id, "cancelling", reason=reason)
        self._cancel_reason = reason
        self._compensate_on_cancel = compensate
        for scope in [*self._scopes.values(), *self._bodies.values()]:
            scope.cancel()
        self._wake.set()

    def shutdown(self) -> None:
        """The server stops: agents are killed, the store keeps every task as it is."""
        for scope in [*self._scopes.values(), *self._bodies.values()]:
            scope.cancel()

    def holds(self, task_id: str) -> int:
        """How often a usage limit sent the task back to pending (its held attempts)."""
        return sum(1 for a in self._ctx.state.attempts(self.run_id)
                   if a.task_id == task_id and a.outcome == "pending")

    async def execute(self, task_id: str) -> str:
        """A task's body: its attempts. Run once per task workflow; a body that runs again
        (a resumed workflow) finds a finished task finished and leaves it."""
        await self._loaded.wait()
        if self._status[task_id] not in ("pending", "retrying") or task_id in self._bodies:
            return self._status[task_id]
        scope = anyio.CancelScope()
        self._bodies[task_id] = scope
        try:
            with scope:
                await self._driver.run(self._tasks[task_id])
        finally:
            self._bodies.pop(task_id, None)
        return self._status[task_id]

    # -- driving ---------------------------------------------------------------------------
    async def drive(self) -> str:
        try:
            return await self._drive()
        finally:
            self.done.set()
            self._ctx.notify(self.run_id)

    async def _drive(self) -> str:
        state = self._ctx.state
        self._status = {t.task_id: t.state for t in state.tasks(self.run_id)}
        self._loaded.set()
        run = state.run(self.run_id)
        if run.state == "compensating":
            return await self._finish(resumed=run)
        if run.state == "cancelling":
            self._cancel_reason = run.reason or "cancelled"
        async with anyio.create_task_group() as tg:
            while True:
                self._settle()
                self._launch_ready(tg)
                if not self._scopes and not self._startable():
                    break
                with anyio.move_on_after(self._ctx.tick_s):
                    await self._wake.wait()
                self._wake = anyio.Event()
        return await self._finish()

    def _settle(self) -> None:
        """Close pending tasks that can no longer run, in dependency order (one pass)."""
        for tid in self._order:
            # A launched task not yet started is its driver's to close; it checks first.
            if self._status[tid] != "pending" or tid in self._scopes:
                continue
            task = self._tasks[tid]
            bad = next((d for d in task.depends_on if self._status[d] in _BAD), None)
            if self._cancel_reason is not None:
                self._close(tid, "cancelled", ErrorClass.CANCELLED,
                            f"not started: {self._cancel_reason}")
            elif bad is not None:
                reason = f"skipped: dependency {bad!r} {self._status[bad]}"
                self._close(tid, "skipped", None, reason)
            elif self._stop is not None:
                self._close(tid, "skipped", None, f"not started: {self._stop.reason}")

    def _close(self, tid: str, status: str, error_class: ErrorClass | None,
               reason: str) -> None:
        if self._ctx.state.fail_unstarted(self.run_id, tid, state=status, reason=reason,
                                          error_class=error_class and error_class.value):
            self.set_status(tid, status)

    def _startable(self) -> list[TaskSpec]:
        # On workers, a task the store has running (its driver was restarted) is followed
        # again: enqueueing its workflow id waits for the worker running it.
        states = ("pending", "running", "retrying") if self._options.on_workers \
            else ("pending",)
        ready = [self._tasks[tid] for tid in self._order
                 if self._status[tid] in states and tid not in self._scopes
                 and all(self._status[d] == "succeeded" for d in self._tasks[tid].depends_on)]
        return sorted(ready, key=lambda t: (-t.priority, self._position[t.id]))

    def _launch_ready(self, tg: anyio.abc.TaskGroup) -> None:
        if self._stop is not None or self._cancel_reason is not None:
            return
        self.waiting_reason = None
        cap = self._options.max_concurrency
        for task in self._startable():
            if cap is not None and len(self._scopes) >= cap:
                self.waiting_reason = f"at this wave's cap of {cap} agents"
                return
            if (held := self._budget_hold(task)) is not None:
                self.waiting_reason = held
                return
            if self._options.on_workers:
                # Workers admit: the team queue's limits and each worker's own.
                self._start(tg, task)
                continue
            decision = self._ctx.resources.try_admit((self.run_id, task.id), group=self.run_id,
                                                     agent_type=task.agent_type)
            if not decision.admitted:
                self.waiting_reason = decision.reason
                if decision.impossible:
                    self.stop_wave(f"admission: {decision.reason}", ErrorClass.CONFIG)
                return
            self._start(tg, task)

    def _start(self, tg: anyio.abc.TaskGroup, task: TaskSpec) -> None:
        scope = anyio.CancelScope()
        self._scopes[task.id] = scope
        # A task that has ended may still be closing (its cost settled, its slot given
        # back) when its dependents start: it is not counted as running.
        running = sum(1 for tid in self._scopes
                      if self._status[tid] in ("pending", "running", "retrying"))
        self.max_running = max(self.max_running, running)
        tg.start_soon(self._run_task, task, scope)

    def _budget_hold(self, task: TaskSpec) -> str | None:
        """Why the budget holds the wave (it waits; nothing fails), once in the audit."""
        if self._ctx.budget is None:
            return None
        held = self._ctx.budget.admit(self.run_id, task.id, task.agent_type,
                                      task.agent.model, task.prompt)
        if held is not None and self.waiting_reason != held:
            self._ctx.audit.record("wave.paused", run_id=self.run_id, task_id=task.id,
                                   reason=held)
        return held

    async def _run_task(self, task: TaskSpec, scope: anyio.CancelScope) -> None:
        try:
            with scope:
                if self._ctx.run_task is None:
                    await self.execute(task.id)
                else:
                    holds = self.holds(task.id)
                    if self._options.on_workers:
                        await self._follow_worker(task.id)
                    else:
                        await self._ctx.run_task(self, task.id)
                    if self.may_retry() and self._status[task.id] in ("pending", "retrying") \
                            and self.holds(task.id) == holds:
                        # The durable engine returned a recorded end without running the
                        # body: launching it again would loop, so the task fails, said so.
                        self._close(task.id, "failed", ErrorClass.CRASH,
                                    "the durable engine recorded this task's workflow as "
                                    "ended, but the store holds no end")
        finally:
            if self._status[task.id] != "pending":
                # A task held for a usage limit settles when it finally ends.
                self._ctx.settle(self.run_id, task)
            self._ctx.resources.release((self.run_id, task.id))
            self._scopes.pop(task.id, None)
            if self._cancel_reason is not None and self._status[task.id] in (
                    "retrying", "pending"):
                # Cancelled between attempts: record it now. Without a cancel this is a
                # shutdown, and the task stays as it is for resume to re-run.
                self._close(task.id, "cancelled", ErrorClass.CANCELLED, self._cancel_reason)
            self._wake.set()

    async def _follow_worker(self, task_id: str) -> None:
        """Enqueue the task for the team's workers and wait for its end; then take the
        outcome the worker recorded in the store, with what it means for the wave."""
        assert self._ctx.run_task is not None
        try:
            await self._ctx.run_task(self, task_id)
        except Exception as exc:  # the workflow ended in an error: a worker bug
            # Its workflow id is spent (enqueueing it again returns the same error), so a
            # task it left open is closed here, not followed again.
            self._ctx.state.reset_task(self.run_id, task_id, "interrupted: the task's "
                                       "workflow failed on its worker")
            self._close(task_id, "failed", ErrorClass.CRASH,
                        f"the task's workflow failed on its worker: {type(exc).__name__}: "
                        f"{str(exc)[:300]}")
        record = next(t for t in self._ctx.state.tasks(self.run_id) if t.task_id == task_id)
        if record.state != self._status[task_id]:
            self.set_status(task_id, record.state)
        if record.state == "failed":
            error_class = next((c for c in ErrorClass if c.value == record.error_class), None)
            if error_class is not None and error_class.stops_wave:
                self.stop_wave(f"{error_class.value} error in task {task_id!r}: "
                               f"{record.reason}", error_class)
            self.task_failed(task_id, record.reason or "")

    # -- the end ---------------------------------------------------------------------------
    async def _finish(self, *, resumed: RunRecord | None = None) -> str:
        state = self._ctx.state
        tasks = state.tasks(self.run_id)
        stop_class = self._stop.error_class if self._stop else None
        if resumed is not None:  # a crash interrupted the saga: finish it
            final, reason = str(resumed.stats.get("final", "failed")), resumed.reason or ""
            stop_class = ErrorClass(resumed.stop_class) if resumed.stop_class else None
            compensate = True
        else:
            final, reason = self._verdict(tasks)
            compensate = final == "failed" or (final == "cancelled"
                                               and self._compensate_on_cancel)
        if compensate and any(t.state == "succeeded" for t in tasks):
            final, reason = await self._compensate(final, reason, stop_class)
        stats: dict[str, Any] = {
            "max_running": self.max_running,
            "peak_tree_rss_bytes": self._ctx.resources.peak_for(self.run_id),
            "memory_budget_bytes": self._ctx.resources.budget_bytes,
            "bash_sandbox": self._ctx.runner.bash_sandbox.note}
        if self._options.workspaces is not None:
            merged = await anyio.to_thread.run_sync(self._merged_result, final)
            stats.update(merged)
            if "gates" in merged:
                reason = f"{reason}; gates on the merged result: {merged['gates']['reason']}"
        state.merge_stats(self.run_id, stats)
        if self._ctx.budget is not None:
            self._ctx.budget.finish_run(self.run_id)
        self._finished = True  # from here a cancel comes too late
        state.set_run_state(self.run_id, final, reason=reason,
                            stop_class=stop_class.value if stop_class else None)
        # Reasons quote agents' errors, which may quote their output: a digest only.
        counts = {s: sum(1 for t in state.tasks(self.run_id) if t.state == s)
                  for s in ("succeeded", "failed", "skipped", "cancelled")}
        self._ctx.audit.record("wave.end", run_id=self.run_id, state=final,
                               reason=digest_text(reason), tasks=counts, **stats)
        return final

    def _merged_result(self, final: str) -> dict[str, Any]:
        """Gates on the result branch, branches pushed, worktrees of failed tasks kept."""
        from .worktrees import Workspaces

        spaces = Workspaces.from_json(self.run_id, self._options.workspaces)
        assert spaces is not None
        out: dict[str, Any] = {}
        tasks = self._ctx.state.tasks(self.run_id)
        if self._plan.gates and final != "cancelled" and any(
                t.state == "succeeded" for t in tasks):
            out["gates"] = run_gates(self._ctx.state.store, spaces.result_tree())
        keep = [t.task_id for t in tasks if t.state in ("failed", "cancelled")]
        try:
            out["worktrees"] = spaces.finish(keep=keep)
        except OrchestratorError as exc:
            out["worktrees"] = {"error": exc.reason}
        return out

    def _verdict(self, tasks: list[TaskRecord]) -> tuple[str, str]:
        """Honest status: completed only if every task succeeded."""
        statuses = [t.state for t in tasks]
        if self._cancel_reason is not None:
            return "cancelled", self._cancel_reason
        if all(s == "succeeded" for s in statuses):
            return "completed", f"all {len(statuses)} tasks succeeded"
        stop_reason = self._stop.reason if self._stop else None
        if stop_reason is not None or "succeeded" not in statuses:
            return "failed", _summary(tasks, stop_reason)
        return "partial", _summary(tasks, None)

    async def _compensate(self, final: str, reason: str,
                          stop_class: ErrorClass | None) -> tuple[str, str]:
        state = self._ctx.state
        # Recorded first, so a resume after a crash here finishes the saga.
        state.merge_stats(self.run_id, {"final": final})
        state.set_run_state(self.run_id, "compensating", reason=reason,
                            stop_class=stop_class.value if stop_class else None)
        self._ctx.notify(self.run_id)
        with anyio.CancelScope() as scope:
            self._scopes[_SAGA] = scope
            saga = Compensator(self._ctx, self.run_id, self._plan, self._options,
                               lambda: self._cancel_reason)
            await saga.run(agents_usable=not (stop_class and stop_class.stops_wave), why=reason)
        self._scopes.pop(_SAGA, None)
        reason = f"{reason}; {_saga_summary(state.tasks(self.run_id))}"
        if self._cancel_reason is not None and final != "cancelled":
            return "cancelled", f"{self._cancel_reason} (while compensating after: {reason})"
        return final, reason


def run_gates(store: Store, tree: Path) -> dict[str, Any]:
    """The project's quality gates (gate_status) on the merged tree, as one record."""
    from ..gates import GateRunner

    try:
        report = GateRunner(store, tree).evaluate()
    except OrchestratorError as exc:
        return {"passed": False, "reason": f"gates could not run: {exc.reason}"}
    return {"passed": report.passed, "blocking_tier": report.blocking_tier,
            "reason": report.reason, "tree": report.tree}


def _saga_summary(tasks: list[TaskRecord]) -> str:
    by_status: dict[str, list[str]] = {}
    for t in tasks:
        if t.compensation is not None:
            by_status.setdefault(t.compensation, []).append(t.task_id)
    if not by_status:
        return "no completed task had a compensation"
    return "compensations: " + ", ".join(f"{status} {' '.join(ids)}"
                                         for status, ids in sorted(by_status.items()))


def _summary(tasks: list[TaskRecord], stop_reason: str | None) -> str:
    ok = sum(1 for t in tasks if t.state == "succeeded")
    parts = [f"{ok} of {len(tasks)} tasks succeeded"]
    if stop_reason:
        parts.append(f"wave stopped: {stop_reason}")
    for t in tasks:
        if t.state in ("failed", "cancelled"):
            parts.append(f"{t.task_id} {t.state}"
                         + (f" ({t.error_class}: {t.reason})" if t.reason else ""))
    skipped = [t.task_id for t in tasks if t.state == "skipped"]
    if skipped:
        parts.append("skipped: " + ", ".join(skipped))
    text = "; ".join(parts)
    return text if len(text) <= 2000 else text[:1997] + "..."
