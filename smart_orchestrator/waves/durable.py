"""Durable execution of waves on DBOS Transact: a wave is a workflow, each task a workflow.

Workflow ids are derived from the run: the wave is `<run_id>`, a task `<run_id>/<task_id>`.
DBOS records each workflow's outcome in its system database, so a task workflow that
finished is never run again: invoking its id returns the recorded result. A workflow left
PENDING by a process that stopped is resumed through DBOS (`resume_workflow` re-enqueues
it; exactly one process dequeues it) and runs its body again, which reads the store and
skips what is already done.

DBOS is a process-wide singleton that runs resumed workflows on the loop it was launched
from, so this module owns one wave loop per process; every `WaveService` of the process
drives its waves on it. The system database is a SQLite file beside the store's `state.db`,
or the store's own PostgreSQL database (schema `dbos`) when the store is a postgresql URL.

`dbos` is imported here only, and this module only when a wave is spawned or resumed:
never on the hook path, never at session start.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, cast

import anyio
from anyio.from_thread import BlockingPortal

from ..errors import OrchestratorError

__all__ = ["TEAM_QUEUE", "WaveEngine", "WorkerLimits", "engine", "system_database_url",
           "task_workflow_id"]

APP_NAME = "smart-orchestrator"
# Task workflows for workers carry the workers' application version, wave workflows the
# drivers': DBOS dequeues a workflow only in a process of its version, so a worker never
# takes a wave's own workflow (re-enqueued on DBOS's internal queue, which every process
# serves) and a driver never takes a task meant for the team's workers.
DRIVER_VERSION = APP_NAME
WORKER_VERSION = APP_NAME + "-worker"
TEAM_QUEUE = "smart-orchestrator-wave-tasks"
_WAVE = "smart_orchestrator.wave"
_TASK = "smart_orchestrator.wave_task"


class _Driver(Protocol):
    """What the workflows call back into: the service driving the run in this process."""

    async def drive_run(self, run_id: str) -> str: ...

    async def run_task_body(self, run_id: str, task_id: str) -> str: ...


class _TaskBody(Protocol):
    """A worker: runs any wave's task from the store."""

    async def run_task_body(self, run_id: str, task_id: str) -> str: ...


class WorkerLimits:
    """The team queue's limits as a worker registers them (DBOS keeps one row per queue:
    the last worker to join sets both for everyone)."""

    def __init__(self, worker_concurrency: int, team_concurrency: int | None) -> None:
        self.worker_concurrency = worker_concurrency
        self.team_concurrency = team_concurrency


def task_workflow_id(run_id: str, task_id: str, holds: int = 0) -> str:
    """A task's workflow id. `holds` counts the times a usage limit sent the task back to
    pending: its workflow ended then, and the task's next run is a new workflow (the
    ended one would hand back its recorded result without running)."""
    return f"{run_id}/{task_id}" if not holds else f"{run_id}/{task_id}~held{holds}"


def system_database_url(store_location: str) -> str:
    """The DBOS system database for a store: same PostgreSQL, or a SQLite file beside it."""
    if store_location.startswith(("postgresql://", "postgres://")):
        # A store's location is its DSN without the password: the configured one, when it
        # names the same database, carries it (else libpq's PGPASSWORD or ~/.pgpass do).
        configured = os.environ.get("SMART_ORCHESTRATOR_STORE", "")
        if configured.startswith(("postgresql://", "postgres://")):
            from ..store.postgres import redact

            if redact(configured) == store_location:
                return configured
        return store_location
    return "sqlite:///" + str(Path(store_location).resolve().with_name("dbos.sqlite"))


class WaveEngine:
    """The process's wave loop and its DBOS instance, relaunched when the database changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._portal: BlockingPortal | None = None
        self._url: str | None = None
        self._drivers: dict[str, _Driver] = {}
        self._users = 0
        self._worker: _TaskBody | None = None

    # -- the loop ----------------------------------------------------------------------------
    def portal(self) -> BlockingPortal:
        with self._lock:
            if self._portal is None:
                ready = threading.Event()
                thread = threading.Thread(target=anyio.run, args=(self._main, ready),
                                          name="smart-orchestrator-waves", daemon=True)
                thread.start()
                if not ready.wait(10) or self._portal is None:
                    raise OrchestratorError("the wave event loop did not start")
            return self._portal

    async def _main(self, ready: threading.Event) -> None:
        async with BlockingPortal() as portal:
            self._portal = portal
            ready.set()
            await portal.sleep_until_stopped()

    # -- DBOS --------------------------------------------------------------------------------
    def attach(self, store_location: str) -> None:
        """Launch DBOS on the wave loop for this store's system database (once per URL)."""
        url = system_database_url(store_location)
        portal = self.portal()
        with self._lock:
            if self._worker is not None:
                raise OrchestratorError("this process is a wave worker; it drives no wave")
            if self._url == url:
                self._users += 1
                return
            if self._drivers:
                raise OrchestratorError(
                    "waves of another store are running in this process",
                    hint="one process drives the waves of one store at a time")
            # Launched on the loop's thread, so DBOS runs resumed workflows on that loop.
            portal.call(self._launch_sync_on_loop, url, None)
            self._url, self._users = url, 1

    def attach_worker(self, store_location: str, worker: _TaskBody, limits: WorkerLimits,
                      *, executor_id: str) -> None:
        """Join the team's task queue as a worker, as DBOS executor `executor_id`."""
        url = system_database_url(store_location)
        portal = self.portal()
        with self._lock:
            if self._url is not None:
                raise OrchestratorError("this process already drives waves; a worker is a "
                                        "process of its own")
            self._worker = worker
            portal.call(self._launch_sync_on_loop, url, limits, executor_id)
            self._url, self._users = url, 1

    async def _launch_sync_on_loop(self, url: str, limits: WorkerLimits | None,
                                   executor_id: str | None = None) -> None:
        from dbos import DBOS

        _launch(url, limits, executor_id)
        if limits is not None:
            await DBOS.register_queue_async(
                TEAM_QUEUE, worker_concurrency=limits.worker_concurrency,
                global_concurrency=limits.team_concurrency, polling_interval_sec=1.0,
                on_conflict="always_update")
        # DBOS makes its executor this loop's default one (a relaunch shut the old one
        # down); any of its async calls does that first, so one cheap read suffices.
        await DBOS.get_workflow_status_async(f"{APP_NAME}/launched")

    def detach(self) -> None:
        with self._lock:
            self._users = max(0, self._users - 1)

    def bind(self, run_id: str, driver: _Driver) -> None:
        with self._lock:
            self._drivers[run_id] = driver

    def unbind(self, run_id: str, driver: _Driver) -> None:
        with self._lock:
            if self._drivers.get(run_id) is driver:
                del self._drivers[run_id]

    def driver(self, run_id: str) -> _Driver:
        with self._lock:
            found = self._drivers.get(run_id)
        if found is None:
            raise OrchestratorError(f"no service drives wave {run_id} in this process")
        return found

    async def task_body(self, run_id: str, task_id: str) -> str:
        with self._lock:
            driver, worker = self._drivers.get(run_id), self._worker
        if driver is not None:
            return await driver.run_task_body(run_id, task_id)
        if worker is not None:
            return await worker.run_task_body(run_id, task_id)
        raise OrchestratorError(f"no service drives wave {run_id} in this process")

    # -- invoking ----------------------------------------------------------------------------
    async def run_wave(self, run_id: str) -> None:
        from dbos import SetWorkflowID

        with SetWorkflowID(run_id):
            await _wave_workflow(run_id)

    async def run_task(self, run_id: str, task_id: str, holds: int = 0, *,
                       on_workers: bool = False) -> str:
        """Run a task's workflow here (or, `on_workers`, enqueue it on the team's queue for
        a worker), or wait for it where it already runs; a finished one returns its
        recorded result without running again."""
        from dbos import DBOS, SetEnqueueOptions, SetWorkflowID

        wid = task_workflow_id(run_id, task_id, holds)

        async def invoke() -> str:
            with SetWorkflowID(wid):
                if not on_workers:
                    return str(await _task_workflow(run_id, task_id))
                with SetEnqueueOptions(app_version=WORKER_VERSION):
                    handle: Any = await DBOS.enqueue_workflow_async(
                        TEAM_QUEUE, cast(Any, _task_workflow), run_id, task_id)
            return str(await handle.get_result())

        # Tasks are top-level workflows, not children of the wave's: the wave body is
        # re-run from the store on resume, in whatever order tasks become ready, and a
        # child is found by its position in the parent, which would then differ.
        with _outside_workflow():
            return await invoke()

    def resume(self, run_id: str) -> list[str]:
        """Re-enqueue the run's PENDING workflows (the wave's first); returns their ids.
        Called from a thread, not from the wave loop. Tasks queued for workers are left
        to them: a worker re-enqueues the tasks of a worker that died (`recover_lost`)."""
        from dbos import DBOS

        pending = [w.workflow_id for w in DBOS.list_workflows(
            workflow_id_prefix=run_id, status="PENDING", load_input=False,
            load_output=False) if w.queue_name != TEAM_QUEUE]
        ordered = sorted(pending, key=lambda wid: (wid != run_id, wid))
        for wid in ordered:
            DBOS.resume_workflow(wid)
        return ordered

    def pending_on_team_queue(self) -> dict[str, list[str]]:
        """Task workflows running on some worker, by executor id. Called from a thread."""
        from dbos import DBOS

        found: dict[str, list[str]] = {}
        for w in DBOS.list_workflows(
                status="PENDING", queue_name=TEAM_QUEUE, load_input=False,
                load_output=False):
            found.setdefault(str(w.executor_id), []).append(w.workflow_id)
        return found

    def recover_lost(self, executor_id: str) -> int:
        """Put the task workflows a dead worker had taken back on the team queue, where
        one worker takes each. Called from a thread.

        DBOS's own recovery, the one it runs at launch for its own executor: the re-enqueue
        matches the dead executor's id, so two workers recovering the same one re-enqueue
        each workflow once (the one that a live worker already took no longer matches).
        The public `resume_workflow` does not match the executor and could put a
        workflow a live worker is running back on the queue."""
        from dbos import DBOS

        return len(DBOS._recover_pending_workflows([executor_id]))

    async def cancel_task(self, run_id: str, task_id: str) -> None:
        """A cancelled task's workflow is marked so: it must not be resumed later."""
        from dbos import DBOS

        with contextlib.suppress(Exception):  # never started as a workflow: nothing to mark
            await DBOS.cancel_workflow_async(task_workflow_id(run_id, task_id))

    async def status(self, workflow_id: str) -> str | None:
        from dbos import DBOS

        found = await DBOS.get_workflow_status_async(workflow_id)
        return None if found is None else str(found.status)


_engine: WaveEngine | None = None
_engine_lock = threading.Lock()


def engine() -> WaveEngine:
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = WaveEngine()
        return _engine


# -- DBOS registration (once per process) -------------------------------------------------
_wave_workflow: Callable[[str], Awaitable[Any]]
_task_workflow: Callable[[str, str], Awaitable[Any]]
_launched_url: str | None = None


def _launch(url: str, limits: WorkerLimits | None = None,
            executor_id: str | None = None) -> None:
    """Create, register and launch DBOS for `url`; runs on the wave loop's thread."""
    global _launched_url
    from dbos import DBOS

    _register()
    if _launched_url is not None:
        DBOS.destroy()
    from ..store.hostid import host_id

    # A new id per process: DBOS recovers its own executor's workflows at launch, and
    # resuming a stopped server's waves is an explicit resume_wave, not a side effect. A
    # worker that comes back is a new executor too: what the old one held was recovered
    # by the others (or is recovered by it, as anyone's), never silently re-run as its own.
    schema = os.environ.get("SMART_ORCHESTRATOR_DBOS_SCHEMA", "").strip()
    DBOS(config={
        # Two teams (or test runs) sharing one PostgreSQL database keep DBOS apart by schema.
        **({"dbos_system_schema": schema} if schema else {}),
        "name": APP_NAME,
        "system_database_url": url,
        "executor_id": executor_id or f"{host_id()}:{os.getpid()}:{os.urandom(4).hex()}",
        "application_version": DRIVER_VERSION if limits is None else WORKER_VERSION,
        # Its pool serves every system-database call of the wave loop (the default is
        # cpu + 4 threads): a wide wave must not queue behind it.
        "max_executor_threads": 64,
        "log_level": os.environ.get("SMART_ORCHESTRATOR_DBOS_LOG", "ERROR"
                                    if limits is not None else "WARNING"),
    })
    if limits is not None:
        DBOS.listen_queues([TEAM_QUEUE])
    DBOS.launch()
    _launched_url = url


_registered = False


def _register() -> None:
    global _registered, _wave_workflow, _task_workflow
    if _registered:
        return
    from dbos import DBOS

    @DBOS.workflow(name=_WAVE, max_recovery_attempts=None)
    async def wave_workflow(run_id: str) -> str:
        return await engine().driver(run_id).drive_run(run_id)

    @DBOS.workflow(name=_TASK, max_recovery_attempts=None)
    async def task_workflow(run_id: str, task_id: str) -> str:
        return await engine().task_body(run_id, task_id)

    _wave_workflow, _task_workflow = wave_workflow, task_workflow
    _registered = True


@contextlib.contextmanager
def _outside_workflow() -> Any:
    # DBOS keeps its workflow context in a context variable; the task runs in an anyio
    # task of its own, whose copy of the context this resets without touching the wave's.
    # (DBOS has no public way to start a top-level workflow from inside another. An
    # asyncio task with an empty context was tried instead: the DAG test then saw three
    # agents counted running at once where two can, so the private variable stays.)
    from dbos._context import _dbos_context_var

    token = _dbos_context_var.set(None)
    try:
        yield
    finally:
        _dbos_context_var.reset(token)
