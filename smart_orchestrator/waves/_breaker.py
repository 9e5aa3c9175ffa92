"""A circuit breaker per agent type, in memory, behind the interface waves rely on.

closed -> (`threshold` failures within `window_s`) -> open -> (`cooldown_s`) -> half-open:
one trial is let through; its success closes the breaker, its failure opens it again.
The policy hooks keep a store-backed breaker with the same interface; either fits.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["Breaker", "MemoryBreaker"]


class Breaker(Protocol):
    def allow(self, agent_type: str) -> tuple[bool, str]: ...

    def record(self, agent_type: str, ok: bool) -> None: ...


@dataclass(slots=True)
class _Circuit:
    state: str = "closed"
    failures: list[float] = field(default_factory=list)
    opened_at: float = 0.0


class MemoryBreaker:
    def __init__(self, *, threshold: int = 3, window_s: float = 300.0,
                 cooldown_s: float = 60.0, clock: Callable[[], float]) -> None:
        if threshold < 1:
            raise ValueError("breaker threshold must be at least 1")
        self._threshold = threshold
        self._window_s = window_s
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._circuits: dict[str, _Circuit] = {}
        # Waves of one server share it from the event loop and from tool threads.
        self._lock = threading.Lock()

    def allow(self, agent_type: str) -> tuple[bool, str]:
        with self._lock:
            c = self._circuits.setdefault(agent_type, _Circuit())
            if c.state == "closed":
                return True, ""
            if c.state == "open":
                remaining = c.opened_at + self._cooldown_s - self._clock()
                if remaining > 0:
                    return False, (f"circuit breaker for agent type {agent_type!r} is open "
                                   f"after {len(c.failures)} failures; retry in "
                                   f"{remaining:.0f} s")
                c.state = "half_open"
                return True, "half-open trial"
            return False, (f"circuit breaker for agent type {agent_type!r} is half-open: "
                           "a trial agent is running")

    def record(self, agent_type: str, ok: bool) -> None:
        with self._lock:
            c = self._circuits.setdefault(agent_type, _Circuit())
            now = self._clock()
            if ok:
                self._circuits[agent_type] = _Circuit()
                return
            c.failures = [t for t in c.failures if t > now - self._window_s] + [now]
            if c.state == "half_open" or len(c.failures) >= self._threshold:
                if c.state != "open":
                    c.opened_at = now
                c.state = "open"

    def state(self, agent_type: str) -> str:
        with self._lock:
            return self._circuits.get(agent_type, _Circuit()).state
