"""Exactly-once decisions: an event delivered twice (or to two deciders) is decided once,
and a reused id with other input is decided afresh."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from smart_orchestrator.policy.claims import (
    Settled,
    Undecided,
    claim,
    claim_key,
    decide_once,
    process_owner,
)
from smart_orchestrator.store import SqliteStore

from .policy_payloads import SESSION, pre_agent

REPO = Path(__file__).resolve().parents[2]
AWS_PROMPT = ("SUBTASK-9: deploy with key AKIAZ3MSJV4WKQ7NTB5R and secret "
              "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")
DENY = {"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "deny",
                               "permissionDecisionReason": "no"}, "systemMessage": "note"}
KEY = claim_key("PreToolUse", SESSION, "toolu_1", "", pre_agent())
AWS_KEY_CLAIM = claim_key("PreToolUse", SESSION, "toolu_1", "", pre_agent(AWS_PROMPT))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "state.db")
    yield s
    s.close()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _never() -> dict[str, Any]:
    raise AssertionError("this hook must not decide")


def test_the_second_hook_returns_the_first_hooks_decision_without_deciding(
        store: SqliteStore) -> None:
    first = decide_once(store, KEY, "server:1", lambda: DENY)
    second = decide_once(store, KEY, "command:2", _never)
    assert first == Settled(DENY, True) and first.answer() == DENY
    assert second == Settled(DENY, False)
    assert second.answer() == {"hookSpecificOutput": DENY["hookSpecificOutput"]}


def test_a_holder_that_died_before_deciding_is_taken_over(store: SqliteStore) -> None:
    dead = f"server:{_dead_pid()}"
    assert claim(store, KEY, dead)
    settled = decide_once(store, KEY, "command:2", lambda: DENY, decision_timeout_s=5)
    assert settled == Settled(DENY, True)
    assert store.query("SELECT owner FROM claims") == [("command:2",)]


def test_a_live_holder_that_never_decides_is_reported(store: SqliteStore) -> None:
    assert claim(store, KEY, process_owner("server"))  # this process: alive
    with pytest.raises(Undecided, match=r"server:\d+ took this event but did not decide"):
        decide_once(store, KEY, "command:2", _never, decision_timeout_s=0.2)


def test_a_damaged_decision_counts_as_none(store: SqliteStore) -> None:
    assert claim(store, KEY, f"server:{_dead_pid()}")
    with store.transaction() as conn:
        conn.execute("UPDATE claims SET decision = '[not json'")
    assert decide_once(store, KEY, "command:2", lambda: DENY).here


def test_racing_hooks_decide_once_and_answer_alike(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    SqliteStore(db).close()
    for n in range(30):
        key = claim_key("PreToolUse", SESSION, f"toolu_{n}", "")
        calls: list[str] = []
        results: list[Settled] = []

        def run(owner: str, key: str = key, calls: list[str] = calls,
                results: list[Settled] = results) -> None:
            s = SqliteStore(db)
            try:
                results.append(decide_once(
                    s, key, owner, lambda: calls.append(owner) or {"decided_by": owner}))
            finally:
                s.close()

        threads = [threading.Thread(target=run, args=(f"{role}:{os.getpid()}",))
                   for role in ("server", "command")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(calls) == 1
        assert sorted(r.here for r in results) == [False, True]
        assert len({json.dumps(r.decision) for r in results}) == 1
