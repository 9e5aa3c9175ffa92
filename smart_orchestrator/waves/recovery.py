"""What went wrong with an agent, and whether trying again can help.

Quota, authentication and session-limit errors stop the wave: every later agent would hit
the same wall. Rate limits, server errors, timeouts and crashes back off and retry, each
attempt with less context than the last. Everything else fails the task at once.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from ..errors import OrchestratorError

__all__ = [
    "STOPS_WAVE",
    "AttemptFailed",
    "ErrorClass",
    "RetryPolicy",
    "classify",
]


class ErrorClass(StrEnum):
    QUOTA = "quota"
    AUTH = "authentication"
    SESSION_LIMIT = "session_limit"
    CONFIG = "config"
    RATE_LIMIT = "rate_limit"
    SERVER = "server_error"
    TIMEOUT = "timeout"
    CRASH = "crash"
    CONTEXT_OVERFLOW = "context_overflow"
    AGENT_ERROR = "agent_error"
    INVALID_OUTPUT = "invalid_output"
    BAD_REQUEST = "bad_request"
    MAX_TURNS = "max_turns"
    BUDGET = "budget"
    BREAKER_OPEN = "breaker_open"
    MERGE_CONFLICT = "merge_conflict"
    CANCELLED = "cancelled"

    @property
    def stops_wave(self) -> bool:
        return self in STOPS_WAVE

    @property
    def retryable(self) -> bool:
        return self in _RETRYABLE


STOPS_WAVE = frozenset({ErrorClass.QUOTA, ErrorClass.AUTH, ErrorClass.SESSION_LIMIT,
                        ErrorClass.CONFIG})
_RETRYABLE = frozenset({ErrorClass.RATE_LIMIT, ErrorClass.SERVER, ErrorClass.TIMEOUT,
                        ErrorClass.CRASH, ErrorClass.CONTEXT_OVERFLOW,
                        ErrorClass.AGENT_ERROR})
# Counted against an agent type's health; a quota wall or a cancel says nothing about it.
BREAKER_COUNTS = frozenset(_RETRYABLE | {ErrorClass.INVALID_OUTPUT})

_TEXT_RULES: tuple[tuple[re.Pattern[str], ErrorClass], ...] = (
    (re.compile(r"credit balance|quota|billing|insufficient.{0,20}(funds|credit)", re.I),
     ErrorClass.QUOTA),
    (re.compile(r"usage limit|session limit|weekly limit|5-hour limit|limit will reset|"
                r"resets at", re.I),
     ErrorClass.SESSION_LIMIT),
    (re.compile(r"invalid (x-)?api[ -]key|authentication|oauth token|unauthori[sz]ed|"
                r"not logged in|please run /login", re.I), ErrorClass.AUTH),
    (re.compile(r"prompt is too long|context (window|length)|too many tokens", re.I),
     ErrorClass.CONTEXT_OVERFLOW),
    (re.compile(r"overloaded|internal server error|bad gateway|service unavailable", re.I),
     ErrorClass.SERVER),
    (re.compile(r"rate limit|too many requests", re.I), ErrorClass.RATE_LIMIT),
)


def classify(*, status: int | None = None, text: str = "",
             subtype: str | None = None) -> ErrorClass:
    """Classify a failed agent run from its API status, message text and result subtype.

    Text is checked first: a session limit arrives as a 429 and a quota refusal as a 400,
    and each must stop the wave rather than be retried like their status code suggests.
    """
    if subtype == "error_max_turns":
        return ErrorClass.MAX_TURNS
    if subtype == "error_max_budget_usd":
        return ErrorClass.BUDGET
    for pattern, error_class in _TEXT_RULES:
        if pattern.search(text):
            return error_class
    if status in (401, 403):
        return ErrorClass.AUTH
    if status == 429:
        return ErrorClass.RATE_LIMIT
    if status is not None and (status >= 500 or status == 408):
        return ErrorClass.SERVER
    if status is not None and 400 <= status < 500:
        return ErrorClass.BAD_REQUEST
    return ErrorClass.AGENT_ERROR


class AttemptFailed(OrchestratorError):
    """One attempt of a task failed; `error_class` decides what happens next."""

    def __init__(self, error_class: ErrorClass, reason: str, *,
                 retry_after: float | None = None) -> None:
        self.error_class = error_class
        super().__init__(reason, rule_id=error_class.value, retry_after=retry_after)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded by attempts and by total time; backoff honours a server's retry-after."""

    max_attempts: int = 3
    initial_s: float = 1.0
    max_backoff_s: float = 30.0
    total_s: float = 900.0

    def backoff(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        computed = wait_exponential_jitter(multiplier=self.initial_s, max=self.max_backoff_s,
                                           jitter=self.initial_s)(retry_state)
        hinted = getattr(exc, "retry_after", None)
        return max(computed, float(hinted)) if hinted else computed

    def retrying(self, *, may_retry: Callable[[AttemptFailed], bool],
                 sleep: Callable[[float], Awaitable[None]],
                 before_sleep: Callable[[RetryCallState], None] | None = None
                 ) -> AsyncRetrying:
        def predicate(exc: BaseException) -> bool:
            return (isinstance(exc, AttemptFailed) and exc.error_class.retryable
                    and may_retry(exc))

        return AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts) | stop_after_delay(self.total_s),
            wait=self.backoff,
            retry=retry_if_exception(predicate),
            sleep=sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
