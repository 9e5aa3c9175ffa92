"""Keeping the chain and its witness in step: checkpoints after commits, gaps when they part.

A writer that finds the database behind or apart from its witness (rows deleted, the file
deleted or replaced by an older copy, rows rewritten, the witness gone or not verifying)
appends an `audit.gap` row saying what was witnessed and is missing, and a gap checkpoint
to the witness. The chain then goes on, never silently from scratch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from ..audit import sanitize
from ..witness import Checkpoint, WitnessError

if TYPE_CHECKING:
    from ..witness import Witness
    from .base import AuditRecord
    from .base import Store as _Rows

__all__ = ["GAP_KIND", "Finding", "already_recorded", "assess", "db_tail", "gap_data",
           "reconcile", "unwritable_data"]

GAP_KIND = "audit.gap"


class Finding(NamedTuple):
    code: str  # lost | rewritten | witness_missing | witness_bad | seen_lost | witness_behind
    problem: str
    witnessed: Checkpoint | None


def _row_hash(rows: _Rows, seq: int) -> str | None:
    return rows.audit.hash_at(seq)


def db_tail(rows: _Rows) -> tuple[int, str]:
    return rows.audit.tail()


def _against(rows: _Rows, cp: Checkpoint, db_seq: int, who: str) -> Finding | None:
    row = _row_hash(rows, cp.seq)
    if row == cp.head:
        return None
    if row is None:
        return Finding("lost" if who == "the witness" else "seen_lost",
                       f"{who} has seq {cp.seq} head {cp.head[:12]} but the database chain "
                       f"ends at seq {db_seq}: rows lost (database deleted, replaced by an "
                       "older copy, or its tail cut)", cp)
    return Finding("rewritten", f"the database chain differs from the head {who} has at seq "
                                f"{cp.seq}: rows rewritten", cp)


def assess(rows: _Rows, witness: Witness, seen: Checkpoint | None = None
           ) -> Finding | Checkpoint | None:
    """What is wrong between the chain and `witness` (and `seen`, a head this process saw
    witnessed earlier): a `Finding`; a `Checkpoint` to write when a chain that was never
    witnessed is enrolled; None when they agree."""
    db_seq, db_hash = db_tail(rows)
    try:
        latest = witness.latest()
    except WitnessError as exc:
        return Finding("witness_bad", exc.reason, None)
    if latest is None:
        if not db_seq and seen is not None:
            return Finding("seen_lost", f"the witness and the database are both gone, but "
                           f"this process saw seq {seen.seq} head {seen.head[:12]} witnessed",
                           seen)
        if not db_seq:
            return None
        if witness.enrolled() or seen is not None:
            return Finding("witness_missing", f"the witness {witness.location} is missing or "
                           f"empty but the database holds {db_seq} events: it was deleted",
                           seen)
        return Checkpoint(db_seq, db_hash, _now_us())
    finding = _against(rows, latest, db_seq, "the witness")
    if finding is not None or seen is None:
        return finding
    finding = _against(rows, seen, db_seq, "this process saw: the witness")
    if finding is None and seen.seq > latest.seq:
        return Finding("witness_behind", f"the witness ends at seq {latest.seq} but this "
                       f"process saw seq {seen.seq} witnessed: witness entries removed", seen)
    return finding


def already_recorded(rows: _Rows, finding: Finding) -> tuple[int, str] | None:
    """The newest gap row, when it records this same finding (a concurrent writer, or a
    crash before its checkpoint was written): its (seq, hash)."""
    found = rows.audit.events(kinds=(GAP_KIND,), newest_first=True, limit=1)
    if not found:
        return None
    seq, digest, recorded = found[0].seq, found[0].hash, found[0].data
    cp = finding.witnessed
    same = (recorded.get("code") == finding.code
            and recorded.get("witnessed_seq") == (cp.seq if cp else None)
            and recorded.get("witnessed_head") == (cp.head if cp else None))
    return (int(seq), str(digest)) if same else None


def gap_data(rows: _Rows, finding: Finding, witness: Witness, cause: str | None
             ) -> Mapping[str, Any]:
    db_seq, db_hash = db_tail(rows)
    cp = finding.witnessed
    data: dict[str, Any] = {
        "code": finding.code, "problem": finding.problem[:280], "witness": witness.location,
        "db_seq": db_seq, "db_head": db_hash,
        "witnessed_seq": cp.seq if cp else None, "witnessed_head": cp.head if cp else None,
    }
    if cp is not None and finding.code in ("lost", "seen_lost"):
        data["lost_from"], data["lost_to"] = db_seq + 1, cp.seq
    data["pid"] = os.getpid()  # who noticed: a hook, or the server that outlives them
    if cause:
        data["cause"] = cause
    return sanitize(data)


def unwritable_data(rows: _Rows, witness: Witness, problem: str) -> Mapping[str, Any]:
    db_seq, db_hash = db_tail(rows)
    return sanitize({"code": "witness_unwritable", "problem": problem[:250],
                     "witness": witness.location, "db_seq": db_seq, "db_head": db_hash,
                     "witnessed_seq": None, "witnessed_head": None, "pid": os.getpid()})


def reconcile(rows: _Rows, witness: Witness, cause: str | None, seen: Checkpoint | None,
              clock_us: Callable[[], int] = lambda: _now_us()) -> AuditRecord | None:
    """Check the chain against `witness` (and `seen`, a head this process saw witnessed)
    and record a loss as an `audit.gap` row, which it returns. A chain from before
    witnessing, or a machine new to a team store, is enrolled at its head as it is.
    Raises OSError or WitnessError when the witness cannot be read or written."""
    if seen is None and not witness.present() and not db_tail(rows)[0]:
        return None  # nothing written, nothing witnessed: a new store
    # Checked without the witness's lock first: every hook opens the store, and agreeing
    # is the usual answer.
    if assess(rows, witness, seen) is None:
        return None
    with witness.hold():
        found = assess(rows, witness, seen)
        if found is None:
            return None
        if isinstance(found, Checkpoint):
            witness.append(found)
            return None
        # Another process may have recorded the same loss meanwhile (on another machine,
        # for a team store): the check and the append share one write transaction, so it
        # is recorded once.
        with rows.transaction():
            recorded = already_recorded(rows, found)
            if recorded is None:
                return rows.append_audit(GAP_KIND, gap_data(rows, found, witness, cause))
        witness.append(Checkpoint(recorded[0], recorded[1], clock_us(), True))
        return None


def _now_us() -> int:
    return time.time_ns() // 1000

