"""Budgets for wave agents: each task reserves before it is admitted and settles from the
SDK's usage when it ends; at a cap, or while the rate gate is closed, the wave waits.

A paused wave fails nothing: its tasks stay pending, and each scheduler tick asks again,
so the wave continues as soon as the cap is raised (a weaker policy only applies once the
user accepts it: `smart-orchestrator policy accept`) or the window resets.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..store.base import Store
from ..store.repos import RateGateRow
from .ledger import Budget, task_kind
from .preview import PlannedAgent, preview
from .pricing import Tokens
from .ratelimit import RATE_SCOPE, close_rate_gate, gate_deadline_us

__all__ = ["RATE_SCOPE", "WaveBudget", "close_rate_gate", "usage_limit_reset"]


class AttemptUsage(Protocol):
    """What an attempt's outcome says about its usage (`waves.agents.AgentOutcome`)."""

    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def cache_read_tokens(self) -> int: ...
    @property
    def cache_write_tokens(self) -> int: ...
    @property
    def model(self) -> str | None: ...
    @property
    def api_status(self) -> int | None: ...
    @property
    def error_class(self) -> object | None: ...
    @property
    def reason(self) -> str: ...
    @property
    def retry_after_s(self) -> float | None: ...


@dataclass(slots=True)
class _Used:
    tokens: Tokens = field(default_factory=Tokens)
    model: str | None = None


class WaveBudget:
    """`budget()` gives the Budget in force now (the policy may change while a wave runs)."""

    def __init__(self, store: Store, budget: Callable[[], Budget], *,
                 session_id: Callable[[str], str] = lambda run_id: f"wave:{run_id}") -> None:
        self._store = store
        self._budget = budget
        self._session = session_id
        self._used: dict[tuple[str, str], _Used] = {}
        # Each waiting task's own share of the jitter, drawn once per closing of the gate.
        self._jitter: dict[tuple[str, str], tuple[int, float]] = {}
        self._random = random.random

    def preview(self, run_id: str, agents: Sequence[PlannedAgent]) -> dict[str, Any]:
        return preview(self._budget(), agents, session_id=self._session(run_id))

    def gate_wait_s(self, run_id: str = "", task_id: str = "") -> float:
        """How long this task waits for the shared rate gate (0: open): until it opens,
        plus the task's own jitter."""
        cfg = self._budget().config
        if cfg.mode == "off" or cfg.rate_limit != "enforce":
            return 0.0
        gate = self._store.rate_gate.get(RATE_SCOPE)
        if gate is None:
            return 0.0
        wait = (self._deadline_us(gate, run_id, task_id) - time.time_ns() // 1000) / 1e6
        return min(max(0.0, wait), cfg.max_backoff_s * 1.25)

    def _deadline_us(self, gate: RateGateRow, run_id: str, task_id: str) -> int:
        key = (run_id, task_id)
        drawn = self._jitter.get(key)
        if drawn is None or drawn[0] != gate.until_us:
            drawn = (gate.until_us, self._random())
            self._jitter[key] = drawn
        return gate_deadline_us(gate, drawn[1])

    @staticmethod
    def entry_id(run_id: str, task_id: str) -> str:
        return f"wave:{run_id}:{task_id}"

    def admit(self, run_id: str, task_id: str, agent_type: str, model: str | None,
              prompt: str) -> str | None:
        """None when the task may start (its estimate reserved), else why it waits."""
        budget = self._budget()
        cfg = budget.config
        if cfg.mode == "off":
            return None
        gate = self._store.rate_gate.get(RATE_SCOPE) if cfg.rate_limit == "enforce" else None
        now = budget.now_us()
        if gate is not None and self._deadline_us(gate, run_id, task_id) > now:
            return (f"rate limited: an agent got {gate.status} ({gate.reason}); new agents "
                    f"wait {max(0, gate.until_us - now) / 1e6:.0f} s")
        self._jitter.pop((run_id, task_id), None)
        entry = self.entry_id(run_id, task_id)
        if self._store.ledger.get(entry) is not None:
            return None  # reserved before (a resumed wave)
        res = budget.reserve(entry, session_id=self._session(run_id), agent_type=agent_type,
                             kind=task_kind(agent_type, model or "inherit", prompt),
                             model=model or "inherit", source="wave", run_id=run_id,
                             task_id=task_id)
        enforced = [b for b in res.breaches if b.mode == "enforce"]
        if enforced:
            return "paused at a budget cap: " + enforced[0].reason(res.estimate.usd, now)
        return None

    def used(self, run_id: str, task_id: str, tokens: Tokens, model: str | None) -> None:
        """One attempt's usage; a task's attempts add up."""
        used = self._used.setdefault((run_id, task_id), _Used())
        used.tokens = used.tokens + tokens
        used.model = model or used.model

    def settle(self, run_id: str, task_id: str, fallback_model: str | None
               ) -> dict[str, Any] | None:
        """A task's end. One that never started is charged nothing; one whose agents
        reported no usage (killed by a cancel or a timeout before their result) keeps its
        estimate charged, since what they used is unknown. Returns what the ledger now
        charges the task, with its token split (None when it was settled before)."""
        used = self._used.pop((run_id, task_id), None)
        self._jitter.pop((run_id, task_id), None)
        budget, entry = self._budget(), self.entry_id(run_id, task_id)
        if used is None:
            changed = budget.release(entry)
        elif used.tokens.total == 0:
            changed = self._store.ledger.abandon(entry, budget.now_us())
        else:
            changed = budget.settle(entry, used.tokens,
                                    used.model or fallback_model or "inherit") is not None
        row = self._store.ledger.get(entry) if changed else None
        if row is None:
            return None
        return {"state": row.state, "model": row.model, "priced": row.priced,
                "input_tokens": row.input_tokens, "output_tokens": row.output_tokens,
                "cache_read_tokens": row.cache_read_tokens,
                "cache_write_tokens": row.cache_write_tokens,
                "estimated_usd": row.reserved_usd, "cost_usd": round(row.charged_usd, 6)}

    def rate_limited(self, status: int, reason: str, retry_after_s: float | None, *,
                     now: float | None = None) -> float:
        """Any agent's 429/529 (as it happens, or at its end): every new agent waits from
        `now` (epoch seconds). The wait chosen, 0 when the gate is off."""
        cfg = self._budget().config
        if cfg.mode == "off" or cfg.rate_limit == "off":
            return 0.0
        return close_rate_gate(self._store, status, reason, retry_after_s,
                               max_backoff_s=cfg.max_backoff_s, now=now)

    def finish_run(self, run_id: str) -> int:
        """Tasks of a finished wave that never ran: nothing charged."""
        ledger, budget = self._store.ledger, self._budget()
        return sum(1 for row in ledger.rows(run_id=run_id)
                   if row.state == "reserved" and budget.release(row.id))

    def attempt_ended(self, run_id: str, task_id: str, outcome: AttemptUsage) -> None:
        self.used(run_id, task_id, Tokens(outcome.input_tokens, outcome.output_tokens,
                                          outcome.cache_read_tokens,
                                          outcome.cache_write_tokens), outcome.model)
        if str(outcome.error_class) == "session_limit":
            return  # a usage limit, not a rate limit: `usage_limited` holds the gate
        status = outcome.api_status
        limited = status in (429, 529) or (outcome.error_class is not None and str(
            outcome.error_class) == "rate_limit") or "overloaded" in outcome.reason.lower()
        if limited and self._budget().config.rate_limit != "off":
            self.rate_limited(status or 429, outcome.reason or "rate limited",
                              outcome.retry_after_s)

    def usage_limited(self, reason: str) -> float | None:
        """A usage limit that names its reset: the gate holds every new agent until then
        (no backoff cap: the time is known). Returns the reset (epoch seconds), or None."""
        if self._budget().config.mode == "off":
            return None
        now = time.time()
        reset = usage_limit_reset(reason, now)
        if reset is None:
            return None
        self._store.rate_gate.close_until(RATE_SCOPE, int(reset * 1e6), 429,
                                          "usage limit until its reset", int(now * 1e6))
        return reset


_EPOCH = re.compile(r"\|\s*(\d{10})\b")
_ISO = re.compile(r"\b(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2})?(?:Z|[+-]\d{2}:?\d{2})?)")
_CLOCK = re.compile(r"resets?\s+(?:at\s+)?(\d{1,2})(?::(\d{2}))?\s*(am|pm)?"
                    r"(?:\s*\(([A-Za-z_/+-]{1,40})\))?", re.I)
_LONGEST_WAIT_S = 8 * 86_400.0  # a reset further off than a week and a day is not believed


def usage_limit_reset(text: str, now: float) -> float | None:
    """When a usage limit resets, from the error's text: `...|<epoch>`, an ISO time, or
    `resets [at] 3pm (Europe/Paris)` (the next such time; UTC when no zone is named)."""
    import datetime as dt

    found: float | None = None
    if m := _EPOCH.search(text):
        found = float(m.group(1))
    elif m := _ISO.search(text):
        try:
            stamp = dt.datetime.fromisoformat(m.group(1).replace("Z", "+00:00"))
        except ValueError:
            return None
        found = (stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)).timestamp()
    elif m := _CLOCK.search(text):
        found = _next_clock(int(m.group(1)), int(m.group(2) or 0), m.group(3), m.group(4),
                            now)
    if found is None or not now < found <= now + _LONGEST_WAIT_S:
        return None
    return found


def _next_clock(hour: int, minute: int, half: str | None, zone: str | None,
                now: float) -> float | None:
    import datetime as dt
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if half:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if half.lower() == "pm" else 0)
    if hour > 23 or minute > 59:
        return None
    try:
        tz: dt.tzinfo = ZoneInfo(zone) if zone else dt.UTC
    except (ZoneInfoNotFoundError, ValueError):
        return None
    local = dt.datetime.fromtimestamp(now, tz)
    at = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if at.timestamp() <= now:
        at += dt.timedelta(days=1)
    return at.timestamp()
