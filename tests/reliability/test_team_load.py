"""Team load: eight processes posing as two machines decide agent spawns against one
PostgreSQL under a team limit and a per-machine limit, and append to one audit chain.

Every event goes to two processes of its machine (the two hooks that receive it) and is
decided exactly once; the limits hold at every instant (a trigger in the test's schema
records the lease count after every insert, inside the writer's transaction, so the peak
is exact, not sampled); the chain verifies; every lease is released at the end.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg

from mcp_server.hook_output import hook_output as rendered
from smart_orchestrator.audit import AuditLog
from smart_orchestrator.policy.admission import TEAM_MAX_IN_FLIGHT
from smart_orchestrator.store.postgres import PgStore
from tests.pg import fresh_schema_dsn

PROCESSES = 8
EVENTS_PER_PAIR = 12
TEAM_LIMIT = 3
MACHINE_LIMIT = 2
DEADLINE_S = 600.0


def _worker(queue: Any, barrier: Any, dsn: str, host: str, pair: int, me: str) -> None:
    os.environ["SMART_ORCHESTRATOR_HOST_ID"] = host
    from smart_orchestrator.policy.claims import decide_once
    from smart_orchestrator.policy.config import build_policy
    from smart_orchestrator.policy.engine import PolicyEngine
    from smart_orchestrator.resources import SystemSnapshot
    from tests.unit.policy_payloads import post_agent, pre_agent

    store = PgStore(dsn)
    policy = build_policy({"admission": {
        "max_in_flight_machine": MACHINE_LIMIT, "max_in_flight_session": 50,
        "spawns_per_minute": 10_000, "wait_timeout_s": 5.0, "min_available_memory_mb": 0}},
        "load.toml")
    engine = PolicyEngine(store, policy, project_dir=Path("/tmp"), clock=time.time,
                          sleep=time.sleep, owner_pid=None,
                          metrics=lambda: SystemSnapshot(True, 16 << 30, 24 << 30, 10.0, 2))
    session = f"session-{pair}-{me}"
    answers: list[tuple[str, str, bool]] = []
    barrier.wait(timeout=DEADLINE_S)
    for n in range(EVENTS_PER_PAIR):
        tool_use_id = f"toolu_{pair}_{me.replace(':', '_')}_{n}"
        pre = pre_agent(f"SUBTASK-{pair}-{n}: count the files", tool_use_id=tool_use_id,
                        session=session)
        settled = decide_once(store, f"pre:{tool_use_id}",
                              lambda p=pre: rendered(engine.handle(p)), wait_s=DEADLINE_S)
        verdict = settled.decision.get("hookSpecificOutput", {}).get("permissionDecision")
        answers.append((tool_use_id, str(verdict or "allow"), settled.here))
        if settled.here and verdict is None:
            engine.handle(post_agent(tool_use_id=tool_use_id, session=session))
    queue.put((me, host, answers))
    store.close()


def test_two_machines_share_exact_limits_one_chain_and_decide_each_event_once(
        tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("SMART_ORCHESTRATOR_DATA", str(tmp_path / "data"))
    dsn = fresh_schema_dsn("teamload")
    setup = PgStore(dsn)
    setup.kv_set(TEAM_MAX_IN_FLIGHT, str(TEAM_LIMIT))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE observed (total INT, on_host INT, host TEXT)")
        conn.execute("""
            CREATE FUNCTION observe() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO observed SELECT (SELECT count(*) FROM leases),
                    (SELECT count(*) FROM leases WHERE host = NEW.host), NEW.host;
                RETURN NULL;
            END $$""")
        conn.execute("CREATE TRIGGER observe AFTER INSERT ON leases FOR EACH ROW "
                     "EXECUTE FUNCTION observe()")
    ctx = multiprocessing.get_context("spawn")
    queue, barrier = ctx.Queue(), ctx.Barrier(PROCESSES)
    # Each process is one session's decider; pairs of them share a machine.
    args = [(dsn, f"machine-{(i // 2) % 2}", i // 2, f"hook:{i}") for i in range(PROCESSES)]
    procs = [ctx.Process(target=_worker, args=(queue, barrier, *a)) for a in args]
    for p in procs:
        p.start()
    results = [queue.get(timeout=DEADLINE_S) for _ in procs]
    for p in procs:
        p.join(timeout=DEADLINE_S)
        assert p.exitcode == 0

    # Every event decided once, by its session's decider.
    deciders: Counter[str] = Counter()
    verdicts: dict[str, set[str]] = {}
    for _, _, answers in results:
        for tool_use_id, verdict, here in answers:
            deciders[tool_use_id] += here
            verdicts.setdefault(tool_use_id, set()).add(verdict)
    events = PROCESSES * EVENTS_PER_PAIR
    assert len(deciders) == events and set(deciders.values()) == {1}, deciders
    assert all(len(v) == 1 for v in verdicts.values()), verdicts
    decisions = Counter(str(r.data.get("tool_use_id")) for r in setup.iter_audit()
                        if r.kind == "policy.decision")
    assert set(decisions.values()) == {1} and len(decisions) == events, decisions

    # The limits held at every instant, and were reached.
    with psycopg.connect(dsn, autocommit=True) as conn:
        total, on_host = conn.execute("SELECT max(total), max(on_host) FROM observed"
                                      ).fetchone() or (0, 0)
        hosts = {r[0] for r in conn.execute("SELECT DISTINCT host FROM observed")}
    assert total == TEAM_LIMIT and on_host <= MACHINE_LIMIT, (total, on_host)
    assert hosts == {"machine-0", "machine-1"}
    allowed = sum(next(iter(v)) == "allow" for v in verdicts.values())
    assert allowed >= TEAM_LIMIT, verdicts

    report = AuditLog(setup).verify()
    assert report.ok, report.one_line()
    assert setup.leases.count() == 0, "a lease was not released"
    setup.close()
