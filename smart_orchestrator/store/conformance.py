"""Contract tests every `Store` backend must pass: `run_store_conformance(new_location)`.

Each check gets a fresh location (a SQLite file path, or a PostgreSQL URL naming a fresh
schema) and opens it with `open_store`, in this process, in threads, and in other
processes, because what a backend must get right is what many writers do at once: claim
an event exactly once, keep limits exact, hand a half-open breaker's trial to one caller,
keep the audit chain one chain, fall back past a corrupt checkpoint, and undo an inner
transaction without its outer one.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, cast

from ..audit import AuditLog
from ..canonical import sha256_hex
from ..errors import StoreError
from .base import WitnessedStore
from .repos import Census

if TYPE_CHECKING:
    from ._sql import Executor

__all__ = ["CHECKS", "run_store_conformance"]

_DEADLINE_S = 300.0  # generous: a loaded 2-core machine, several processes each


def _open(location: str) -> WitnessedStore:
    from . import open_store

    return open_store(location)


def _run_processes(target: Callable[..., None], args: list[tuple[Any, ...]]) -> list[Any]:
    """Run `target(queue, barrier, *a)` in one process per `a`, started together; returns
    what each put on the queue."""
    ctx = multiprocessing.get_context("spawn")
    queue, barrier = ctx.Queue(), ctx.Barrier(len(args))
    procs = [ctx.Process(target=target, args=(queue, barrier, *a)) for a in args]
    for p in procs:
        p.start()
    results = [queue.get(timeout=_DEADLINE_S) for _ in procs]
    for p in procs:
        p.join(timeout=_DEADLINE_S)
        assert p.exitcode == 0, f"a worker exited with {p.exitcode}"
    return results


# -- basics ------------------------------------------------------------------------------
def _audit_chain_survives_reopen(location: str) -> None:
    store = _open(location)
    for i in range(5):
        store.append_audit("test", {"i": i})
    store.close()
    again = _open(location)
    report = AuditLog(again).verify()
    assert report.ok and report.events == 5, report.one_line()
    assert again.audit_head().seq == 5
    again.close()


def _audit_records_come_back_in_order(location: str) -> None:
    store = _open(location)
    written = [store.append_audit("k", {"n": n, "run_id": f"r{n % 2}"}) for n in range(3)]
    read = list(store.iter_audit())
    assert [r.hash for r in read] == [w.hash for w in written]
    assert [r.data["n"] for r in read] == [0, 1, 2]
    assert next(iter(store.iter_audit(after_seq=2))).seq == 3
    assert [r.data["n"] for r in store.audit.events(match={"run_id": "r0"})] == [0, 2]
    assert store.audit.count(kind_prefix="k", match={"run_id": "r1"}) == 1
    assert store.audit.tail() == (3, written[-1].hash)
    store.close()


def _checkpoints_newest_first_with_retention(location: str) -> None:
    store = _open(location)
    for i in range(4):
        payload = f'{{"i":{i}}}'.encode()
        store.put_checkpoint("cp", payload, sha256_hex(payload), keep=2)
    blobs = store.checkpoint_blobs("cp")
    assert [b.payload for b in blobs] == [b'{"i":3}', b'{"i":2}']
    assert [m.name for m in store.list_checkpoints()] == ["cp", "cp"]
    assert store.list_checkpoints("other") == []
    store.close()


def _checkpoint_falls_back_past_a_corrupt_copy(location: str) -> None:
    from ..checkpoints import CheckpointError, Checkpoints

    store = _open(location)
    cps = Checkpoints(store, keep=3)
    for i in range(3):
        cps.save("plan", {"i": i})
    newest = store.list_checkpoints("plan")[0]
    with store.transaction() as tx:  # a damaged page, as a disk or a person leaves it
        cast("Executor", tx).execute("UPDATE checkpoints SET payload = ? WHERE id = ?",
                                     (b'{"i": 9}', newest.id))
    loaded = cps.load("plan")
    assert loaded.state == {"i": 1} and loaded.fell_back, loaded
    with store.transaction() as tx:
        cast("Executor", tx).execute("UPDATE checkpoints SET payload = ? WHERE name = ?",
                                     (b"x", "plan"))
    try:
        cps.load("plan")
    except CheckpointError:
        pass
    else:
        raise AssertionError("every copy corrupt, yet a checkpoint loaded")
    store.close()


def _kv_round_trips(location: str) -> None:
    store = _open(location)
    assert store.kv_get("a") is None
    store.kv_set("a", "1")
    store.kv_set("a", "2")
    assert store.kv_get("a") == "2"
    store.close()


# -- transactions ------------------------------------------------------------------------
class _Inner(Exception):
    pass


def _inner_failure_undoes_only_its_savepoint(location: str) -> None:
    store = _open(location)
    log = AuditLog(store)
    with store.transaction():
        store.kv_set("outer", "1")
        log.record("outer.before")
        try:
            with store.transaction():
                store.kv_set("inner", "1")
                log.record("inner")
                store.claims.claim("event", "me", 1)
                raise _Inner
        except _Inner:
            pass
        log.record("outer.after")
        assert store.claims.claim("event", "you", 2)  # the inner claim was undone
    assert store.kv_get("outer") == "1" and store.kv_get("inner") is None
    assert [r.kind for r in store.iter_audit()] == ["outer.before", "outer.after"]
    assert AuditLog(store).verify().ok
    # An outer failure undoes what its inner transactions committed to it.
    try:
        with store.transaction():
            with store.transaction():
                store.kv_set("released", "1")
                log.record("released")
            raise _Inner
    except _Inner:
        pass
    assert store.kv_get("released") is None
    assert [r.kind for r in store.iter_audit()] == ["outer.before", "outer.after"]
    store.close()


# -- claims ------------------------------------------------------------------------------
def _claim_worker(queue: Any, barrier: Any, location: str, me: str, keys: int) -> None:
    store = _open(location)
    barrier.wait(timeout=_DEADLINE_S)
    won = [k for k in range(keys) if store.claims.claim(f"key{k}", me, k)]
    for k in won:
        store.claims.record(f"key{k}", me, f'{{"by":"{me}"}}')
    queue.put((me, won))
    store.close()


def _claims_are_won_exactly_once_across_processes(location: str) -> None:
    _open(location).close()  # the schema, made once
    keys = 60
    results = _run_processes(_claim_worker, [(location, f"p{i}", keys) for i in range(4)])
    winners: dict[int, list[str]] = {}
    for me, won in results:
        for k in won:
            winners.setdefault(k, []).append(me)
    assert sorted(winners) == list(range(keys)), "a key nobody won"
    assert all(len(w) == 1 for w in winners.values()), {k: w for k, w in winners.items()
                                                       if len(w) > 1}
    store = _open(location)
    for k, (me,) in winners.items():
        assert store.claims.get(f"key{k}") == (me, f'{{"by":"{me}"}}')
    store.close()


# -- leases and admission ----------------------------------------------------------------
def _lease_expiry_and_release(location: str) -> None:
    store = _open(location)
    leases = store.leases
    leases.put(["a"], session_id="s1", agent_type="explore", owner_pid=None, depth=1,
               background=False, now_us=1_000, expires_us=2_000)
    leases.put(["g#0", "g#1"], session_id="s1", agent_type="explore", owner_pid=None,
               depth=1, background=True, now_us=1_500, expires_us=10_000)
    assert leases.count() == 3 and leases.count(session_id="s2") == 0
    assert leases.recent_spawns("s1", 0) == (3, 1_000)
    leases.purge(1_999, spawns_before_us=0, owner_gone=lambda pid: True)
    assert leases.count() == 3  # not expired yet
    leases.purge(2_000, spawns_before_us=1_200, owner_gone=lambda pid: True)
    assert [r.id for r in leases.rows()] == ["g#0", "g#1"]  # expired at its deadline
    assert leases.recent_spawns(None, 0) == (2, 1_500)
    assert leases.bind_unnamed("s1", "explore", "agent-1")
    assert leases.rename_group("g", "task") == 2
    assert sorted(leases.ids("s1", "task")) == ["task#0", "task#1"]
    assert leases.delete_group("task") == 2 and leases.count() == 0
    leases.put(["b"], session_id="s1", agent_type="plan", owner_pid=os.getpid(), depth=2,
               background=True, now_us=3_000, expires_us=10**15)
    assert leases.bind("b", "agent-2") and leases.bound("s1") == [("b", "agent-2")]
    leases.purge(3_000, spawns_before_us=0, owner_gone=lambda pid: pid == os.getpid())
    assert leases.count() == 0, "a lease whose owner is gone was kept"
    leases.put(["c"], session_id="s2", agent_type="plan", owner_pid=None, depth=1,
               background=False, now_us=3_000, expires_us=10**15)
    assert leases.delete_host("another-host") == 0
    assert leases.delete_host(leases.rows()[0].host) == 1 and leases.count() == 0
    leases.agent_started("agent-3", "s1", "plan", 2, 4_000)
    assert leases.agent_depth("agent-3") == 2 and leases.agent_stopped("agent-3") is False
    leases.agent_ended("agent-3", 5_000)
    assert leases.agent_stopped("agent-3") is True and leases.agent_stopped("x") is None
    store.close()


def _census_counts_what_admission_reads(location: str) -> None:
    store = _open(location)
    leases, me = store.leases, os.getpid()
    leases.put(["a", "b"], session_id="s1", agent_type="explore", owner_pid=me, depth=1,
               background=False, now_us=1_000, expires_us=10**15)
    leases.put(["c"], session_id="s2", agent_type="plan", owner_pid=None, depth=1,
               background=False, now_us=2_000, expires_us=10**15)
    store.kv_set("limit.set", "7")
    census = leases.census("s1", 500, owner_gone=lambda pid: False,
                           limit_keys=("limit.set", "limit.unset"))
    assert census == Census(3, 2, 3, 2, 1_000, 3, 1_000, ("7", None)), census
    census = leases.census("s2", 1_000, owner_gone=lambda pid: False)
    assert census == Census(3, 1, 3, 1, 2_000, 1, 2_000, ()), census
    census = leases.census("nobody", 5_000, owner_gone=lambda pid: False)
    assert census == Census(3, 0, 3, 0, None, 0, None, ()), census
    # Leases of a process that is gone are dropped before anything is counted.
    census = leases.census("s1", 0, owner_gone=lambda pid: pid == me)
    assert census[:3] == (1, 0, 1), census
    assert [r.id for r in leases.rows()] == ["c"]
    assert census.session_spawns == 2  # a spawn stays in the rate window all the same
    store.close()


def _a_decision_confirms_its_transactions_and_fails_whole(location: str) -> None:
    store, other = _open(location), _open(location)
    log = AuditLog(store)
    with store.decision():
        with store.transaction():
            store.kv_set("first", "1")
            log.record("first")
        assert store.kv_get("first") == "1"  # its own writes, read back in the same decision
        with store.decision():  # nested: part of the outer one
            assert store.claims.claim("event", "me", 1)
            assert not store.claims.claim("event", "you", 2)
    assert other.kv_get("first") == "1" and other.claims.get("event") == ("me", None)
    try:
        with store.decision():
            with store.transaction():
                store.kv_set("kept", "1")
            with store.transaction() as conn:
                store.kv_set("undone", "1")
                log.record("undone")
                cast("Executor", conn).execute("INSERT INTO kv (key, value) VALUES (?, ?)",
                                               ("kept", "twice"))
    except StoreError:
        pass
    else:
        raise AssertionError("a statement that failed inside a decision went unnoticed")
    # The failed unit is undone. The units before it: kept by a store that commits each
    # as it ends; undone too by one that sends the decision as one transaction. Never
    # half of a unit.
    assert store.kv_get("undone") is None and store.kv_get("kept") in ("1", None)
    # A caller that carries on after a store error: what it writes next is applied only
    # when what it wrote before the failure stands too; otherwise it is refused.
    refused = False
    try:
        with store.decision():
            store.kv_set("before.failure", "1")
            try:
                with store.transaction() as conn:
                    cast("Executor", conn).execute(
                        "INSERT INTO kv (key, value) VALUES (?, ?)", ("first", "twice"))
                store.kv_get("first")  # a read: where a pipelined failure is heard
            except StoreError:
                pass
            with contextlib.suppress(StoreError):  # a caller that swallows errors
                store.kv_set("after.failure", "1")
    except StoreError:
        refused = True
    written = other.kv_get("after.failure")
    assert written == other.kv_get("before.failure"), "half a decision stands"
    assert (written == "1") != refused, (written, refused)
    with store.decision():
        log.record("after")
    assert [r.kind for r in other.iter_audit()] == ["first", "after"]
    assert AuditLog(other).verify().ok
    # The savepoint contract holds inside a decision too.
    with store.decision(), store.transaction():
        try:
            with store.transaction():
                store.kv_set("inner", "1")
                raise _Inner
        except _Inner:
            pass
        store.kv_set("outer", "1")
    assert other.kv_get("outer") == "1" and other.kv_get("inner") is None
    # Reads hinted ahead answer as the reads made later would, never older than a write
    # this decision made in between.
    with store.decision():
        store.read_ahead(lambda: (store.kv_get("outer"), store.kv_get("absent")))
        assert store.kv_get("outer") == "1" and store.kv_get("absent") is None
        store.read_ahead(lambda: store.kv_get("outer"))
        store.kv_set("outer", "2")
        assert store.kv_get("outer") == "2", "a read ahead hid this decision's own write"
        store.read_ahead(lambda: store.kv_get("outer"))
        with store.transaction():
            store.read_ahead(lambda: store.kv_get("outer"))  # inside: not read ahead
            store.kv_set("outer", "3")
            assert store.kv_get("outer") == "3"
        assert store.kv_get("outer") == "3"
    store.read_ahead(lambda: store.kv_get("outer"))  # outside a decision: nothing
    assert other.kv_get("outer") == "3"
    store.close()
    other.close()


def _admit_worker(queue: Any, barrier: Any, location: str, host: str, session: str,
                  tries: int, machine_limit: int) -> None:
    from ..policy.admission import Admission, LeaseRequest
    from ..policy.config import AdmissionPolicy
    from ..resources import SystemSnapshot

    os.environ["SMART_ORCHESTRATOR_HOST_ID"] = host
    store = _open(location)
    policy = AdmissionPolicy(max_in_flight_session=1000, max_in_flight_machine=machine_limit,
                             min_available_memory_mb=0, max_load_percent=1e12,
                             spawns_per_minute=100_000, wait_timeout_s=0.0)
    admission = Admission(store, policy, clock=time.time, sleep=time.sleep,
                          metrics=lambda: SystemSnapshot(True, 1 << 40, 1 << 40))
    barrier.wait(timeout=_DEADLINE_S)
    granted = [i for i in range(tries) if admission.acquire(LeaseRequest(
        f"{session}-{i}", session, "explore", None, False, None)).granted]
    queue.put((host, len(granted)))
    store.close()


def _limits_are_exact_across_processes_and_machines(location: str) -> None:
    from ..policy.admission import TEAM_MAX_IN_FLIGHT

    store = _open(location)
    store.kv_set(TEAM_MAX_IN_FLIGHT, "5")
    store.close()
    # Two machines of two processes each; 3 agents per machine, 5 across the team.
    args = [(location, f"host-{i % 2}", f"s{i}", 8, 3) for i in range(4)]
    results = _run_processes(_admit_worker, args)
    per_host: dict[str, int] = {}
    for host, n in results:
        per_host[host] = per_host.get(host, 0) + n
    assert sum(per_host.values()) == 5, per_host
    assert all(n <= 3 for n in per_host.values()), per_host
    store = _open(location)
    assert store.leases.count() == 5
    assert {r.host for r in store.leases.rows()} == set(per_host)
    store.close()


# -- breakers ----------------------------------------------------------------------------
def _trial_worker(queue: Any, barrier: Any, location: str, me: str) -> None:
    from ..policy.breaker import CircuitBreakers
    from ..policy.config import BreakerPolicy

    store = _open(location)
    breakers = CircuitBreakers(store, BreakerPolicy(cooldown_s=60.0), clock=time.time)
    barrier.wait(timeout=_DEADLINE_S)
    verdict = breakers.check("flaky", owner=me, hold_s=3600.0)
    queue.put((me, verdict.allowed, verdict.trial_owner))
    store.close()


def _half_open_trial_has_one_owner_and_expires(location: str) -> None:
    from ..policy.breaker import CircuitBreakers
    from ..policy.config import BreakerPolicy

    store = _open(location)
    store.breakers.put("flaky", "open", 1_000_000, [1.0, 2.0, 3.0])  # cooled down long ago
    store.close()
    results = _run_processes(_trial_worker, [(location, f"owner-{i}") for i in range(4)])
    trials = [me for me, allowed, owner in results if owner is not None]
    assert len(trials) == 1, results
    assert sum(allowed for _, allowed, _ in results) == 1, results
    store = _open(location)
    row = store.breakers.get("flaky")
    assert row is not None and row.state == "half_open" and row.trial_owner == trials[0]
    assert not store.breakers.release_trial("flaky", "not-the-owner")
    late = time.time() + 7200.0  # past the trial's hold
    breakers = CircuitBreakers(store, BreakerPolicy(cooldown_s=60.0), clock=lambda: late)
    verdict = breakers.check("flaky", owner="successor", hold_s=60.0)
    assert verdict.trial_owner == "successor", verdict
    assert store.breakers.release_trial("flaky", "successor")
    assert breakers.check("flaky", owner="third").trial_owner == "third"
    assert breakers.record("flaky", ok=True) == "closed"
    assert store.breakers.get("flaky") == store.breakers.rows()[0]
    store.close()


# -- the audit chain ---------------------------------------------------------------------
def _append_worker(queue: Any, barrier: Any, location: str, me: str, n: int) -> None:
    store = _open(location)
    log = AuditLog(store)
    barrier.wait(timeout=_DEADLINE_S)
    for i in range(n):
        if i % 4:
            log.record("w", who=me, i=i)
        else:
            with store.transaction():  # two events in one unit
                log.record("a", who=me, i=i)
                log.record("b", who=me, i=i)
    queue.put(me)
    store.close()


def _audit_chain_stays_one_chain_under_many_writers(location: str) -> None:
    store = _open(location)
    log = AuditLog(store)

    def thread_writer(t: int) -> None:
        for i in range(20):
            log.record("t", thread=t, i=i)

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(thread_writer, range(6)))
    _run_processes(_append_worker, [(location, f"p{i}", 20) for i in range(4)])
    report = AuditLog(store).verify()
    per_process = 20 + 5  # 5 of the 20 iterations write two events
    assert report.ok, report.one_line()
    assert report.events == 6 * 20 + 4 * per_process, report.one_line()
    seqs = [r.seq for r in store.iter_audit()]
    assert seqs == list(range(1, len(seqs) + 1))
    store.close()


def _threads_share_one_store(location: str) -> None:
    """One store object used by many threads (the service's): transactions of one thread
    never interleave with another's."""
    store = _open(location)
    errors: list[BaseException] = []

    def bump(_: int) -> None:
        try:
            for _ in range(10):
                with store.transaction():
                    value = int(store.kv_get("n") or 0)
                    store.kv_set("n", str(value + 1))
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=bump, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=_DEADLINE_S)
    assert not errors, errors
    assert store.kv_get("n") == "50"
    store.close()


CHECKS: dict[str, Callable[[str], None]] = {
    "audit_chain_survives_reopen": _audit_chain_survives_reopen,
    "audit_records_come_back_in_order": _audit_records_come_back_in_order,
    "checkpoints_newest_first_with_retention": _checkpoints_newest_first_with_retention,
    "checkpoint_falls_back_past_a_corrupt_copy": _checkpoint_falls_back_past_a_corrupt_copy,
    "kv_round_trips": _kv_round_trips,
    "inner_failure_undoes_only_its_savepoint": _inner_failure_undoes_only_its_savepoint,
    "claims_are_won_exactly_once_across_processes":
        _claims_are_won_exactly_once_across_processes,
    "lease_expiry_and_release": _lease_expiry_and_release,
    "limits_are_exact_across_processes_and_machines":
        _limits_are_exact_across_processes_and_machines,
    "half_open_trial_has_one_owner_and_expires": _half_open_trial_has_one_owner_and_expires,
    "audit_chain_stays_one_chain_under_many_writers":
        _audit_chain_stays_one_chain_under_many_writers,
    "threads_share_one_store": _threads_share_one_store,
    "census_counts_what_admission_reads": _census_counts_what_admission_reads,
    "a_decision_confirms_its_transactions_and_fails_whole":
        _a_decision_confirms_its_transactions_and_fails_whole,
}


def run_store_conformance(new_location: Callable[[str], str]) -> None:
    """Run every check, each at `new_location(check_name)`: a fresh, empty store."""
    for name, check in CHECKS.items():
        check(new_location(name))

