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

import os
from collections.abc import Callable
from typing import NamedTuple

from ..resources import pid_alive
from ..store.base import Store
from ..store.hostid import host_id
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
    return f"pid:{os.getpid()}@{host_id()}"


class CircuitBreakers:
    def __init__(self, store: Store, policy: BreakerPolicy,
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
        breakers = self._store.breakers
        with self._store.transaction():
            row = breakers.get(agent_type)
            if row is None or row.state == "closed":
                return BreakerVerdict(True, "closed")
            state, opened = row.state, (row.opened_us or 0) / 1e6
            remaining = opened + self._policy.cooldown_s - now
            if (state == "open" and remaining <= 0) or (
                    state == "half_open" and _abandoned(self._store, row.trial_owner,
                                                        row.trial_expires_us, now)):
                # The first caller after the cool-down, or after an abandoned trial,
                # becomes the trial.
                breakers.start_trial(agent_type, owner, int((now + hold_s) * 1e6))
                return BreakerVerdict(True, "half_open", trial_owner=owner)
            if state == "half_open":
                return BreakerVerdict(False, state, f"circuit breaker for agent type "
                                      f"{agent_type!r} is half-open: a trial agent is running",
                                      30.0)
            failures = len(row.failures)
            return BreakerVerdict(False, state, f"circuit breaker for agent type {agent_type!r} "
                                  f"is open after {failures} failures within "
                                  f"{self._policy.window_s:.0f} s; retry in {remaining:.0f} s",
                                  max(1.0, remaining))

    def bind_trial(self, agent_type: str, owner: str, new_owner: str, ttl_s: float) -> None:
        """Hand the trial on, e.g. to its lease once admission granted it
        (`lease:<id>`: it then lives as long as the lease, at most `ttl_s`)."""
        agent_type = canonical_agent_type(agent_type)
        self._store.breakers.hand_trial(agent_type, owner, new_owner,
                                        int((self._clock() + ttl_s) * 1e6))

    def release_trial(self, agent_type: str, owner: str) -> bool:
        """The trial will not run (admission denied it): the next caller may be the trial.
        The cool-down has passed, so `open` with the old opening time lets it through."""
        agent_type = canonical_agent_type(agent_type)
        return self._store.breakers.release_trial(agent_type, owner)

    def record(self, agent_type: str, ok: bool) -> str | None:
        """Returns the new state when this outcome changed it."""
        agent_type = canonical_agent_type(agent_type)
        now = self._clock()
        p = self._policy
        breakers = self._store.breakers
        with self._store.transaction():
            row = breakers.get(agent_type)
            state, failures = (row.state, list(row.failures)) if row else ("closed", [])
            if ok:
                new_state, failures = "closed", ([] if state == "half_open" else failures)
            else:
                failures = [t for t in failures if t > now - p.window_s] + [now]
                trip = state == "half_open" or len(failures) >= p.failure_threshold
                new_state = "open" if trip else state
            opened = int(now * 1e6) if new_state == "open" and state != "open" else None
            breakers.put(agent_type, new_state, opened, failures)
        return new_state if new_state != state else None

    def states(self) -> list[tuple[str, str, int]]:
        return [(r.agent_type, r.state, len(r.failures)) for r in self._store.breakers.rows()]


def _abandoned(store: Store, owner: str | None, expires_us: int | None,
               now: float) -> bool:
    """A half-open trial nobody will report on."""
    if owner is None or expires_us is None or expires_us <= now * 1e6:
        return True  # rows from before trials had owners count as abandoned
    kind, _, ident = owner.partition(":")
    pid, _, host = ident.partition("@")
    if kind == "pid" and pid.isdigit():
        # A process on another machine cannot be looked at from here: its trial lasts
        # until it reports, or until its time is up.
        return host in ("", host_id()) and not pid_alive(int(pid))
    if kind == "lease":
        return not store.leases.exists(ident)
    return False
