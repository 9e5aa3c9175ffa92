"""Canonical JSON and digests: the one definition every hash in the store relies on."""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["GENESIS_HASH", "canonical_json", "digest_text", "sha256_hex"]

GENESIS_HASH = "0" * 64


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8, no NaN: equal values always give equal bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_text(text: str) -> dict[str, Any]:
    """What the audit log keeps of a prompt or an output: never the text itself."""
    raw = text.encode("utf-8", "surrogatepass")
    return {"sha256": sha256_hex(raw), "bytes": len(raw)}
