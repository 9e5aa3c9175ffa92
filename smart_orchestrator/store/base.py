"""The store contract. Every backend implements `Store` and passes `conformance`.

Records are NamedTuples: command hooks import this on every tool call, and a NamedTuple
is several times cheaper to define than a dataclass.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple, Protocol

__all__ = [
    "AuditHead",
    "AuditRecord",
    "CheckpointBlob",
    "CheckpointMeta",
    "Store",
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

    @property
    def location(self) -> str: ...

    def close(self) -> None: ...

    # Audit: insert-only, hash-chained. The store computes the chain link inside the
    # same transaction that reads the previous head, so concurrent writers never fork it.
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
