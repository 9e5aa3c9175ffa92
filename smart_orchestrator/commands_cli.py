"""Subcommands behind the slash commands, the skills and the demo.

`wave list|show`, `checkpoint list|show`, `audit recent`, `plan-from-markdown`, `report`,
`demo`, and `slash`: what each `/smart-orchestrator:<name>` command runs before the model
sees it. Registered through `smart_orchestrator.cli._EXTRA_COMMANDS`; imports stay inside
the handlers.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .store.base import WitnessedStore

    Sub = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["register_commands"]

_RUN_ID = re.compile(r"^w[0-9A-Za-z-]{1,80}$")


def register_commands(sub: Sub) -> None:
    _register_wave(sub)
    _register_checkpoint(sub)
    _register_audit_recent(sub)
    p = sub.add_parser("plan-from-markdown",
                       help="an execution plan (Markdown or JSON) as a spawn_wave plan (JSON)")
    p.add_argument("file", type=Path)
    p.add_argument("--name", default=None, help="the plan's name (default: its first heading)")
    p.set_defaults(fn=_cmd_plan)
    p = sub.add_parser("report", help="write a wave's run report: one self-contained HTML file")
    p.add_argument("run_id", help="the wave's run id, or `latest`")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="where to write it (default: wave-<RUN_ID>.html here)")
    _plugin_data_option(p)
    p.set_defaults(fn=_cmd_report)
    p = sub.add_parser("demo", help="see the plugin work in the real Claude Code, offline")
    p.add_argument("--live", action="store_true",
                   help="use the real model (needs ANTHROPIC_API_KEY; costs a few cents)")
    p.add_argument("--keep", action="store_true", help="keep the demo's folder afterwards")
    p.set_defaults(fn=_cmd_demo)
    p = sub.add_parser("slash", help="Markdown for a /smart-orchestrator: command (exit 0)")
    _plugin_data_option(p)
    p.add_argument("view", choices=sorted(_SLASH))
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(fn=_cmd_slash)


def _plugin_data_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plugin-data", default=None, metavar="DIR",
                   help="the plugin's data folder, for shells Claude Code starts without "
                        "$CLAUDE_PLUGIN_DATA (slash commands, skills)")


def _use_plugin_data(args: argparse.Namespace) -> None:
    # Claude Code substitutes ${CLAUDE_PLUGIN_DATA} into command and skill text but does not
    # export it to their shells; with it set here the store is found as the server finds it.
    if args.plugin_data and not os.environ.get("CLAUDE_PLUGIN_DATA"):
        os.environ["CLAUDE_PLUGIN_DATA"] = args.plugin_data


# -- wave, checkpoint, audit recent --------------------------------------------------------------

def _register_wave(sub: Sub) -> None:
    wave = sub.add_parser("wave", help="waves run through spawn_wave")
    wsub = wave.add_subparsers(dest="wave_command", required=True)
    p = wsub.add_parser("list", help="known waves, newest first")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--state", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=_cmd_wave_list)
    p = wsub.add_parser("show", help="one wave's tasks, attempts, errors, tokens and cost")
    p.add_argument("run_id", help="the wave's run id, or `latest`")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=_cmd_wave_show)


def _cmd_wave_list(args: argparse.Namespace) -> int:
    from .report.data import list_wave_runs
    from .report.tables import wave_list_table

    with _store(args) as store:
        runs = list_wave_runs(store, limit=args.limit, state=args.state)
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in runs], indent=2))
    else:
        print("## Waves (newest first)\n\n" + wave_list_table(runs))
    return 0


def _cmd_wave_show(args: argparse.Namespace) -> int:
    from .report.data import latest_run_id, wave_snapshot
    from .report.tables import wave_view

    with _store(args) as store:
        run_id = latest_run_id(store) if args.run_id == "latest" else args.run_id
        snap = wave_snapshot(store, run_id, output_chars=2000 if args.json else 0)
    print(snap.model_dump_json(indent=2) if args.json else wave_view(snap))
    return 0


def _register_checkpoint(sub: Sub) -> None:
    cp = sub.add_parser("checkpoint", help="saved checkpoints")
    csub = cp.add_subparsers(dest="checkpoint_command", required=True)
    p = csub.add_parser("list", help="saved checkpoints, newest first within each name")
    p.add_argument("name", nargs="?", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=_cmd_checkpoint_list)
    p = csub.add_parser("show", help="the newest valid copy of a checkpoint")
    p.add_argument("name")
    p.set_defaults(fn=_cmd_checkpoint_show)


def _cmd_checkpoint_list(args: argparse.Namespace) -> int:
    from .report.tables import checkpoint_table

    with _store(args) as store:
        metas = store.list_checkpoints(args.name)
    if args.json:
        print(json.dumps([m._asdict() for m in metas], indent=2))
    else:
        print("## Checkpoints\n\n" + checkpoint_table(metas))
    return 0


def _cmd_checkpoint_show(args: argparse.Namespace) -> int:
    from .report.tables import checkpoint_view

    with _store(args) as store:
        print(checkpoint_view(store, args.name))
    return 0


def _register_audit_recent(sub: Sub) -> None:
    audit_sub = next(a for a in sub.choices["audit"]._actions
                     if isinstance(a, argparse._SubParsersAction))
    p = audit_sub.add_parser("recent", help="the newest audit events as a table")
    p.add_argument("-n", "--limit", type=int, default=20)
    p.add_argument("--kind", default=None, help="only kinds starting with this, e.g. wave.")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=_cmd_audit_recent)


def _cmd_audit_recent(args: argparse.Namespace) -> int:
    from .report.tables import audit_table, recent_audit

    with _store(args) as store:
        records = recent_audit(store, limit=max(1, args.limit), kind=args.kind)
    if args.json:
        print(json.dumps([{"seq": r.seq, "ts_us": r.ts_us, "kind": r.kind, "data": r.data}
                          for r in records], indent=2))
    else:
        what = f" of kind {args.kind}*" if args.kind else ""
        print(f"## Recent audit events{what} (oldest first)\n\n" + audit_table(records))
    return 0


@contextlib.contextmanager
def _store(args: argparse.Namespace) -> Iterator[WitnessedStore]:
    from .store import open_store

    store = open_store(args.db, readonly=True)
    try:
        yield store
    finally:
        store.close()


# -- plan, report, demo --------------------------------------------------------------------------

def _cmd_plan(args: argparse.Namespace) -> int:
    from .plan_markdown import load_plan

    plan = load_plan(args.file, name=args.name)
    print(json.dumps(plan.model_dump(mode="json", exclude_defaults=True), indent=2))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import latest_run_id, load_run, render_html

    _use_plugin_data(args)
    with _store(args) as store:
        run_id = latest_run_id(store) if args.run_id == "latest" else args.run_id
        page = render_html(load_run(store, run_id))
    out: Path = args.output or Path(f"wave-{run_id}.html")
    out.write_text(page, encoding="utf-8")
    print(f"wrote {out} ({len(page.encode()):,} bytes): the run report of {run_id}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(live=args.live, keep=args.keep)


# -- slash commands ------------------------------------------------------------------------------

def _cli(argv: Sequence[str], db: str | None) -> str:
    """Run another subcommand and return what it printed; an error becomes a line of text."""
    from .cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([*(["--db", db] if db else []), *argv])
    text = out.getvalue().rstrip()
    if rc == 2:  # bad input or no usable store: the one-line reason is on stderr
        lines = err.getvalue().strip().splitlines()
        text += ("\n\n" if text else "") + "**Could not show this:** " + (
            lines[-1].removeprefix("smart-orchestrator: ") if lines else "unknown error")
    return text


def _slash_wave(args: Sequence[str], db: str | None) -> str:
    if not args:
        return _cli(["wave", "list"], db) + "\n\nShow one: `/smart-orchestrator:wave RUN_ID`; " \
            "start one: `/smart-orchestrator:wave PLAN.md`."
    target = args[0]
    if _RUN_ID.match(target) or target == "latest":
        return _cli(["wave", "show", target], db)
    if not Path(target).is_file():
        return f"**Could not show this:** `{target}` is neither a wave run id nor a plan file."
    return _plan_preview(Path(target))


def _plan_preview(path: Path) -> str:
    from .errors import OrchestratorError
    from .plan_markdown import load_plan
    from .report.tables import md_table
    from .waves.plan import dependency_levels

    try:
        plan = load_plan(path)
    except OrchestratorError as exc:
        return f"**Could not read the plan:** {exc.one_line()}"
    levels = dependency_levels(plan)
    level_of = {tid: i for i, level in enumerate(levels) for tid in level}
    body = json.dumps(plan.model_dump(mode="json", exclude_defaults=True), indent=2)
    return "\n".join([
        f"## Plan to start: {plan.name or path.name}", "",
        f"{len(plan.tasks)} tasks in {len(levels)} levels, from `{path}`.", "",
        md_table(["task", "level", "depends on", "prompt"],
                 [[t.id, level_of[t.id] + 1, t.depends_on, t.prompt.splitlines()[0]]
                  for t in plan.tasks]), "",
        "spawn_wave plan (JSON):", "", "```json", body, "```"])


def _slash_gates(args: Sequence[str], db: str | None) -> str:
    flags = {"cached": ["--cached"], "force": ["--force"]}
    return _cli(["gates", *flags.get(args[0] if args else "", [])], db)


def _slash_checkpoint(args: Sequence[str], db: str | None) -> str:
    return _cli(["checkpoint", "show", args[0]] if args else ["checkpoint", "list"], db)


def _slash_audit(args: Sequence[str], db: str | None) -> str:
    recent = ["audit", "recent"]
    for arg in args[:1]:
        recent += ["-n", arg] if arg.isdigit() else ["--kind", arg]
    verify = _cli(["audit", "verify"], db)
    return f"**Audit:** {verify}\n\n" + _cli(recent, db)


def _slash_metrics(args: Sequence[str], db: str | None) -> str:
    days = args[0] if args and re.match(r"^\d+(\.\d+)?$", args[0]) else "7"
    return _cli(["metrics", "--days", days], db)


_SLASH: dict[str, Callable[[Sequence[str], str | None], str]] = {
    "status": lambda _, db: _cli(["status"], db),
    "wave": _slash_wave,
    "gates": _slash_gates,
    "checkpoint": _slash_checkpoint,
    "audit": _slash_audit,
    "metrics": _slash_metrics,
    "policy": lambda _, db: _cli(["policy"], db),
}


def _cmd_slash(args: argparse.Namespace) -> int:
    _use_plugin_data(args)
    print(_SLASH[args.view](args.args, args.db))
    # Always 0: Claude Code drops a command whose `!` line fails, so the verdict (blocked
    # gates, a broken chain) is in the text instead.
    sys.stdout.flush()
    return 0
