"""Circuit breaker per agent type, shared by every process through the store.

closed -> (threshold failures within the window) -> open -> (cool-down) -> half-open:
one trial spawn is let through; its success closes the breaker, its failure re-opens it.

The trial has an owner and an expiry, because the caller that turns the breaker half-open
may never report an outcome: admission can deny the trial after the breaker let it through,
the session can die while it runs. The owner is first the deciding process
(`pid:<pid>`), then, once admission grants it, the trial's lease (`lease:<id>`). A trial
whose process is gone, whose lease is gone without an outcome, or whose time is up is
abandoned, and the next caller becomes the trial.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from typing import NamedTuple

from ..resources import pid_alive
from ..store.sqlite import SqliteStore
from .agent_types import canonical_agent_type
from .config import BreakerPolicy

__all__ = ["BreakerVerdict", "CircuitBreakers", "process_trial_owner"]

# How long a trial may stay undecided between the breaker letting it through and
# admission deciding on it; admission waits at most its own wait_timeout_s (<= 3600 s).
PENDING_TRIAL_S = 3600.0 + 60.0


class BreakerVerdict(NamedTuple):
    allowed: bool
    state: str
    reason: str = ""
    retry_after_s: float | None = None
    trial_owner: str | None = None  # set when this caller is the half-open trial


def process_trial_owner() -> str:
    return f"pid:{os.getpid()}"


class CircuitBreakers:
    def __init__(self, store: SqliteStore, policy: BreakerPolicy,
                 clock: Callable[[], float]) -> None:
        self._store = store
        self._policy = policy
        self._clock = clock

    def check(self, agent_type: str, owner: str | None = None,
              hold_s: float = PENDING_TRIAL_S) -> BreakerVerdict:
        """May an agent of this type start? A caller let through as the half-open trial
        owns it (`owner`, by default this process) for `hold_s` seconds, until it binds
        the trial to a lease, releases it, or records the outcome."""
        agent_type = canonical_agent_type(agent_type)
        now = self._clock()
        owner = owner or process_trial_owner()
        with self._store.transaction() as conn:
            row = conn.execute("SELECT state, opened_us, failures, trial_owner, "
                               "trial_expires_us FROM breakers WHERE agent_type = ?",
                               (agent_type,)).fetchone()
            if row is None or row[0] == "closed":
                return BreakerVerdict(True, "closed")
            state, opened = row[0], row[1] / 1e6
            remaining = opened + self._policy.cooldown_s - now
            if (state == "open" and remaining <= 0) or (
                    state == "half_open" and _abandoned(conn, row[3], row[4], now)):
                # The first caller after the cool-down, or after an abandoned trial,
                # becomes the trial.
                conn.execute("UPDATE breakers SET state = 'half_open', trial_owner = ?, "
                             "trial_expires_us = ? WHERE agent_type = ?",
                             (owner, int((now + hold_s) * 1e6), agent_type))
                return BreakerVerdict(True, "half_open", trial_owner=owner)
            if state == "half_open":
                return BreakerVerdict(False, state, f"circuit breaker for agent type "
                                      f"{agent_type!r} is half-open: a trial agent is running",
                                      30.0)
            failures = len(json.loads(row[2]))
            return BreakerVerdict(False, state, f"circuit breaker for agent type {agent_type!r} "
                                  f"is open after {failures} failures within "
                                  f"{self._policy.window_s:.0f} s; retry in {remaining:.0f} s",
                                  max(1.0, remaining))

    def bind_trial(self, agent_type: str, owner: str, new_owner: str, ttl_s: float) -> None:
        """Hand the trial on, e.g. to its lease once admission granted it
        (`lease:<id>`: it then lives as long as the lease, at most `ttl_s`)."""
        agent_type = canonical_agent_type(agent_type)
        with self._store.transaction() as conn:
            conn.execute("UPDATE breakers SET trial_owner = ?, trial_expires_us = ? "
                         "WHERE agent_type = ? AND state = 'half_open' AND trial_owner = ?",
                         (new_owner, int((self._clock() + ttl_s) * 1e6), agent_type, owner))

    def release_trial(self, agent_type: str, owner: str) -> bool:
        """The trial will not run (admission denied it): the next caller may be the trial.
        The cool-down has passed, so `open` with the old opening time lets it through."""
        agent_type = canonical_agent_type(agent_type)
        with self._store.transaction() as conn:
            cur = conn.execute("UPDATE breakers SET state = 'open', trial_owner = NULL, "
                               "trial_expires_us = NULL WHERE agent_type = ? AND "
                               "state = 'half_open' AND trial_owner = ?", (agent_type, owner))
            return cur.rowcount == 1

    def record(self, agent_type: str, ok: bool) -> str | None:
        """Returns the new state when this outcome changed it."""
        agent_type = canonical_agent_type(agent_type)
        now = self._clock()
        p = self._policy
        with self._store.transaction() as conn:
            row = conn.execute("SELECT state, failures FROM breakers WHERE agent_type = ?",
                               (agent_type,)).fetchone()
            state, failures = (row[0], json.loads(row[1])) if row else ("closed", [])
            if ok:
                new_state, failures = "closed", ([] if state == "half_open" else failures)
            else:
                failures = [t for t in failures if t > now - p.window_s] + [now]
                trip = state == "half_open" or len(failures) >= p.failure_threshold
                new_state = "open" if trip else state
            opened = int(now * 1e6) if new_state == "open" and state != "open" else None
            conn.execute(
                "INSERT INTO breakers (agent_type, state, opened_us, failures) VALUES (?,?,?,?) "
                "ON CONFLICT (agent_type) DO UPDATE SET state = excluded.state, failures = "
                "excluded.failures, opened_us = coalesce(excluded.opened_us, opened_us), "
                "trial_owner = NULL, trial_expires_us = NULL",
                (agent_type, new_state, opened, json.dumps(failures)))
        return new_state if new_state != state else None

    def states(self) -> list[tuple[str, str, int]]:
        rows = self._store.query("SELECT agent_type, state, failures FROM breakers "
                                 "ORDER BY agent_type")
        return [(r[0], r[1], len(json.loads(r[2]))) for r in rows]


def _abandoned(conn: sqlite3.Connection, owner: str | None, expires_us: int | None,
               now: float) -> bool:
    """A half-open trial nobody will report on."""
    if owner is None or expires_us is None or expires_us <= now * 1e6:
        return True  # rows from before trials had owners count as abandoned
    kind, _, ident = owner.partition(":")
    if kind == "pid" and ident.isdigit():
        return not pid_alive(int(ident))
    if kind == "lease":
        return conn.execute("SELECT 1 FROM leases WHERE id = ?", (ident,)).fetchone() is None
    return False
