"""`audit verify`: the chain checked against itself and against its witness.

Exit codes: 0 intact and witnessed; 1 broken, or apart from the witness in a way nobody
recorded (rows rewritten or lost, witness missing or not verifying); 3 consistent, but the
chain records gaps (`audit.gap`): witnessed history that was lost and is known lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from .audit import VerifyReport, verify_records
from .store.witnessing import GAP_KIND
from .witness import Checkpoint, WitnessError, WitnessLine

if TYPE_CHECKING:
    from .store.base import AuditRecord, WitnessedStore

__all__ = ["AuditCheck", "check_audit"]


class AuditCheck(NamedTuple):
    chain: VerifyReport
    witness: str
    witnessed_seq: int
    problems: tuple[str, ...]
    gaps: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.chain.ok and not self.problems and not self.gaps

    @property
    def exit_code(self) -> int:
        if not self.chain.ok or self.problems:
            return 1
        return 3 if self.gaps else 0

    def one_line(self) -> str:
        if not self.chain.ok:
            return self.chain.one_line()
        if self.problems:
            more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
            return f"audit chain does NOT match its witness: {self.problems[0]}{more}"
        if self.gaps:
            more = f" (and {len(self.gaps) - 1} more)" if len(self.gaps) > 1 else ""
            return f"audit chain has recorded gaps: {self.gaps[0]}{more}"
        note = f"; {self.notes[0]}" if self.notes else ""
        return f"{self.chain.one_line()}; witnessed to seq {self.witnessed_seq}{note}"

    def as_json(self) -> dict[str, Any]:
        first = self.chain.problem or (self.problems[0] if self.problems else None)
        return {"ok": self.ok, "exit_code": self.exit_code, "count": self.chain.events,
                "head_hash": self.chain.head_hash, "first_bad_seq": self.chain.first_bad_seq,
                "problem": first, "problems": list(self.problems), "gaps": list(self.gaps),
                "notes": list(self.notes), "witness": self.witness,
                "witnessed_seq": self.witnessed_seq, "message": self.one_line()}


def check_audit(store: WitnessedStore) -> AuditCheck:
    witness = store.witness
    problems: list[str] = []
    # The witness first: its checkpoints follow commits, so every one it holds is in the
    # database read next, and a concurrent writer cannot look like a lost row.
    try:
        lines = witness.lines()
    except WitnessError as exc:
        lines, problems = [], [exc.reason]
    records = list(store.iter_audit())
    chain = verify_records(records, store.audit_head())
    current, superseded = _current_epoch(lines, problems)
    if not lines and records and not problems:
        problems.append(f"the database holds {len(records)} events but its witness "
                        f"{witness.location} is missing or empty: deleted, or never written")
    problems += _compare(current, records)
    problems += _before_gaps(lines[:superseded + 1] if superseded else [], records)
    if store.witness_problem:
        problems.append(store.witness_problem)
    witnessed = max((cp.seq for cp in current), default=0)
    notes = []
    if records and witnessed < records[-1].seq and current:
        notes.append(f"seq {witnessed + 1}..{records[-1].seq} not witnessed yet")
    if superseded:
        notes.append(f"{superseded} witness lines belong to history before a recorded gap")
    return AuditCheck(chain, witness.location, witnessed, tuple(problems),
                      tuple(_gaps(records)), tuple(notes))


def _current_epoch(lines: list[WitnessLine], problems: list[str]
                   ) -> tuple[list[Checkpoint], int]:
    """Checkpoints from the newest gap on; bad lines there are problems, before it they
    are part of the history the gap recorded as lost."""
    start = 0
    for i, line in enumerate(lines):
        if line.checkpoint is not None and line.checkpoint.gap:
            start = i
    problems += [line.problem for line in lines[start:] if line.problem]
    current = [line.checkpoint for line in lines[start:] if line.checkpoint is not None]
    return current, start


def _compare(current: list[Checkpoint], records: list[AuditRecord]) -> list[str]:
    by_seq = {rec.seq: rec for rec in records}
    last = records[-1].seq if records else 0
    out: list[str] = []
    missing = [cp for cp in current if cp.seq not in by_seq]
    if missing:
        top = max(missing, key=lambda cp: cp.seq)
        out.append(f"witness has seq {top.seq} head {top.head[:12]}… but the database chain "
                   f"has only {len(records)} rows (last seq {last}): rows deleted, or the "
                   "database deleted or replaced by an older copy")
    matched = 0
    for cp in sorted(current, key=lambda c: c.seq):
        rec = by_seq.get(cp.seq)
        if rec is None:
            continue
        if rec.hash != cp.head:
            out.append(f"database chain differs from witnessed head at seq {cp.seq}: rows "
                       f"rewritten (it matches the witness up to seq {matched})")
            break
        if cp.gap and rec.kind != GAP_KIND:
            out.append(f"witness records a gap at seq {cp.seq} but that row is a "
                       f"{rec.kind!r}: rows rewritten")
            break
        matched = cp.seq
    return out


def _before_gaps(lines: list[WitnessLine], records: list[AuditRecord]) -> list[str]:
    """Checkpoints before a recorded gap still bind the rows the gap does not say were lost
    or rewritten: a gap cannot be used to launder a rewrite of older rows."""
    by_seq = {rec.seq: rec for rec in records}
    limit = None
    out: list[str] = []
    for line in reversed(lines):
        cp = line.checkpoint
        if cp is None:
            continue
        if cp.gap:
            rec = by_seq.get(cp.seq)
            data = rec.data if rec is not None and rec.hash == cp.head else {}
            here = 0 if data.get("code") == "rewritten" else int(data.get("lost_from") or cp.seq)
            limit = here if limit is None else min(limit, here)
            continue
        rec = by_seq.get(cp.seq)
        if limit is not None and cp.seq < limit and (rec is None or rec.hash != cp.head):
            out.append(f"database chain differs from witnessed head at seq {cp.seq}, before "
                       "a recorded gap that does not account for it: rows rewritten")
            break
    return out


def _gaps(records: list[AuditRecord]) -> list[str]:
    out = []
    for rec in records:
        if rec.kind != GAP_KIND:
            continue
        data = rec.data
        lost = (f", seq {data['lost_from']}..{data['lost_to']} lost"
                if "lost_from" in data else "")
        cause = f" ({data['cause']})" if data.get("cause") else ""
        out.append(f"seq {rec.seq} records a gap{lost}: {data.get('problem')}{cause}")
    return out
