"""At-most-once handling of a hook event by the one decider, the per-user service.

The service claims each event before deciding it and records the decision beside the
claim, so the same event delivered twice (the same ids and the same input) is decided once
and answered alike, and a service killed between claim and decision is taken over by the
next one, so no answer is ever given for a decision nobody made.

A claim is keyed by the event, its ids and a digest of the input that decides it, so a
reused tool_use_id or agent id (a subagent's second answer, a resumed agent) is decided
afresh, never answered with an earlier decision about other text. What is recorded holds
no prompt or output text: a decision's rewritten input or output is sealed to its digest,
and the hook that echoes the decision computes it again from its own payload (`unseal`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, NamedTuple

from ..canonical import canonical_json, sha256_hex
from ..errors import StoreError
from ..locks import held
from ..resources import pid_alive
from ..store.base import Store

__all__ = ["SEALED_FIELDS", "ClaimState", "ServerBeacon", "Settled", "Undecided", "claim",
           "claim_key", "decide_once", "input_digest", "is_sealed", "owner_alive",
           "process_owner", "seal", "server_is_live", "unseal"]

CLAIM_TTL_S = 24 * 3600
# The server beats every second; `status` calls a server whose beat is older than this
# unresponsive.
BEAT_STALE_S = 10.0

Decision = dict[str, Any]


class ClaimState(NamedTuple):
    owner: str
    decision: Decision | None


class Settled(NamedTuple):
    decision: Decision
    here: bool  # decided by this caller, not taken from the other hook

    def answer(self) -> Decision:
        """What this hook returns: the decision, or its echo if the other hook made it."""
        return self.decision if self.here else self.echo()

    def echo(self) -> Decision:
        """The decision as the hook that did not make it returns it. Claude Code merges both
        hooks' outputs, so the echo leaves out the message, which would otherwise show
        twice."""
        return {k: v for k, v in self.decision.items() if k != "systemMessage"}


class Undecided(Exception):
    """The claim's holder is alive but made no decision in time, or one this hook cannot
    reproduce."""

    def __init__(self, owner: str, waited_s: float, why: str | None = None) -> None:
        super().__init__(why or f"{owner} took this event but did not decide within "
                                f"{waited_s:.0f} s")
        self.owner = owner


# The payload fields a decision depends on; both hooks see the same values (the mcp_tool
# hook's JSON strings and empty substitutions are normalised back first).
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
    caller chose (policy_check is an MCP tool any client can call)."""
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
    what the deciding hook returned (the caller fails closed)."""
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


def process_owner(role: str) -> str:
    """Claim owners name their process, so a waiting hook can tell a dead holder."""
    return f"{role}:{os.getpid()}"


def owner_alive(owner: str) -> bool:
    _, _, pid = owner.rpartition(":")
    if not pid.isdigit():
        return True  # an owner without a pid cannot be checked: assume alive
    return pid_alive(int(pid))


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
        # A damaged decision is no decision: the waiting hook decides for itself.
        decision = value if isinstance(value, dict) else None
    return ClaimState(str(owner), decision)


def record_decision(store: Store, key: str, owner: str, decision: Decision) -> None:
    store.claims.record(key, owner, json.dumps(seal(decision), separators=(",", ":")))


def _take_over(store: Store, key: str, dead: str, me: str) -> bool:
    return store.claims.take_over(key, dead, me)


def decide_once(store: Store, key: str, me: str, decide: Callable[[], Decision], *,
                decision_timeout_s: float = 100.0,
                sleep: Callable[[float], None] = time.sleep,
                alive: Callable[[str], bool] = owner_alive,
                free_text: Callable[[], dict[str, Any]] | None = None) -> Settled:
    """Decide the event once and return the decision.

    A caller that finds the event claimed (the same event delivered again) waits for the
    holder's decision; if the holder died first (a killed service), it takes over and
    decides. Raises `Undecided` when a live holder has not decided within
    `decision_timeout_s` (the caller fails closed where that matters).
    `free_text` computes the text of a sealed decision from this hook's own payload; without
    it, or when it does not match, a sealed decision raises `Undecided` too.
    """
    if claim(store, key, me):
        return Settled(_decide_and_record(store, key, me, decide), True)
    start = time.monotonic()
    while True:
        state = claim_state(store, key)
        if state is not None and state.decision is not None:
            return Settled(_unsealed(state, free_text), False)
        if state is not None and not alive(state.owner) and _take_over(store, key,
                                                                       state.owner, me):
            return Settled(_decide_and_record(store, key, me, decide), True)
        waited = time.monotonic() - start
        if waited >= decision_timeout_s:
            raise Undecided(state.owner if state else "another hook", waited)
        # Decisions normally land within milliseconds; an admission wait can take many
        # seconds, so the polling slows down after the first half second.
        sleep(0.005 if waited < 0.5 else 0.05)


def _unsealed(state: ClaimState, free_text: Callable[[], dict[str, Any]] | None) -> Decision:
    assert state.decision is not None
    if not is_sealed(state.decision):
        return state.decision
    try:
        if free_text is None:
            raise ValueError("this hook cannot compute the decision's text")
        return unseal(state.decision, free_text())
    except Exception as exc:  # a decision this hook cannot reproduce is not one it returns
        raise Undecided(state.owner, 0.0, f"{state.owner} decided this event, but {exc}") \
            from exc


def _decide_and_record(store: Store, key: str, me: str,
                       decide: Callable[[], Decision]) -> Decision:
    decision = decide()
    # Unrecorded, a second delivery of the event cannot see it and fails closed at its
    # timeout instead.
    with contextlib.suppress(StoreError):
        record_decision(store, key, me, decision)
    return decision


def _safe_session(session_id: str) -> str:
    return "".join(c for c in session_id if c.isalnum() or c in "-_") or "default"


def _beacon_path(data_dir: Path, session_id: str) -> Path:
    return data_dir / "servers" / f"{_safe_session(session_id)}.lock"


class ServerBeacon:
    """Held by a running MCP server: an exclusive lock on a per-session file."""

    def __init__(self, data_dir: Path, session_id: str) -> None:
        self.path = _beacon_path(data_dir, session_id)
        self._fh: IO[str] | None = None

    def hold(self) -> bool:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = self.path.open("a+")
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        fh.truncate(0)
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        return True

    def beat(self) -> None:
        """Tells `status` the server's event loop is responsive, not only alive."""
        if self._fh is not None:
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def server_is_live(data_dir: Path, session_id: str) -> bool:
    return held(_beacon_path(data_dir, session_id))
