"""Contract tests of the ledger every backend must pass: `LEDGER_CHECKS[name](location)`.

A location is a SQLite file path or a PostgreSQL URL naming a fresh schema; each check
opens it with `open_store`, in threads and in other processes, because what matters is
what many writers do at once: a reservation settles exactly once, and a cap checked and
reserved in one transaction is never overshot.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .base import WitnessedStore
from .conformance import _DEADLINE_S, _run_processes
from .repos import LedgerRow, LedgerUsage

__all__ = ["LEDGER_CHECKS"]

_WORKERS = 4


def _open(location: str) -> WitnessedStore:
    from . import open_store

    return open_store(location)


def _row(entry_id: str, *, session: str = "s1", project: str = "p1", host: str = "h1",
         usd: float = 1.0, created_us: int = 1_000, kind: str = "k") -> LedgerRow:
    return LedgerRow(entry_id, session, project, host, None, "general-purpose", kind,
                     "claude-sonnet-4-5", "reserved", usd, 1000, 0, 0, 0, 0, 0.0, "estimate",
                     "native", None, None, created_us, None)


_USAGE = LedgerUsage(100, 20, 300, 40, 0.25, "claude-sonnet-4-5", "table:sonnet-4")


def _settle_worker(queue: Any, barrier: Any, location: str, entry_id: str) -> None:
    store = _open(location)
    barrier.wait(timeout=_DEADLINE_S)
    queue.put(store.ledger.settle(entry_id, _USAGE, 2_000))
    store.close()


def _reserve_worker(queue: Any, barrier: Any, location: str, name: str) -> None:
    store = _open(location)
    barrier.wait(timeout=_DEADLINE_S)
    with store.transaction():
        spent, _ = store.ledger.charged(project="capped")
        granted = spent + 1.0 <= 3.0
        if granted:
            store.ledger.reserve(_row(name, project="capped"))
    queue.put(granted)
    store.close()


def _settles_exactly_once_across_processes(location: str) -> None:
    store = _open(location)
    assert store.ledger.reserve(_row("e1"))
    assert not store.ledger.reserve(_row("e1", usd=9.0)), "a replayed reservation is refused"
    results = _run_processes(_settle_worker, [(location, "e1")] * _WORKERS)
    assert sorted(results) == [False] * (_WORKERS - 1) + [True], results
    row = store.ledger.get("e1")
    assert row is not None and row.state == "settled" and row.cost_usd == 0.25
    assert (row.input_tokens, row.output_tokens, row.cache_read_tokens,
            row.cache_write_tokens) == (100, 20, 300, 40)
    assert store.ledger.charged() == (0.25, 1)
    assert not store.ledger.abandon("e1", 3_000), "a settled entry cannot be abandoned"
    store.close()


def _settles_exactly_once_across_threads(location: str) -> None:
    store = _open(location)
    store.ledger.reserve(_row("t1"))
    with ThreadPoolExecutor(_WORKERS) as pool:
        results = list(pool.map(lambda _: store.ledger.settle("t1", _USAGE, 2_000),
                                range(_WORKERS * 2)))
    assert results.count(True) == 1, results
    store.close()


def _cap_checked_and_reserved_atomically(location: str) -> None:
    _open(location).close()  # created (migrated) before the race, which is about the cap
    results = _run_processes(_reserve_worker,
                             [(location, f"r{i}") for i in range(_WORKERS + 2)])
    assert results.count(True) == 3, results
    store = _open(location)
    assert store.ledger.charged(project="capped") == (3.0, 3)
    store.close()


def _window_sums_count_estimates_until_settled(location: str) -> None:
    store = _open(location)
    ledger = store.ledger
    ledger.reserve(_row("a", session="s1", project="p1", host="h1", usd=1.0, created_us=100))
    ledger.reserve(_row("b", session="s2", project="p1", host="h2", usd=2.0, created_us=200))
    ledger.reserve(_row("c", session="s2", project="p2", host="h1", usd=4.0, created_us=300))
    assert ledger.charged() == (7.0, 3)
    assert ledger.charged(since_us=200) == (6.0, 2)
    assert ledger.charged(session_id="s2") == (6.0, 2)
    assert ledger.charged(project="p1") == (3.0, 2)
    assert ledger.charged(host="h1", since_us=150) == (4.0, 1)
    assert ledger.settle("b", _USAGE, 400)  # real cost replaces the estimate
    assert ledger.charged(project="p1") == (1.25, 2)
    assert ledger.abandon("c", 500)  # an unknown outcome keeps its estimate
    assert ledger.charged(session_id="s2") == (4.25, 2)
    assert ledger.open_ids("s1") == ["a"] and ledger.open_ids("s2") == []
    assert ledger.bind("a", "agent-1") and not ledger.bind("a", "agent-2")
    assert ledger.open_for_agent("agent-1") == "a"
    assert [r.id for r in ledger.rows(session_id="s2")] == ["b", "c"]
    store.close()
    again = _open(location)
    assert again.ledger.charged() == (5.25, 3), "durable across reopen"
    again.close()


def _history_is_newest_settled_first_by_kind(location: str) -> None:
    store = _open(location)
    ledger = store.ledger
    for i, kind in enumerate(["x|m|1", "x|m|1", "x|m|2", "x_m|1"]):
        ledger.reserve(_row(f"h{i}", kind=kind, created_us=i))
        ledger.settle(f"h{i}", _USAGE._replace(cost_usd=float(i)), 10 + i)
    ledger.reserve(_row("open", kind="x|m|1"))
    assert [r.cost_usd for r in ledger.history("x|m|1", limit=5)] == [1.0, 0.0]
    assert [r.cost_usd for r in ledger.history("x|m|", limit=5, prefix=True)] == [2.0, 1.0, 0.0]
    assert [r.cost_usd for r in ledger.history("x|m|", limit=1, prefix=True)] == [2.0]
    store.close()


def _rate_gate_only_extends(location: str) -> None:
    store = _open(location)
    gate = store.rate_gate
    assert gate.get("api") is None
    assert gate.close_until("api", 5_000, 429, "rate limited", 1).until_us == 5_000
    assert gate.close_until("api", 3_000, 529, "overloaded", 2).until_us == 5_000
    row = gate.close_until("api", 9_000, 529, "overloaded", 3)
    assert (row.until_us, row.status, row.reason) == (9_000, 529, "overloaded")
    store.close()


LEDGER_CHECKS: dict[str, Callable[[str], None]] = {
    "ledger_settles_exactly_once_across_processes": _settles_exactly_once_across_processes,
    "ledger_settles_exactly_once_across_threads": _settles_exactly_once_across_threads,
    "ledger_cap_checked_and_reserved_atomically": _cap_checked_and_reserved_atomically,
    "ledger_window_sums_count_estimates_until_settled":
        _window_sums_count_estimates_until_settled,
    "ledger_history_is_newest_settled_first_by_kind": _history_is_newest_settled_first_by_kind,
    "rate_gate_only_extends": _rate_gate_only_extends,
}
