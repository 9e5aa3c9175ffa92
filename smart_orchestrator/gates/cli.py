"""`smart-orchestrator gates [--json]` and `smart-orchestrator gates approve KIND --by NAME`.

Registered through `smart_orchestrator.cli._EXTRA_COMMANDS`; imports nothing heavy until a
gates command actually runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import GateReport

__all__ = ["register_gates_command", "render_markdown"]

_MARK = {"passed": "PASS", "failed": "FAIL", "pending": "PENDING", "skipped": "skipped",
         "timed_out": "TIMEOUT", "error": "ERROR", "cancelled": "CANCELLED", "not_run": "not run"}


def register_gates_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("gates", help="run the quality gates on the working copy "
                                     "(exit 1 if a tier blocks)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--cached", action="store_true", help="report cached results; run nothing")
    p.add_argument("--force", action="store_true", help="run again even where cached")
    p.add_argument("--project", default=None, help="project folder (default: the current one)")
    p.set_defaults(fn=_cmd_gates)
    gsub = p.add_subparsers(dest="gates_command")
    a = gsub.add_parser("approve", help="record your approval of the current change")
    a.add_argument("kind", help="the review you give, e.g. security")
    a.add_argument("--by", required=True, help="your name, as the approval rules list it")
    a.add_argument("--note", default=None, help="why (kept as a digest)")
    a.set_defaults(fn=_cmd_approve)


def _project(args: argparse.Namespace) -> Path:
    from ..paths import project_dir

    return Path(args.project).resolve() if args.project else project_dir()


def _cmd_gates(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ..store import open_store
    from .runner import GateRunner

    store = open_store(args.db)
    try:
        report = GateRunner(store, _project(args),
                            progress=lambda m: print(m, file=sys.stderr)).evaluate(
            run=not args.cached, force=args.force)
    finally:
        store.close()
    if args.json:
        print(json.dumps(asdict(report), indent=2))
    else:
        print(render_markdown(report))
    return 0 if report.passed else 1


def _cmd_approve(args: argparse.Namespace) -> int:
    from ..errors import OrchestratorError
    from ..store import open_store
    from ._git import snapshot
    from .approvals import record_approval
    from .config import load_gates_config

    if os.environ.get("CLAUDECODE") == "1":
        # Inside Claude Code this shell may be an agent's: approvals there go through the
        # MCP tool, which asks the person to confirm.
        raise OrchestratorError("refusing to record an approval from inside a Claude Code "
                                "session", hint="use /smart-orchestrator:approve, which asks "
                                "you to confirm, or run this from your own terminal")
    project = _project(args)
    config = load_gates_config(project)
    store = open_store(args.db)
    try:
        snap = snapshot(project, config.base)
        receipt = record_approval(store, snap, config, project, kind=args.kind,
                                  approver=args.by, via="cli", note=args.note)
    finally:
        store.close()
    print(f"recorded: {receipt.approver} approved the {receipt.kind} review of "
          f"{len(receipt.paths)} file(s) at tree {receipt.tree[:12]} (audit seq {receipt.seq})")
    return 0


def render_markdown(report: GateReport) -> str:
    verdict = "PASS" if report.passed else f"BLOCKED at tier {report.blocking_tier}"
    lines = [f"## Quality gates: {verdict}", "", report.reason, "",
             f"Tree `{report.tree[:12]}` against `{report.base}`; "
             f"{len(report.changed_paths)} changed file(s).", ""]
    for tier in report.tiers:
        lines.append(f"**Tier {tier.tier} ({tier.name}): {_MARK[tier.status]}**"
                     + (f" - {tier.reason}" if tier.reason else ""))
        for c in tier.checks:
            cached = " (cached)" if c.cached else ""
            lines.append(f"- {c.name}: {_MARK[c.status]}{cached} - {c.detail or c.source}")
            lines += [f"  - {f.path}:{f.line} {f.detail}" for f in c.findings[:10]]
        for a in tier.approvals:
            who = (f"approved by {a.approved_by} via {a.via}" if a.approved_by
                   else "waiting for approval")
            lines.append(f"- {a.kind}: {who} ({len(a.paths)} file(s))")
        lines.append("")
    failing = [c for t in report.tiers for c in t.checks
               if c.kind == "command" and c.status != "passed" and c.output_tail]
    for c in failing[:3]:
        lines += [f"Output of {c.name} (last lines):", "```", _last_lines(c.output_tail, 40),
                  "```", ""]
    lines += [f"Note: {n}" for n in report.notes]
    return "\n".join(lines).rstrip()


def _last_lines(text: str, n: int) -> str:
    return "\n".join(text.rstrip().splitlines()[-n:])
