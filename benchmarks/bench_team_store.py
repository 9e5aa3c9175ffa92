"""What a team store costs a spawn decision, and what a slow network adds to it:

    SMART_ORCHESTRATOR_TEST_PG_DSN=postgresql://... .venv/bin/python benchmarks/bench_team_store.py

Each decision is a PreToolUse(Agent) and its PostToolUse through the policy engine, as the
service makes them. The store reaches PostgreSQL through a relay that counts round trips
(the client speaking again after the server answered) and can delay every message by a
fixed time each way. Three variants run interleaved in one process: a local SQLite file
(the baseline), the team store sending each statement and waiting for it, and the team
store as the engine uses it (one decision's statements pipelined, its commits confirmed
once). Printed: median times with 0 and 10 ms added each way, and round trips per hook
event counted by the relay.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
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
        # A round trip is the client speaking again after the server answered: chunks
        # sent back to back (a pipeline) are one.
        self.round_trips = 0
        self._answered = True
        self._turn = threading.Lock()
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
            for src, dst, request in ((client, upstream, True), (upstream, client, False)):
                line: queue.Queue[tuple[float, bytes]] = queue.Queue()
                threading.Thread(target=self._read, args=(src, line, request),
                                 daemon=True).start()
                threading.Thread(target=self._write, args=(line, dst), daemon=True).start()

    def _read(self, src: socket.socket, line: queue.Queue[tuple[float, bytes]],
              request: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                with self._turn:
                    if request:
                        self.requests += 1
                        self.round_trips += self._answered
                    self._answered = not request
                line.put((time.monotonic() + self.delay_s, data))
        line.put((0.0, b""))

    @staticmethod
    def _write(line: queue.Queue[tuple[float, bytes]], dst: socket.socket) -> None:
        # Each chunk arrives `delay_s` after it was sent, as on a long wire: chunks sent
        # back to back are delayed together, not one after the other.
        with contextlib.suppress(OSError):
            while True:
                due, data = line.get()
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                time.sleep(max(0.0, due - time.monotonic()))
                dst.sendall(data)


class Unbatched(PgStore):
    """The same store sending each statement and waiting for it: how decisions went
    before they were batched, for the comparison in the same run."""

    @contextlib.contextmanager
    def decision(self) -> Iterator[None]:
        yield

    @contextlib.contextmanager
    def idle(self) -> Iterator[None]:
        yield


def _engine(store: Store, project: Path) -> PolicyEngine:
    # Limits high enough that no decision waits for the spawn window, nor for the load of
    # a busy machine: what is measured is the store, not a wait.
    policy = build_policy({"admission": {"spawns_per_minute": 1_000_000,
                                         "max_load_percent": 1e9}}, "bench.toml")
    return PolicyEngine(store, policy, project_dir=project,
                        clock=time.time, sleep=time.sleep, owner_pid=None,
                        metrics=lambda: SystemSnapshot(True, 16 << 30, 24 << 30, 10.0, 2))


class Variant:
    def __init__(self, name: str, engine: PolicyEngine, relay: DelayRelay | None) -> None:
        self.name, self.engine, self.relay = name, engine, relay
        self.times: dict[float, list[float]] = {}
        self.trips: dict[str, list[int]] = {"pre": [], "post": []}

    def decide(self, tag: str) -> None:
        start = time.perf_counter()
        for event, payload in (("pre", pre_agent(f"{tag}: count", tool_use_id=tag)),
                               ("post", post_agent(tool_use_id=tag))):
            before = self.relay.round_trips if self.relay else 0
            out = self.engine.handle(payload)
            if out.get("hookSpecificOutput", {}).get("permissionDecision") == "deny":
                raise SystemExit(f"{self.name}: the benchmark's spawn was denied: {out}")
            if self.relay:
                self.trips[event].append(self.relay.round_trips - before)
        delay = self.relay.delay_s if self.relay else 0.0
        self.times.setdefault(delay, []).append(time.perf_counter() - start)


def main() -> int:
    dsn = fresh_schema_dsn("bench")
    parts = urlsplit(dsn)
    relay = DelayRelay((parts.hostname or "127.0.0.1", parts.port or 5432))
    via = urlunsplit(parts._replace(netloc=f"{parts.username}:{parts.password}"
                                           f"@127.0.0.1:{relay.port}"))
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        variants = [Variant("SQLite file", _engine(SqliteStore(project / "state.db"), project),
                            None),
                    Variant("PostgreSQL, per statement", _engine(Unbatched(via), project), relay),
                    Variant("PostgreSQL, per decision", _engine(PgStore(via), project), relay)]
        for v in variants:
            v.decide(f"warm-{v.name}")
            v.trips = {"pre": [], "post": []}
            v.times = {}
        for delay, rounds in ((0.0, DECISIONS), (0.010, DECISIONS // 3)):
            relay.delay_s = delay
            for n in range(rounds):  # interleaved: load on the machine hits all alike
                for k, v in enumerate(variants):
                    v.decide(f"SUBTASK-{delay}-{n}-{k}")
    print("one agent's PreToolUse + PostToolUse through the policy engine; medians of "
          f"{DECISIONS} (loopback) and {DECISIONS // 3} (+10 ms each way):")
    base = statistics.median(variants[0].times[0.0])
    for v in variants:
        fast = statistics.median(v.times[0.0]) * 1000
        slow = statistics.median(v.times.get(0.010, v.times[0.0])) * 1000
        trips = ""
        if v.relay:
            pre, post = (statistics.median(v.trips[e]) for e in ("pre", "post"))
            trips = (f"; round trips: PreToolUse {pre:.0f}, PostToolUse {post:.0f} "
                     f"(+10 ms/way adds {(slow - fast) / 20:.1f} x 20 ms)")
        print(f"  {v.name:27s} {fast:7.1f} ms ({fast / base / 1000:5.1f} x SQLite), "
              f"+10 ms/way {slow:7.1f} ms{trips}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
