"""Tamper-evident audit log: a SHA-256 chain over canonical JSON.

Each link is sha256(prev_hash || canonical({seq, ts_us, kind, data})). Editing a row breaks
its own hash; deleting or reordering rows breaks the next row's `prev_hash` or the sequence;
cutting the tail disagrees with the head the store records in the same transaction.
Rewrites that keep the chain consistent with itself are caught by its witness outside the
database (`witness.py`, `audit_check.py`).

Raw prompts and outputs never enter an event: callers pass text through `digest_text`,
and `sanitize` digests long free text and drops short text holding a credential, so a
slip (or a model-chosen field such as an agent type) cannot smuggle one in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from .canonical import GENESIS_HASH, canonical_json, digest_text, sha256_hex
from .scrub import secret_rules

if TYPE_CHECKING:
    from .store.base import AuditHead, AuditRecord, Store

__all__ = ["MAX_FIELD_CHARS", "AuditLog", "VerifyReport", "chain_hash", "sanitize",
           "verify_records"]

MAX_FIELD_CHARS = 300


def chain_hash(prev_hash: str, seq: int, ts_us: int, kind: str, data: Mapping[str, Any]) -> str:
    body = canonical_json({"seq": seq, "ts_us": ts_us, "kind": kind, "data": data})
    return sha256_hex(prev_hash.encode("ascii") + body)


def sanitize(data: Mapping[str, Any]) -> dict[str, Any]:
    """Keep scalars and short strings free of credentials; anything longer is replaced by
    its digest, and a short string holding a credential by the credential's rule ids."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        out[str(key)] = _clean(value)
    return out


def _clean(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, str):
        if len(value) > MAX_FIELD_CHARS:
            return {"digest": digest_text(value)}
        # Short fields can still be model-chosen text (an agent type, an error line).
        rules = secret_rules(value)
        return {"redacted": rules, "chars": len(value)} if rules else value
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_clean(v) for v in value]
    return _clean(str(value))


class VerifyReport(NamedTuple):
    ok: bool
    events: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str | None = None

    def one_line(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.events} events, head {self.head_hash}"
        return f"audit chain BROKEN at row seq={self.first_bad_seq}: {self.problem}"


def verify_records(records: Iterable[AuditRecord], head: AuditHead) -> VerifyReport:
    prev, expected_seq, count = GENESIS_HASH, 1, 0
    for rec in records:
        if rec.seq != expected_seq:
            what = "deleted" if rec.seq > expected_seq else "duplicated or reordered"
            return VerifyReport(False, count, prev, expected_seq,
                                f"expected seq {expected_seq}, found {rec.seq}: rows {what}")
        if rec.prev_hash != prev:
            return VerifyReport(False, count, prev, rec.seq,
                                "prev_hash does not match the previous row: rows removed "
                                "or reordered")
        try:
            digest: str | None = chain_hash(prev, rec.seq, rec.ts_us, rec.kind, rec.data)
        except (TypeError, ValueError):  # a damaged row that no longer serialises
            digest = None
        if digest != rec.hash:
            return VerifyReport(False, count, prev, rec.seq,
                                "hash does not match the row's content: row edited")
        prev, expected_seq, count = rec.hash, expected_seq + 1, count + 1
    if count != head.events or prev != head.hash:
        return VerifyReport(False, count, prev, count + 1,
                            f"chain ends at {count} rows but the recorded head says "
                            f"{head.events} rows ending {head.hash[:12]}: tail rows removed")
    return VerifyReport(True, count, prev)


class AuditLog:
    """The one way the core writes audit events."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def record(self, kind: str, **fields: Any) -> AuditRecord:
        """Inside the caller's `store.transaction()`, the event commits with the caller's
        state change or not at all."""
        return self._store.append_audit(kind, sanitize(fields))

    def verify(self) -> VerifyReport:
        head = self._store.audit_head()
        return verify_records(self._store.iter_audit(), head)
