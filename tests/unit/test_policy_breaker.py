"""The half-open trial always ends: it has an owner and an expiry, so a trial that admission
denies, whose session dies, or whose decider dies never leaves the breaker half-open."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mcp_server.hook_output import hook_output as rendered
from smart_orchestrator.policy.breaker import CircuitBreakers
from smart_orchestrator.policy.config import BreakerPolicy
from smart_orchestrator.policy.engine import PolicyEngine
from smart_orchestrator.store import SqliteStore

from .policy_payloads import post_agent, pre_agent
from .test_policy_engine import FakeClock, decision, make_engine, reason

COOLDOWN = 15 * 60 + 1


def _trip(engine: PolicyEngine, clock: FakeClock, agent_type: str = "flaky") -> None:
    for i in range(3):
        engine.handle(pre_agent(tool_use_id=f"f{i}", subagent_type=agent_type))
        rendered(engine.handle(post_agent(tool_use_id=f"f{i}", status="failed",
                                 subagent_type=agent_type)))
    assert "circuit breaker" in reason(rendered(engine.handle(pre_agent(tool_use_id="x",
                                                               subagent_type=agent_type))))
    clock.now += COOLDOWN


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_trial_that_admission_denies_frees_the_trial(store: SqliteStore,
                                                       tmp_path: Path) -> None:
    clock = FakeClock()
    engine = make_engine(store, tmp_path, clock,
                         admission={"max_in_flight_session": 1, "wait_timeout_s": 0})
    _trip(engine, clock)
    assert decision(rendered(engine.handle(pre_agent(tool_use_id="busy", subagent_type="other")))) \
        is None, "another type holds the only slot"
    denied = rendered(engine.handle(pre_agent(tool_use_id="trial1", subagent_type="flaky")))
    assert decision(denied) == "deny" and "circuit breaker" not in reason(denied)
    engine.handle(post_agent(tool_use_id="busy", subagent_type="other"))
    # Before the fix the breaker stayed half-open for good: "a trial agent is running".
    out = rendered(engine.handle(pre_agent(tool_use_id="trial2", subagent_type="flaky")))
    assert decision(out) is None
    second = rendered(engine.handle(pre_agent(tool_use_id="trial3", subagent_type="flaky")))
    assert "half-open" in reason(second), "one trial at a time while it runs"
    engine.handle(post_agent(tool_use_id="trial2", subagent_type="flaky"))
    out = rendered(engine.handle(pre_agent(tool_use_id="after", subagent_type="flaky")))
    assert decision(out) is None


def test_a_trial_whose_session_ends_without_an_outcome_is_abandoned(
        store: SqliteStore, tmp_path: Path) -> None:
    clock = FakeClock()
    engine = make_engine(store, tmp_path, clock)
    _trip(engine, clock)
    out = rendered(engine.handle(pre_agent(tool_use_id="trial", subagent_type="flaky")))
    assert decision(out) is None
    assert "half-open" in reason(rendered(engine.handle(pre_agent(tool_use_id="t2",
                                                         subagent_type="flaky"))))
    engine.handle({"hook_event_name": "SessionEnd", "session_id": pre_agent()["session_id"]})
    out = rendered(engine.handle(pre_agent(tool_use_id="t3", subagent_type="flaky")))
    assert decision(out) is None


def test_a_trial_whose_decider_died_before_admission_is_abandoned(
        store: SqliteStore, tmp_path: Path) -> None:
    clock = FakeClock()
    engine = make_engine(store, tmp_path, clock)
    _trip(engine, clock)
    # A hook process let through as the trial, killed before admission decided.
    verdict = engine.breakers.check("flaky", owner=f"pid:{_dead_pid()}")
    assert verdict.allowed and verdict.state == "half_open"
    out = rendered(engine.handle(pre_agent(tool_use_id="next", subagent_type="flaky")))
    assert decision(out) is None


def _cooled(store: SqliteStore) -> tuple[CircuitBreakers, FakeClock]:
    """Breaker "a" opened by one failure, its cool-down just over."""
    clock = FakeClock()
    breakers = CircuitBreakers(store, BreakerPolicy(failure_threshold=1, cooldown_s=10), clock)
    breakers.record("a", False)
    clock.now += 11
    return breakers, clock


def test_a_trial_expires_even_when_its_owner_cannot_be_checked(store: SqliteStore) -> None:
    breakers, clock = _cooled(store)
    assert breakers.check("a", owner="wave:elsewhere", hold_s=60).trial_owner == "wave:elsewhere"
    assert not breakers.check("a", owner="wave:other").allowed
    clock.now += 61
    assert breakers.check("a", owner="wave:other").trial_owner == "wave:other"


def test_only_the_owner_releases_or_binds_a_trial(store: SqliteStore) -> None:
    breakers, _ = _cooled(store)
    breakers.check("a", owner="wave:mine")
    assert not breakers.release_trial("a", "wave:someone-else")
    breakers.bind_trial("a", "wave:someone-else", "wave:stolen", 60)
    assert not breakers.check("a", owner="wave:third").allowed
    assert breakers.release_trial("a", "wave:mine")
    assert breakers.check("a", owner="wave:third").allowed


def test_the_outcome_of_a_trial_clears_its_owner(store: SqliteStore) -> None:
    breakers, _ = _cooled(store)
    breakers.check("a", owner="wave:mine")
    assert breakers.record("a", False) == "open"
    [(owner, expires)] = store.query("SELECT trial_owner, trial_expires_us FROM breakers")
    assert owner is None and expires is None
    assert not breakers.check("a").allowed, "a failed trial re-opens for a new cool-down"
