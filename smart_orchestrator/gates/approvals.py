"""Tier 3: which human reviews the change needs, and who gave them.

An approval covers a *scope*: the digest of the kind and of the exact content (blob ids) of
the changed files its rule matched. Changing another file keeps it; changing a covered file
asks again. Approvals live in the audit chain (`gate.approval`), never in a mutable table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..audit import AuditLog
from ..canonical import canonical_json, digest_text, sha256_hex
from ..errors import OrchestratorError
from ..store.base import Store
from ._git import Change, Snapshot
from ._globs import matches_any
from .config import ApprovalRule, GatesConfig, gates_path
from .models import ApprovalStatus

__all__ = ["CONFIG_KIND", "ApprovalError", "ApprovalReceipt", "record_approval",
           "required_approvals"]

# A change to the gates' own configuration always needs a person's approval: otherwise an
# agent could pass any gate by rewriting the commands that check it.
CONFIG_KIND = "gates-config"


class ApprovalError(OrchestratorError):
    """The approval cannot be recorded (nothing needs it, or this person may not give it)."""


@dataclass(frozen=True, slots=True)
class ApprovalReceipt:
    kind: str
    approver: str
    via: str
    scope: str
    tree: str
    paths: tuple[str, ...]
    seq: int
    ts_us: int


def _rules(config: GatesConfig, root: Path, project_dir: Path) -> list[ApprovalRule]:
    rules = list(config.approvals)
    try:
        rel = gates_path(project_dir).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return rules  # the config lives outside the repository
    return [*rules, ApprovalRule(kind=CONFIG_KIND, paths=[rel],
                                 description="the gates' configuration changed")]


def _scope(kind: str, matched: Sequence[Change]) -> str:
    files = sorted([c.path, c.blob or "deleted"] for c in matched)
    return sha256_hex(canonical_json({"kind": kind, "files": files}))


def required_approvals(store: Store, snap: Snapshot, config: GatesConfig,
                       project_dir: Path) -> list[ApprovalStatus]:
    """One entry per kind some rule requires for this change, with its approval if given."""
    by_kind: dict[str, tuple[list[Change], set[str], list[str]]] = {}
    for rule in _rules(config, snap.root, project_dir):
        matched = [c for c in snap.changes if matches_any(c.path, rule.paths, rule.exclude)]
        if not matched:
            continue
        changes, approvers, notes = by_kind.setdefault(rule.kind, ([], set(), []))
        changes += [c for c in matched if c not in changes]
        approvers.update(rule.approvers)
        if rule.description:
            notes.append(rule.description)
    out = []
    for kind, (changes, approvers, notes) in sorted(by_kind.items()):
        status = ApprovalStatus(kind, _scope(kind, changes), tuple(sorted(c.path for c in changes)),
                                tuple(sorted(approvers)), "; ".join(notes))
        out.append(_with_approval(store, status, config))
    return out


def _with_approval(store: Store, status: ApprovalStatus,
                   config: GatesConfig) -> ApprovalStatus:
    for rec in store.audit.events(kinds=("gate.approval",), match={"scope": status.scope},
                                  newest_first=True):
        ts_us, data = rec.ts_us, rec.data
        who, via = data.get("approver"), data.get("via")
        if via not in config.approval_via:
            continue
        if status.approvers and who not in status.approvers:
            continue
        return ApprovalStatus(status.kind, status.scope, status.paths, status.approvers,
                              status.description, str(who), int(ts_us), str(via))
    return status


def record_approval(store: Store, snap: Snapshot, config: GatesConfig, project_dir: Path,
                    *, kind: str, approver: str, via: str, note: str | None = None,
                    expected_scope: str | None = None) -> ApprovalReceipt:
    """Write who approved which scope, and how they confirmed, to the audit chain."""
    approver = approver.strip()
    if not approver or len(approver) > 100:
        raise ApprovalError("approver must be a name of 1 to 100 characters")
    if via not in config.approval_via:
        raise ApprovalError(f"approvals given via {via!r} do not count in this project "
                            f"(gates.approval_via = {list(config.approval_via)})")
    needed = {a.kind: a for a in required_approvals(store, snap, config, project_dir)}
    status = needed.get(kind)
    if status is None:
        kinds = ", ".join(sorted(needed)) or "none"
        raise ApprovalError(f"the current change needs no {kind!r} approval "
                            f"(approvals it needs: {kinds})")
    if expected_scope is not None and status.scope != expected_scope:
        raise ApprovalError("the change moved while the approval was being confirmed",
                            hint="ask for the approval again")
    if status.approvers and approver not in status.approvers:
        raise ApprovalError(f"{approver!r} may not give a {kind!r} approval",
                            hint="allowed: " + ", ".join(status.approvers))
    rec = AuditLog(store).record("gate.approval", review=kind, approver=approver, via=via,
                                 scope=status.scope, tree=snap.tree, paths=len(status.paths),
                                 note=digest_text(note) if note else None)
    return ApprovalReceipt(kind, approver, via, status.scope, snap.tree, status.paths,
                           rec.seq, rec.ts_us)
