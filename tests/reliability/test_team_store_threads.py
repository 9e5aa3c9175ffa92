"""The per-user service decides hooks of several sessions in threads that share one team
store. A decision holds the store's connection while it runs, and lets go of it while it
waits for room, so the hook that frees the room is not stuck behind it."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_server.hook_output import hook_output
from smart_orchestrator.policy.config import build_policy
from smart_orchestrator.policy.decision import Decision
from smart_orchestrator.policy.engine import PolicyEngine
from smart_orchestrator.resources import SystemSnapshot
from smart_orchestrator.store.postgres import PgStore
from tests.pg import fresh_schema_dsn
from tests.unit.policy_payloads import post_agent, pre_agent

_GENEROUS_S = 120.0


def _engine(store: PgStore, project: Path) -> PolicyEngine:
    policy = build_policy({"admission": {"max_in_flight_session": 1,
                                         "wait_timeout_s": _GENEROUS_S}}, "test.toml")
    return PolicyEngine(store, policy, project_dir=project, clock=time.time,
                        sleep=time.sleep, owner_pid=None,
                        metrics=lambda: SystemSnapshot(True, 16 << 30, 24 << 30, 10.0, 2))


def _verdict(out: Decision) -> str | None:
    return hook_output(out).get("hookSpecificOutput", {}).get("permissionDecision")


def test_a_decision_waiting_for_room_lets_the_hook_that_frees_it_through(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMART_ORCHESTRATOR_DATA", str(tmp_path / "data"))
    store = PgStore(fresh_schema_dsn("threads"))
    waiting = threading.Event()
    real_idle = store.idle

    @contextlib.contextmanager
    def noted_idle() -> Iterator[None]:
        with real_idle():
            waiting.set()
            yield

    store.idle = noted_idle  # type: ignore[method-assign]
    first, second = _engine(store, tmp_path), _engine(store, tmp_path)
    assert _verdict(first.handle(pre_agent("SUBTASK-1: one", tool_use_id="t1"))) is None
    out: list[Decision] = []
    spawn = threading.Thread(target=lambda: out.append(
        second.handle(pre_agent("SUBTASK-2: two", tool_use_id="t2"))))
    spawn.start()
    # The second spawn is waiting for the session's one slot before the first ends.
    assert waiting.wait(_GENEROUS_S), "the second spawn never waited for room"
    first.handle(post_agent(tool_use_id="t1"))
    spawn.join(_GENEROUS_S + 30)
    assert not spawn.is_alive()
    assert _verdict(out[0]) is None, out  # admitted once the first ended, not timed out
    assert store.leases.count() == 1
    store.close()
