"""Hand-written fakes for testing waves, and plans that use them, without starting agents.

`ScriptedRunner` answers each task from a script (answers, errors, a gate to wait on) and
records what it was asked and how many agents ran at once; `FixedMetrics` stands in for
psutil. Gates are `threading.Event`s so a test may open them from any thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from smart_orchestrator.policy.config import PolicyConfig
from smart_orchestrator.policy.engine import PolicyEngine
from smart_orchestrator.policy.shared import PolicyBreaker, PolicySlots
from smart_orchestrator.resources import SystemSnapshot
from smart_orchestrator.store import SqliteStore
from smart_orchestrator.waves.agents import AgentOutcome, AgentRequest
from smart_orchestrator.waves.recovery import ErrorClass
from smart_orchestrator.waves.sandbox import BashSandbox

__all__ = ["FixedMetrics", "ScriptedRunner", "Step", "policy_engines", "shared_policy"]


@dataclass(frozen=True, slots=True)
class Step:
    """One agent run: its successive answers (the later ones answer reformat requests),
    or an error; optionally after a gate opens."""

    answers: Sequence[str] = ("ok",)
    error: ErrorClass | None = None
    reason: str = "scripted failure"
    gate: threading.Event | None = None
    gate_timeout_s: float = 30.0
    tokens: tuple[int, int] = (10, 5)
    cost_usd: float = 0.001


@dataclass(slots=True)
class Call:
    request: AgentRequest
    follow_ups: list[str] = field(default_factory=list)


UNCONFINED = BashSandbox("off", False, "off: scripted runner runs no commands")


class ScriptedRunner:
    def __init__(self, script: Mapping[str, Step | Sequence[Step]] | None = None, *,
                 default: Step | None = None,
                 probe: Callable[[AgentRequest], None] | None = None,
                 bash_sandbox: BashSandbox = UNCONFINED) -> None:
        self.bash_sandbox = bash_sandbox
        self._script = {k: [v] if isinstance(v, Step) else list(v)
                        for k, v in (script or {}).items()}
        self._default = default or Step()
        self._probe = probe
        self._lock = threading.Lock()
        self.calls: list[Call] = []
        self.events: list[tuple[str, str]] = []  # ("start"|"end", task_id) in order
        self.running = 0
        self.max_running = 0
        self.started = threading.Condition(self._lock)

    def _step(self, request: AgentRequest) -> Step:
        seen = sum(1 for c in self.calls if c.request.task_id == request.task_id
                   and c.request.purpose == request.purpose)
        steps = self._script.get(request.task_id if request.purpose == "task"
                                 else f"undo:{request.task_id}")
        if not steps:
            return self._default
        return steps[min(seen, len(steps) - 1)]

    def wait_started(self, task_id: str, timeout_s: float = 10.0) -> bool:
        with self.started:
            return self.started.wait_for(lambda: ("start", task_id) in self.events, timeout_s)

    def calls_for(self, task_id: str, purpose: str = "task") -> list[Call]:
        with self._lock:
            return [c for c in self.calls
                    if c.request.task_id == task_id and c.request.purpose == purpose]

    async def run(self, request: AgentRequest) -> AgentOutcome:
        if self._probe is not None:
            self._probe(request)
        with self._lock:
            step = self._step(request)
            call = Call(request)
            self.calls.append(call)
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            self.events.append(("start", request.task_id))
            self.started.notify_all()
        try:
            if step.gate is not None:
                opened = await anyio.to_thread.run_sync(step.gate.wait, step.gate_timeout_s,
                                                        abandon_on_cancel=True)
                if not opened:
                    return AgentOutcome(False, error_class=ErrorClass.TIMEOUT,
                                        reason="scripted gate never opened")
            await anyio.lowlevel.checkpoint()
            if step.error is not None:
                return AgentOutcome(False, error_class=step.error, reason=step.reason)
            text = self._converse(step, request, call)
            return AgentOutcome(True, text, input_tokens=step.tokens[0],
                                output_tokens=step.tokens[1], cost_usd=step.cost_usd,
                                turns=1 + len(call.follow_ups), pid=None)
        finally:
            with self._lock:
                self.running -= 1
                self.events.append(("end", request.task_id))

    @staticmethod
    def _converse(step: Step, request: AgentRequest, call: Call) -> str:
        index, text = 0, step.answers[0]
        while request.follow_up is not None:
            follow = request.follow_up(text)
            if follow is None:
                break
            call.follow_ups.append(follow)
            index = min(index + 1, len(step.answers) - 1)
            text = step.answers[index]
        return text


class FixedMetrics:
    """System metrics and process-tree sizes a test sets by hand."""

    def __init__(self, *, available_mib: int = 16_384, total_mib: int = 32_768,
                 cpu_percent: float = 10.0, ok: bool = True) -> None:
        mib = 1024 * 1024
        self.snapshot = SystemSnapshot(ok, available_mib * mib, total_mib * mib, cpu_percent,
                                       4, None if ok else "PermissionError: no /proc")
        self.tree: dict[int, int] = {}

    def system(self) -> SystemSnapshot:
        return self.snapshot

    def trees_rss(self, pids: list[int]) -> dict[int, int]:
        return {pid: self.tree.get(pid, 0) for pid in pids}


def policy_engines(store: SqliteStore, *, clock: Callable[[], float] = time.time,
                   **sections: Any) -> Callable[[], PolicyEngine]:
    """The policy engine waves share with the hooks, on `store`, with `sections` replaced:
    `policy_engines(store, breaker=BreakerPolicy(failure_threshold=2))`."""
    engine = PolicyEngine(store, PolicyConfig()._replace(**sections), project_dir=Path.cwd(),
                          source="wave", clock=clock)
    return lambda: engine


def shared_policy(store: SqliteStore, **sections: Any) -> dict[str, Any]:
    """`WaveService` keyword arguments for a breaker and slots under `sections`."""
    engines = policy_engines(store, **sections)
    return {"breaker": PolicyBreaker(engines), "slots": PolicySlots(engines)}
