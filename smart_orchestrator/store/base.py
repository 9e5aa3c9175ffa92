"""The store contract. Every backend implements `Store` and passes `conformance`.

Records are NamedTuples: the service imports this before it can answer a cold session's
first hook call, and a NamedTuple is several times cheaper to define than a dataclass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from ..witness import Checkpoint, Witness
    from .repos import (
        AuditQueries,
        BreakerRepo,
        ClaimRepo,
        GateRepo,
        LeaseRepo,
        LedgerRepo,
        RateGateRepo,
        TrustRepo,
        WaveRepo,
    )

__all__ = [
    "AuditHead",
    "AuditRecord",
    "CheckpointBlob",
    "CheckpointMeta",
    "Store",
    "WitnessedStore",
]


class AuditRecord(NamedTuple):
    seq: int
    ts_us: int
    kind: str
    data: Mapping[str, Any]
    prev_hash: str
    hash: str


class AuditHead(NamedTuple):
    """What the store believes the end of the chain is, kept beside the chain itself."""

    events: int
    seq: int
    hash: str


class CheckpointMeta(NamedTuple):
    id: int
    name: str
    created_us: int
    sha256: str
    size: int


class CheckpointBlob(NamedTuple):
    meta: CheckpointMeta
    payload: bytes


class Store(Protocol):
    """Durable state. Writes are atomic; a failed write leaves what was stored intact."""

    # One repository per kind of state (see `repos`).
    @property
    def audit(self) -> AuditQueries: ...

    @property
    def leases(self) -> LeaseRepo: ...

    @property
    def breakers(self) -> BreakerRepo: ...

    @property
    def claims(self) -> ClaimRepo: ...

    @property
    def trust(self) -> TrustRepo: ...

    @property
    def waves(self) -> WaveRepo: ...

    @property
    def gates(self) -> GateRepo: ...

    @property
    def ledger(self) -> LedgerRepo: ...

    @property
    def rate_gate(self) -> RateGateRepo: ...

    @property
    def location(self) -> str: ...

    def close(self) -> None: ...

    def integrity_problems(self) -> list[str]:
        """What the backend's own checks find wrong with what it holds; empty when sound."""
        ...

    def transaction(self) -> AbstractContextManager[object]:
        """A unit of work over every repository, audit appends included. Transactions
        nest: an inner one is a savepoint, and an error leaving it undoes only its own
        writes. The outermost serialises writers (no read-then-write race)."""
        ...

    def decision(self) -> AbstractContextManager[None]:
        """One decision's work, which may span several transactions and reads. A backend
        far away sends its statements together and confirms the commits once at the end
        (raising then if one failed, so the decision fails closed); a local one has
        nothing to gain and runs each as it comes. Nests: only the outermost counts."""
        ...

    def idle(self) -> AbstractContextManager[None]:
        """Inside a decision, around a wait: what the decision sent is confirmed and the
        store is free for other threads until the wait ends."""
        ...

    def read_ahead(self, reads: Callable[[], object]) -> None:
        """A hint inside a decision: the reads `reads` makes (outside transactions) will
        be made soon. A distant store sends them now, so they share a round trip with
        whatever is read next; a local one ignores it (`reads` is not called)."""
        ...

    # Audit: insert-only, hash-chained. The store computes the chain link inside the
    # same transaction that reads the previous head, so concurrent writers never fork it.
    # Inside a caller's transaction the row commits with the caller's writes or not at all.
    def append_audit(self, kind: str, data: Mapping[str, Any]) -> AuditRecord: ...

    def iter_audit(self, *, after_seq: int = 0) -> Iterator[AuditRecord]: ...

    def audit_head(self) -> AuditHead: ...

    # Checkpoints: payload bytes with the digest the writer computed, newest first.
    def put_checkpoint(self, name: str, payload: bytes, sha256: str, *,
                       keep: int) -> CheckpointMeta: ...

    def checkpoint_blobs(self, name: str) -> list[CheckpointBlob]: ...

    def list_checkpoints(self, name: str | None = None) -> list[CheckpointMeta]: ...

    # Small typed state shared by processes (policy counters, breaker states, leases).
    def kv_get(self, key: str) -> str | None: ...

    def kv_set(self, key: str, value: str) -> None: ...


class WitnessedStore(Store, Protocol):
    """A store whose chain is also witnessed outside it (what `audit verify` and the
    service's watch read). Both backends are."""

    witness: Witness
    witness_problem: str | None

    def reopen(self) -> WitnessedStore:
        """A second connection to the same store (for another thread's long work)."""
        ...

    def follow_path(self) -> tuple[bool, AuditRecord | None]: ...

    def reconcile_witness(self, *, cause: str | None = None,
                          seen: Checkpoint | None = None) -> AuditRecord | None: ...
