"""Repositories: one Protocol per kind of state, implemented by every backend.

Callers hold a `Store` and reach each kind of state through its repository
(`store.leases`, `store.breakers`, ...). A repository method is one statement's worth of
work; atomicity across several comes from `store.transaction()`, which nests (an inner one
is a savepoint), so a caller composes methods of any repositories, and audit appends, into
one unit that commits or rolls back whole. No SQL, and no backend's JSON functions, leave
the backends: filters on event fields are passed as values (`match`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from .base import AuditRecord

__all__ = [
    "AttemptRow",
    "AuditQueries",
    "BreakerRepo",
    "BreakerRow",
    "Census",
    "ClaimRepo",
    "GateRepo",
    "GateRow",
    "LeaseRepo",
    "LeaseRow",
    "LedgerRepo",
    "LedgerRow",
    "LedgerUsage",
    "RateGateRepo",
    "RateGateRow",
    "RunRow",
    "TaskRow",
    "TrustRepo",
    "TrustRow",
    "WaveRepo",
]


# -- audit reads ---------------------------------------------------------------------------
class AuditQueries(Protocol):
    """Reads of the audit chain for presentation and checks (writes go through
    `Store.append_audit`). `match` keeps events whose data field equals the value."""

    def events(self, *, kinds: Sequence[str] | None = None, kind_prefix: str | None = None,
               match: Mapping[str, str] | None = None, since_us: int | None = None,
               until_us: int | None = None, limit: int | None = None,
               newest_first: bool = False) -> list[AuditRecord]: ...

    def count(self, *, kind_prefix: str | None = None,
              match: Mapping[str, str] | None = None) -> int: ...

    def first_seq(self, *, kind_prefix: str, last: int) -> int | None:
        """The seq of the oldest of the newest `last` events of this kind prefix."""
        ...

    def hash_at(self, seq: int) -> str | None: ...

    def tail(self) -> tuple[int, str]:
        """(seq, hash) of the newest row, (0, genesis) when there is none."""
        ...


# -- admission -----------------------------------------------------------------------------
class LeaseRow(NamedTuple):
    id: str
    session_id: str
    agent_type: str
    agent_id: str | None
    depth: int
    acquired_us: int
    background: bool
    host: str


class Census(NamedTuple):
    """What admission counts, read together: leases in flight on this machine, in the
    session and in all; spawns after the window's start by the session and by all, with
    the oldest of each; and the values of the limit keys asked for (None when unset)."""

    machine: int
    session: int
    team: int
    session_spawns: int
    session_oldest_us: int | None
    team_spawns: int
    team_oldest_us: int | None
    limits: tuple[str | None, ...]


class LeaseRepo(Protocol):
    """Admission leases, the spawn-rate log and the agents seen started."""

    def purge(self, now_us: int, *, spawns_before_us: int,
              owner_gone: Callable[[int], bool] | None) -> None:
        """Drop expired leases, old spawns, and this host's leases whose owner is gone
        (`owner_gone` None: leave those to `census`)."""
        ...

    def census(self, session_id: str, since_us: int, *, owner_gone: Callable[[int], bool],
               limit_keys: Sequence[str] = ()) -> Census:
        """Drop this host's leases whose owner is gone, then count (see `Census`); the
        reads go out together, so a distant store answers them in one round trip."""
        ...

    def count(self, *, session_id: str | None = None, host: str | None = None) -> int: ...

    def put(self, lease_ids: Sequence[str], *, session_id: str, agent_type: str,
            owner_pid: int | None, depth: int, background: bool, now_us: int,
            expires_us: int) -> None:
        """Insert (or replace) the leases and log one spawn per lease."""
        ...

    def recent_spawns(self, session_id: str | None, since_us: int) -> tuple[int, int | None]:
        """(count, oldest ts_us) of the session's (None: everyone's) spawns after
        `since_us`."""
        ...

    def exists(self, lease_id: str) -> bool: ...

    def delete(self, lease_id: str) -> bool: ...

    def delete_agent(self, agent_id: str) -> bool: ...

    def delete_session(self, session_id: str) -> int: ...

    def delete_host(self, host: str) -> int:
        """Every lease a machine holds (one that died: its pids cannot be checked)."""
        ...

    def bind(self, lease_id: str, agent_id: str) -> bool: ...

    def bind_unnamed(self, session_id: str, agent_type: str, agent_id: str) -> bool:
        """Bind the oldest unbound group lease (`<prefix>#k`) of this type."""
        ...

    def rename_group(self, old_prefix: str, new_prefix: str) -> int: ...

    def delete_group(self, prefix: str) -> int: ...

    def ids(self, session_id: str, prefix: str) -> list[str]: ...

    def bound(self, session_id: str) -> list[tuple[str, str]]:
        """(lease id, agent id) of the session's bound single (non-group) leases."""
        ...

    def newest_depth(self, session_id: str, agent_type: str) -> int | None: ...

    def rows(self) -> list[LeaseRow]: ...

    # Agents seen started, for nesting depth and resumption.
    def agent_depth(self, agent_id: str) -> int | None: ...

    def agent_stopped(self, agent_id: str) -> bool | None:
        """None when never seen."""
        ...

    def agent_started(self, agent_id: str, session_id: str, agent_type: str, depth: int,
                      now_us: int) -> None: ...

    def agent_ended(self, agent_id: str, now_us: int) -> None: ...


# -- breakers ------------------------------------------------------------------------------
class BreakerRow(NamedTuple):
    agent_type: str
    state: str
    opened_us: int | None
    failures: tuple[float, ...]
    trial_owner: str | None
    trial_expires_us: int | None


class BreakerRepo(Protocol):
    def get(self, agent_type: str) -> BreakerRow | None: ...

    def start_trial(self, agent_type: str, owner: str, expires_us: int) -> None: ...

    def hand_trial(self, agent_type: str, owner: str, new_owner: str,
                   expires_us: int) -> bool: ...

    def release_trial(self, agent_type: str, owner: str) -> bool:
        """half_open (owned by `owner`) -> open with the old opening time."""
        ...

    def put(self, agent_type: str, state: str, opened_us: int | None,
            failures: Sequence[float]) -> None:
        """Set state and failures; `opened_us` None keeps the old one. Clears the trial."""
        ...

    def rows(self) -> list[BreakerRow]: ...


# -- claims --------------------------------------------------------------------------------
class ClaimRepo(Protocol):
    """Exactly-once claims of a hook event and the decision made for it."""

    def claim(self, key: str, owner: str, now_us: int, *,
              prune_before_us: int | None = None) -> bool: ...

    def get(self, key: str) -> tuple[str, str | None] | None:
        """(owner, recorded decision text) of a claim."""
        ...

    def record(self, key: str, owner: str, decision: str) -> None: ...


# -- policy trust and pins -----------------------------------------------------------------
class TrustRow(NamedTuple):
    config: str  # JSON of the policy values
    digest: str
    origin: str
    updated_us: int


class TrustRepo(Protocol):
    def trusted(self, project: str) -> TrustRow | None: ...

    def set_trusted(self, project: str, config: str, digest: str, origin: str,
                    now_us: int) -> None: ...

    def pin(self, session_id: str) -> str | None: ...

    def latest_pin(self, project: str) -> tuple[str, str, str] | None:
        """(session id, config, digest) of the newest pin of the project."""
        ...

    def add_pin(self, session_id: str, project: str, config: str, digest: str,
                now_us: int) -> None: ...

    def set_pin(self, session_id: str, config: str, digest: str) -> None: ...

    def first_time(self, session_id: str, change: str, now_us: int) -> bool:
        """Record a change once per session; True the first time."""
        ...


# -- waves ---------------------------------------------------------------------------------
class RunRow(NamedTuple):
    run_id: str
    name: str | None
    state: str
    created_us: int
    updated_us: int
    finished_us: int | None
    plan_json: str
    options: str
    owner: str | None
    reason: str | None
    stop_class: str | None
    stats: str


class TaskRow(NamedTuple):
    task_id: str
    position: int
    state: str
    attempts: int
    started_us: int | None
    finished_us: int | None
    input_tokens: int
    output_tokens: int
    cost_usd: float
    error_class: str | None
    reason: str | None
    output: str | None
    compensation: str | None
    compensation_reason: str | None


class AttemptRow(NamedTuple):
    task_id: str
    attempt: int
    context: str
    started_us: int
    finished_us: int | None
    outcome: str | None
    error_class: str | None
    reason: str | None
    reformats: int
    pid: int | None


class WaveRepo(Protocol):
    """Runs, tasks and attempts. Each transition is a compare-and-set on the state it
    leaves and says whether it applied."""

    def available(self) -> bool:
        """False for a store written before waves existed (opened read-only)."""
        ...

    def create_run(self, run: RunRow, task_ids: Sequence[str]) -> None: ...

    def run(self, run_id: str) -> RunRow | None: ...

    def runs(self, *, limit: int, state: str | None = None) -> list[RunRow]: ...

    def next_run_after(self, created_us: int) -> int | None: ...

    def set_owner(self, run_id: str, owner: str | None, previous: str | None,
                  now_us: int) -> bool: ...

    def set_state(self, run_id: str, state: str, reason: str | None, stop_class: str | None,
                  now_us: int, finished_us: int | None) -> None: ...

    def merge_stats(self, run_id: str, stats: Mapping[str, Any]) -> None: ...

    def tasks(self, run_id: str) -> list[TaskRow]: ...

    def attempts(self, run_id: str) -> list[AttemptRow]: ...

    def start_attempt(self, run_id: str, task_id: str, context: str | None,
                      now_us: int) -> int | None:
        """pending/retrying -> running; the attempt number, None when not startable."""
        ...

    def set_attempt_pid(self, run_id: str, task_id: str, attempt: int, pid: int) -> None: ...

    def end_attempt(self, run_id: str, task_id: str, attempt: int, *, outcome: str,
                    task_state: str, finished_us: int | None, now_us: int,
                    error_class: str | None, reason: str | None, reformats: int,
                    input_tokens: int, output_tokens: int, cost_usd: float,
                    output: str | None) -> bool: ...

    def fail_unstarted(self, run_id: str, task_id: str, *, state: str,
                       error_class: str | None, reason: str | None, now_us: int) -> bool: ...

    def reset_interrupted(self, run_id: str, note: str, now_us: int) -> list[str]: ...

    def reset_task(self, run_id: str, task_id: str, note: str, now_us: int) -> bool:
        """One running/retrying task back to pending, its open attempt closed
        `interrupted`; False when the task was in another state."""
        ...

    def set_compensation(self, run_id: str, task_id: str, status: str,
                         reason: str | None) -> None: ...


# -- gate results --------------------------------------------------------------------------
class GateRow(NamedTuple):
    status: str
    exit_code: int | None
    duration_ms: int
    output_tail: str
    output_sha256: str
    output_bytes: int


class GateRepo(Protocol):
    def get(self, tree: str, key: str) -> GateRow | None: ...

    def put(self, tree: str, key: str, name: str, tier: int, row: GateRow, *, now_us: int,
            keep_after_us: int) -> None: ...


# -- the token and dollar ledger -----------------------------------------------------------
class LedgerRow(NamedTuple):
    """One agent's reservation and, once settled, its real usage. `charged_usd` is what
    counts against caps: the estimate while reserved, the real cost once settled."""

    id: str
    session_id: str
    project: str
    host: str
    agent_id: str | None
    agent_type: str
    kind: str  # what similar tasks share, for estimates from history
    model: str
    state: str  # reserved | settled | abandoned
    reserved_usd: float
    reserved_tokens: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float
    priced: str  # "table:<family>" or "unknown:<model>"
    source: str  # native | wave
    run_id: str | None
    task_id: str | None
    created_us: int
    settled_us: int | None

    @property
    def charged_usd(self) -> float:
        return self.reserved_usd if self.state == "reserved" else self.cost_usd

    @property
    def total_tokens(self) -> int:
        return (self.input_tokens + self.output_tokens + self.cache_read_tokens
                + self.cache_write_tokens)


class LedgerUsage(NamedTuple):
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float
    model: str
    priced: str


class LedgerRepo(Protocol):
    """Reservations settle exactly once: `settle` and `abandon` are compare-and-sets on the
    reserved state. Callers check a cap and reserve inside one `store.transaction()`."""

    def reserve(self, row: LedgerRow) -> bool:
        """Insert a reservation; False when the id is already there (a replayed hook)."""
        ...

    def bind(self, entry_id: str, agent_id: str) -> bool: ...

    def open_for_agent(self, agent_id: str) -> str | None:
        """The id of the agent's reservation not settled yet."""
        ...

    def open_ids(self, session_id: str) -> list[str]: ...

    def settle(self, entry_id: str, usage: LedgerUsage, now_us: int) -> bool: ...

    def abandon(self, entry_id: str, now_us: int) -> bool:
        """Close a reservation whose usage will never be known: its estimate stays charged."""
        ...

    def get(self, entry_id: str) -> LedgerRow | None: ...

    def charged(self, *, since_us: int | None = None, session_id: str | None = None,
                project: str | None = None, host: str | None = None) -> tuple[float, int]:
        """(dollars, entries) charged by the rows created since `since_us` that match."""
        ...

    def history(self, kind: str, *, limit: int, prefix: bool = False) -> list[LedgerRow]:
        """The newest settled rows of this kind (of kinds starting so, with `prefix`),
        agents that never started left out."""
        ...

    def rows(self, *, session_id: str | None = None, run_id: str | None = None,
             since_us: int | None = None, limit: int = 500) -> list[LedgerRow]: ...


# -- the shared rate-limit gate ------------------------------------------------------------
class RateGateRow(NamedTuple):
    scope: str
    until_us: int
    status: int
    reason: str
    updated_us: int


class RateGateRepo(Protocol):
    """When new agents may start again after a rate limit anyone hit."""

    def get(self, scope: str) -> RateGateRow | None: ...

    def close_until(self, scope: str, until_us: int, status: int, reason: str,
                    now_us: int) -> RateGateRow:
        """Hold the gate closed until `until_us`, or later if it already is; the row now."""
        ...
