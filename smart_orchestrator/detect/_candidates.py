"""The internal shape of a possible secret before overlap resolution and filtering."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["PRIORITY_CONTEXT", "PRIORITY_FORMAT", "PRIORITY_GENERIC", "Hit"]

# Lower wins when two hits overlap: a known format beats a keyword guess.
PRIORITY_FORMAT = 0
PRIORITY_CONTEXT = 1
PRIORITY_GENERIC = 2


class Hit(NamedTuple):
    rule_id: str
    start: int
    end: int
    severity: str
    priority: int
    # Strings whose sha1 a detect-secrets baseline may hold for this secret.
    hash_values: tuple[str, ...] = ()
