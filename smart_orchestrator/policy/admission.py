"""Resource admission for subagents: leases, spawn rate, nesting depth, memory and load.

A lease is taken atomically (BEGIN IMMEDIATE) when every limit has room, so parallel hooks
from any number of sessions never admit more than the limits allow. A lease ends when the
agent finishes (PostToolUse for foreground agents, SubagentStop for background ones), when
the Claude Code process that owns it is gone, or at its TTL, so a crashed session never
holds slots forever. A denied spawn never takes a lease.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NamedTuple

from ..resources import SystemSnapshot, pid_alive
from ..store.base import Store
from ..store.hostid import host_id
from ..store.repos import Census
from .agent_types import canonical_agent_type
from .config import AdmissionPolicy

__all__ = ["Admission", "AdmissionResult", "LeaseRequest"]

MIB = 1024 * 1024
WAVES_SESSION = "waves"  # the session wave agents' leases are filed under
# Limits a team shares, kept in the store itself so every machine applies the same ones
# (`smart-orchestrator store team-limits`); absent or 0: no team limit.
TEAM_MAX_IN_FLIGHT = "team.max_in_flight"
TEAM_SPAWNS_PER_MINUTE = "team.spawns_per_minute"


class LeaseRequest(NamedTuple):
    lease_id: str
    session_id: str
    agent_type: str
    parent_agent_id: str | None
    background: bool
    owner_pid: int | None
    slots: int = 1  # a workflow takes one per agent it may start, all or none
    group: bool = False  # lease ids `<lease_id>#k`, bound to agents as they start


class AdmissionResult(NamedTuple):
    granted: bool
    rule_id: str = ""
    reason: str = ""
    retry_after_s: float | None = None
    waited_s: float = 0.0
    depth: int = 1
    note: str = ""


class Admission:
    def __init__(self, store: Store, policy: AdmissionPolicy, *,
                 clock: Callable[[], float], sleep: Callable[[float], None],
                 metrics: Callable[[], SystemSnapshot], poll_s: float = 0.05) -> None:
        self._store = store
        self._policy = policy
        self._clock = clock
        self._sleep = sleep
        self._metrics = metrics
        self._poll_s = poll_s

    def acquire(self, req: LeaseRequest, *, enforce: bool = True) -> AdmissionResult:
        """Take a lease, waiting up to the policy's wait timeout for room.

        With `enforce=False` (warn mode) it never waits: a spawn over the limits is
        reported as not granted but still leased, because the agent does run.
        """
        if not enforce:
            result = self._try_once(req)
            if not result.granted:
                self._insert(req, result.depth, int(self._clock() * 1e6))
            return result
        start = self._clock()
        deadline = start + self._policy.wait_timeout_s
        while True:
            result = self._try_once(req)
            if result.granted or result.retry_after_s is None or self._clock() >= deadline:
                return _with_wait(result, self._clock() - start)
            # Other sessions' hooks, which may be what frees a slot, use the store meanwhile.
            with self._store.idle():
                self._sleep(min(self._poll_s, max(0.0, deadline - self._clock())))

    def _try_once(self, req: LeaseRequest) -> AdmissionResult:
        p = self._policy
        snap = self._metrics()
        now_us = int(self._clock() * 1e6)
        with self._store.transaction():
            _purge(self._store, now_us, counting=True)
            depth = _depth(self._store, req.parent_agent_id)
            if depth > p.max_depth:
                return AdmissionResult(False, "nesting-depth", f"nesting depth {depth} exceeds "
                                       f"the limit of {p.max_depth}", None, depth=depth)
            census = self._store.leases.census(
                req.session_id, now_us - 60_000_000, owner_gone=_owner_gone,
                limit_keys=(TEAM_MAX_IN_FLIGHT, TEAM_SPAWNS_PER_MINUTE))
            blocked = self._limits(req, snap, now_us, census)
            if blocked is not None:
                return blocked
            self._insert(req, depth, now_us)
        note = "" if snap.ok else (f"system metrics unavailable ({snap.error}): admitting one "
                                   "agent at a time")
        return AdmissionResult(True, depth=depth, note=note)

    def _insert(self, req: LeaseRequest, depth: int, now_us: int) -> None:
        ids = [f"{req.lease_id}#{k}" for k in range(max(1, req.slots))] if req.group \
            else [req.lease_id]
        self._store.leases.put(
            ids, session_id=req.session_id, agent_type=canonical_agent_type(req.agent_type),
            owner_pid=req.owner_pid, depth=depth, background=req.background, now_us=now_us,
            expires_us=now_us + int(self._policy.lease_ttl_s * 1e6))

    def _limits(self, req: LeaseRequest, snap: SystemSnapshot, now_us: int,
                census: Census) -> AdmissionResult | None:
        p = self._policy
        machine, session = census.machine, census.session
        # Without metrics we cannot know what fits: the safe setting is one at a time.
        machine_cap = p.max_in_flight_machine if snap.ok else 1
        need = max(1, req.slots)
        if need > min(p.max_in_flight_session, machine_cap):
            return AdmissionResult(False, "too-many-agents", f"this call would start {need} "
                                   f"agents, more than the limit of "
                                   f"{min(p.max_in_flight_session, machine_cap)} at once")
        wanted = f" (this call needs {need} slots)" if need > 1 else ""
        if session + need > p.max_in_flight_session:
            return _busy("in-flight-session", f"{session} subagents already running in this "
                         f"session (limit {p.max_in_flight_session}){wanted}")
        if machine + need > machine_cap:
            return _busy("in-flight-machine", f"{machine} subagents already running on this "
                         f"machine (limit {machine_cap}){wanted}")
        if snap.ok and snap.available_bytes < p.min_available_memory_mb * MIB:
            return _busy("memory", f"only {snap.available_bytes // MIB} MiB of memory available"
                         f" (need {p.min_available_memory_mb} MiB)")
        load = _load_percent()
        if load is not None and load > p.max_load_percent:
            return _busy("cpu-load", f"CPU load {load:.0f}% per core exceeds "
                         f"{p.max_load_percent:.0f}%")
        window_start = now_us - 60_000_000
        recent = census.session_spawns, census.session_oldest_us
        if recent[0] + need > p.spawns_per_minute:
            wait = max(0.1, ((recent[1] or now_us) - window_start) / 1e6)
            return AdmissionResult(False, "spawn-rate", f"{recent[0]} spawns in the last minute "
                                   f"(limit {p.spawns_per_minute})", wait)
        return self._team_limits(need, wanted, now_us, census)

    def _team_limits(self, need: int, wanted: str, now_us: int,
                     census: Census) -> AdmissionResult | None:
        """The limits every machine sharing this store counts against together."""
        team_max, team_rate = (_limit(v) for v in census.limits)
        if team_max:
            running = census.team
            if running + need > team_max:
                return _busy("in-flight-team", f"{running} subagents already running across "
                             f"the team (limit {team_max}){wanted}")
        if team_rate:
            window_start = now_us - 60_000_000
            count, oldest = census.team_spawns, census.team_oldest_us
            if count + need > team_rate:
                wait = max(0.1, ((oldest or now_us) - window_start) / 1e6)
                return AdmissionResult(False, "spawn-rate-team", f"{count} spawns across the "
                                       f"team in the last minute (limit {team_rate})", wait)
        return None

    def take_machine_slot(self, lease_id: str, agent_type: str, *, enforce: bool = True,
                          owner_pid: int | None = None) -> str | None:
        """A lease for an agent the hooks do not see start (a wave's), counted against the
        machine-wide limit only: the wave applies its own memory and CPU checks. Returns
        why there is no room, or None once the lease is taken. Warn mode always leases."""
        p = self._policy
        now_us = int(self._clock() * 1e6)
        with self._store.transaction():
            _purge(self._store, now_us)
            machine = self._store.leases.count(host=host_id())
            if enforce and machine >= p.max_in_flight_machine:
                return (f"{machine} agents already running on this machine, subagents and "
                        f"wave agents together (limit {p.max_in_flight_machine})")
            team_max = team_limits(self._store)[0]
            running = self._store.leases.count() if team_max else 0
            if enforce and team_max and running >= team_max:
                return (f"{running} agents already running across the team "
                        f"(limit {team_max})")
            self._insert(LeaseRequest(
                lease_id, WAVES_SESSION, agent_type, None, True,
                owner_pid if owner_pid is not None else os.getpid()), 1, now_us)
        return None

    # -- lifecycle -------------------------------------------------------------------
    def attach_agent(self, lease_id: str, agent_id: str, now_us: int) -> bool:
        """A background launch names its agent: bind it, unless it already stopped.
        Returns whether it had stopped (its SubagentStop was decided first)."""
        leases = self._store.leases
        with self._store.transaction():
            if stopped := bool(leases.agent_stopped(agent_id)):
                leases.delete(lease_id)
            else:
                leases.bind(lease_id, agent_id)
        return stopped

    def bind(self, lease_id: str, agent_id: str) -> bool:
        """Bind a lease to an agent known to be running now, whatever the agents table
        says (a resumed agent's second SubagentStart may not have been recorded)."""
        return self._store.leases.bind(lease_id, agent_id)

    def note_started(self, session_id: str, agent_id: str, agent_type: str,
                     now_us: int) -> int:
        """Remember a started agent and its depth, for nested spawns it may make.

        SubagentStart does not say which tool call it belongs to, so the depth is that of
        the newest lease of the same type in the session; leases are never bound here,
        because a wrong guess would release the wrong one.
        """
        agent_type = canonical_agent_type(agent_type)
        leases = self._store.leases
        with self._store.transaction():
            depth = leases.newest_depth(session_id, agent_type) or 1
            leases.agent_started(agent_id, session_id, agent_type, depth, now_us)
        return depth

    # -- agents that no PreToolUse names: a workflow's -------------------------------------
    def bind_unnamed(self, session_id: str, agent_type: str, agent_id: str) -> bool:
        """Give a started agent one of the unbound leases its launcher took for it."""
        return self._store.leases.bind_unnamed(session_id, canonical_agent_type(agent_type),
                                               agent_id)

    def rename_group(self, old_prefix: str, new_prefix: str) -> int:
        """Re-file a group of leases (`<prefix>#k`) under a new name, e.g. a task id."""
        return self._store.leases.rename_group(old_prefix, new_prefix)

    def release_group(self, prefix: str) -> int:
        return self._store.leases.delete_group(prefix)

    def groups(self, session_id: str, marker: str) -> set[str]:
        """The prefixes of the session's lease groups whose names start with `marker`."""
        return {i.rpartition("#")[0] for i in self._store.leases.ids(session_id, marker)
                if "#" in i}

    def release(self, *, lease_id: str | None = None, agent_id: str | None = None,
                now_us: int = 0) -> bool:
        """End a lease by its tool call (foreground) or by its bound agent (background)."""
        leases = self._store.leases
        with self._store.transaction():
            if agent_id:
                leases.agent_ended(agent_id, now_us)
            if lease_id:
                return leases.delete(lease_id)
            return leases.delete_agent(agent_id or "")

    def release_finished(self, session_id: str, running: set[str]) -> int:
        """Background agents' leases whose agent is no longer running (stopped by TaskStop,
        or ended without a SubagentStop that reached us)."""
        leases = self._store.leases
        with self._store.transaction():
            gone = [lease for lease, agent in leases.bound(session_id) if agent not in running]
            for lease_id in gone:
                leases.delete(lease_id)
        return len(gone)

    def agent_running(self, agent_id: str) -> bool:
        """Started and not stopped: a message to it queues, it starts nothing."""
        return self._store.leases.agent_stopped(agent_id) is False

    def release_session(self, session_id: str) -> int:
        return self._store.leases.delete_session(session_id)

    def in_flight(self) -> list[tuple[str, str, str | None, int, int]]:
        now_us = int(self._clock() * 1e6)
        with self._store.transaction():
            _purge(self._store, now_us)
            rows = self._store.leases.rows()
        return [(r.session_id, r.agent_type, r.agent_id, r.depth, r.acquired_us) for r in rows]


def team_limits(store: Store) -> tuple[int, int]:
    """(agents in flight, spawns per minute) across the team; 0 where there is none."""
    return _limit(store.kv_get(TEAM_MAX_IN_FLIGHT)), _limit(store.kv_get(TEAM_SPAWNS_PER_MINUTE))


def _limit(text: str | None) -> int:
    try:
        return max(0, int(text or 0))
    except ValueError:
        return 1  # a damaged limit is the strictest one, not none


def _busy(rule: str, reason: str) -> AdmissionResult:
    return AdmissionResult(False, rule, reason, retry_after_s=5.0)


def _with_wait(result: AdmissionResult, waited: float) -> AdmissionResult:
    return AdmissionResult(result.granted, result.rule_id, result.reason, result.retry_after_s,
                           waited, result.depth, result.note)


def _depth(store: Store, parent_agent_id: str | None) -> int:
    if not parent_agent_id:
        return 1
    return (store.leases.agent_depth(parent_agent_id) or 1) + 1


def _owner_gone(pid: int) -> bool:
    return not pid_alive(pid)


def _purge(store: Store, now_us: int, *, counting: bool = False) -> None:
    """With `counting`, the census that follows drops leases whose owner is gone."""
    store.leases.purge(now_us, spawns_before_us=now_us - 120_000_000,
                       owner_gone=None if counting else _owner_gone)


def _load_percent() -> float | None:
    try:
        load1 = os.getloadavg()[0]
    except OSError:
        return None
    return load1 / (os.cpu_count() or 1) * 100.0
