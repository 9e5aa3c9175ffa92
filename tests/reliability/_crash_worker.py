"""A process that drives one wave with stand-in agents, to be killed by the crash suite.

Run as `python -m tests.reliability._crash_worker DB PLAN_JSON CWD SEED`. It prints the
run id as soon as the wave is stored, then drives it; the test SIGKILLs it at a random
moment. The agents are coroutines of this process (they die with it), take a random
short time, and some fail once with a retryable error, so a kill can land in any state.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
from typing import Any

import anyio

from smart_orchestrator.policy.config import BreakerPolicy
from smart_orchestrator.store import SqliteStore
from smart_orchestrator.waves import WaveConfig, WavePlan, WaveService
from smart_orchestrator.waves.admission import MIB, AdmissionConfig
from smart_orchestrator.waves.agents import AgentOutcome, AgentRequest
from smart_orchestrator.waves.recovery import ErrorClass, RetryPolicy
from smart_orchestrator.waves.sandbox import BashSandbox
from tests.wave_fakes import FixedMetrics, shared_policy

KILL_BEFORE_AUDIT = "SMART_ORCHESTRATOR_TEST_KILL_BEFORE_AUDIT"


class SleepyRunner:
    """Answers after a random pause; with `flaky`, some first attempts fail (retryable)."""

    def __init__(self, seed: int, *, flaky: bool) -> None:
        self._rng = random.Random(seed)
        self._flaky = flaky
        self.ran: list[tuple[str, int]] = []
        self.bash_sandbox = BashSandbox("off", False, "off: sleepy runner")

    async def run(self, request: AgentRequest) -> AgentOutcome:
        self.ran.append((request.task_id, request.attempt))
        await anyio.sleep(self._rng.uniform(0.02, 0.25))
        if self._flaky and request.attempt == 1 and self._rng.random() < 0.2:
            return AgentOutcome(False, error_class=ErrorClass.SERVER,
                                reason="scripted 529 overloaded")
        return AgentOutcome(True, f"result of {request.task_id}", input_tokens=10,
                            output_tokens=5, turns=1)


def service(db: str, runner: SleepyRunner) -> WaveService:
    config = WaveConfig(admission=AdmissionConfig(max_agents=3, reserve_bytes=0,
                                                  memory_budget_bytes=4096 * MIB),
                        retry=RetryPolicy(initial_s=0.01, max_backoff_s=0.05),
                        tick_s=0.01, sample_s=0.05)
    store = SqliteStore(db)
    # The breaker is not what is tested here.
    return WaveService(store, runner, config, metrics=FixedMetrics(),
                       **shared_policy(store, breaker=BreakerPolicy(mode="off")))


def _kill_before_audit(kind: str) -> None:
    """Die by SIGKILL just before the audit row `kind` is written: a kill at that instant."""
    from smart_orchestrator.audit import AuditLog

    record = AuditLog.record

    def dying(self: AuditLog, event: str, **fields: Any) -> Any:
        if event == kind:
            os.kill(os.getpid(), signal.SIGKILL)
        return record(self, event, **fields)

    # A test's stand-in for a kill at that instant, inside a transaction or not.
    setattr(AuditLog, "record", dying)  # noqa: B010


def main(db: str, plan_file: str, cwd: str, seed: int) -> None:
    if os.environ.get(KILL_BEFORE_AUDIT):
        _kill_before_audit(os.environ[KILL_BEFORE_AUDIT])
    with open(plan_file, encoding="utf-8") as fh:
        plan = WavePlan.model_validate(json.load(fh))
    waves = service(db, SleepyRunner(seed, flaky=True))
    run_id = waves.spawn(plan, cwd=cwd)
    print(run_id, flush=True)
    waves.wait_until_done(run_id, 120)
    print("done", flush=True)
    waves.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
