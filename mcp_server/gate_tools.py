"""`gate_status` and `record_approval`: thin adapters over `smart_orchestrator.gates`."""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any

import anyio
import anyio.from_thread
import anyio.to_thread
from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resolve import Elicit, Resolve
from pydantic import BaseModel, Field, create_model

from smart_orchestrator.errors import OrchestratorError
from smart_orchestrator.gates import (
    GateReport,
    GateRunner,
    load_gates_config,
    record_approval,
    required_approvals,
    snapshot,
)
from smart_orchestrator.paths import project_dir

from .state import AppState

MAX_PATHS = 200
Kind = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$",
                            description="the review approved, e.g. security, architecture, ux")]


class FindingOut(BaseModel):
    rule: str
    path: str
    line: int
    detail: str


class CheckOut(BaseModel):
    name: str
    tier: int
    kind: str
    status: str = Field(description="passed, failed, timed_out, error, cancelled or not_run")
    source: str = Field(description="config, built-in, or why it was detected")
    command: list[str]
    exit_code: int | None
    duration_ms: int
    output_tail: str = Field(description="the end of the output, credentials redacted")
    output_sha256: str
    output_bytes: int
    cached: bool = Field(description="true when this tree's earlier run was reused")
    detail: str
    findings: list[FindingOut]


class ApprovalOut(BaseModel):
    kind: str
    satisfied: bool
    paths: list[str]
    approvers: list[str] = Field(description="who may approve; empty means anyone")
    description: str
    approved_by: str | None
    approved_us: int | None
    via: str | None


class TierOut(BaseModel):
    tier: int
    name: str
    status: str = Field(description="passed, failed, pending (not run yet) or skipped")
    reason: str
    checks: list[CheckOut]
    approvals: list[ApprovalOut]


class GateStatusResult(BaseModel):
    passed: bool
    blocking_tier: int | None = Field(description="the first tier that does not pass")
    reason: str
    tree: str = Field(description="git tree id of the working copy the gates ran on")
    base: str
    changed_count: int
    changed_paths: list[str] = Field(description=f"the first {MAX_PATHS} changed paths")
    tiers: list[TierOut]
    notes: list[str]


class ApprovalRecorded(BaseModel):
    kind: str
    approver: str
    via: str
    scope: str = Field(description="digest of the approved files' content")
    tree: str
    paths: list[str]
    audit_seq: int
    recorded_us: int


def _out(report: GateReport) -> GateStatusResult:
    tiers = [TierOut(tier=t.tier, name=t.name, status=t.status, reason=t.reason,
                     checks=[CheckOut.model_validate(c, from_attributes=True) for c in t.checks],
                     approvals=[ApprovalOut(kind=a.kind, satisfied=a.satisfied,
                                            paths=list(a.paths), approvers=list(a.approvers),
                                            description=a.description,
                                            approved_by=a.approved_by,
                                            approved_us=a.approved_us, via=a.via)
                                for a in t.approvals])
             for t in report.tiers]
    return GateStatusResult(passed=report.passed, blocking_tier=report.blocking_tier,
                            reason=report.reason, tree=report.tree, base=report.base,
                            changed_count=len(report.changed_paths),
                            changed_paths=list(report.changed_paths[:MAX_PATHS]),
                            tiers=tiers, notes=list(report.notes))


@dataclass(frozen=True, slots=True)
class _Pending:
    kind: str
    scope: str
    tree: str
    paths: tuple[str, ...]


def _pending(kind: str, ctx: Context[AppState, Any]) -> _Pending:
    caps = ctx.client_capabilities
    if caps is None or caps.elicitation is None:
        raise ToolError("this client cannot ask the user to confirm, and an approval must "
                        "come from a person: run `smart-orchestrator gates approve "
                        f"{kind} --by NAME` in a terminal")
    store = ctx.request_context.lifespan_context.require_store()
    project = project_dir()
    try:
        config = load_gates_config(project)
        snap = snapshot(project, config.base)
        needed = {a.kind: a for a in required_approvals(store, snap, config, project)}
    except OrchestratorError as exc:
        raise ToolError(exc.one_line()) from exc
    if kind not in needed:
        raise ToolError(f"the current change needs no {kind!r} approval (it needs: "
                        f"{', '.join(sorted(needed)) or 'none'})")
    status = needed[kind]
    return _Pending(kind, status.scope, snap.tree, status.paths)


def _ask(pending: Annotated[_Pending, Resolve(_pending)], approver: str = "") -> Elicit[Any]:
    shown = ", ".join(pending.paths[:10]) + (" ..." if len(pending.paths) > 10 else "")
    form = create_model(
        "ApprovalConfirmation",
        approve=(bool, Field(description=f"Approve the {pending.kind} review")),
        approver=(str, Field(default=approver, min_length=1, max_length=100,
                             description="Your name, as recorded in the audit log")))
    return Elicit(f"Approve the {pending.kind} review of {len(pending.paths)} changed "
                  f"file(s): {shown} (change {pending.scope[:12]})? This is recorded in "
                  "the audit log under your name.", form)


def register_gate_tools(server: MCPServer[AppState]) -> None:
    @server.tool()
    async def gate_status(ctx: Context[AppState, Any],
                          run: Annotated[bool, Field(
                              description="run checks not yet run on this tree; false "
                                          "reports cached results only")] = True,
                          force: Annotated[bool, Field(
                              description="run again even where a result is cached")] = False,
                          ) -> GateStatusResult:
        """Run the project's quality gates on the working copy and say which tier blocks.

        Tier 1 typecheck/lint/tests, tier 2 dependency audit, secret scan and project rules
        on the change, tier 3 human approvals. The server runs every command itself; an
        unchanged git tree reuses earlier results.
        """
        state = ctx.request_context.lifespan_context
        store = state.require_store()
        lock: threading.Lock = state.extras.setdefault("gates.lock", threading.Lock())
        runner = GateRunner(store, project_dir(), progress=partial(_progress, ctx))

        def evaluate() -> GateReport:
            with lock:
                return runner.evaluate(run=run, force=force)

        try:
            report = await anyio.to_thread.run_sync(evaluate, abandon_on_cancel=True)
        except anyio.get_cancelled_exc_class():
            runner.cancel()
            raise
        except OrchestratorError as exc:
            raise ToolError(exc.one_line()) from exc
        return _out(report)

    @server.tool(name="record_approval")
    def record_approval_tool(kind: Kind, ctx: Context[AppState, Any],
                             pending: Annotated[_Pending, Resolve(_pending)],
                             answer: Annotated[ElicitationResult[Any], Resolve(_ask)],
                             approver: Annotated[str, Field(
                                 max_length=100,
                                 description="suggested approver name; the user confirms "
                                             "or corrects it")] = "",
                             note: Annotated[str | None, Field(max_length=2000)] = None,
                             ) -> ApprovalRecorded:
        """Record a person's approval (architecture, security, ux...) of the current change.

        The user is asked to confirm in Claude Code; the approval names them, covers the
        exact content of the files the rule matched, and is written to the audit chain.
        """
        if not isinstance(answer, AcceptedElicitation) or not answer.data.approve:
            raise ToolError(f"the user did not approve the {kind} review; nothing recorded")
        store = ctx.request_context.lifespan_context.require_store()
        project = project_dir()
        try:
            config = load_gates_config(project)
            snap = snapshot(project, config.base)
            receipt = record_approval(store, snap, config, project, kind=kind,
                                      approver=answer.data.approver, via="elicitation",
                                      note=note, expected_scope=pending.scope)
        except OrchestratorError as exc:
            raise ToolError(exc.one_line()) from exc
        return ApprovalRecorded(kind=receipt.kind, approver=receipt.approver, via=receipt.via,
                                scope=receipt.scope, tree=receipt.tree,
                                paths=list(receipt.paths), audit_seq=receipt.seq,
                                recorded_us=receipt.ts_us)


def _progress(ctx: Context[AppState, Any], message: str) -> None:
    with contextlib.suppress(Exception):  # progress is best effort; the run goes on
        anyio.from_thread.run(partial(ctx.report_progress, 0, None, message))
