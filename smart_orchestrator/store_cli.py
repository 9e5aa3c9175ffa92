"""`smart-orchestrator store`: move a machine's state into a team store, set team limits."""

from __future__ import annotations

import argparse
from typing import Any

from .errors import OrchestratorError

__all__ = ["register_store_command"]


def _cmd_export(args: argparse.Namespace) -> int:
    from .paths import db_path
    from .store.postgres import PgStore, is_postgres_url
    from .store.sqlite import SqliteStore

    if not is_postgres_url(args.to):
        raise OrchestratorError("--to must be a postgresql:// URL")
    source = SqliteStore(args.db or db_path(), readonly=True)
    target = PgStore(args.to)
    try:
        from .store.export import export_store

        report = export_store(source, target)
    finally:
        source.close()
        target.close()
    print(report.one_line())
    return 0


def _cmd_team_limits(args: argparse.Namespace) -> int:
    from .policy.admission import TEAM_MAX_IN_FLIGHT, TEAM_SPAWNS_PER_MINUTE, team_limits
    from .store import open_store

    store = open_store(args.db)
    try:
        if args.max_in_flight is not None:
            store.kv_set(TEAM_MAX_IN_FLIGHT, str(args.max_in_flight))
        if args.spawns_per_minute is not None:
            store.kv_set(TEAM_SPAWNS_PER_MINUTE, str(args.spawns_per_minute))
        agents, rate = team_limits(store)
        print(f"{store.location}: team limits: {agents or 'no limit'} agents in flight, "
              f"{rate or 'no limit'} spawns per minute")
    finally:
        store.close()
    return 0


def _cmd_release_host(args: argparse.Namespace) -> int:
    from .audit import AuditLog
    from .store import open_store

    store = open_store(args.db)
    try:
        with store.transaction():
            released = store.leases.delete_host(args.host)
            AuditLog(store).record("store.host_released", host=args.host, leases=released)
    finally:
        store.close()
    print(f"released {released} lease(s) of {args.host}")
    return 0


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 (no limit) or more")
    return value


def register_store_command(sub: argparse._SubParsersAction[Any]) -> None:
    store = sub.add_parser("store", help="team store: export local state, team limits")
    store_sub = store.add_subparsers(dest="store_command", required=True)
    export = store_sub.add_parser(
        "export", help="copy this machine's SQLite state into an empty team store "
                       "(the audit chain stays verifiable)")
    export.add_argument("--to", required=True, metavar="URL",
                        help="postgresql://user:password@host:port/database")
    export.set_defaults(fn=_cmd_export)
    limits = store_sub.add_parser(
        "team-limits", help="show or set the limits every machine on this store shares")
    limits.add_argument("--max-in-flight", type=_count, default=None,
                        help="agents in flight across the team (0: no limit)")
    limits.add_argument("--spawns-per-minute", type=_count, default=None,
                        help="agent starts per minute across the team (0: no limit)")
    limits.set_defaults(fn=_cmd_team_limits)
    release = store_sub.add_parser(
        "release-host", help="release every lease of a machine that died (its agents are "
                             "gone; other machines cannot tell)")
    release.add_argument("host", help="the host id, as `status` shows it")
    release.set_defaults(fn=_cmd_release_host)
