"""One root exception with structured fields, so callers branch on fields, not text."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "OrchestratorError",
    "PolicyDenied",
    "StoreError",
    "StoreUnapplied",
]


class OrchestratorError(Exception):
    """Root of every error the core raises on purpose.

    `reason` is one line meant for a person or a model; `hint` says what to do.
    """

    def __init__(self, reason: str, *, hint: str | None = None, rule_id: str | None = None,
                 retry_after: float | None = None) -> None:
        self.reason = reason
        self.hint = hint
        self.rule_id = rule_id
        self.retry_after = retry_after
        super().__init__(self.one_line())

    def one_line(self) -> str:
        return f"{self.reason} ({self.hint})" if self.hint else self.reason


class StoreError(OrchestratorError):
    """The state database cannot be opened, read or written safely."""


class StoreUnapplied(StoreError):
    """The store failed before anything of the call in hand reached it (a connection
    found dead at its first use): the call may be made again, once, on a new one."""


class ConfigError(OrchestratorError):
    """A policy or plugin configuration value is invalid."""


class PolicyDenied(OrchestratorError):
    """A policy check refused an action."""
