"""The circuit breaker interface waves rely on.

closed -> (threshold failures within a window) -> open -> (cool-down) -> half-open: one
trial is let through; its success closes the breaker, its failure opens it again. The
implementation is the policy's, in the store (`smart_orchestrator.policy.shared`), so
native subagents and wave tasks of one agent type trip the same breaker.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Breaker"]


class Breaker(Protocol):
    def allow(self, agent_type: str) -> tuple[bool, str]: ...

    def record(self, agent_type: str, ok: bool) -> None: ...
