"""Quality gates the orchestrator runs itself: tier 1 (typecheck, lint, tests), tier 2
(dependency audit, secrets and project rules on the change), tier 3 (human approvals).

    report = GateRunner(store, project_dir).evaluate()
    report.passed, report.blocking_tier, report.reason

Names load on first use, so `smart_orchestrator.cli` can register the `gates` command
without importing pydantic on every hook call.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._git import GitError, Snapshot, snapshot
    from .approvals import (
        CONFIG_KIND,
        ApprovalError,
        ApprovalReceipt,
        record_approval,
        required_approvals,
    )
    from .config import GatesConfig, load_gates_config
    from .models import ApprovalStatus, CheckResult, Finding, GateReport, TierResult
    from .runner import GateRunner

__all__ = [
    "CONFIG_KIND",
    "ApprovalError",
    "ApprovalReceipt",
    "ApprovalStatus",
    "CheckResult",
    "Finding",
    "GateReport",
    "GateRunner",
    "GatesConfig",
    "GitError",
    "Snapshot",
    "TierResult",
    "load_gates_config",
    "record_approval",
    "required_approvals",
    "snapshot",
]

_WHERE = {
    "GitError": "._git", "Snapshot": "._git", "snapshot": "._git",
    "CONFIG_KIND": ".approvals", "ApprovalError": ".approvals",
    "ApprovalReceipt": ".approvals", "record_approval": ".approvals",
    "required_approvals": ".approvals",
    "GatesConfig": ".config", "load_gates_config": ".config",
    "ApprovalStatus": ".models", "CheckResult": ".models", "Finding": ".models",
    "GateReport": ".models", "TierResult": ".models", "GateRunner": ".runner",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name], __name__), name)
