"""Resource admission for subagents: leases, spawn rate, nesting depth, memory and load.

A lease is taken atomically (BEGIN IMMEDIATE) when every limit has room, so parallel hooks
from any number of sessions never admit more than the limits allow. A lease ends when the
agent finishes (PostToolUse for foreground agents, SubagentStop for background ones), when
the Claude Code process that owns it is gone, or at its TTL, so a crashed session never
holds slots forever. A denied spawn never takes a lease.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from typing import NamedTuple

from ..resources import SystemSnapshot, pid_alive
from ..store.sqlite import SqliteStore
from .agent_types import canonical_agent_type
from .config import AdmissionPolicy

__all__ = ["Admission", "AdmissionResult", "LeaseRequest"]

MIB = 1024 * 1024
WAVES_SESSION = "waves"  # the session wave agents' leases are filed under


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
    def __init__(self, store: SqliteStore, policy: AdmissionPolicy, *,
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
                with self._store.transaction() as conn:
                    self._insert(conn, req, result.depth, int(self._clock() * 1e6))
            return result
        start = self._clock()
        deadline = start + self._policy.wait_timeout_s
        while True:
            result = self._try_once(req)
            if result.granted or result.retry_after_s is None or self._clock() >= deadline:
                return _with_wait(result, self._clock() - start)
            self._sleep(min(self._poll_s, max(0.0, deadline - self._clock())))

    def _try_once(self, req: LeaseRequest) -> AdmissionResult:
        p = self._policy
        snap = self._metrics()
        now_us = int(self._clock() * 1e6)
        with self._store.transaction() as conn:
            _purge(conn, now_us)
            depth = _depth(conn, req.parent_agent_id)
            if depth > p.max_depth:
                return AdmissionResult(False, "nesting-depth", f"nesting depth {depth} exceeds "
                                       f"the limit of {p.max_depth}", None, depth=depth)
            blocked = self._limits(conn, req, snap, now_us)
            if blocked is not None:
                return blocked
            self._insert(conn, req, depth, now_us)
        note = "" if snap.ok else (f"system metrics unavailable ({snap.error}): admitting one "
                                   "agent at a time")
        return AdmissionResult(True, depth=depth, note=note)

    def _insert(self, conn: sqlite3.Connection, req: LeaseRequest, depth: int,
                now_us: int) -> None:
        ids = [f"{req.lease_id}#{k}" for k in range(max(1, req.slots))] if req.group \
            else [req.lease_id]
        agent_type = canonical_agent_type(req.agent_type)
        for lease_id in ids:
            conn.execute(
                "INSERT OR REPLACE INTO leases (id, session_id, agent_id, agent_type, "
                "owner_pid, depth, background, acquired_us, expires_us) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                (lease_id, req.session_id, None, agent_type, req.owner_pid, depth,
                 int(req.background), now_us, now_us + int(self._policy.lease_ttl_s * 1e6)))
            conn.execute("INSERT INTO spawns VALUES (?, ?)", (now_us, req.session_id))

    def _limits(self, conn: sqlite3.Connection, req: LeaseRequest, snap: SystemSnapshot,
                now_us: int) -> AdmissionResult | None:
        p = self._policy
        machine = conn.execute("SELECT count(*) FROM leases").fetchone()[0]
        session = conn.execute("SELECT count(*) FROM leases WHERE session_id = ?",
                               (req.session_id,)).fetchone()[0]
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
        recent = conn.execute("SELECT count(*), min(ts_us) FROM spawns WHERE session_id = ? "
                              "AND ts_us > ?", (req.session_id, window_start)).fetchone()
        if recent[0] + need > p.spawns_per_minute:
            wait = max(0.1, (recent[1] - window_start) / 1e6)
            return AdmissionResult(False, "spawn-rate", f"{recent[0]} spawns in the last minute "
                                   f"(limit {p.spawns_per_minute})", wait)
        return None

    def take_machine_slot(self, lease_id: str, agent_type: str, *, enforce: bool = True,
                          owner_pid: int | None = None) -> str | None:
        """A lease for an agent the hooks do not see start (a wave's), counted against the
        machine-wide limit only: the wave applies its own memory and CPU checks. Returns
        why there is no room, or None once the lease is taken. Warn mode always leases."""
        p = self._policy
        now_us = int(self._clock() * 1e6)
        with self._store.transaction() as conn:
            _purge(conn, now_us)
            machine = conn.execute("SELECT count(*) FROM leases").fetchone()[0]
            if enforce and machine >= p.max_in_flight_machine:
                return (f"{machine} agents already running on this machine, subagents and "
                        f"wave agents together (limit {p.max_in_flight_machine})")
            self._insert(conn, LeaseRequest(
                lease_id, WAVES_SESSION, agent_type, None, True,
                owner_pid if owner_pid is not None else os.getpid()), 1, now_us)
        return None

    # -- lifecycle -------------------------------------------------------------------
    def attach_agent(self, lease_id: str, agent_id: str, now_us: int) -> None:
        """A background launch names its agent: bind it, unless it already stopped."""
        with self._store.transaction() as conn:
            stopped = conn.execute("SELECT stopped_us FROM agents WHERE agent_id = ?",
                                   (agent_id,)).fetchone()
            if stopped and stopped[0] is not None:
                conn.execute("DELETE FROM leases WHERE id = ?", (lease_id,))
            else:
                conn.execute("UPDATE leases SET agent_id = ? WHERE id = ?",
                             (agent_id, lease_id))

    def bind(self, lease_id: str, agent_id: str) -> bool:
        """Bind a lease to an agent known to be running now, whatever the agents table
        says (a resumed agent's second SubagentStart may not have been recorded)."""
        with self._store.transaction() as conn:
            return conn.execute("UPDATE leases SET agent_id = ? WHERE id = ?",
                                (agent_id, lease_id)).rowcount > 0

    def note_started(self, session_id: str, agent_id: str, agent_type: str,
                     now_us: int) -> int:
        """Remember a started agent and its depth, for nested spawns it may make.

        SubagentStart does not say which tool call it belongs to, so the depth is that of
        the newest lease of the same type in the session; leases are never bound here,
        because a wrong guess would release the wrong one.
        """
        agent_type = canonical_agent_type(agent_type)
        with self._store.transaction() as conn:
            row = conn.execute(
                "SELECT depth FROM leases WHERE session_id = ? AND agent_type = ? "
                "ORDER BY acquired_us DESC LIMIT 1", (session_id, agent_type)).fetchone()
            depth = int(row[0]) if row else 1
            # A resumed agent (SendMessage) starts again under its old id: running anew.
            conn.execute("INSERT INTO agents VALUES (?,?,?,?,?,NULL) ON CONFLICT (agent_id) "
                         "DO UPDATE SET stopped_us = NULL",
                         (agent_id, session_id, agent_type, depth, now_us))
        return depth

    # -- agents that no PreToolUse names: a workflow's -------------------------------------
    def bind_unnamed(self, session_id: str, agent_type: str, agent_id: str) -> bool:
        """Give a started agent one of the unbound leases its launcher took for it."""
        with self._store.transaction() as conn:
            return conn.execute(
                "UPDATE leases SET agent_id = ? WHERE id = (SELECT id FROM leases WHERE "
                "session_id = ? AND agent_type = ? AND agent_id IS NULL AND id LIKE '%#%' "
                "ORDER BY acquired_us, id LIMIT 1)",
                (agent_id, session_id, canonical_agent_type(agent_type))).rowcount > 0

    def rename_group(self, old_prefix: str, new_prefix: str) -> int:
        """Re-file a group of leases (`<prefix>#k`) under a new name, e.g. a task id."""
        with self._store.transaction() as conn:
            return conn.execute(
                "UPDATE leases SET id = ? || substr(id, ?) WHERE substr(id, 1, ?) = ?",
                (new_prefix, len(old_prefix) + 1, len(old_prefix) + 1,
                 old_prefix + "#")).rowcount

    def release_group(self, prefix: str) -> int:
        with self._store.transaction() as conn:
            return conn.execute("DELETE FROM leases WHERE substr(id, 1, ?) = ?",
                                (len(prefix) + 1, prefix + "#")).rowcount

    def groups(self, session_id: str, marker: str) -> set[str]:
        """The prefixes of the session's lease groups whose names start with `marker`."""
        with self._store.transaction() as conn:
            rows = conn.execute("SELECT id FROM leases WHERE session_id = ? AND "
                                "substr(id, 1, ?) = ?",
                                (session_id, len(marker), marker)).fetchall()
        return {str(r[0]).rpartition("#")[0] for r in rows if "#" in str(r[0])}

    def release(self, *, lease_id: str | None = None, agent_id: str | None = None,
                now_us: int = 0) -> bool:
        """End a lease by its tool call (foreground) or by its bound agent (background)."""
        with self._store.transaction() as conn:
            if agent_id:
                conn.execute(
                    "INSERT INTO agents VALUES (?, '', '', 1, ?, ?) ON CONFLICT (agent_id) "
                    "DO UPDATE SET stopped_us = excluded.stopped_us", (agent_id, now_us, now_us))
            if lease_id:
                cur = conn.execute("DELETE FROM leases WHERE id = ?", (lease_id,))
            else:
                cur = conn.execute("DELETE FROM leases WHERE agent_id = ?", (agent_id,))
            return cur.rowcount > 0

    def release_finished(self, session_id: str, running: set[str]) -> int:
        """Background agents' leases whose agent is no longer running (stopped by TaskStop,
        or ended without a SubagentStop that reached us)."""
        with self._store.transaction() as conn:
            rows = conn.execute("SELECT id, agent_id FROM leases WHERE session_id = ? AND "
                                "agent_id IS NOT NULL AND instr(id, '#') = 0",
                                (session_id,)).fetchall()
            gone = [r[0] for r in rows if r[1] not in running]
            for lease_id in gone:
                conn.execute("DELETE FROM leases WHERE id = ?", (lease_id,))
        return len(gone)

    def agent_running(self, agent_id: str) -> bool:
        """Started and not stopped: a message to it queues, it starts nothing."""
        with self._store.transaction() as conn:
            row = conn.execute("SELECT stopped_us FROM agents WHERE agent_id = ?",
                               (agent_id,)).fetchone()
        return row is not None and row[0] is None

    def release_session(self, session_id: str) -> int:
        with self._store.transaction() as conn:
            return conn.execute("DELETE FROM leases WHERE session_id = ?",
                                (session_id,)).rowcount

    def in_flight(self) -> list[tuple[str, str, str | None, int, int]]:
        now_us = int(self._clock() * 1e6)
        with self._store.transaction() as conn:
            _purge(conn, now_us)
            rows = conn.execute("SELECT session_id, agent_type, agent_id, depth, acquired_us "
                                "FROM leases ORDER BY acquired_us").fetchall()
        return [(str(r[0]), str(r[1]), r[2], int(r[3]), int(r[4])) for r in rows]


def _busy(rule: str, reason: str) -> AdmissionResult:
    return AdmissionResult(False, rule, reason, retry_after_s=5.0)


def _with_wait(result: AdmissionResult, waited: float) -> AdmissionResult:
    return AdmissionResult(result.granted, result.rule_id, result.reason, result.retry_after_s,
                           waited, result.depth, result.note)


def _depth(conn: sqlite3.Connection, parent_agent_id: str | None) -> int:
    if not parent_agent_id:
        return 1
    row = conn.execute("SELECT depth FROM agents WHERE agent_id = ?",
                       (parent_agent_id,)).fetchone()
    return (int(row[0]) if row else 1) + 1


def _purge(conn: sqlite3.Connection, now_us: int) -> None:
    conn.execute("DELETE FROM leases WHERE expires_us <= ?", (now_us,))
    conn.execute("DELETE FROM spawns WHERE ts_us <= ?", (now_us - 120_000_000,))
    for lease_id, pid in conn.execute(
            "SELECT id, owner_pid FROM leases WHERE owner_pid IS NOT NULL").fetchall():
        if not pid_alive(pid):
            conn.execute("DELETE FROM leases WHERE id = ?", (lease_id,))


def _load_percent() -> float | None:
    try:
        load1 = os.getloadavg()[0]
    except OSError:
        return None
    return load1 / (os.cpu_count() or 1) * 100.0
