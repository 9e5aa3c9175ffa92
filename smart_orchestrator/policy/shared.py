"""What waves share with the hooks: the circuit breakers and the machine-wide agent count.

A wave's agents are not subagents Claude Code starts, so the hooks never see them; these
adapters put them under the same policy, read from the same store. A failing agent type
trips one breaker for native subagents and wave tasks alike, and the machine-wide limit
(`admission.max_in_flight_machine`) counts both, whichever session or server started them.
The engine is fetched per call, so an edited policy file applies at once.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable

from ..errors import StoreError
from .engine import PolicyEngine

__all__ = ["PolicyBreaker", "PolicySlots"]

Engines = Callable[[], PolicyEngine]


class PolicyBreaker:
    """The waves' `Breaker`: `allow(agent_type)` before an attempt, `record` after it."""

    def __init__(self, engines: Engines) -> None:
        self._engines = engines

    def allow(self, agent_type: str) -> tuple[bool, str]:
        engine = self._engines()
        mode = engine.config.breaker.mode
        if mode == "off":
            return True, ""
        try:
            verdict = engine.breakers.check(agent_type)
        except (sqlite3.Error, StoreError) as exc:
            if engine.config.breaker.on_error == "allow":
                return True, ""
            return False, f"circuit breaker state unreadable: {exc}"
        if verdict.allowed or mode == "warn":
            return True, "half-open trial" if verdict.state == "half_open" else ""
        return False, verdict.reason

    def record(self, agent_type: str, ok: bool) -> None:
        engine = self._engines()
        if engine.config.breaker.mode != "off":
            engine.breakers.record(agent_type, ok)


class PolicySlots:
    """The waves' `Slots`: a machine-wide lease per running wave task."""

    def __init__(self, engines: Engines) -> None:
        self._engines = engines

    def take(self, lease_id: str, agent_type: str) -> str | None:
        engine = self._engines()
        mode = engine.config.admission.mode
        if mode == "off":
            return None
        try:
            return engine.admission.take_machine_slot(lease_id, agent_type,
                                                      enforce=mode == "enforce")
        except (sqlite3.Error, StoreError) as exc:
            if engine.config.admission.on_error == "allow":
                return None
            return f"machine-wide agent count unreadable: {exc}"

    def give_back(self, lease_id: str) -> None:
        # Not given back, it is purged with this process or at its TTL.
        with contextlib.suppress(sqlite3.Error, StoreError):
            self._engines().admission.release(lease_id=lease_id)
