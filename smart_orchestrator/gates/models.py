"""What a gate evaluation reports: per check, per tier, and the verdict."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["ApprovalStatus", "CheckResult", "CheckStatus", "Finding", "GateReport",
           "TierResult", "TierStatus"]

CheckStatus = Literal["passed", "failed", "timed_out", "error", "cancelled", "not_run"]
TierStatus = Literal["passed", "failed", "pending", "skipped"]
CheckKind = Literal["command", "secrets", "patterns"]
TIER_NAMES = {1: "automated", 2: "rule-based", 3: "human review"}


@dataclass(frozen=True, slots=True)
class Finding:
    """A secret or a pattern violation in the change; `detail` never holds a secret."""

    rule: str
    path: str
    line: int
    detail: str


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    tier: int
    kind: CheckKind
    status: CheckStatus
    source: str
    command: tuple[str, ...] = ()
    exit_code: int | None = None
    duration_ms: int = 0
    output_tail: str = ""
    output_sha256: str = ""
    output_bytes: int = 0
    cached: bool = False
    detail: str = ""
    findings: tuple[Finding, ...] = ()

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def one_line(self) -> str:
        if self.detail:
            return f"{self.name}: {self.detail}"
        return f"{self.name}: {self.status}"


@dataclass(frozen=True, slots=True)
class ApprovalStatus:
    kind: str
    scope: str
    paths: tuple[str, ...]
    approvers: tuple[str, ...]
    description: str
    approved_by: str | None = None
    approved_us: int | None = None
    via: str | None = None

    @property
    def satisfied(self) -> bool:
        return self.approved_by is not None


@dataclass(frozen=True, slots=True)
class TierResult:
    tier: int
    status: TierStatus
    checks: tuple[CheckResult, ...] = ()
    approvals: tuple[ApprovalStatus, ...] = ()
    reason: str = ""

    @property
    def name(self) -> str:
        return TIER_NAMES[self.tier]


@dataclass(frozen=True, slots=True)
class GateReport:
    passed: bool
    blocking_tier: int | None
    reason: str
    tree: str
    base: str
    base_tree: str
    changed_paths: tuple[str, ...]
    tiers: tuple[TierResult, ...]
    cached_tree: bool = True
    notes: tuple[str, ...] = ()
