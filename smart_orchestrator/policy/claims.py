"""At-most-once handling of a hook event by the one decider, the per-user service.

The service claims each event before deciding it and records the decision beside the
claim, so the same event delivered twice (the same ids and the same input) is decided once
and answered alike, and no answer is ever given for a decision nobody made: an event whose
claim holder ended before deciding it (a killed service) is not answered from the claim
(the shim sends that call to the next service, which refuses it: its action is blocked).

A claim is keyed by the event, its ids and a digest of the input that decides it, so a
reused tool_use_id or agent id (a subagent's second answer, a resumed agent) is decided
afresh, never answered with an earlier decision about other text. What is recorded holds
no prompt or output text: a decision's rewritten input or output is sealed to its digest,
and a second delivery computes it again from its own payload (`unseal`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from ..canonical import canonical_json, sha256_hex
from ..errors import StoreError
from ..store.base import Store

__all__ = ["SEALED_FIELDS", "ClaimState", "Settled", "Undecided", "claim", "claim_key",
           "decide_once", "input_digest", "is_sealed", "seal", "unseal"]

CLAIM_TTL_S = 24 * 3600
# How long a second delivery waits for this process's decision of the first (an admission
# wait can take many seconds; the hook's timeout is 120 s).
DECISION_WAIT_S = 100.0

Decision = dict[str, Any]


class ClaimState(NamedTuple):
    owner: str
    decision: Decision | None


class Settled(NamedTuple):
    decision: Decision
    here: bool  # decided by this delivery, not answered from the record


class Undecided(Exception):
    """No decision to answer with: the claim's holder left none, or one this delivery
    cannot reproduce."""

    def __init__(self, owner: str, why: str) -> None:
        super().__init__(why)
        self.owner = owner


# The payload fields a decision depends on (the mcp_tool hook's JSON strings and empty
# substitutions are normalised back first).
_DECIDING_FIELDS = ("tool_name", "tool_input", "tool_response", "agent_id", "agent_type",
                    "last_assistant_message", "prompt", "stop_hook_active", "error")
# Decision fields that carry prompt or output text (rewritten by a hook).
SEALED_FIELDS = ("updatedInput", "updatedToolOutput", "updatedMCPToolOutput")
_SAFE_EVENT = re.compile(r"^[A-Za-z]{1,40}$")


def input_digest(payload: dict[str, Any]) -> str:
    picked = {k: payload[k] for k in _DECIDING_FIELDS if payload.get(k) not in (None, "")}
    try:
        raw = canonical_json(picked)
    except (TypeError, ValueError):  # NaN or a stray object: still one digest per input
        raw = json.dumps(picked, sort_keys=True, default=repr).encode("utf-8", "replace")
    return sha256_hex(raw)


def claim_key(event: str, session_id: str, tool_use_id: str, agent_id: str,
              payload: dict[str, Any] | None = None) -> str:
    """The event's name, then a digest of its ids and input: the key holds no text a
    caller chose."""
    ids = canonical_json([session_id, tool_use_id or agent_id, input_digest(payload or {})])
    return f"{event if _SAFE_EVENT.match(event) else 'other'}:{sha256_hex(ids)}"


def _specific(decision: Decision) -> dict[str, Any]:
    specific = decision.get("hookSpecificOutput")
    return specific if isinstance(specific, dict) else {}


def is_sealed(decision: Decision) -> bool:
    return any(isinstance(v, dict) and "sealed" in v and len(v) == 1
               for k, v in _specific(decision).items() if k in SEALED_FIELDS)


def seal(decision: Decision) -> Decision:
    """The decision as it may be written down: rewritten text replaced by its digest."""
    specific = _specific(decision)
    if not any(k in specific for k in SEALED_FIELDS):
        return decision
    sealed = {k: ({"sealed": _digest(v)} if k in SEALED_FIELDS else v)
              for k, v in specific.items()}
    return {**decision, "hookSpecificOutput": sealed}


def unseal(decision: Decision, free_text: dict[str, Any]) -> Decision:
    """A sealed decision with its text computed again; ValueError when that text is not
    what the first delivery was answered with (the caller fails closed)."""
    specific = dict(_specific(decision))
    for key in SEALED_FIELDS:
        if key in specific:
            value = free_text.get(key)
            if value is None or {"sealed": _digest(value)} != specific[key]:
                raise ValueError(f"the recorded decision's {key} does not match this input")
            specific[key] = value
    return {**decision, "hookSpecificOutput": specific} if specific else decision


def _digest(value: Any) -> str:
    return sha256_hex(canonical_json(value))


def _owner() -> str:
    return f"server:{os.getpid()}"


# One lock per event this process is handling (with its number of users): a second delivery
# waits for the first one's decision instead of finding its claim undecided.
_locks: dict[str, tuple[threading.Lock, int]] = {}
_locks_guard = threading.Lock()


@contextlib.contextmanager
def _one_at_a_time(key: str, wait_s: float) -> Iterator[None]:
    with _locks_guard:
        lock, users = _locks.get(key, (threading.Lock(), 0))
        _locks[key] = (lock, users + 1)
    try:
        if not lock.acquire(timeout=wait_s):
            raise Undecided(_owner(), f"the first delivery of this event was not decided "
                                      f"within {wait_s:.0f} s")
        try:
            yield
        finally:
            lock.release()
    finally:
        with _locks_guard:
            lock, users = _locks[key]
            if users == 1:
                del _locks[key]
            else:
                _locks[key] = (lock, users - 1)


def claim(store: Store, key: str, owner: str, now: float | None = None) -> bool:
    now_us = int((now if now is not None else time.time()) * 1e6)
    # Occasional pruning keeps the table small without a daemon.
    prune = now_us - CLAIM_TTL_S * 10**6 if now_us % 97 == 0 else None
    return store.claims.claim(key, owner, now_us, prune_before_us=prune)


def claim_state(store: Store, key: str) -> ClaimState | None:
    try:
        row = store.claims.get(key)
    except StoreError:
        return None
    if row is None:
        return None
    owner, raw = row
    decision: Decision | None = None
    if raw is not None:
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
        # A damaged decision is no decision: the event is then not answered from it.
        decision = value if isinstance(value, dict) else None
    return ClaimState(str(owner), decision)


def record_decision(store: Store, key: str, owner: str, decision: Decision) -> None:
    store.claims.record(key, owner, json.dumps(seal(decision), separators=(",", ":")))


def decide_once(store: Store, key: str, decide: Callable[[], Decision], *,
                free_text: Callable[[], dict[str, Any]] | None = None,
                wait_s: float = DECISION_WAIT_S) -> Settled:
    """Decide the event once and return the decision.

    The same event delivered again is answered with the recorded decision (its text
    computed again by `free_text` from this delivery's payload); one that arrives while
    this process still decides the first waits up to `wait_s` for that decision. Raises `Undecided`
    when there is no decision to answer with: the claim's holder ended before deciding
    (a killed service; the shim delivers its pending calls again, and they are refused), or
    the recorded decision's text cannot be reproduced. The caller fails closed.
    """
    me = _owner()
    with _one_at_a_time(key, wait_s):
        if claim(store, key, me):
            return Settled(_decide_and_record(store, key, me, decide), True)
        state = claim_state(store, key)
    if state is None or state.decision is None:
        holder = state.owner if state is not None else "another process"
        raise Undecided(holder, f"{holder} took this event but left no decision")
    return Settled(_unsealed(state, free_text), False)


def _unsealed(state: ClaimState, free_text: Callable[[], dict[str, Any]] | None) -> Decision:
    assert state.decision is not None
    if not is_sealed(state.decision):
        return state.decision
    try:
        if free_text is None:
            raise ValueError("this delivery cannot compute the decision's text")
        return unseal(state.decision, free_text())
    except Exception as exc:  # a decision this delivery cannot reproduce is not returned
        raise Undecided(state.owner, f"{state.owner} decided this event, but {exc}") from exc


def _decide_and_record(store: Store, key: str, me: str,
                       decide: Callable[[], Decision]) -> Decision:
    decision = decide()
    # Unrecorded, a second delivery of the event cannot see it and fails closed instead.
    with contextlib.suppress(StoreError):
        record_decision(store, key, me, decision)
    return decision
