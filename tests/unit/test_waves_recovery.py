from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tenacity import RetryCallState

from smart_orchestrator.policy.config import BreakerPolicy
from smart_orchestrator.policy.shared import PolicyBreaker
from smart_orchestrator.store import SqliteStore
from smart_orchestrator.waves.recovery import AttemptFailed, ErrorClass, RetryPolicy, classify
from tests.wave_fakes import policy_engines


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "state.db")
    yield s
    s.close()


# (status, text, subtype) -> class, as the CLI reports them in a result.
CASES = [
    (429, "API Error: Request rejected (429) · Number of request tokens has exceeded your "
          "per-minute rate limit", "success", ErrorClass.RATE_LIMIT),
    (400, "Credit balance is too low", "success", ErrorClass.QUOTA),
    (429, "Claude AI usage limit reached|1760000000", "success", ErrorClass.SESSION_LIMIT),
    (429, "You've hit your session limit · resets at 3pm", "success", ErrorClass.SESSION_LIMIT),
    (401, "Invalid API key · Fix external API key", "success", ErrorClass.AUTH),
    (403, "forbidden", "success", ErrorClass.AUTH),
    (500, "API Error: 500 Internal server error. This is a server-side issue", "success",
     ErrorClass.SERVER),
    (529, "Overloaded", "success", ErrorClass.SERVER),
    (503, "", "success", ErrorClass.SERVER),
    (400, "prompt is too long: 250000 tokens > 200000 maximum", "success",
     ErrorClass.CONTEXT_OVERFLOW),
    (400, "messages: text content blocks must be non-empty", "success", ErrorClass.BAD_REQUEST),
    (None, "", "error_max_turns", ErrorClass.MAX_TURNS),
    (None, "", "error_max_budget_usd", ErrorClass.BUDGET),
    (None, "something odd happened", "error_during_execution", ErrorClass.AGENT_ERROR),
]


@pytest.mark.parametrize(("status", "text", "subtype", "expected"), CASES)
def test_classifies_agent_failures(status: int | None, text: str, subtype: str,
                                   expected: ErrorClass) -> None:
    assert classify(status=status, text=text, subtype=subtype) is expected


@pytest.mark.parametrize("error_class", [ErrorClass.QUOTA, ErrorClass.AUTH,
                                         ErrorClass.SESSION_LIMIT, ErrorClass.CONFIG])
def test_walls_stop_the_wave_and_are_never_retried(error_class: ErrorClass) -> None:
    assert error_class.stops_wave and not error_class.retryable


@pytest.mark.parametrize("error_class", [ErrorClass.RATE_LIMIT, ErrorClass.SERVER,
                                         ErrorClass.TIMEOUT, ErrorClass.CRASH])
def test_transient_failures_are_retried(error_class: ErrorClass) -> None:
    assert error_class.retryable and not error_class.stops_wave


@pytest.mark.parametrize("error_class", [ErrorClass.INVALID_OUTPUT, ErrorClass.MAX_TURNS,
                                         ErrorClass.BUDGET, ErrorClass.BREAKER_OPEN,
                                         ErrorClass.BAD_REQUEST, ErrorClass.CANCELLED])
def test_permanent_failures_are_not_retried(error_class: ErrorClass) -> None:
    assert not error_class.retryable and not error_class.stops_wave


async def _drive(policy: RetryPolicy, failures: list[AttemptFailed],
                 may_retry: bool = True) -> tuple[int, list[float], BaseException | None]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    calls = 0
    try:
        async for attempt in policy.retrying(may_retry=lambda _e: may_retry, sleep=sleep):
            with attempt:
                calls += 1
                if failures:
                    raise failures.pop(0)
    except AttemptFailed as exc:
        return calls, slept, exc
    return calls, slept, None


async def test_retries_transient_failures_with_growing_backoff() -> None:
    policy = RetryPolicy(max_attempts=3, initial_s=1.0, max_backoff_s=30.0)
    calls, slept, error = await _drive(policy, [AttemptFailed(ErrorClass.SERVER, "500")] * 2)
    assert (calls, error) == (3, None)
    assert len(slept) == 2 and 1.0 <= slept[0] <= 2.0 and 2.0 <= slept[1] <= 3.0


async def test_backoff_honours_a_longer_retry_after() -> None:
    policy = RetryPolicy(initial_s=0.1)
    failure = AttemptFailed(ErrorClass.RATE_LIMIT, "429", retry_after=7.0)
    _, slept, _ = await _drive(policy, [failure])
    assert slept == [7.0]


async def test_gives_up_after_the_attempt_bound_with_the_last_error() -> None:
    policy = RetryPolicy(max_attempts=3, initial_s=0.0)
    calls, _, error = await _drive(policy, [AttemptFailed(ErrorClass.TIMEOUT, f"t{i}")
                                            for i in range(5)])
    assert calls == 3 and isinstance(error, AttemptFailed) and error.reason == "t2"


async def test_never_retries_a_wall_or_when_the_wave_is_stopping() -> None:
    policy = RetryPolicy(initial_s=0.0)
    calls, _, error = await _drive(policy, [AttemptFailed(ErrorClass.QUOTA, "credit")])
    assert calls == 1 and error is not None
    calls, _, error = await _drive(policy, [AttemptFailed(ErrorClass.SERVER, "500")],
                                   may_retry=False)
    assert calls == 1 and error is not None


def test_backoff_without_an_outcome_is_the_base() -> None:
    state = RetryCallState(None, None, (), {})
    assert 0 <= RetryPolicy(initial_s=0.5).backoff(state) <= 1.0


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _breaker(store: SqliteStore, clock: _Clock, **policy: Any) -> PolicyBreaker:
    return PolicyBreaker(policy_engines(store, clock=clock, breaker=BreakerPolicy(**policy)))


def test_breaker_opens_after_threshold_failures_and_half_opens_after_cooldown(
        store: SqliteStore) -> None:
    clock = _Clock()
    breaker = _breaker(store, clock, failure_threshold=2, cooldown_s=60)
    breaker.record("coder", False)
    assert breaker.allow("coder") == (True, "")
    breaker.record("coder", False)
    allowed, reason = breaker.allow("coder")
    assert not allowed and "'coder' is open after 2 failures" in reason
    assert breaker.allow("reviewer")[0], "other agent types are unaffected"
    clock.now += 61
    assert breaker.allow("coder") == (True, "half-open trial")
    assert not breaker.allow("coder")[0], "only one trial while half-open"
    breaker.record("coder", True)
    assert breaker.allow("coder") == (True, "")


def test_breaker_reopens_when_the_half_open_trial_fails(store: SqliteStore) -> None:
    clock = _Clock()
    breaker = _breaker(store, clock, failure_threshold=1, cooldown_s=10)
    breaker.record("a", False)
    clock.now += 11
    assert breaker.allow("a")[0]
    breaker.record("a", False)
    assert not breaker.allow("a")[0]


def test_breaker_forgets_failures_outside_its_window(store: SqliteStore) -> None:
    clock = _Clock()
    breaker = _breaker(store, clock, failure_threshold=2, window_s=30)
    breaker.record("a", False)
    clock.now += 31
    breaker.record("a", False)
    assert breaker.allow("a") == (True, "")


def test_one_breaker_for_waves_and_native_subagents(store: SqliteStore) -> None:
    """A failing agent type trips the breaker the hooks check before a native spawn."""
    clock = _Clock()
    engines = policy_engines(store, clock=clock, breaker=BreakerPolicy(failure_threshold=2))
    PolicyBreaker(engines).record("coder", False)
    PolicyBreaker(engines).record("coder", False)
    verdict = engines().breakers.check("coder")
    assert not verdict.allowed and verdict.state == "open"


def test_warn_and_off_modes_never_stop_a_wave(store: SqliteStore) -> None:
    clock = _Clock()
    for mode in ("warn", "off"):
        breaker = _breaker(store, clock, mode=mode, failure_threshold=1)
        breaker.record(f"t-{mode}", False)
        assert breaker.allow(f"t-{mode}")[0]
