"""`smart-orchestrator`: the command line for people, the SessionStart hook and the plugin's
server.

Each subcommand imports only what it needs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from .errors import OrchestratorError

__all__ = ["main"]


def _cmd_serve(_: argparse.Namespace) -> int:
    from mcp_server.server import main as serve

    serve()
    return 0


def _cmd_service(_: argparse.Namespace) -> int:
    from mcp_server.service import main as service

    return service()


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    from .audit_check import check_audit
    from .store import open_store

    store = open_store(args.db, readonly=True)
    report = check_audit(store)
    if args.json:
        print(json.dumps(report.as_json()))
    else:
        print(report.one_line())
        for line in (*report.problems[1:], *report.gaps[1:]):
            print(f"  {line}")
    return report.exit_code


def _cmd_audit_export(args: argparse.Namespace) -> int:
    from .store import open_store

    store = open_store(args.db, readonly=True)
    out = sys.stdout
    for rec in store.iter_audit(after_seq=args.after):
        out.write(json.dumps({"seq": rec.seq, "ts_us": rec.ts_us, "kind": rec.kind,
                              "data": rec.data, "prev_hash": rec.prev_hash, "hash": rec.hash},
                             sort_keys=True) + "\n")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from .status import collect_status, render_status

    try:
        status = collect_status(args.db)
    except OrchestratorError as exc:
        if "no state database" not in exc.reason:
            raise
        from .paths import locate_data_dir

        located = locate_data_dir()
        print(f"Smart Orchestrator has not recorded anything yet ({exc.reason}; data folder: "
              f"{located.origin}). Its state appears once a Claude Code session with the "
              "plugin has started; for another folder set SMART_ORCHESTRATOR_DATA.")
        return 0
    print(json.dumps(status, indent=2, sort_keys=True) if args.json else render_status(status))
    return 0


def _cmd_validate_plugin(_: argparse.Namespace) -> int:
    import subprocess

    from .claude_cli import PLUGIN_ROOT, bundled_claude

    return subprocess.run([str(bundled_claude()), "plugin", "validate", str(PLUGIN_ROOT)],
                          check=False).returncode


def _cmd_claude(args: argparse.Namespace) -> int:
    import os

    from .claude_cli import PLUGIN_ROOT, bundled_claude, clean_agent_env

    binary = str(bundled_claude())
    os.execve(binary, [binary, "--plugin-dir", str(PLUGIN_ROOT), *args.claude_args],
              clean_agent_env())
    return 0  # not reached


def _cmd_scan(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .detect.secrets import load_baseline, scan_text

    try:
        if args.path == "-":
            text = sys.stdin.buffer.read().decode("utf-8", "replace")
        else:
            text = Path(args.path).read_bytes().decode("utf-8", "replace")
        baseline = args.baseline or (".secrets.baseline" if Path(".secrets.baseline").is_file()
                                     else None)
        allow = load_baseline(baseline) if baseline else None
    except OSError as exc:
        raise OrchestratorError(f"cannot read {exc.filename}: {exc.strerror}") from exc
    except ValueError as exc:
        raise OrchestratorError(str(exc)) from exc
    # A file a person reviews: its inline allowlist comments count.
    findings = scan_text(text, allowlist=allow, pragmas=True)
    if args.json:
        print(json.dumps([{"rule": f.rule_id, "line": f.line, "match": f.redacted,
                           "severity": f.severity} for f in findings], indent=2))
    else:
        for f in findings:
            print(f"{args.path}:{f.line}: {f.rule_id} ({f.severity}) {f.redacted}")
        if not findings:
            print("no secrets found")
    return 1 if findings else 0


def _cmd_setup(_: argparse.Namespace) -> int:
    # The launcher already found a Python with every dependency. Claude Code runs this as
    # the SessionStart hook: pin the session's policy before the model can act.
    from .policy_cli import pin_session

    pin_session(sys.stdin)
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smart-orchestrator",
                                description="Policy, waves and audit for Claude Code agents.")
    p.add_argument("--db", default=None,
                   help="state database: a file or a postgresql:// URL (default: "
                        "$SMART_ORCHESTRATOR_STORE, $SMART_ORCHESTRATOR_DB or the plugin "
                        "data dir)")
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("serve", help="run the MCP server on stdio").set_defaults(fn=_cmd_serve)
    sub.add_parser("service", help="run the per-user service that every session's MCP "
                   "server relays to (started on demand)").set_defaults(fn=_cmd_service)

    audit = sub.add_parser("audit", help="verify or export the audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser(
        "verify", help="check the hash chain and its witness (exit 1 if broken or apart from "
                       "the witness, 3 if it records gaps)")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(fn=_cmd_audit_verify)
    export = audit_sub.add_parser("export", help="print events as JSON lines")
    export.add_argument("--after", type=int, default=0, help="only events after this seq")
    export.set_defaults(fn=_cmd_audit_export)

    status = sub.add_parser("status", help="agents in flight, denials, resources, breakers")
    status.add_argument("--json", action="store_true")
    status.set_defaults(fn=_cmd_status)

    scan = sub.add_parser("scan", help="scan a file or stdin for secrets (exit 1 if found)")
    scan.add_argument("path", nargs="?", default="-", help="file to scan, or - for stdin")
    scan.add_argument("--json", action="store_true", help="findings as JSON")
    scan.add_argument("--baseline", help="detect-secrets baseline of accepted findings")
    scan.set_defaults(fn=_cmd_scan)
    sub.add_parser("setup", help="prepare the plugin's Python environment"
                   ).set_defaults(fn=_cmd_setup)
    sub.add_parser("validate-plugin", help="run `claude plugin validate` on this plugin"
                   ).set_defaults(fn=_cmd_validate_plugin)
    claude = sub.add_parser("claude", help="start Claude Code with this plugin loaded")
    claude.add_argument("claude_args", nargs=argparse.REMAINDER)
    claude.set_defaults(fn=_cmd_claude)

    for register in _EXTRA_COMMANDS:
        register(sub)
    return p


# Later subcommands register themselves here, keeping this module's imports flat.
_EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = []

from .commands_cli import register_commands  # noqa: E402
from .gates.cli import register_gates_command  # noqa: E402
from .metrics.cli import register_metrics_command  # noqa: E402
from .policy_cli import register_policy_command  # noqa: E402
from .store_cli import register_store_command  # noqa: E402
from .worker_cli import register_worker_command  # noqa: E402

_EXTRA_COMMANDS += [register_gates_command, register_metrics_command, register_commands,
                    register_policy_command, register_store_command, register_worker_command]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        rc: int = args.fn(args)
        return rc
    except OrchestratorError as exc:
        print(f"smart-orchestrator: {exc.one_line()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `... | head` closed the pipe: not an error for a listing command.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
