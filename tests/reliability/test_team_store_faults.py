"""A team store that goes away: decisions fail closed with one line, the store reconnects,
and nothing is decided twice.

The store reaches PostgreSQL through a TCP relay the test can cut (the network, or the
server, gone) and restore; a restarted server is the server ending our backend's
connection (`pg_terminate_backend`), which is what a client of a restarted server sees.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from mcp_server.hook_output import hook_output as rendered
from smart_orchestrator.errors import StoreError
from smart_orchestrator.policy.claims import decide_once
from smart_orchestrator.policy.config import build_policy
from smart_orchestrator.policy.decision import Decision
from smart_orchestrator.policy.engine import PolicyEngine
from smart_orchestrator.resources import SystemSnapshot
from smart_orchestrator.store.postgres import PgStore
from tests.pg import fresh_schema_dsn
from tests.unit.policy_payloads import pre_agent


class Relay:
    """Forwards 127.0.0.1:<port> to the server; `cut()` drops every connection and refuses
    new ones until `restore()`."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open = threading.Event()
        self._open.set()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._open.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=10)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self._open.clear()
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def restore(self) -> None:
        self._open.set()

    @property
    def is_cut(self) -> bool:
        return not self._open.is_set()

    def close(self) -> None:
        self.cut()
        self._listener.close()


@pytest.fixture
def team(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Relay]]:
    monkeypatch.setenv("SMART_ORCHESTRATOR_DATA", str(tmp_path / "data"))
    dsn = fresh_schema_dsn("faults")
    parts = urlsplit(dsn)
    relay = Relay((parts.hostname or "127.0.0.1", parts.port or 5432))
    netloc = f"{parts.username}:{parts.password}@127.0.0.1:{relay.port}"
    yield urlunsplit(parts._replace(netloc=netloc)), relay
    relay.close()


def _engine(store: PgStore, tmp_path: Path) -> PolicyEngine:
    return PolicyEngine(store, build_policy({}, "test.toml"), project_dir=tmp_path,
                        clock=lambda: 1_800_000_000.0, sleep=lambda s: None,
                        metrics=lambda: SystemSnapshot(True, 16 << 30, 24 << 30, 10.0, 2),
                        owner_pid=None)


def _decision(out: Decision | dict[str, Any]) -> tuple[str | None, str]:
    specific = (rendered(out) if isinstance(out, Decision) else out).get(
        "hookSpecificOutput", {})
    return specific.get("permissionDecision"), str(specific.get("permissionDecisionReason"))


def test_unreachable_team_store_fails_closed_then_reconnects(team: tuple[str, Relay],
                                                            tmp_path: Path) -> None:
    dsn, relay = team
    store = PgStore(dsn, connect_timeout_s=2.0)
    engine = _engine(store, tmp_path)
    first = rendered(engine.handle(pre_agent("Summarise the README", tool_use_id="t1")))
    assert _decision(first)[0] is None, first  # allowed while the store is there
    relay.cut()
    down = rendered(engine.handle(pre_agent("Summarise the README", tool_use_id="t2")))
    verdict, why = _decision(down)
    assert verdict == "deny", down
    assert "\n" not in why and "StoreError" in why, why
    with pytest.raises(StoreError) as err:  # and for anyone asking the store directly
        store.leases.count()
    assert "unreachable" in err.value.reason and "\n" not in err.value.reason
    relay.restore()
    again = rendered(engine.handle(pre_agent("Summarise the README", tool_use_id="t3")))
    assert _decision(again)[0] is None, again  # the same store object reconnected
    kinds = [r.kind for r in store.iter_audit()]
    assert kinds.count("policy.decision") == 2, kinds  # t1 and t3; t2 was never recorded
    store.close()


def test_a_restarted_server_costs_one_call_and_decides_nothing_twice(
        team: tuple[str, Relay], tmp_path: Path) -> None:
    dsn, _ = team
    store = PgStore(dsn)
    decided: list[str] = []

    def decide() -> dict[str, Any]:
        decided.append("once")
        return {"decision": "allow"}

    assert decide_once(store, "event-1", decide).here
    # The server drops our connection, as a restart does.
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                      "application_name = 'smart-orchestrator' AND pid <> pg_backend_pid()")
    # The same event again (a redelivery): answered from the record.
    settled = decide_once(store, "event-1", decide)
    assert not settled.here and settled.decision == {"decision": "allow"}
    assert decided == ["once"]
    # Writes after the drop work on a fresh connection, in order.
    store.append_audit("after.restart", {})
    assert store.audit.tail()[0] == store.audit_head().seq
    store.close()


def _terminate_ours(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                      "application_name = 'smart-orchestrator' AND pid <> pg_backend_pid()")


def test_a_restart_between_decisions_is_retried_once_and_decided_once(
        team: tuple[str, Relay], tmp_path: Path) -> None:
    dsn, _ = team
    store = PgStore(dsn)
    engine = _engine(store, tmp_path)
    assert _decision(engine.handle(pre_agent("Summarise the README", tool_use_id="r1")))[0] \
        is None
    _terminate_ours(dsn)  # the idle connection dies, as in a server restart
    out = engine.handle(pre_agent("Summarise the README", tool_use_id="r2"))
    assert _decision(out)[0] is None, out  # nothing had reached the store: made again
    decided = [r.data.get("tool_use_id") for r in store.iter_audit()
               if r.kind == "policy.decision"]
    assert len(decided) == 2 and store.leases.count() == 2, decided
    store.close()


def test_a_connection_lost_after_a_decision_committed_is_not_made_again(
        team: tuple[str, Relay], tmp_path: Path) -> None:
    dsn, relay = team
    store = PgStore(dsn, connect_timeout_s=2.0)
    engine = _engine(store, tmp_path)
    # Cut the line once the decision's first transaction has been sent: what it sent may
    # have committed, so the decision fails closed instead of being made a second time.
    real_begin = store.transaction

    cuts: list[int] = []

    @contextlib.contextmanager
    def cut_after_first(*args: Any, **kwargs: Any) -> Iterator[Any]:
        with real_begin(*args, **kwargs) as conn:
            yield conn
        if store._depth == 0 and not cuts:
            cuts.append(1)
            relay.cut()
            relay.restore()  # a second attempt would find the line back, and be wrong

    store.transaction = cut_after_first  # type: ignore[method-assign]
    out = engine.handle(pre_agent("Summarise the README", tool_use_id="c1"))
    verdict, why = _decision(out)
    assert cuts and verdict == "deny" and "\n" not in why, out
    store.transaction = real_begin  # type: ignore[method-assign]
    decided = [r.data for r in store.iter_audit() if r.kind == "policy.decision"]
    assert [d.get("decision") for d in decided] in ([], ["deny"]), decided  # never allowed
    assert store.leases.count() == 0
    store.close()


def test_a_write_cut_mid_transaction_is_not_applied_or_retried(team: tuple[str, Relay]) -> None:
    dsn, relay = team
    store = PgStore(dsn, connect_timeout_s=2.0)
    store.kv_set("n", "0")
    with pytest.raises(StoreError), store.transaction():
        store.kv_set("n", "1")
        store.append_audit("inside", {})
        relay.cut()
        store.kv_set("n", "2")
    relay.restore()
    assert store.kv_get("n") == "0"
    assert [r.kind for r in store.iter_audit()] == []
    assert store.audit_head().events == 0
    store.close()


@pytest.mark.parametrize("damage", ["no-server", "wrong-password", "garbled"])
def test_a_bad_team_store_url_is_one_line_without_its_password(
        damage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMART_ORCHESTRATOR_DATA", str(tmp_path / "data"))
    parts = urlsplit(fresh_schema_dsn("badurl"))
    secret = "s3cret-Pa55word-xyz"
    if damage == "no-server":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # closed again: nothing listens there
        dsn = urlunsplit(parts._replace(netloc=f"so:{secret}@127.0.0.1:{port}"))
    elif damage == "wrong-password":
        dsn = urlunsplit(parts._replace(netloc=f"so:{secret}@{parts.hostname}:{parts.port}"))
    else:
        dsn = f"postgresql://so:{secret}@127.0.0.1:notaport/x?sslmode=bogus"
    with pytest.raises(StoreError) as err:
        PgStore(dsn, connect_timeout_s=2.0)
    text = f"{err.value.reason} {err.value.hint}"
    assert "\n" not in err.value.reason and secret not in text, text
