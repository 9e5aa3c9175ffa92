"""What `wave_status` and `list_runs` report, built from the store and the live driver.

A wave the store still calls running whose driving server is gone is reported as
`interrupted`, with the way out (`resume_wave`), never as running. These models are also
the MCP tools' output schemas.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from .plan import dependency_levels
from .state import TERMINAL_RUN_STATES, AttemptRecord, RunRecord, TaskRecord

if TYPE_CHECKING:
    from .admission import AdmissionStats
    from .scheduler import WaveRun

__all__ = ["RunList", "RunSummary", "TaskView", "WaveSnapshot", "snapshot", "summary"]


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class TaskView(_View):
    id: str
    state: str
    level: int = Field(description="the task's dependency level (wave), from 0")
    depends_on: tuple[str, ...]
    attempts: int
    reformats: int
    started_us: int | None
    finished_us: int | None
    duration_s: float | None
    input_tokens: int
    output_tokens: int
    cost_usd: float
    error_class: str | None
    reason: str | None
    output: str | None = Field(description="the result, cut to output_chars")
    output_chars: int = Field(description="length of the whole result")
    compensation: str | None
    compensation_reason: str | None


class WaveSnapshot(_View):
    run_id: str
    name: str | None
    state: str = Field(description="running, cancelling, compensating, interrupted (resume it), "
                                   "completed, failed, partial or cancelled")
    reason: str | None
    stop_class: str | None
    created_us: int
    finished_us: int | None
    counts: dict[str, int]
    tasks: tuple[TaskView, ...]
    levels: list[list[str]]
    admission: str | None
    stats: dict[str, Any]
    version: int = Field(description="grows with every change to the wave")
    preview: dict[str, Any] | None = Field(
        default=None, description="with spawn_wave(preview=true) only, when nothing ran: agents x "
        "model x expected tokens and dollars with each estimate's basis, each cap's share, "
        "and `confirm` (ask the user first)")

    @property
    def done(self) -> bool:
        return self.state in TERMINAL_RUN_STATES or self.state == "interrupted"


class RunSummary(_View):
    run_id: str
    name: str | None
    state: str
    reason: str | None
    created_us: int
    finished_us: int | None
    counts: dict[str, int]


class RunList(_View):
    runs: list[RunSummary]


def _effective_state(run: RunRecord, *, live: bool, owner_alive: bool) -> tuple[str, str | None]:
    if run.state in TERMINAL_RUN_STATES or live or owner_alive:
        return run.state, run.reason
    return "interrupted", (f"the server driving this wave stopped while it was {run.state}; "
                           "resume_wave continues it")


def _admission_note(live: WaveRun | None, admission: AdmissionStats | None) -> str | None:
    if admission is None:
        return None
    notes = []
    if admission.degraded:
        notes.append(admission.degraded)
    if live is not None and live.waiting_reason:
        notes.append(f"waiting to start more: {live.waiting_reason}")
    mib = 1024 * 1024
    notes.append(f"{admission.running} agents running; budget {admission.budget_bytes // mib} "
                 f"MiB, ~{admission.estimate_bytes // mib} MiB per agent, peak "
                 f"{admission.peak_total_bytes // mib} MiB")
    return "; ".join(notes)


def snapshot(run: RunRecord, tasks: Sequence[TaskRecord], attempts: Sequence[AttemptRecord],
             *, live: WaveRun | None, owner_alive: bool, admission: AdmissionStats | None,
             version: int, output_chars: int) -> WaveSnapshot:
    plan = run.plan()
    level_of = {tid: i for i, level in enumerate(dependency_levels(plan)) for tid in level}
    reformats = Counter[str]()
    for a in attempts:
        reformats[a.task_id] += a.reformats
    views = tuple(_view(t, plan.task(t.task_id).depends_on, level_of[t.task_id],
                        reformats[t.task_id], output_chars) for t in tasks)
    state, reason = _effective_state(run, live=live is not None, owner_alive=owner_alive)
    return WaveSnapshot(
        run_id=run.run_id, name=run.name, state=state, reason=reason,
        stop_class=run.stop_class, created_us=run.created_us, finished_us=run.finished_us,
        counts=dict(Counter(t.state for t in tasks)), tasks=views,
        levels=dependency_levels(plan),
        admission=_admission_note(live, admission) if live is not None else None,
        stats=run.stats, version=version)


def _view(t: TaskRecord, deps: list[str], level: int, reformats: int,
          output_chars: int) -> TaskView:
    duration = None
    if t.started_us is not None and t.finished_us is not None:
        duration = round((t.finished_us - t.started_us) / 1e6, 3)
    output = t.output if output_chars > 0 else None
    if output is not None and len(output) > output_chars:
        output = output[:output_chars]
    return TaskView(
        id=t.task_id, state=t.state, level=level, depends_on=tuple(deps),
        attempts=t.attempts, reformats=reformats, started_us=t.started_us,
        finished_us=t.finished_us, duration_s=duration, input_tokens=t.input_tokens,
        output_tokens=t.output_tokens, cost_usd=round(t.cost_usd, 6),
        error_class=t.error_class, reason=t.reason, output=output,
        output_chars=len(t.output or ""), compensation=t.compensation,
        compensation_reason=t.compensation_reason)


def summary(run: RunRecord, tasks: Sequence[TaskRecord], *, live: bool,
            owner_alive: bool) -> RunSummary:
    state, reason = _effective_state(run, live=live, owner_alive=owner_alive)
    return RunSummary(run_id=run.run_id, name=run.name, state=state, reason=reason,
                      created_us=run.created_us, finished_us=run.finished_us,
                      counts=dict(Counter(t.state for t in tasks)))
