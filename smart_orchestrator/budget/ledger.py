"""The budget: reserve an estimate before an agent starts, settle its real usage after,
and refuse (or warn about) an agent whose estimate would take a cap past its limit.

The cap check and the reservation are one store transaction, so agents started at once
by many sessions (or machines, on a team store) cannot together overshoot a cap: each
sees the reservations of those before it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import time
from collections.abc import Callable
from typing import NamedTuple

from ..policy.config import BudgetPolicy
from ..store.base import Store
from ..store.hostid import host_id
from ..store.repos import LedgerRow, LedgerUsage
from .pricing import Tokens, cost_usd, price_for

__all__ = ["CAPS", "Breach", "Budget", "Estimate", "Reservation", "task_kind"]

CAPS = ("session", "day", "project", "team")
_HISTORY = 20  # settled agents an estimate averages over
_INPUT_SHARE = 0.9  # of a default estimate's tokens; the rest is output


class Estimate(NamedTuple):
    tokens: int
    usd: float
    basis: str  # how it was made, in words


class Breach(NamedTuple):
    cap: str
    limit_usd: float
    charged_usd: float  # before this agent
    mode: str
    resets_us: int | None  # None: at the end of the session

    def reason(self, estimate_usd: float, now_us: int) -> str:
        when = ("when the session ends" if self.resets_us is None else
                f"at {_utc(self.resets_us)} (in {max(1, (self.resets_us - now_us) // 1_000_000)}"
                " s)")
        return (f"the {self.cap} budget cap of ${self.limit_usd:.2f} would be exceeded "
                f"(${self.charged_usd:.4f} charged, this agent is estimated at "
                f"${estimate_usd:.4f}); the window resets {when}")


class Reservation(NamedTuple):
    entry_id: str
    estimate: Estimate
    breaches: tuple[Breach, ...]  # enforced ones mean nothing was reserved
    reserved: bool


def task_kind(agent_type: str, model: str, prompt: str) -> str:
    """What makes two agents similar for estimates: type, model, and the prompt's words
    (numbers and case ignored, so a repeated plan with other ids still matches)."""
    words = " ".join(re.findall(r"[a-z]+", prompt.lower()))[:2000]
    return f"{agent_type}|{model}|{hashlib.sha256(words.encode()).hexdigest()[:16]}"


def _utc(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def day_start_us(now_us: int) -> int:
    day = dt.datetime.fromtimestamp(now_us / 1e6, dt.UTC).date()
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1e6)


_MODE_RANK = {"off": 0, "warn": 1, "enforce": 2}


class Budget:
    def __init__(self, store: Store, config: BudgetPolicy, *, project: str,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self.config = config
        self.project = project
        self._clock = clock

    def now_us(self) -> int:
        return int(self._clock() * 1e6)

    # -- caps ------------------------------------------------------------------------
    def cap_mode(self, cap: str) -> str:
        own = str(getattr(self.config, f"{cap}_mode"))
        return min(own, self.config.mode, key=_MODE_RANK.__getitem__)

    def limits(self) -> dict[str, float]:
        """The caps that are set and not off."""
        out = {}
        for cap in CAPS:
            limit = getattr(self.config, f"{cap}_usd")
            if limit is not None and self.cap_mode(cap) != "off":
                out[cap] = float(limit)
        return out

    def charged(self, cap: str, session_id: str, now_us: int) -> float:
        ledger = self._store.ledger
        if cap == "session":
            return ledger.charged(session_id=session_id)[0]
        since = day_start_us(now_us)
        if cap == "day":
            return ledger.charged(since_us=since, host=host_id())[0]
        if cap == "project":
            return ledger.charged(since_us=since, project=self.project)[0]
        return ledger.charged(since_us=since)[0]

    def breaches(self, session_id: str, extra_usd: float, now_us: int) -> list[Breach]:
        found = []
        for cap, limit in self.limits().items():
            charged = self.charged(cap, session_id, now_us)
            if charged + extra_usd > limit + 1e-9:
                resets = None if cap == "session" else day_start_us(now_us) + 86_400_000_000
                found.append(Breach(cap, limit, charged, self.cap_mode(cap), resets))
        return found

    def shares(self, session_id: str, extra_usd: float) -> dict[str, dict[str, float]]:
        """Per cap: limit, charged, and the share of the limit `extra_usd` would use."""
        now = self.now_us()
        out = {}
        for cap, limit in self.limits().items():
            charged = self.charged(cap, session_id, now)
            out[cap] = {"limit_usd": limit, "charged_usd": round(charged, 6),
                        "share": round(extra_usd / limit, 4) if limit else float("inf"),
                        "after_usd": round(charged + extra_usd, 6)}
        return out

    # -- estimates -------------------------------------------------------------------
    def estimate(self, kind: str, model: str) -> Estimate:
        ledger = self._store.ledger
        exact = ledger.history(kind, limit=_HISTORY)
        if exact:
            return _mean(exact, f"mean of the last {len(exact)} settled agents of this task")
        family = kind.rsplit("|", 1)[0] + "|"
        similar = ledger.history(family, limit=_HISTORY, prefix=True)
        if similar:
            return _mean(similar, f"mean of the last {len(similar)} settled agents of the "
                                  "same type and model (no run of this task yet)")
        tokens = self.config.default_estimate_tokens
        split = Tokens(int(tokens * _INPUT_SHARE), tokens - int(tokens * _INPUT_SHARE))
        usd, priced = cost_usd(split, model)
        note = " at the dearest family's prices (model unknown)" \
            if priced.startswith("unknown") else ""
        return Estimate(tokens, usd, f"default estimate of {tokens} tokens: no history{note}")

    # -- reserve and settle -----------------------------------------------------------
    def reserve(self, entry_id: str, *, session_id: str, agent_type: str, kind: str,
                model: str, source: str, run_id: str | None = None,
                task_id: str | None = None, count: int = 1) -> Reservation:
        """Check the caps and reserve `count` agents' estimates (ids `entry_id`, or
        `entry_id#k` for several) in one transaction; an enforced breach reserves none."""
        estimate = self.estimate(kind, model)
        ids = [entry_id] if count == 1 else [f"{entry_id}#{k}" for k in range(count)]
        priced = "estimate:" + price_for(model)[1]
        with self._store.transaction():
            now = self.now_us()
            breaches = tuple(self.breaches(session_id, estimate.usd * count, now))
            if any(b.mode == "enforce" for b in breaches):
                return Reservation(entry_id, estimate, breaches, False)
            for one in ids:
                self._store.ledger.reserve(LedgerRow(
                    one, session_id, self.project, host_id(), None, agent_type, kind, model,
                    "reserved", estimate.usd, estimate.tokens, 0, 0, 0, 0, 0.0, priced,
                    source, run_id, task_id, now, None))
        return Reservation(entry_id, estimate, breaches, True)

    def settle(self, entry_id: str, tokens: Tokens, model: str) -> LedgerUsage | None:
        """The real usage; None when the entry was already settled (or never reserved)."""
        usd, priced = cost_usd(tokens, model)
        usage = LedgerUsage(tokens.input, tokens.output, tokens.cache_read,
                            tokens.cache_write, usd, model, priced)
        return usage if self._store.ledger.settle(entry_id, usage, self.now_us()) else None

    def release(self, entry_id: str) -> bool:
        """An agent that never started: nothing charged."""
        return self._store.ledger.settle(entry_id, LedgerUsage(0, 0, 0, 0, 0.0, "none",
                                                               "not started"), self.now_us())

    def abandon_session(self, session_id: str) -> list[str]:
        """Reservations the session ended without settling keep their estimate charged."""
        now, ledger = self.now_us(), self._store.ledger
        return [i for i in ledger.open_ids(session_id) if ledger.abandon(i, now)]


def _mean(rows: list[LedgerRow], basis: str) -> Estimate:
    tokens = sum(r.total_tokens for r in rows) // len(rows)
    usd = sum(r.cost_usd for r in rows) / len(rows)
    return Estimate(tokens, round(usd, 6), basis)
