"""`smart-orchestrator metrics [--days N] [--json]`, registered through `_EXTRA_COMMANDS`."""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["register_metrics_command"]


def register_metrics_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("metrics", help="the plan's metrics from the audit log")
    p.add_argument("--days", type=float, default=7.0, help="window length (default 7 days)")
    p.add_argument("--context-window", type=int, default=None,
                   help="model context window in tokens (default 200000)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=_cmd_metrics)


def _cmd_metrics(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ..errors import OrchestratorError
    from ..store import open_store
    from .core import DEFAULT_CONTEXT_WINDOW, compute_metrics
    from .render import render_markdown, window

    if args.days <= 0:
        raise OrchestratorError("--days must be positive")
    since, until = window(args.days)
    store = open_store(args.db, readonly=True)
    try:
        report = compute_metrics(store, since_us=since, until_us=until,
                                 context_window_tokens=args.context_window
                                 or DEFAULT_CONTEXT_WINDOW)
        costs = _costs(store, since, until)
    finally:
        store.close()
    if args.json:
        print(json.dumps({**asdict(report), "costs": costs}, indent=2))
    else:
        print(render_markdown(report) + _cost_lines(costs))
    return 0


def _costs(store: Any, since: int, until: int) -> dict[str, Any]:
    from ..budget.summary import cost_summary
    from ..errors import StoreError

    try:
        return cost_summary(store, since_us=since, until_us=until)
    except StoreError:  # a store from before the ledger, opened read-only
        return {}


def _cost_lines(costs: dict[str, Any]) -> str:
    from ..budget.summary import render_costs

    return ("\n\n" + "\n".join(render_costs(costs))) if costs else ""
