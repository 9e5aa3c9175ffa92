"""`smart-orchestrator worker`: join the team's wave queue and run its tasks' agents here."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

__all__ = ["register_worker_command"]


def _cmd_worker(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .store import open_store
    from .waves.admission import MIB
    from .waves.config import WaveConfig
    from .waves.worker import Worker
    from .waves.worktrees import worktrees_root

    config = WaveConfig.from_env()
    if args.memory_mb is not None:
        config = replace(config, admission=replace(config.admission,
                                                   memory_budget_bytes=args.memory_mb * MIB))
    concurrency = args.concurrency or config.admission.max_agents
    checkout = Path(args.checkout).expanduser().resolve() if args.checkout \
        else worktrees_root() / "worker"
    checkout.mkdir(parents=True, exist_ok=True)
    store = open_store(args.db)
    # The policy core on every agent, as the server runs wave agents (an adapter, so
    # imported here, not by the core).
    from mcp_server.wave_tools import wave_policy_hooks

    from .waves.runner import SdkAgentRunner

    # Its own connection: the hooks check agents' tool calls from the SDK's threads.
    hooks_store = open_store(args.db)
    runner = SdkAgentRunner(make_hooks=wave_policy_hooks(hooks_store), sandbox=config.sandbox)
    worker = Worker(store, runner, checkout=checkout, concurrency=concurrency,
                    team_concurrency=args.team_concurrency, config=config,
                    dead_after_s=args.dead_after, beat_s=args.beat)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    worker.start()
    print(f"smart-orchestrator worker {worker.executor_id}: serving the wave queue of "
          f"{store.location} (up to {concurrency} agents here"
          + (f", {args.team_concurrency} in the team" if args.team_concurrency else "")
          + f"; checkout {checkout})", file=sys.stderr, flush=True)
    try:
        stop.wait()
    finally:
        worker.stop()
        hooks_store.close()
        store.close()
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError("must be between 0 and 3600 seconds")
    return value


def register_worker_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    worker = sub.add_parser(
        "worker", help="join the team's wave queue and run wave tasks' agents on this machine")
    worker.add_argument("--concurrency", type=_positive, default=None,
                        help="agents at once on this worker (default: the wave cap, "
                        "SMART_ORCHESTRATOR_WAVE_MAX_AGENTS)")
    worker.add_argument("--team-concurrency", type=_positive, default=None,
                        help="agents at once across the team's workers (the queue keeps "
                        "the last value a worker joined with)")
    worker.add_argument("--memory-mb", type=_positive, default=None,
                        help="this worker's memory budget for agents (default: "
                        "SMART_ORCHESTRATOR_WAVE_MEMORY_MB, else half the available memory)")
    worker.add_argument("--checkout", default=None,
                        help="where this worker clones waves' remotes and makes worktrees")
    worker.add_argument("--dead-after", type=_seconds, default=30.0,
                        help="seconds without a heartbeat after which a worker is taken "
                        "for dead and its tasks re-run elsewhere (default 30)")
    worker.add_argument("--beat", type=_seconds, default=2.0,
                        help="seconds between this worker's heartbeats (default 2)")
    worker.add_argument("--db", default=None, help="the store (default: as configured)")
    worker.set_defaults(fn=_cmd_worker)

