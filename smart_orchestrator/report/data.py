"""Everything a run report shows, read from the store: the wave, its attempts, its gates.

Read-only. A wave the store still calls running whose server is gone is reported as
`interrupted`, exactly as `wave_status` would.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..audit import AuditLog, VerifyReport
from ..errors import OrchestratorError
from ..store.base import Store
from ..waves.owner import owner_alive, owner_token
from ..waves.snapshot import RunSummary, WaveSnapshot, snapshot, summary
from ..waves.state import AttemptRecord, WaveState

__all__ = [
    "AttemptCost",
    "GateCheckRow",
    "GateRun",
    "RunData",
    "latest_run_id",
    "list_wave_runs",
    "load_run",
    "wave_snapshot",
]


@dataclass(frozen=True, slots=True)
class AttemptCost:
    """Tokens and cost of one attempt, from its `wave.agent_end` audit event."""

    input_tokens: int
    output_tokens: int
    cost_usd: float
    duration_ms: int | None


@dataclass(frozen=True, slots=True)
class GateCheckRow:
    name: str
    tier: int
    status: str
    exit_code: int | None
    duration_ms: int | None


@dataclass(frozen=True, slots=True)
class GateRun:
    """One gate evaluation: its verdict and the checks it ran (cached ones are not listed)."""

    ts_us: int
    tree: str
    passed: bool
    blocking_tier: int | None
    reason: str
    ran: int
    cached: int
    checks: tuple[GateCheckRow, ...]


@dataclass(frozen=True, slots=True)
class RunData:
    snapshot: WaveSnapshot
    attempts: tuple[AttemptRecord, ...]
    attempt_costs: dict[tuple[str, int], AttemptCost]
    gates: tuple[GateRun, ...]
    # The end of the window gate evaluations were taken from (the next wave, or now).
    gates_until_us: int
    audit_events: int
    audit: VerifyReport
    generated_us: int
    # The ledger's rows of the run: per agent, the token split and dollars by model.
    ledger: tuple[dict[str, Any], ...] = ()


def _require_wave_tables(store: Store) -> None:
    if not store.waves.available():
        raise OrchestratorError(f"{store.location} has no waves yet",
                                hint="waves are recorded once spawn_wave has run")


def wave_snapshot(store: Store, run_id: str, *, output_chars: int = 0) -> WaveSnapshot:
    _require_wave_tables(store)
    state = WaveState(store)
    run = state.run(run_id)
    return snapshot(run, state.tasks(run_id), state.attempts(run_id), live=None,
                    owner_alive=owner_alive(run.owner, owner_token()), admission=None,
                    version=0, output_chars=output_chars)


def list_wave_runs(store: Store, *, limit: int = 20,
                   state: str | None = None) -> list[RunSummary]:
    _require_wave_tables(store)
    waves, me = WaveState(store), owner_token()
    return [summary(r, waves.tasks(r.run_id), live=False,
                    owner_alive=owner_alive(r.owner, me))
            for r in waves.list_runs(limit=limit, state=state)]


def latest_run_id(store: Store) -> str:
    runs = list_wave_runs(store, limit=1)
    if not runs:
        raise OrchestratorError("no wave has run yet", hint="start one with spawn_wave")
    return runs[0].run_id


def load_run(store: Store, run_id: str, *, now_us: int | None = None) -> RunData:
    now = now_us if now_us is not None else time.time_ns() // 1000
    snap = wave_snapshot(store, run_id)
    attempts = tuple(WaveState(store).attempts(run_id))
    until = _next_wave_start(store, snap.created_us) or now
    return RunData(snapshot=snap, attempts=attempts, attempt_costs=_attempt_costs(store, run_id),
                   gates=_gates(store, snap.created_us, until), gates_until_us=until,
                   audit_events=_count_events(store, run_id),
                   audit=AuditLog(store).verify(), generated_us=now,
                   ledger=_ledger(store, run_id))


def _ledger(store: Store, run_id: str) -> tuple[dict[str, Any], ...]:
    from ..budget.summary import agent_row
    from ..errors import StoreError

    try:
        return tuple(agent_row(r) for r in store.ledger.rows(run_id=run_id))
    except StoreError:  # a store from before the ledger, opened read-only
        return ()




def _attempt_costs(store: Store, run_id: str) -> dict[tuple[str, int], AttemptCost]:
    out: dict[tuple[str, int], AttemptCost] = {}
    for rec in store.audit.events(kinds=("wave.agent_end",), match={"run_id": run_id}):
        d = rec.data
        if d.get("attempt") is None:
            continue
        out[(str(d.get("task_id")), int(d["attempt"]))] = AttemptCost(
            int(d.get("input_tokens") or 0), int(d.get("output_tokens") or 0),
            float(d.get("cost_usd") or 0.0), d.get("duration_ms"))
    return out


def _count_events(store: Store, run_id: str) -> int:
    return store.audit.count(kind_prefix="wave.", match={"run_id": run_id})


def _next_wave_start(store: Store, created_us: int) -> int | None:
    return store.waves.next_run_after(created_us)


def _gates(store: Store, since_us: int, until_us: int) -> tuple[GateRun, ...]:
    runs: list[GateRun] = []
    pending: list[GateCheckRow] = []
    for rec in store.audit.events(kinds=("gate.check", "gate.result"), since_us=since_us,
                                  until_us=until_us):
        ts, kind, d = rec.ts_us, rec.kind, rec.data
        if kind == "gate.check":
            pending.append(GateCheckRow(str(d.get("name")), int(d.get("tier") or 0),
                                        str(d.get("status")), d.get("exit_code"),
                                        d.get("duration_ms")))
            continue
        runs.append(GateRun(ts, str(d.get("tree") or ""), bool(d.get("passed")),
                            d.get("blocking_tier"), str(d.get("reason") or ""),
                            int(d.get("ran") or 0), int(d.get("cached") or 0),
                            tuple(pending)))
        pending = []
    return tuple(runs)
