"""The shared rate-limit gate: one store row every session (every machine, on a team
store) reads before starting an agent, closed by any agent's 429, 529 or overloaded reply.

What closes it, and with what wait:

- a wave agent's `api_retry` message (the CLI is about to retry a 429/529): the delay the
  CLI chose, which is the reply's Retry-After (plus the CLI's own jitter) when it named one;
- a wave agent's final 429/529: the last such delay; a 429 the CLI declined to retry,
  `CLI_LONGEST_RETRY_AFTER_S`; else `DEFAULT_BACKOFF_S`;
- a native agent (the main agent or a subagent) that failed for good with a rate limit or
  overload (`StopFailure`, `PostToolUseFailure(Agent)`): Claude Code retried it already and
  gave up, so the limit is not a blip. The main agent's retries are in the session
  transcript (`system/api_error` entries with `retryInMs`): the last delay is used. A
  subagent's retries are written nowhere a hook can read, so the wait is Claude Code's
  own backoff cap, `NATIVE_GAVE_UP_S`;
- a main agent's retry as Claude Code starts to wait (`system/api_error` in its session's
  transcript, with when it was written and the delay chosen), read on the next PreToolUse
  of any session from the transcripts hooks named lately: until that retry goes out.

A later deadline always wins; an earlier one never shortens the gate. Waiters add their
own jitter on top so they do not all return at the same instant.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import re
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from ..store.base import Store
from ..store.repos import RateGateRow

__all__ = ["CLI_LONGEST_RETRY_AFTER_S", "DEFAULT_BACKOFF_S", "NATIVE_GAVE_UP_S", "RATE_SCOPE",
           "ApiFailure", "TranscriptRetry", "close_rate_gate", "gate_deadline_us",
           "is_api_error_text", "last_retry_delay_s", "native_failure", "transcript_retries"]

RATE_SCOPE = "api"
DEFAULT_BACKOFF_S = 5.0  # a wave agent's 429 that named no delay we could read
# Claude Code's retry backoff is capped at 32 s: the wait it would have chosen next.
NATIVE_GAVE_UP_S = 32.0
# Claude Code gives up at once, without retrying, on a 429 whose Retry-After is longer than
# this: with its retries on, a 429 it did not retry asked for at least this long.
CLI_LONGEST_RETRY_AFTER_S = 60.0
JITTER = 0.25  # the share of the wait added at random, once when closing, once per waiter
_TAIL_BYTES = 256 << 10  # of the session transcript, where the last retries are


class ApiFailure(NamedTuple):
    status: int  # 429 or 529
    reason: str


def close_rate_gate(store: Store, status: int, reason: str, retry_after_s: float | None, *,
                    max_backoff_s: float, now: float | None = None,
                    jitter: Callable[[], float] = random.random) -> float:
    """Close the shared gate for `retry_after_s` (`DEFAULT_BACKOFF_S` when None), plus up
    to a quarter more at random, capped at `max_backoff_s`. Returns the wait chosen (a gate
    already closed longer stays so)."""
    base = retry_after_s if retry_after_s is not None and retry_after_s >= 0 \
        else DEFAULT_BACKOFF_S
    wait = min(max_backoff_s, base * (1.0 + JITTER * jitter()))
    now = time.time() if now is None else now
    store.rate_gate.close_until(RATE_SCOPE, int((now + wait) * 1e6), status, reason[:200],
                                int(now * 1e6))
    return wait


def gate_deadline_us(row: RateGateRow, jitter: float) -> int:
    """When one waiter goes: the gate's opening plus its own share (`jitter` in [0, 1)) of
    a quarter of the wait, so waiters released together do not arrive together."""
    span = max(0, row.until_us - row.updated_us)
    return row.until_us + int(JITTER * span * min(max(jitter, 0.0), 1.0))


_STATUS_IN_TEXT = re.compile(r"(?:\bHTTP\s+|\()(429|529)\b|\bAPI Error:\s*(429|529)\b")
_OVERLOADED = re.compile(r"\boverloaded\b", re.I)
# How Claude Code words an API error it gave up on, from the start: an agent's own words
# further on in a failure message do not count.
_API_ERROR = re.compile(r"(?:Agent terminated early due to an API error: )?API Error\b")


def is_api_error_text(text: str) -> bool:
    """The text begins the way Claude Code words an API error it gave up on."""
    return _API_ERROR.match(text.lstrip()) is not None


def native_failure(kind: str, text: str) -> ApiFailure | None:
    """A rate limit or overload from what Claude Code reports when an agent failed for good:
    the `StopFailure` error kind (`rate_limit`, `overloaded`, `server_error`...) and the
    text it showed ("API Error: Request rejected (429) ..."; `PostToolUseFailure(Agent)`
    says "Agent terminated early due to an API error: ... HTTP 429 ..."). Other failures,
    and text that is not an API error's, are None: a tool's failure message can carry words
    an agent chose."""
    kind = kind.strip().lower()
    if kind == "rate_limit":
        return ApiFailure(429, "rate limit (429)")
    if kind == "overloaded":
        return ApiFailure(529, "overloaded (529)")
    if kind not in ("", "server_error") or not is_api_error_text(text):
        return None
    head = text.lstrip()[:400]
    if m := _STATUS_IN_TEXT.search(head):
        status = int(m.group(1) or m.group(2))
        return ApiFailure(status, "rate limit (429)" if status == 429 else "overloaded (529)")
    if _OVERLOADED.search(head):
        return ApiFailure(529, "overloaded (529)")
    return None


class TranscriptRetry(NamedTuple):
    status: int  # 429 or 529
    at_us: int | None  # when Claude Code wrote it, as it started to wait (None: unstated)
    delay_s: float  # how long it chose to wait


def transcript_retries(transcript: str | Path, *, tail_bytes: int = _TAIL_BYTES
                       ) -> list[TranscriptRetry]:
    """Claude Code's retries of a 429/529 in this transcript's last `tail_bytes`, oldest
    first: the main agent's are written there as `system/api_error` entries (`retryInMs`,
    `timestamp`). Values are as written: the transcript is a file the agents can write, so
    callers bound them."""
    tail = _read_tail(transcript, tail_bytes)
    if tail is None or b'"api_error"' not in tail:
        return []
    found: list[TranscriptRetry] = []
    for line in tail.splitlines():
        if b'"api_error"' in line and (retry := _retry_entry(line)) is not None:
            found.append(retry)
    return found


def last_retry_delay_s(transcript: str | Path, *, max_s: float) -> float | None:
    """The delay Claude Code chose for its last retry of a 429/529 in this transcript's
    tail, or None. Bounded by `max_s`: the transcript is a file the agents can write."""
    found = transcript_retries(transcript)
    return min(found[-1].delay_s, max_s) if found else None


def _read_tail(path: str | Path, size: int) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        # A FIFO or a device in the transcript's place must not hang the service.
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        os.lseek(fd, max(0, info.st_size - size), os.SEEK_SET)
        return os.read(fd, size)
    except OSError:
        return None
    finally:
        os.close(fd)


def _retry_entry(line: bytes) -> TranscriptRetry | None:
    try:
        entry = json.loads(line)
    except (ValueError, RecursionError):  # a line nested deep enough to exhaust the stack
        return None
    if not isinstance(entry, dict) or entry.get("type") != "system" \
            or entry.get("subtype") != "api_error":
        return None
    error = entry.get("error")
    status = error.get("status") if isinstance(error, dict) else None
    delay = entry.get("retryInMs")
    if status not in (429, 529) or not isinstance(delay, int | float) \
            or isinstance(delay, bool) or not 0 <= delay < float("inf"):
        return None
    return TranscriptRetry(int(status), _stamp_us(entry.get("timestamp")),
                           float(delay) / 1000.0)


def _stamp_us(value: object) -> int | None:
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        stamp = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if stamp.tzinfo is None:
        return None
    return int(stamp.timestamp() * 1e6)
