"""One task's attempts: breaker check, prompt for the attempt, durable start, agent, verdict.

Retries go through tenacity with an explicit predicate (retryable class, wave not
stopping) and bounds on attempts and total time. Each attempt is written to the store
before its agent starts and after it ends, and both ends go to the audit chain.
"""

from __future__ import annotations

import dataclasses
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import anyio
from tenacity import RetryCallState

from ..canonical import canonical_json, digest_text
from ..context import ContextCache
from ..errors import OrchestratorError
from ..store.hostid import host_id
from ._proc import agent_marker
from .agents import AgentOutcome, AgentRequest
from .contracts import Contract
from .plan import TaskSpec
from .prompts import build_prompt, level_for_attempt
from .recovery import BREAKER_COUNTS, AttemptFailed, ErrorClass
from .sandbox import may_run_bash
from .worktrees import MergeConflict, Workspaces

if TYPE_CHECKING:
    from .scheduler import RunOptions, WaveContext

__all__ = ["TaskDriver"]


class _Wave(Protocol):
    def status_of(self, task_id: str) -> str: ...

    def set_status(self, task_id: str, status: str) -> None: ...

    def may_retry(self) -> bool: ...

    def stop_wave(self, reason: str, error_class: ErrorClass | None) -> None: ...

    def task_failed(self, task_id: str, reason: str) -> None: ...

    @property
    def cancel_reason(self) -> str | None: ...


class _Held(Exception):
    """The attempt hit a usage limit with a known reset: the task is pending again."""


class TaskDriver:
    def __init__(self, ctx: WaveContext, run_id: str, options: RunOptions,
                 wave: _Wave) -> None:
        self._ctx = ctx
        self._run_id = run_id
        self._options = options
        self._wave = wave
        # One cache for the wave: its agents read the same project files and environment.
        self._context_cache = ContextCache()
        project = Path(options.cwd)
        self._project_dir = project if project.is_dir() else None
        self._spaces = Workspaces.from_json(run_id, options.workspaces)

    async def run(self, task: TaskSpec) -> None:
        if not self._wave.may_retry():
            return  # stopped or cancelled since launch: left pending for the wave to close
        tries = 0
        retrying = self._ctx.retry.retrying(
            may_retry=lambda _exc: self._wave.may_retry(), sleep=self._ctx.sleep,
            before_sleep=partial(self._before_sleep, task))
        try:
            async for attempt in retrying:
                with attempt:
                    tries += 1
                    await self._attempt(task, tries)
        except AttemptFailed as exc:
            self._give_up(task, exc, tries)
        except _Held:
            pass  # pending again: the wave starts it when the usage limit resets

    def _before_sleep(self, task: TaskSpec, retry_state: RetryCallState) -> None:
        delay = retry_state.upcoming_sleep
        self._ctx.audit.record("wave.retry", run_id=self._run_id, task_id=task.id,
                               after_attempt=retry_state.attempt_number,
                               backoff_s=round(delay, 3))

    async def _attempt(self, task: TaskSpec, tries: int) -> None:
        ctx = self._ctx
        while ctx.budget is not None and (wait := ctx.budget.gate_wait_s(
                self._run_id, task.id)) > 0:
            await ctx.sleep(wait)  # a retry waits out a rate limit with everyone else
        allowed, why = ctx.breaker.allow(task.agent_type)
        if not allowed:
            raise AttemptFailed(ErrorClass.BREAKER_OPEN, why)
        level = level_for_attempt(tries)
        cwd = self._options.cwd
        if self._spaces is not None:
            cwd = str(await anyio.to_thread.run_sync(self._spaces.open, task.id))
        # On a worker the project is the task's own tree (the worker has no checkout of
        # its own, and git reading a shared tree would race the merges into it).
        project = Path(cwd) if self._spaces is not None and self._spaces.shared \
            else self._project_dir
        # Reading project files and asking git for the environment is blocking I/O.
        built = await anyio.to_thread.run_sync(partial(
            build_prompt, task, self._dependency_results(task), level,
            project_dir=project, cache=self._context_cache))
        prompt = built.text
        attempt = ctx.state.start_attempt(self._run_id, task.id, level.label)
        self._wave.set_status(task.id, "running")
        ctx.audit.record("wave.agent_start", run_id=self._run_id, task_id=task.id,
                         attempt=attempt, agent_type=task.agent_type, model=task.agent.model,
                         host=host_id(),  # which machine ran it (workers: any of the team)
                         context=level.label, prompt=digest_text(prompt),
                         context_tokens=built.tokens, context_budget=built.budget_tokens,
                         context_levels=list(built.levels_included),
                         context_omitted=len(built.omitted), over_budget=built.over_budget,
                         bash_sandbox=(ctx.runner.bash_sandbox.enabled
                                       if may_run_bash(task.allowed_tools) else None))
        contract = Contract(task.output_schema) if task.output_schema is not None else None
        request = AgentRequest(
            run_id=self._run_id, task_id=task.id, attempt=attempt, prompt=prompt,
            agent=task.agent, cwd=cwd, timeout_s=task.timeout_s,
            marker=agent_marker(self._run_id, task.id, attempt),
            allowed_tools=tuple(task.allowed_tools), max_turns=task.max_turns,
            budget_usd=task.budget_usd, env=self._options.env,
            network_domains=tuple(task.network_domains),
            follow_up=contract.follow_up if contract else None,
            on_spawn=partial(self._spawned, task.id, attempt),
            on_rate_limit=partial(self._rate_limited, task.id, attempt))
        started = time.monotonic()
        try:
            outcome = await ctx.runner.run(request)
        except anyio.get_cancelled_exc_class():
            # A cancel_wave is recorded; any other cancellation is the server shutting
            # down, and the attempt stays open for resume to re-run.
            if (reason := self._wave.cancel_reason) is not None:
                cancelled = AgentOutcome(False, error_class=ErrorClass.CANCELLED, reason=reason)
                self._end(task, attempt, cancelled, started, None,
                          reformats=contract.reformats if contract else 0)
            raise
        except Exception as exc:  # a runner bug must fail this task, not the whole wave
            outcome = AgentOutcome(False, error_class=ErrorClass.CRASH,
                                   reason=f"agent runner error: {type(exc).__name__}: {exc}")
        outcome, output = _judge(outcome, contract)
        if outcome.ok and self._spaces is not None:
            outcome = await self._deliver(task, outcome)
        if self._end(task, attempt, outcome, started, output,
                     reformats=contract.reformats if contract else 0):
            raise _Held(outcome.reason)
        if not outcome.ok:
            assert outcome.error_class is not None
            raise AttemptFailed(outcome.error_class, outcome.reason,
                                retry_after=outcome.retry_after_s)

    def _rate_limited(self, task_id: str, attempt: int, status: int, delay_s: float) -> None:
        """The agent's CLI got a 429/529 and waits `delay_s` before retrying: so does every
        other new agent, of this wave and any other."""
        if self._ctx.budget is None:
            return
        now = time.time()
        wait = self._ctx.budget.rate_limited(status, f"{status} from task {task_id!r}",
                                             delay_s, now=now)
        # When it was heard and the deadline it asked for, so a reader can set the gate's
        # deadline against the Retry-After without a clock of its own.
        self._ctx.audit.record("wave.rate_limited", run_id=self._run_id, task_id=task_id,
                               attempt=attempt, status=status, retry_delay_s=round(delay_s, 3),
                               gate_s=round(wait, 3), heard_us=int(now * 1e6),
                               until_us=int((now + wait) * 1e6))

    def _end(self, task: TaskSpec, attempt: int, outcome: AgentOutcome, started: float,
             output: str | None, *, reformats: int) -> bool:
        """Record the attempt's end; True when the task went back to pending (held)."""
        ctx, error_class = self._ctx, outcome.error_class
        if error_class == ErrorClass.SESSION_LIMIT and ctx.budget is not None and \
                ctx.budget.usage_limited(outcome.reason) is not None:
            # Not a failure: the task waits, with the whole wave, for the named reset.
            task_state = "pending"
        elif outcome.ok:
            task_state = "succeeded"
        elif error_class == ErrorClass.CANCELLED:
            task_state = "cancelled"
        else:
            task_state = "retrying" if error_class and error_class.retryable else "failed"
        end_fields = dict(
            run_id=self._run_id, task_id=task.id, attempt=attempt, agent_type=task.agent_type,
            outcome="succeeded" if outcome.ok else task_state,
            error_class=error_class and error_class.value,
            duration_ms=int((time.monotonic() - started) * 1000),
            input_tokens=outcome.input_tokens, output_tokens=outcome.output_tokens,
            cache_read_tokens=outcome.cache_read_tokens,
            cache_write_tokens=outcome.cache_write_tokens, model=outcome.model,
            cost_usd=outcome.cost_usd,
            output=digest_text(output) if output is not None else None)
        ctx.state.end_attempt(
            self._run_id, task.id, attempt, outcome="succeeded" if outcome.ok else task_state,
            task_state=task_state, error_class=error_class and error_class.value,
            reason=outcome.reason or None, reformats=reformats,
            input_tokens=outcome.input_tokens, output_tokens=outcome.output_tokens,
            cost_usd=outcome.cost_usd, output=output,
            audit=(ctx.audit, "wave.agent_end", end_fields))
        self._wave.set_status(task.id, task_state)
        if ctx.budget is not None:
            ctx.budget.attempt_ended(self._run_id, task.id, outcome)
        if outcome.ok or error_class in BREAKER_COUNTS:
            ctx.breaker.record(task.agent_type, outcome.ok)
        if task_state == "pending":
            return True
        if error_class is not None and error_class.stops_wave:
            self._wave.stop_wave(f"{error_class.value} error in task {task.id!r}: "
                                 f"{outcome.reason}", error_class)
        return False

    async def _deliver(self, task: TaskSpec, outcome: AgentOutcome) -> AgentOutcome:
        """Merge the task's branch into the result; a conflict is the task's outcome."""
        assert self._spaces is not None
        try:
            await anyio.to_thread.run_sync(self._spaces.deliver, task.id)
        except MergeConflict as exc:
            return dataclasses.replace(outcome, ok=False, error_class=ErrorClass.MERGE_CONFLICT,
                                       reason=exc.reason)
        except OrchestratorError as exc:
            return dataclasses.replace(outcome, ok=False, error_class=ErrorClass.CRASH,
                                       reason=f"could not merge the task's branch: {exc.reason}")
        await anyio.to_thread.run_sync(self._spaces.remove, task.id)
        return outcome

    def _give_up(self, task: TaskSpec, exc: AttemptFailed, tries: int) -> None:
        reason = exc.reason if tries <= 1 else f"gave up after {tries} attempts: {exc.reason}"
        if self._wave.status_of(task.id) in ("pending", "retrying") and \
                self._ctx.state.fail_unstarted(self._run_id, task.id, state="failed",
                                               error_class=exc.error_class.value,
                                               reason=reason):
            self._wave.set_status(task.id, "failed")
        self._wave.task_failed(task.id, reason)

    def _spawned(self, task_id: str, attempt: int, pid: int) -> None:
        self._ctx.resources.attach((self._run_id, task_id), pid)
        self._ctx.state.set_attempt_pid(self._run_id, task_id, attempt, pid)

    def _dependency_results(self, task: TaskSpec) -> list[tuple[str, str]]:
        if not task.depends_on:
            return []
        outputs = {t.task_id: t.output for t in self._ctx.state.tasks(self._run_id)}
        return [(dep, outputs.get(dep) or "") for dep in task.depends_on]


def _judge(outcome: AgentOutcome, contract: Contract | None) -> tuple[AgentOutcome, str | None]:
    """Apply the output contract to a finished agent; returns the outcome and the output."""
    if not outcome.ok:
        return outcome, None
    if contract is None:
        return outcome, outcome.text
    if contract.last.ok:
        return outcome, canonical_json(contract.last.value).decode()
    errors = "; ".join(contract.last.errors)
    return dataclasses.replace(
        outcome, ok=False, error_class=ErrorClass.INVALID_OUTPUT,
        reason=(f"answer did not satisfy output_schema after {contract.reformats} "
                f"reformat request(s): {errors}")), None
