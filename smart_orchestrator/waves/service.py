"""Waves in the background of a server: spawn, status, cancel, resume, list.

Waves run on an event loop in a daemon thread of their own, so they outlive the request
that started them and never block the server's loop; every method here is thread-safe
and returns at once (cancel waits, bounded, for the agents to be gone). A server that
stops, however it stops, leaves its unfinished waves in the store for `resume`.
"""

from __future__ import annotations

import atexit
import contextlib
import secrets
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent import futures
from concurrent.futures import Future
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import anyio
from anyio.from_thread import BlockingPortal

from ..audit import AuditLog
from ..budget.waves import WaveBudget
from ..canonical import canonical_json, sha256_hex
from ..errors import ConfigError, OrchestratorError
from ..store.base import Store
from ._breaker import Breaker
from ._proc import find_marked, kill_tree
from .admission import AdmissionStats, Metrics, ResourceManager, Slots
from .agents import AgentRunner
from .config import WaveConfig
from .owner import owner_alive, owner_token
from .plan import WavePlan
from .sandbox import may_run_bash
from .scheduler import RunOptions, WaveContext, WaveRun
from .snapshot import RunSummary, WaveSnapshot, snapshot, summary
from .state import TERMINAL_RUN_STATES, WaveState

if TYPE_CHECKING:
    from .durable import WaveEngine

__all__ = ["WaveService"]


class WaveService:
    def __init__(self, store: Store, runner: AgentRunner,
                 config: WaveConfig | None = None, *, metrics: Metrics | None = None,
                 breaker: Breaker | None = None, slots: Slots | None = None,
                 agent_env: Mapping[str, str] | None = None,
                 owner: str | None = None, budget: WaveBudget | None = None) -> None:
        """`breaker` and `slots` default to the policy's, shared through the store with
        the hooks and every other server (`smart_orchestrator.policy.shared`)."""
        self._config = config or WaveConfig()
        self._state = WaveState(store)
        self._owner = owner or owner_token()
        self._agent_env = dict(agent_env or {})
        if breaker is None or slots is None:
            from ..policy import EngineFactory
            from ..policy.shared import PolicyBreaker, PolicySlots

            factory = EngineFactory(store, source="wave")
            breaker = breaker or PolicyBreaker(lambda: factory.get()[0])
            slots = slots or PolicySlots(lambda: factory.get()[0])
            budget = budget or WaveBudget(store, lambda: factory.get()[0].budgets.budget)
        self._resources = ResourceManager(self._config.admission, metrics, slots)
        self._ctx = WaveContext(
            state=self._state, audit=AuditLog(store), runner=runner,
            resources=self._resources, breaker=breaker,
            retry=self._config.retry, tick_s=self._config.tick_s, notify=self._notify,
            run_task=self._run_task_workflow, budget=budget)
        self._store = store
        self._live: dict[str, WaveRun] = {}
        self._versions: dict[str, int] = {}
        self._cond = threading.Condition()
        self._portal: BlockingPortal | None = None
        self._engine: WaveEngine | None = None
        self._futures: list[Future[Any]] = []
        self._sampling: Future[Any] | None = None
        self._drive_scopes: dict[str, anyio.CancelScope] = {}
        self._start_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------
    def _ensure_loop(self) -> BlockingPortal:
        """The process's wave loop with DBOS launched on it (imported here, not before)."""
        with self._start_lock:
            if self._portal is not None:
                return self._portal
            from .durable import engine

            wave_engine = engine()
            wave_engine.attach(self._store.location)
            self._engine = wave_engine
            self._portal = wave_engine.portal()
            self._sampling = self._portal.start_task_soon(self._sampler)
            atexit.register(self.close)
            return self._portal

    def _track(self, future: Future[Any]) -> None:
        self._futures = [f for f in self._futures if not f.done()] + [future]

    async def _sampler(self) -> None:
        while True:
            self._resources.sample()
            await anyio.sleep(self._config.sample_s)

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop every agent; unfinished waves stay in the store and in DBOS, resumable."""
        atexit.unregister(self.close)
        portal, self._portal = self._portal, None
        if portal is None:
            return
        with self._cond:
            driven = list(self._live)
        with contextlib.suppress(RuntimeError):  # the loop already ended
            portal.call(self._stop_all)
        self.wait_idle(timeout_s)
        # Not cancelled: a wave that just ended is still recording its workflow's end.
        futures.wait(self._futures, timeout_s)
        if self._sampling is not None:
            self._sampling.cancel()
        assert self._engine is not None
        for run_id in driven:  # nobody drives them now: any server may resume them
            self._engine.unbind(run_id, self)
            with contextlib.suppress(OrchestratorError):
                self._state.claim(run_id, None, previous=self._owner)
        self._engine.detach()

    def _stop_all(self) -> None:
        for scope in list(self._drive_scopes.values()):
            scope.cancel()
        for run in list(self._live.values()):
            run.shutdown()

    def wait_idle(self, timeout_s: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._live, timeout_s)

    def busy(self) -> bool:
        """Whether a wave is being driven now."""
        with self._cond:
            return bool(self._live)

    # -- progress --------------------------------------------------------------------------
    def _notify(self, run_id: str) -> None:
        with self._cond:
            self._versions[run_id] = self._versions.get(run_id, 0) + 1
            self._cond.notify_all()

    def version(self, run_id: str) -> int:
        with self._cond:
            return self._versions.get(run_id, 0)

    def wait_for_change(self, run_id: str, seen: int, timeout_s: float) -> int:
        with self._cond:
            self._cond.wait_for(lambda: self._versions.get(run_id, 0) != seen, timeout_s)
            return self._versions.get(run_id, 0)

    def wait_until_done(self, run_id: str, timeout_s: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: run_id not in self._live, timeout_s)

    def _require_sandbox(self, plan: WavePlan) -> None:
        confinement = self._ctx.runner.bash_sandbox
        if confinement.mode == "require" and not confinement.available:
            bash = [t.id for t in plan.tasks if may_run_bash(t.allowed_tools)]
            if bash:
                raise ConfigError(f"tasks {', '.join(bash)} may run Bash, and the Bash "
                                  f"sandbox is required but {confinement.note}")

    # -- operations ------------------------------------------------------------------------
    def preview(self, plan: WavePlan) -> WaveSnapshot:
        """What the plan is expected to use; nothing is started or stored."""
        from ..budget.preview import PlannedAgent
        from .plan import dependency_levels

        _refuse_credentials(plan)
        budget = self._ctx.budget
        if budget is None:
            raise OrchestratorError("no budget is configured for waves, so no preview")
        data = budget.preview("preview", [PlannedAgent(t.id, t.agent_type, t.agent.model,
                                                       t.prompt) for t in plan.tasks])
        return WaveSnapshot(run_id="", name=plan.name, state="preview",
                            reason="preview: nothing was started", stop_class=None,
                            created_us=time.time_ns() // 1000, finished_us=None,
                            counts={"pending": len(plan.tasks)}, tasks=(),
                            levels=[list(level) for level in dependency_levels(plan)],
                            admission=None, stats={}, version=0, preview=data)

    def spawn(self, plan: WavePlan, *, cwd: str, max_concurrency: int | None = None) -> str:
        _refuse_credentials(plan)
        self._require_sandbox(plan)
        portal = self._ensure_loop()
        run_id = f"w{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        from .worktrees import Workspaces, worktrees_root

        on_workers = self._config.dispatch == "workers"
        if on_workers and (plan.remote is None or plan.workspace == "shared"):
            raise ConfigError("waves run on workers need the plan's `remote` (a repository "
                              "every worker can clone) and worktrees",
                              hint="name a remote, or unset SMART_ORCHESTRATOR_WAVE_DISPATCH")
        spaces = Workspaces.prepare(run_id, cwd, remote=plan.remote, mode=plan.workspace,
                                    root=worktrees_root())
        if on_workers and spaces is not None:
            spaces = replace(spaces, shared=True)
        options = RunOptions(cwd=cwd, max_concurrency=max_concurrency,
                             workspaces=spaces.to_json() if spaces else None,
                             on_workers=on_workers)
        self._state.create_run(run_id, plan, options.to_json(), self._owner)
        plan_digest = sha256_hex(canonical_json(plan.model_dump(mode="json")))
        self._ctx.audit.record("wave.start", run_id=run_id, tasks=len(plan.tasks),
                               plan_sha256=plan_digest, on_failure=plan.on_failure)
        portal.call(self._launch, run_id, plan, options)
        self._track(portal.start_task_soon(self._run_wave, run_id))
        return run_id

    def _launch(self, run_id: str, plan: WavePlan, options: RunOptions) -> None:
        """Runs on the wave loop: anyio primitives are made where they are used."""
        assert self._engine is not None
        run = WaveRun(self._ctx, run_id, plan, replace(options, env=self._agent_env))
        with self._cond:
            self._live[run_id] = run
        self._engine.bind(run_id, self)

    async def _run_wave(self, run_id: str) -> None:
        """Invoke the wave's workflow here (it is new, or was not left PENDING)."""
        assert self._engine is not None
        try:
            await self._engine.run_wave(run_id)
        except Exception as exc:  # the system database failed: the run must not hang live
            await self._fail(run_id, f"durable engine failed: {type(exc).__name__}: {exc}")
            return
        if run_id in self._live:  # DBOS returned a recorded end: the body did not run here
            await self._fail(run_id, "the durable engine recorded this wave's workflow as "
                                     "ended, but the store holds no end")

    # -- called by the workflows (durable.py) ----------------------------------------------
    async def drive_run(self, run_id: str) -> str:
        run = self._live.get(run_id)
        if run is None:  # ended or shut down meanwhile: the store keeps the run as it is
            return self._state.run(run_id).state
        with anyio.CancelScope() as scope:
            self._drive_scopes[run_id] = scope
            try:
                return await self._drive(run)
            finally:
                self._drive_scopes.pop(run_id, None)
        # Shut down: ending as cancelled leaves the workflow PENDING in DBOS, resumable.
        raise anyio.get_cancelled_exc_class()("the server driving the wave stopped")

    async def run_task_body(self, run_id: str, task_id: str) -> str:
        run = self._live.get(run_id)
        if run is None:
            raise OrchestratorError(f"wave {run_id} is not driven here")
        return await run.execute(task_id)

    async def _drive(self, run: WaveRun) -> str:
        try:
            return await run.drive()
        except Exception as exc:  # a bug or a store failure must not take the loop down
            await self._fail(run.run_id, f"wave driver failed: {type(exc).__name__}: {exc}")
            return "failed"
        finally:
            with self._cond:
                self._live.pop(run.run_id, None)
            assert self._engine is not None
            self._engine.unbind(run.run_id, self)
            self._notify(run.run_id)

    async def _fail(self, run_id: str, reason: str) -> None:
        print(f"smart-orchestrator: {run_id}: {reason}", file=sys.stderr)
        with contextlib.suppress(OrchestratorError):
            self._state.set_run_state(run_id, "failed", reason=reason)
        with self._cond:
            self._live.pop(run_id, None)
        if self._engine is not None:
            self._engine.unbind(run_id, self)
        self._notify(run_id)

    async def _run_task_workflow(self, run: WaveRun, task_id: str) -> None:
        assert self._engine is not None
        await self._engine.run_task(run.run_id, task_id, run.holds(task_id),
                                    on_workers=run.on_workers)

    def status(self, run_id: str, *, output_chars: int = 2000) -> WaveSnapshot:
        run = self._state.run(run_id)
        live = self._live.get(run_id)
        return snapshot(run, self._state.tasks(run_id), self._state.attempts(run_id),
                        live=live, owner_alive=owner_alive(run.owner, self._owner),
                        admission=self._resources.stats(), version=self.version(run_id),
                        output_chars=output_chars)

    def list_runs(self, *, limit: int = 20, state: str | None = None) -> list[RunSummary]:
        return [summary(r, self._state.tasks(r.run_id), live=r.run_id in self._live,
                        owner_alive=owner_alive(r.owner, self._owner))
                for r in self._state.list_runs(limit=limit, state=state)]

    def cancel(self, run_id: str, *, reason: str, compensate: bool = False,
               wait_s: float = 30.0) -> WaveSnapshot:
        run = self._state.run(run_id)
        if run.state in TERMINAL_RUN_STATES:
            raise OrchestratorError(f"wave {run_id} already ended ({run.state})")
        live = self._live.get(run_id)
        if live is None:
            if owner_alive(run.owner, self._owner):
                raise OrchestratorError(f"wave {run_id} is driven by another server "
                                        f"({run.owner})", hint="cancel it there")
            # Nobody drives it: finish the cancel here (resuming kills a dead owner's agents).
            self._state.set_run_state(run_id, "cancelling", reason=reason)
            self._resume_locked(run_id)
        else:
            assert self._portal is not None
            self._portal.call(lambda: live.cancel(reason, compensate=compensate))
        self._ctx.audit.record("wave.cancel", run_id=run_id, reason=reason)
        self.wait_until_done(run_id, wait_s)
        return self.status(run_id)

    def resume(self, run_id: str) -> WaveSnapshot:
        run = self._state.run(run_id)
        if run.state in TERMINAL_RUN_STATES:
            raise OrchestratorError(f"wave {run_id} already ended ({run.state}); "
                                    "nothing to resume")
        if run_id in self._live:
            return self.status(run_id)
        if owner_alive(run.owner, self._owner):
            raise OrchestratorError(f"wave {run_id} is still driven by a live server "
                                    f"({run.owner})")
        # The server resuming it may lack the sandbox the one that started it had.
        self._require_sandbox(run.plan())
        self._resume_locked(run_id)
        return self.status(run_id)

    def _resume_locked(self, run_id: str) -> None:
        run = self._state.run(run_id)
        if run.owner != self._owner and not self._state.claim(run_id, self._owner,
                                                               previous=run.owner):
            raise OrchestratorError(f"wave {run_id} was claimed by another server meanwhile")
        on_workers = bool(run.options.get("on_workers"))
        # On workers, running tasks are the workers' to finish or, if theirs died, to
        # recover: their agents may be alive, on this machine too.
        killed = [] if on_workers else self._kill_leftovers(run_id)
        interrupted = [] if on_workers else self._state.reset_interrupted(run_id)
        self._ctx.audit.record("wave.resume", run_id=run_id, interrupted=interrupted,
                               killed_leftover_processes=len(killed))
        plan = run.plan()
        options = RunOptions(cwd=str(run.options["cwd"]),
                             max_concurrency=run.options.get("max_concurrency"),
                             workspaces=run.options.get("workspaces"),
                             on_workers=on_workers)
        portal = self._ensure_loop()
        assert self._engine is not None
        portal.call(self._launch, run_id, plan, options)
        # DBOS re-runs the workflows the stopped server left PENDING; a wave whose own
        # workflow is not among them (stopped before it began) is invoked here.
        if run_id not in self._engine.resume(run_id):
            self._track(portal.start_task_soon(self._run_wave, run_id))

    def admission(self) -> AdmissionStats:
        return self._resources.stats()

    def _kill_leftovers(self, run_id: str) -> list[int]:
        """Agents a dead predecessor started for this run: they must not finish a task too."""
        killed: list[int] = []
        for pid in find_marked(run_id + "/"):
            killed += kill_tree(pid)
        return killed


def _refuse_credentials(plan: WavePlan) -> None:
    """The plan is stored as given (resume needs its prompts) and sent to agents: like the
    Agent hook, a plan holding a credential in any field (a prompt, a task id, an agent's
    name) is refused before anything is written. An inline allowlist pragma does not make
    a credential fit to store, so it does not let one through here."""
    from ..scrub import secret_rules

    for where, text in _strings(plan.model_dump(mode="json"), ""):
        if rules := secret_rules(text):
            raise OrchestratorError(
                f"the plan's {where or 'text'} holds a credential ({', '.join(rules)})",
                hint="pass credentials to agents through environment variables or files "
                "they read, never inside the plan")


def _strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key}".lstrip(".")
            yield f"{path} key", str(key)
            yield from _strings(item, path)
    elif isinstance(value, list):
        for n, item in enumerate(value):
            yield from _strings(item, f"{where}[{n}]")
