"""Circuit breaker per agent type, shared by every process through the store.

closed -> (threshold failures within the window) -> open -> (cool-down) -> half-open:
one trial spawn is let through; its success closes the breaker, its failure re-opens it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import NamedTuple

from ..store.sqlite import SqliteStore
from .agent_types import canonical_agent_type
from .config import BreakerPolicy

__all__ = ["BreakerVerdict", "CircuitBreakers"]


class BreakerVerdict(NamedTuple):
    allowed: bool
    state: str
    reason: str = ""
    retry_after_s: float | None = None


class CircuitBreakers:
    def __init__(self, store: SqliteStore, policy: BreakerPolicy,
                 clock: Callable[[], float]) -> None:
        self._store = store
        self._policy = policy
        self._clock = clock

    def check(self, agent_type: str) -> BreakerVerdict:
        agent_type = canonical_agent_type(agent_type)
        now = self._clock()
        with self._store.transaction() as conn:
            row = conn.execute("SELECT state, opened_us, failures FROM breakers "
                               "WHERE agent_type = ?", (agent_type,)).fetchone()
            if row is None or row[0] == "closed":
                return BreakerVerdict(True, "closed")
            state, opened = row[0], row[1] / 1e6
            remaining = opened + self._policy.cooldown_s - now
            if state == "open" and remaining <= 0:
                # The first caller after the cool-down becomes the half-open trial.
                conn.execute("UPDATE breakers SET state = 'half_open' WHERE agent_type = ?",
                             (agent_type,))
                return BreakerVerdict(True, "half_open")
            if state == "half_open":
                return BreakerVerdict(False, state, f"circuit breaker for agent type "
                                      f"{agent_type!r} is half-open: a trial agent is running",
                                      30.0)
            failures = len(json.loads(row[2]))
            return BreakerVerdict(False, state, f"circuit breaker for agent type {agent_type!r} "
                                  f"is open after {failures} failures within "
                                  f"{self._policy.window_s:.0f} s; retry in {remaining:.0f} s",
                                  max(1.0, remaining))

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
                "excluded.failures, opened_us = coalesce(excluded.opened_us, opened_us)",
                (agent_type, new_state, opened, json.dumps(failures)))
        return new_state if new_state != state else None

    def states(self) -> list[tuple[str, str, int]]:
        rows = self._store.query("SELECT agent_type, state, failures FROM breakers "
                                 "ORDER BY agent_type")
        return [(r[0], r[1], len(json.loads(r[2]))) for r in rows]
