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
from typing import Any, Protocol

import anyio
from anyio.from_thread import BlockingPortal

from ..errors import OrchestratorError

__all__ = ["WaveEngine", "engine", "system_database_url", "task_workflow_id"]

APP_NAME = "smart-orchestrator"
_WAVE = "smart_orchestrator.wave"
_TASK = "smart_orchestrator.wave_task"


class _Driver(Protocol):
    """What the workflows call back into: the service driving the run in this process."""

    async def drive_run(self, run_id: str) -> str: ...

    async def run_task_body(self, run_id: str, task_id: str) -> str: ...


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
            if self._url == url:
                self._users += 1
                return
            if self._drivers:
                raise OrchestratorError(
                    "waves of another store are running in this process",
                    hint="one process drives the waves of one store at a time")
            # Launched on the loop's thread, so DBOS runs resumed workflows on that loop.
            portal.call(self._launch_sync_on_loop, url)
            self._url, self._users = url, 1

    async def _launch_sync_on_loop(self, url: str) -> None:
        from dbos import DBOS

        _launch(url)
        # DBOS makes its executor this loop's default one; a relaunch shut the old one down.
        await DBOS._configure_asyncio_thread_pool()

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

    # -- invoking ----------------------------------------------------------------------------
    async def run_wave(self, run_id: str) -> None:
        from dbos import SetWorkflowID

        with SetWorkflowID(run_id):
            await _wave_workflow(run_id)

    async def run_task(self, run_id: str, task_id: str, holds: int = 0) -> str:
        """Run a task's workflow here, or wait for it where it already runs; a finished one
        returns its recorded result without running again."""
        from dbos import SetWorkflowID

        # Tasks are top-level workflows, not children of the wave's: the wave body is
        # re-run from the store on resume, in whatever order tasks become ready, and a
        # child is found by its position in the parent, which would then differ.
        with _outside_workflow(), SetWorkflowID(task_workflow_id(run_id, task_id, holds)):
            return str(await _task_workflow(run_id, task_id))

    def resume(self, run_id: str) -> list[str]:
        """Re-enqueue the run's PENDING workflows (the wave's first); returns their ids.
        Called from a thread, not from the wave loop."""
        from dbos import DBOS

        pending = [w.workflow_id for w in DBOS.list_workflows(
            workflow_id_prefix=run_id, status="PENDING", load_input=False,
            load_output=False)]
        ordered = sorted(pending, key=lambda wid: (wid != run_id, wid))
        for wid in ordered:
            DBOS.resume_workflow(wid)
        return ordered

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


def _launch(url: str) -> None:
    """Create, register and launch DBOS for `url`; runs on the wave loop's thread."""
    global _launched_url
    from dbos import DBOS

    _register()
    if _launched_url is not None:
        DBOS.destroy()
    from ..store.hostid import host_id

    DBOS(config={
        "name": APP_NAME,
        "system_database_url": url,
        # A new id per process: DBOS recovers its own executor's workflows at launch, and
        # resuming a stopped server's waves is an explicit resume_wave, not a side effect.
        "executor_id": f"{host_id()}:{os.getpid()}:{os.urandom(4).hex()}",
        "application_version": APP_NAME,
        # Its pool serves every system-database call of the wave loop (the default is
        # cpu + 4 threads): a wide wave must not queue behind it.
        "max_executor_threads": 64,
        "log_level": os.environ.get("SMART_ORCHESTRATOR_DBOS_LOG", "WARNING"),
    })
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
        return await engine().driver(run_id).run_task_body(run_id, task_id)

    _wave_workflow, _task_workflow = wave_workflow, task_workflow
    _registered = True


@contextlib.contextmanager
def _outside_workflow() -> Any:
    # DBOS keeps its workflow context in a context variable; the task runs in an anyio
    # task of its own, whose copy of the context this resets without touching the wave's.
    from dbos._context import _dbos_context_var

    token = _dbos_context_var.set(None)
    try:
        yield
    finally:
        _dbos_context_var.reset(token)
