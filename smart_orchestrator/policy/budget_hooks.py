"""Budgets for the agents Claude Code starts: reserve at PreToolUse, settle after.

Claude Code's Agent result carries the usage of the agent's *last* API message only
(`tool_response.usage`, and `totalTokens` derived from it: CLI 2.1.332), so an agent's
real usage is summed from its transcript, one entry per API message:

- foreground: PostToolUse(Agent) names the agent; its transcript is
  `<session transcript without .jsonl>/subagents/agent-<id>.jsonl`;
- background: PostToolUse says `async_launched` and names the agent (the reservation is
  bound to it); SubagentStop gives the transcript path and settles it;
- a reservation nobody settles (the transcript unreadable, an agent stopped unseen, a
  workflow's agents) is abandoned when the session ends: its estimate stays charged.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ..budget import Budget, Tokens, task_kind, transcript_usage
from ..budget.live_transcripts import LiveTranscripts
from ..budget.ratelimit import (
    NATIVE_GAVE_UP_S,
    RATE_SCOPE,
    close_rate_gate,
    gate_deadline_us,
    is_api_error_text,
    last_retry_delay_s,
    native_failure,
    transcript_retries,
)
from ..budget.waves import usage_limit_reset
from .checks import Finding

if TYPE_CHECKING:
    from .engine import PolicyEngine

__all__ = ["RATE_SCOPE", "BudgetChecks", "BudgetVerdict", "subagent_transcript"]

# Of the session transcript, read on every PreToolUse: a retry Claude Code is waiting out
# is among its last lines (nothing else of the main agent is written meanwhile).
_RECENT_BYTES = 64 << 10


class BudgetVerdict(NamedTuple):
    enforced: list[Finding]
    warned: list[Finding]
    reserved: bool
    retry_after_s: float | None = None


def subagent_transcript(session_transcript: str, agent_id: str) -> Path | None:
    """Where Claude Code keeps a subagent's transcript: beside the session's, or one
    folder down when the agent's runner names a subfolder (workflows do)."""
    if not session_transcript.endswith(".jsonl") or not agent_id or "/" in agent_id \
            or agent_id.startswith("."):
        return None
    folder = Path(session_transcript[:-len(".jsonl")]) / "subagents"
    direct = folder / f"agent-{agent_id}.jsonl"
    if direct.is_file():
        return direct
    nested = sorted(folder.glob(f"*/agent-{agent_id}.jsonl"))
    return nested[0] if nested else direct


class BudgetChecks:
    """`transcripts`: the session transcripts hooks named lately, shared by every engine of
    the process (the service's), so a session hears another's retries."""

    def __init__(self, engine: PolicyEngine, budget: Budget,
                 transcripts: LiveTranscripts) -> None:
        self.e = engine
        self.budget = budget
        self.transcripts = transcripts
        self.random = random.random

    # -- before ----------------------------------------------------------------------
    def reserve(self, ti: Mapping[str, Any], base: dict[str, Any], entry_id: str,
                slots: int) -> BudgetVerdict:
        if self.budget.config.mode == "off":
            return BudgetVerdict([], [], False)
        self.read_ahead(ti, base)  # a no-op when the caller did it already
        model, kind = _model_kind(ti, base)
        gate = self._rate_gate()
        if gate.enforced:
            return gate
        enforced: list[Finding] = []
        warned, retry_after = list(gate.warned), None
        res = self.budget.reserve(entry_id, session_id=base["session_id"],
                                  agent_type=base["agent_type"], kind=kind, model=model,
                                  source="native", count=slots)
        now = self.budget.now_us()
        for b in res.breaches:
            f = Finding("budget", f"cap-{b.cap}", "high", b.reason(res.estimate.usd * slots,
                                                                   now), True)
            (enforced if b.mode == "enforce" else warned).append(f)
            if b.mode == "enforce" and b.resets_us is not None:
                retry_after = (b.resets_us - now) / 1e6
        base["estimate_usd"] = round(res.estimate.usd * slots, 6)
        return BudgetVerdict(enforced, warned, res.reserved, retry_after)

    def read_ahead(self, ti: Mapping[str, Any], base: Mapping[str, Any]) -> None:
        """Hint what `reserve` reads outside its transaction (the rate gate and the
        estimate's history), so a team store answers them with the next read it waits for
        rather than one by one."""
        if self.budget.config.mode == "off":
            return
        model, kind = _model_kind(ti, base)
        store = self.e.store
        store.read_ahead(lambda: (store.rate_gate.get(RATE_SCOPE),
                                  self.budget.estimate(kind, model)))

    def _rate_gate(self) -> BudgetVerdict:
        """While the gate is closed a new agent waits for it here, if it opens within the
        admission wait (`[admission] wait_timeout_s`), then goes after its own random share
        of a quarter of the wait so parallel agents do not all start at once; past that it
        is denied with when to retry. A gate closed further while waiting is waited for
        again."""
        cfg = self.budget.config
        if cfg.rate_limit == "off":
            return BudgetVerdict([], [], False)
        jitter = self.random()
        bound = self.e.config.admission.wait_timeout_s if cfg.rate_limit == "enforce" else 0.0
        started, slept = self.budget.now_us(), False
        while True:
            row = self.e.store.rate_gate.get(RATE_SCOPE)
            now = self.budget.now_us()
            if row is None or gate_deadline_us(row, jitter) <= now:  # never before until_us
                if slept and row is not None:
                    self.e.audit.record("rate.waited", waited_ms=(now - started) // 1000,
                                        status=row.status, reason=row.reason)
                return BudgetVerdict([], [], False)
            wait = min((row.until_us - now) / 1e6, cfg.max_backoff_s)
            mine = (gate_deadline_us(row, jitter) - now) / 1e6
            if (now - started) / 1e6 + mine > bound:
                break
            with self.e.store.idle():  # a team store's writers' lock is not held meanwhile
                self.e.sleep(max(0.01, mine))
            slept = True
        f = Finding("budget", "rate-limited", "high",
                    f"an agent got {row.status} ({row.reason}) from the API; new agents wait "
                    f"{max(wait, 0.0):.0f} s so they do not all hit the limit again", True)
        if cfg.rate_limit == "enforce":
            return BudgetVerdict([f], [], False, max(wait, 1.0))
        return BudgetVerdict([], [f], False)

    # -- an agent's API failure ------------------------------------------------------
    def api_failed(self, p: Mapping[str, Any]) -> None:
        """An agent Claude Code gave up on: `StopFailure` (the main agent or a subagent;
        `error` is the kind, `last_assistant_message` the text shown) or
        `PostToolUseFailure(Agent)` (`error` is the text). A rate limit or an overload
        closes the shared gate; a usage limit that names its reset holds it until then."""
        cfg = self.budget.config
        if cfg.mode == "off" or cfg.rate_limit == "off":
            return
        event = str(p.get("hook_event_name") or "")
        stop = event == "StopFailure"
        kind = str(p.get("error") or "") if stop else ""
        text = str(p.get("last_assistant_message") or "") if stop else str(p.get("error") or "")
        now = self.budget.now_us() / 1e6
        agent_id = str(p.get("agent_id") or "")
        base = {"event": event, "session_id": str(p.get("session_id") or ""),
                "agent_id": agent_id, "source": self.e.source}
        # A reset days away holds every agent that long: only from Claude Code's own words
        # (StopFailure's kind, or a failed Agent call's API-error text), never an agent's.
        trusted = kind == "rate_limit" or (not stop and is_api_error_text(text))
        if trusted and (reset := usage_limit_reset(text, now)) is not None:
            self.e.store.rate_gate.close_until(RATE_SCOPE, int(reset * 1e6), 429,
                                               "usage limit until its reset", int(now * 1e6))
            self.e.audit.record("rate.limited", **base, status=429, usage_limit=True,
                                gate_s=round(reset - now, 3))
            return
        failure = native_failure(kind, text)
        if failure is None:
            return
        # Only the main agent's retries are written where a hook can read them.
        delay = None
        transcript = str(p.get("transcript_path") or "")
        if stop and not agent_id and transcript.endswith(".jsonl"):
            delay = last_retry_delay_s(transcript, max_s=cfg.max_backoff_s)
        wait = close_rate_gate(self.e.store, failure.status,
                               f"{failure.reason}, {'a subagent' if agent_id else 'an agent'} "
                               "gave up after Claude Code's retries",
                               NATIVE_GAVE_UP_S if delay is None else delay,
                               max_backoff_s=cfg.max_backoff_s, now=now, jitter=self.random)
        self.e.audit.record("rate.limited", **base, status=failure.status,
                            retry_delay_s=delay, gate_s=round(wait, 3))

    def retry_heard(self, p: Mapping[str, Any]) -> None:
        """A main agent's retry of a 429/529 that Claude Code is waiting out now (its
        `system/api_error` entry in its session's transcript): the gate holds every new
        agent, of any session or wave, until that retry goes out, even when the retry then
        succeeds and no failure is ever reported. Read on each PreToolUse from the
        transcripts hooks named lately (this session's and others'), so the tool calls of
        any agent, and every new agent, hear it while that main agent waits."""
        cfg = self.budget.config
        if cfg.mode == "off" or cfg.rate_limit == "off":
            return
        own = str(p.get("transcript_path") or "")
        if own.endswith(".jsonl"):
            self.transcripts.note(own)
        for transcript in self.transcripts.recent():
            found = transcript_retries(transcript, tail_bytes=_RECENT_BYTES)
            if found and found[-1].at_us is not None:
                self._retrying(p, transcript, found[-1].status, found[-1].at_us,
                               found[-1].delay_s)

    def _retrying(self, p: Mapping[str, Any], transcript: str, status: int, at_us: int,
                  delay_s: float) -> None:
        cfg, now_us = self.budget.config, self.budget.now_us()
        # Agents can write the transcript: a stamp ahead of the clock is taken as now, and
        # the delay is bounded, so a forged entry holds agents `max_backoff_s` at most.
        at_us = min(at_us, now_us)
        wait_s = min(delay_s, cfg.max_backoff_s)
        until_us = at_us + int(wait_s * 1e6)
        if until_us <= now_us:
            return  # that retry went out already
        row = self.e.store.rate_gate.get(RATE_SCOPE)
        if row is not None and row.until_us >= until_us:
            return  # heard before (or a longer wait holds already)
        kind = "rate limit (429)" if status == 429 else "overloaded (529)"
        wait = close_rate_gate(self.e.store, status,
                               f"{kind}, a main agent is waiting out Claude Code's retry",
                               wait_s, max_backoff_s=cfg.max_backoff_s, now=at_us / 1e6,
                               jitter=self.random)
        self.e.audit.record("rate.limited", event=str(p.get("hook_event_name") or ""),
                            session_id=str(p.get("session_id") or ""),
                            agent_id=str(p.get("agent_id") or ""), source=self.e.source,
                            status=status, retrying=True,
                            retrying_session=Path(transcript).stem[:100],
                            retry_delay_s=round(delay_s, 3), retry_at_us=at_us,
                            gate_s=round(wait, 3))

    def release(self, entry_id: str, slots: int) -> None:
        ids = [entry_id] if slots == 1 else [f"{entry_id}#{k}" for k in range(slots)]
        for one in ids:
            self.budget.release(one)

    # -- after -----------------------------------------------------------------------
    def launched(self, p: Mapping[str, Any], entry_id: str, agent_id: str, *,
                 stopped: bool) -> None:
        """A background launch names its agent: bind the reservation to it. A short agent
        can stop before this hook is decided (both hooks run at once; `stopped`): its
        SubagentStop found nothing bound, so the settling happens here."""
        if not agent_id:
            return
        self.e.store.ledger.bind(entry_id, agent_id)
        if stopped:
            self.stopped(p, agent_id)

    def finished(self, p: Mapping[str, Any], entry_id: str, agent_id: str,
                 model: str) -> dict[str, Any] | None:
        """A foreground agent's end: settle from its transcript."""
        if agent_id:
            self.e.store.ledger.bind(entry_id, agent_id)
        path = subagent_transcript(str(p.get("transcript_path") or ""), agent_id)
        found = transcript_usage(path) if path is not None else None
        if found is None:
            return None  # abandoned at session end: the estimate stays charged
        return self._settle(entry_id, found[0], found[1] or model)

    def stopped(self, p: Mapping[str, Any], agent_id: str) -> dict[str, Any] | None:
        """A background agent's SubagentStop: settle its bound reservation."""
        entry_id = self.e.store.ledger.open_for_agent(agent_id) if agent_id else None
        if entry_id is None:
            return None
        # The hook's own `agent_transcript_path` is not among the fields our mcp_tool
        # hooks pass; the session's transcript path names the same file.
        path = str(p.get("agent_transcript_path") or "") or subagent_transcript(
            str(p.get("transcript_path") or ""), agent_id)
        found = transcript_usage(path) if path else None
        if found is None:
            return None
        return self._settle(entry_id, found[0], found[1] or "inherit")

    def _settle(self, entry_id: str, tokens: Tokens, model: str) -> dict[str, Any] | None:
        usage = self.budget.settle(entry_id, tokens, model)
        if usage is None:
            return None
        return {"cost_usd": usage.cost_usd, "model": usage.model, "priced": usage.priced,
                "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                "cache_read_tokens": usage.cache_read_tokens,
                "cache_write_tokens": usage.cache_write_tokens}

    def session_ended(self, p: Mapping[str, Any], session_id: str) -> list[str]:
        """Settle what the session's agents' transcripts say; the rest stays charged at
        its estimate. Returns the ids left at their estimate."""
        self.transcripts.forget(str(p.get("transcript_path") or ""))
        ledger = self.e.store.ledger
        for entry_id in ledger.open_ids(session_id):
            row = ledger.get(entry_id)
            path = subagent_transcript(str(p.get("transcript_path") or ""),
                                       row.agent_id or "") if row is not None else None
            found = transcript_usage(path) if path is not None else None
            if found is not None:
                self._settle(entry_id, found[0], found[1] or (row.model if row else "inherit"))
        return self.budget.abandon_session(session_id)


def _model_kind(ti: Mapping[str, Any], base: Mapping[str, Any]) -> tuple[str, str]:
    model = str(ti.get("model") or "inherit")
    prompt = ti.get("prompt")
    return model, task_kind(base["agent_type"], model,
                            prompt if isinstance(prompt, str) else base["tool"])
