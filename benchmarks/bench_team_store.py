"""What a team store costs a spawn decision, and what a slow network adds to it:

    SMART_ORCHESTRATOR_TEST_PG_DSN=postgresql://... .venv/bin/python benchmarks/bench_team_store.py

Each decision is a PreToolUse(Agent) and its PostToolUse through the policy engine, as the
service makes them. The store reaches PostgreSQL through a relay that counts the client's
messages and can delay every message by a fixed time each way; printed: messages per
decision, and the median decision time with 0 and 10 ms added each way (the difference,
over 20 ms, is the round trips a decision waits for), beside the same decisions on a
local SQLite file.
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from smart_orchestrator.policy.config import build_policy  # noqa: E402
from smart_orchestrator.policy.engine import PolicyEngine  # noqa: E402
from smart_orchestrator.resources import SystemSnapshot  # noqa: E402
from smart_orchestrator.store import SqliteStore  # noqa: E402
from smart_orchestrator.store.base import Store  # noqa: E402
from smart_orchestrator.store.postgres import PgStore  # noqa: E402
from tests.pg import fresh_schema_dsn  # noqa: E402
from tests.unit.policy_payloads import post_agent, pre_agent  # noqa: E402

DECISIONS = 30


class DelayRelay:
    def __init__(self, target: tuple[str, int]) -> None:
        self.delay_s = 0.0
        self.requests = 0
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self._listener.accept()
            upstream = socket.create_connection(self._target)
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, request: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if request:
                    self.requests += 1
                if self.delay_s:
                    time.sleep(self.delay_s)
                dst.sendall(data)


def _engine(store: Store, project: Path) -> PolicyEngine:
    return PolicyEngine(store, build_policy({}, "bench.toml"), project_dir=project,
                        clock=time.time, sleep=time.sleep, owner_pid=None,
                        metrics=lambda: SystemSnapshot(True, 16 << 30, 24 << 30, 10.0, 2))


def _decide(engine: PolicyEngine, n: int, tag: str) -> float:
    start = time.perf_counter()
    engine.handle(pre_agent(f"SUBTASK-{n}: count", tool_use_id=f"{tag}{n}"))
    engine.handle(post_agent(tool_use_id=f"{tag}{n}"))
    return time.perf_counter() - start


def main() -> int:
    dsn = fresh_schema_dsn("bench")
    parts = urlsplit(dsn)
    relay = DelayRelay((parts.hostname or "127.0.0.1", parts.port or 5432))
    via = urlunsplit(parts._replace(netloc=f"{parts.username}:{parts.password}"
                                           f"@127.0.0.1:{relay.port}"))
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        local = SqliteStore(project / "state.db")
        engine = _engine(local, project)
        _decide(engine, 0, "warm")
        sqlite_s = [_decide(engine, n, "s") for n in range(DECISIONS)]
        team = PgStore(via)
        engine = _engine(team, project)
        _decide(engine, 0, "warm")
        before = relay.requests
        pg_s = [_decide(engine, n, "p") for n in range(DECISIONS)]
        trips = (relay.requests - before) / DECISIONS
        relay.delay_s = 0.010
        slow_s = [_decide(engine, n, "d") for n in range(DECISIONS // 3)]
    med = {k: statistics.median(v) * 1000 for k, v in
           (("sqlite", sqlite_s), ("pg", pg_s), ("pg+10ms", slow_s))}
    print(f"decision (PreToolUse + PostToolUse of one agent), median of {DECISIONS}:")
    print(f"  SQLite file            {med['sqlite']:7.1f} ms")
    print(f"  PostgreSQL, loopback   {med['pg']:7.1f} ms, {trips:.0f} client messages")
    print(f"  PostgreSQL, +10 ms/way {med['pg+10ms']:7.1f} ms "
          f"(= {(med['pg+10ms'] - med['pg']) / 20:.0f} round trips of 20 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
