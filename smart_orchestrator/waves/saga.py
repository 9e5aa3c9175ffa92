"""The saga: when a wave fails, undo its completed tasks, newest first.

Each compensation's state is written before it runs and after it ends, so a resumed wave
finishes the compensations a crash interrupted (compensations must be safe to repeat).
A command runs with no shell in the wave's working directory, in a session of its own so
a timeout kills everything it started. A prompt compensation is an agent; after a quota,
authentication or session-limit stop it is not attempted, since it would hit the same wall.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
from anyio.abc import Process

from ..canonical import digest_text
from ..claude_cli import clean_agent_env
from .agents import AgentRequest
from .plan import CommandCompensation, PromptCompensation, TaskSpec, WavePlan
from .prompts import compensation_prompt

if TYPE_CHECKING:
    from .scheduler import RunOptions, WaveContext

__all__ = ["Compensator"]

_FINISHED = frozenset({"done", "failed", "skipped", "cancelled"})
_TAIL = 300


class Compensator:
    def __init__(self, ctx: WaveContext, run_id: str, plan: WavePlan, options: RunOptions,
                 cancel_reason: Callable[[], str | None]) -> None:
        self._cancel_reason = cancel_reason
        self._ctx = ctx
        self._run_id = run_id
        self._plan = plan
        self._options = options

    async def run(self, *, agents_usable: bool, why: str) -> None:
        state = self._ctx.state
        done = [t for t in state.tasks(self._run_id) if t.state == "succeeded"]
        done.sort(key=lambda t: (t.finished_us or 0, t.position), reverse=True)
        for record in done:
            task = self._plan.task(record.task_id)
            if task.compensate is None or record.compensation in _FINISHED:
                continue
            if isinstance(task.compensate, PromptCompensation) and not agents_usable:
                state.set_compensation(self._run_id, task.id, "skipped",
                                       f"agent compensation not attempted: {why}")
                continue
            await self._compensate(task, record.output)

    async def _compensate(self, task: TaskSpec, output: str | None) -> None:
        ctx, spec = self._ctx, task.compensate
        ctx.state.set_compensation(self._run_id, task.id, "running")
        ctx.notify(self._run_id)
        ctx.audit.record("wave.compensate_start", run_id=self._run_id, task_id=task.id,
                         method="command" if isinstance(spec, CommandCompensation) else "prompt")
        try:
            if isinstance(spec, CommandCompensation):
                ok, reason = await self._command(spec)
            else:
                assert isinstance(spec, PromptCompensation)
                ok, reason = await self._agent(task, spec, output)
        except anyio.get_cancelled_exc_class():
            # Without a cancel_wave this is a shutdown: left running, resume repeats it.
            if (why := self._cancel_reason()) is not None:
                ctx.state.set_compensation(self._run_id, task.id, "cancelled",
                                           f"cancelled while compensating: {why}")
            raise
        status = "done" if ok else "failed"
        ctx.state.set_compensation(self._run_id, task.id, status, reason)
        ctx.audit.record("wave.compensate_end", run_id=self._run_id, task_id=task.id,
                         status=status, reason=digest_text(reason))
        ctx.notify(self._run_id)

    async def _command(self, spec: CommandCompensation) -> tuple[bool, str]:
        started = time.monotonic()
        try:
            process = await anyio.open_process(
                spec.command, cwd=self._options.cwd, env=clean_agent_env(),
                stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            return False, f"could not start {spec.command[0]!r}: {exc.strerror or exc}"
        try:
            with anyio.fail_after(spec.timeout_s):
                stderr = await _drain(process)
                code = await process.wait()
        except TimeoutError:
            await _reap(process)
            return False, f"timed out after {spec.timeout_s:g} s; its process group was killed"
        except BaseException:
            with anyio.CancelScope(shield=True):
                await _reap(process)
            raise
        elapsed = time.monotonic() - started
        if code == 0:
            return True, f"exit 0 in {elapsed:.1f} s"
        tail = stderr.decode("utf-8", "replace").strip()[-_TAIL:]
        return False, f"exit {code}" + (f": {tail}" if tail else "")

    async def _agent(self, task: TaskSpec, spec: PromptCompensation,
                     output: str | None) -> tuple[bool, str]:
        prompt = compensation_prompt(task, spec, output)
        self._ctx.audit.record("wave.agent_start", run_id=self._run_id, task_id=task.id,
                               attempt=0, agent_type=task.agent_type, purpose="compensation",
                               prompt=digest_text(prompt))
        outcome = await self._ctx.runner.run(AgentRequest(
            run_id=self._run_id, task_id=task.id, attempt=0, prompt=prompt, agent=task.agent,
            cwd=self._options.cwd, timeout_s=spec.timeout_s,
            marker=f"{self._run_id}/{task.id}/undo", allowed_tools=tuple(task.allowed_tools),
            max_turns=task.max_turns, budget_usd=task.budget_usd, purpose="compensation",
            env=self._options.env))
        self._ctx.audit.record("wave.agent_end", run_id=self._run_id, task_id=task.id,
                               attempt=0, purpose="compensation",
                               outcome="succeeded" if outcome.ok else "failed",
                               error_class=outcome.error_class and outcome.error_class.value)
        if outcome.ok:
            return True, "compensating agent finished"
        return False, f"{outcome.error_class}: {outcome.reason}"


async def _drain(process: Process) -> bytes:
    """Discard stdout, keep the tail of stderr; both are read so the child never blocks."""
    tail = b""

    async def read_out() -> None:
        if process.stdout is not None:
            async for _ in process.stdout:
                pass

    async def read_err() -> None:
        nonlocal tail
        if process.stderr is not None:
            async for chunk in process.stderr:
                tail = (tail + chunk)[-4 * _TAIL:]

    async with anyio.create_task_group() as tg:
        tg.start_soon(read_out)
        tg.start_soon(read_err)
    return tail


async def _reap(process: Process) -> None:
    """Kill the command's whole session and collect its exit status."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with anyio.move_on_after(5):
        await process.wait()
