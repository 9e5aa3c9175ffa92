"""What `status` reports, gathered from the store."""

from __future__ import annotations

from typing import Any

from .audit import AuditLog
from .store import open_store

__all__ = ["collect_status", "render_status"]


def collect_status(db: str | None = None) -> dict[str, Any]:
    store = open_store(db, readonly=True)
    try:
        head = store.audit_head()
        return {
            "database": store.location,
            "audit_events": head.count,
            "audit_head": head.hash,
            "checkpoints": len(store.list_checkpoints()),
            "integrity": store.integrity_problems() or "ok",
            "chain": AuditLog(store).verify().one_line(),
        }
    finally:
        store.close()


def render_status(status: dict[str, Any]) -> str:
    width = max(len(k) for k in status)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in status.items())
