"""Exactly-once decisions: an event delivered twice is decided once by the one decider,
and a reused id with other input is decided afresh."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from smart_orchestrator.policy.claims import Settled, Undecided, claim, claim_key, decide_once
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
    raise AssertionError("this delivery must not decide")


def test_a_second_delivery_is_answered_from_the_record_without_deciding(
        store: SqliteStore) -> None:
    first = decide_once(store, KEY, lambda: DENY)
    second = decide_once(store, KEY, _never)
    assert first == Settled(DENY, True)
    assert second == Settled(DENY, False)


def test_an_event_whose_holder_ended_before_deciding_is_not_answered(
        store: SqliteStore) -> None:
    """A killed service's pending calls were failed (blocking their actions): the claim it
    left is never taken for a decision, and the event is not decided behind its back."""
    assert claim(store, KEY, f"server:{_dead_pid()}")
    with pytest.raises(Undecided, match=r"server:\d+ took this event but left no decision"):
        decide_once(store, KEY, _never)


def test_a_damaged_decision_counts_as_none(store: SqliteStore) -> None:
    decide_once(store, KEY, lambda: DENY)
    with store.transaction() as conn:
        conn.execute("UPDATE claims SET decision = '[not json'")
    with pytest.raises(Undecided):
        decide_once(store, KEY, _never)


def test_deliveries_racing_in_the_service_decide_once_and_answer_alike(tmp_path: Path) -> None:
    """The same event twice at once (each with its own store connection, as the service's
    worker threads have one store between them or a test has two): one decides, the other
    waits for that decision instead of deciding or failing."""
    db = tmp_path / "state.db"
    SqliteStore(db).close()
    for n in range(30):
        key = claim_key("PreToolUse", SESSION, f"toolu_{n}", "")
        calls: list[int] = []
        results: list[Settled] = []
        started, release = threading.Event(), threading.Event()

        def decide(k: int, calls: list[int] = calls, started: threading.Event = started,
                   release: threading.Event = release) -> dict[str, Any]:
            calls.append(k)
            started.set()
            release.wait(30)  # the other delivery comes while this one decides
            return {"decided_by": k}

        def run(k: int, key: str = key, results: list[Settled] = results) -> None:
            s = SqliteStore(db)
            try:
                results.append(decide_once(s, key, lambda: decide(k)))
            finally:
                s.close()

        threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        assert started.wait(60)
        release.set()
        for t in threads:
            t.join()
        assert len(calls) == 1
        assert sorted(r.here for r in results) == [False, True]
        assert len({json.dumps(r.decision) for r in results}) == 1
