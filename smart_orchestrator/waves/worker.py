"""A worker: takes wave tasks from the team's DBOS queue and runs their agents here.

A wave spawned with `SMART_ORCHESTRATOR_WAVE_DISPATCH=workers` enqueues each task's
workflow on the team queue of its store's DBOS system database instead of running it. Any
number of `smart-orchestrator worker` processes, on any machines sharing the store, serve
that queue: DBOS hands each enqueued workflow to exactly one of them (an atomic
ENQUEUED -> PENDING claim, within the queue's global and per-worker concurrency), and the
worker admits the agent against its own memory budget before starting it.

A task's body is rebuilt from the store (plan, options, dependency outputs), never from
the driver's memory, and works in a worktree of the worker's own clone of the wave's
remote; its merge into the wave's result branch is pushed back to the remote.

DBOS recovers a PENDING workflow only for an executor declared dead, and has no notion
of a dead process: each worker writes a heartbeat into the store, and every worker
declares dead an executor whose heartbeat stopped changing for `dead_after_s` (measured
on its own clock, so machines' clocks need not agree), that said it stopped, or whose
process is gone from this host. The dead executor's task workflows go back on the queue
(DBOS's executor-matched re-enqueue: recovered once, however many workers notice), and the
worker that takes one closes the killed attempt as `interrupted` before its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import psutil

from ..audit import AuditLog
from ..budget.waves import WaveBudget
from ..errors import OrchestratorError
from ..store.base import Store
from ..store.hostid import host_id
from ._breaker import Breaker
from ._proc import find_marked, kill_tree
from .admission import Metrics, ResourceManager, Slots
from .agents import AgentRunner
from .attempts import TaskDriver
from .config import WaveConfig
from .recovery import ErrorClass
from .scheduler import RunOptions, WaveContext
from .state import TERMINAL_RUN_STATES, WaveState
from .worktrees import Workspaces

__all__ = ["Worker", "heartbeat_key", "read_heartbeat"]

_FINISHED = frozenset({"succeeded", "failed", "skipped", "cancelled"})
_INTERRUPTED = "interrupted: the worker running it stopped; re-run by another worker"


def heartbeat_key(executor_id: str) -> str:
    return f"waves.worker.{executor_id}"


def read_heartbeat(store: Store, executor_id: str) -> dict[str, Any] | None:
    raw = store.kv_get(heartbeat_key(executor_id))
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class _Follower:
    """The wave as one task on a worker sees it: the store's run state, read as it goes."""

    def __init__(self, state: WaveState, run_id: str, task_id: str, status: str) -> None:
        self._state = state
        self._run_id = run_id
        self._status = {task_id: status}
        self._stopped = False
        self._cancel: str | None = None

    def status_of(self, task_id: str) -> str:
        return self._status[task_id]

    def set_status(self, task_id: str, status: str) -> None:
        self._status[task_id] = status

    def may_retry(self) -> bool:
        return not self._stopped and self._cancel is None

    def stop_wave(self, reason: str, error_class: ErrorClass | None) -> None:
        # The driver stops the wave when it reads this task's end; no retry here.
        self._stopped = True

    def task_failed(self, task_id: str, reason: str) -> None:
        pass  # the driver applies the plan's on_failure to the stored end

    @property
    def cancel_reason(self) -> str | None:
        return self._cancel

    async def watch(self, scope: anyio.CancelScope, every_s: float) -> None:
        """Cancel the attempt when the wave is cancelled (its driver may be elsewhere)."""
        while True:
            await anyio.sleep(every_s)
            run = await anyio.to_thread.run_sync(self._state.run, self._run_id)
            if run.state == "cancelling" or run.state in TERMINAL_RUN_STATES:
                self._cancel = run.reason or f"the wave is {run.state}"
                scope.cancel()
                return


class Worker:
    def __init__(self, store: Store, runner: AgentRunner, *, checkout: Path,
                 concurrency: int, team_concurrency: int | None = None,
                 config: WaveConfig | None = None, metrics: Metrics | None = None,
                 breaker: Breaker | None = None, slots: Slots | None = None,
                 budget: WaveBudget | None = None,
                 agent_env: Mapping[str, str] | None = None,
                 dead_after_s: float = 30.0, beat_s: float = 2.0) -> None:
        if concurrency < 1:
            raise OrchestratorError("a worker's concurrency must be at least 1")
        if team_concurrency is not None and team_concurrency < concurrency:
            raise OrchestratorError(f"the team's concurrency ({team_concurrency}) is below "
                                    f"this worker's ({concurrency})")
        if dead_after_s <= beat_s:
            raise OrchestratorError("dead_after_s must be longer than the heartbeat interval")
        config = config or WaveConfig()
        if breaker is None or slots is None or budget is None:
            from ..policy import EngineFactory
            from ..policy.shared import PolicyBreaker, PolicySlots

            factory = EngineFactory(store, source="wave")
            breaker = breaker or PolicyBreaker(lambda: factory.get()[0])
            slots = slots or PolicySlots(lambda: factory.get()[0])
            # The driver admits each task against the caps and reserves its estimate; the
            # worker that runs it hears its 429s and usage limits (the gate is the team's)
            # and settles what its agents used.
            budget = budget or WaveBudget(store, lambda: factory.get()[0].budgets.budget)
        self._store = store
        self._state = WaveState(store)
        self._config = config
        self._checkout = checkout
        self._concurrency = concurrency
        self._team_concurrency = team_concurrency
        self._resources = ResourceManager(
            replace(config.admission, max_agents=concurrency), metrics, slots)
        self._ctx = WaveContext(state=self._state, audit=AuditLog(store), runner=runner,
                                resources=self._resources, breaker=breaker,
                                retry=config.retry, tick_s=config.tick_s, budget=budget)
        self._agent_env = dict(agent_env or {})
        self._dead_after_s = dead_after_s
        self._beat_s = beat_s
        self._executor = f"{host_id()}:{os.getpid()}:{os.urandom(4).hex()}"
        self._started_ms = int(psutil.Process().create_time() * 1000)
        self._seen: dict[str, tuple[Any, float]] = {}
        self._bodies: dict[tuple[str, str], anyio.CancelScope] = {}
        self._tasks_run = 0
        self._stopping = False
        self._futures: list[Any] = []
        self._portal: Any = None
        self._lock = threading.Lock()

    @property
    def executor_id(self) -> str:
        return self._executor

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Write the first heartbeat, then join the queue (a workflow is only ever taken
        by a worker others can see beating)."""
        from .durable import WorkerLimits, engine

        self._beat()
        wave_engine = engine()
        wave_engine.attach_worker(self._store.location, self,
                                  WorkerLimits(self._concurrency, self._team_concurrency),
                                  executor_id=self._executor)
        self._portal = wave_engine.portal()
        self._futures = [self._portal.start_task_soon(self._heartbeats),
                         self._portal.start_task_soon(self._sampler)]

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop running agents; their tasks stay open for another worker, which recovers
        them at once (the heartbeat says this worker stopped)."""
        self._stopping = True
        if self._portal is not None:
            with contextlib.suppress(RuntimeError):
                self._portal.call(self._cancel_all)
            deadline = time.monotonic() + timeout_s
            while self._bodies and time.monotonic() < deadline:
                time.sleep(0.1)
            for future in self._futures:
                future.cancel()
        self._beat(stopped=True)

    def _cancel_all(self) -> None:
        for scope in list(self._bodies.values()):
            scope.cancel()

    # -- heartbeats and lost workers -------------------------------------------------------
    def _beat(self, *, stopped: bool = False) -> None:
        stats = self._resources.stats()
        self._store.kv_set(heartbeat_key(self._executor), json.dumps({
            "host": host_id(), "pid": os.getpid(), "started_ms": self._started_ms,
            "beat_us": time.time_ns() // 1000, "stopped": stopped,
            "running": len(self._bodies), "tasks_run": self._tasks_run,
            "concurrency": self._concurrency,
            "peak_tree_rss_bytes": stats.peak_total_bytes,
            "memory_budget_bytes": stats.budget_bytes,
            "admission_refusals": dict(stats.refusals)}, sort_keys=True))

    async def _heartbeats(self) -> None:
        while True:
            await anyio.to_thread.run_sync(self._beat)
            with contextlib.suppress(Exception):  # a store hiccup: the next beat retries
                await anyio.to_thread.run_sync(self.recover_lost)
            await anyio.sleep(self._beat_s)

    async def _sampler(self) -> None:
        while True:
            self._resources.sample()
            await anyio.sleep(self._config.sample_s)

    def recover_lost(self) -> list[str]:
        """Re-enqueue the task workflows of executors found dead; returns their ids."""
        from .durable import engine

        lost: list[str] = []
        for executor, workflows in engine().pending_on_team_queue().items():
            if executor == self._executor or not self._dead(executor):
                continue
            count = engine().recover_lost(executor)
            if count:
                lost.append(executor)
                self._ctx.audit.record("wave.worker_lost", executor=executor,
                                       recovered=count, by=self._executor,
                                       workflows=sorted(workflows)[:50])
        return lost

    def _dead(self, executor: str) -> bool:
        beat = read_heartbeat(self._store, executor)
        if beat is None or beat.get("stopped"):
            return True
        if beat.get("host") == host_id() and not _same_process(beat):
            return True
        now = time.monotonic()
        marker = beat.get("beat_us")
        seen = self._seen.get(executor)
        if seen is None or seen[0] != marker:
            self._seen[executor] = (marker, now)
            return False
        return now - seen[1] > self._dead_after_s

    # -- a task's body (the task workflow, on this worker) ---------------------------------
    async def run_task_body(self, run_id: str, task_id: str) -> str:
        state = self._state
        run = await anyio.to_thread.run_sync(state.run, run_id)
        record = next((t for t in state.tasks(run_id) if t.task_id == task_id), None)
        if record is None:
            raise OrchestratorError(f"wave {run_id} has no task {task_id!r}")
        if record.state in _FINISHED or run.state in TERMINAL_RUN_STATES \
                or run.state == "cancelling" or self._stopping:
            return record.state  # done (exactly once), or the driver closes it
        task = next(t for t in run.plan().tasks if t.id == task_id)
        key = (run_id, task_id)
        scope = anyio.CancelScope()
        self._bodies[key] = scope
        try:
            with scope:
                return await self._run(run_id, task, record.state, run.options, scope)
            if self._stopping:
                # The attempt stays open and the workflow PENDING, for another worker to
                # recover (the last heartbeat says this one stopped).
                raise anyio.get_cancelled_exc_class()("the worker stopped")
            # The wave was cancelled: the attempt recorded it.
            return next(t for t in state.tasks(run_id) if t.task_id == task_id).state
        finally:
            self._resources.release(key)
            self._bodies.pop(key, None)

    async def _run(self, run_id: str, task: Any, found: str, run_options: dict[str, Any],
                   scope: anyio.CancelScope) -> str:
        state, ctx = self._state, self._ctx
        while True:  # this worker's own admission: its cap and measured memory
            decision = self._resources.try_admit((run_id, task.id), group=run_id,
                                                 agent_type=task.agent_type)
            if decision.admitted:
                break
            if decision.impossible:
                reason = f"admission on worker {self._executor}: {decision.reason}"
                if found != "pending":
                    state.reset_task(run_id, task.id, _INTERRUPTED)
                state.fail_unstarted(run_id, task.id, state="failed",
                                     error_class=ErrorClass.CONFIG.value, reason=reason)
                return "failed"
            await anyio.sleep(ctx.tick_s)
        if found != "pending":
            # Taken over from a worker that died: its agent, if on this machine, must not
            # finish the task too; its attempt is recorded as interrupted.
            killed = [pid for root in find_marked(f"{run_id}/{task.id}/")
                      for pid in kill_tree(root)]
            if state.reset_task(run_id, task.id, _INTERRUPTED):
                ctx.audit.record("wave.task_recovered", run_id=run_id, task_id=task.id,
                                 executor=self._executor, killed_leftover_processes=len(killed))
        spaces = await anyio.to_thread.run_sync(
            Workspaces.on_worker, run_id, run_options.get("workspaces") or {}, self._checkout)
        options = RunOptions(cwd=spaces.root, env=self._agent_env,
                             workspaces=spaces.to_json(), on_workers=True)
        follower = _Follower(state, run_id, task.id, "pending")
        self._tasks_run += 1
        async with anyio.create_task_group() as tg:
            tg.start_soon(follower.watch, scope, max(1.0, ctx.tick_s))
            await TaskDriver(ctx, run_id, options, follower).run(task)
            tg.cancel_scope.cancel()
        if follower.status_of(task.id) in ("pending", "retrying") \
                and follower.cancel_reason is not None:
            state.fail_unstarted(run_id, task.id, state="cancelled",
                                 error_class=ErrorClass.CANCELLED.value,
                                 reason=follower.cancel_reason)
        done = next(t for t in state.tasks(run_id) if t.task_id == task.id)
        self._settle(run_id, task, done.state)
        return done.state

    def _settle(self, run_id: str, task: Any, task_state: str) -> None:
        """Charge the task what its agents used here. A task a usage limit sent back to
        pending settles when it ends; should another worker end it, what the attempts held
        here used is not added (it is known to this process only)."""
        if task_state != "pending":
            self._ctx.settle(run_id, task, executor=self._executor)


def _same_process(beat: dict[str, Any]) -> bool:
    try:
        proc = psutil.Process(int(beat.get("pid", -1)))
        return int(proc.create_time() * 1000) == int(beat.get("started_ms", -2))
    except (psutil.Error, ValueError, TypeError):
        return False
