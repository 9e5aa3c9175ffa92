"""Who may change stock: staff tokens are compared in constant time."""

from __future__ import annotations

import hmac


def may_change_stock(token: str, staff_tokens: set[str]) -> bool:
    return any(hmac.compare_digest(token, known) for known in staff_tokens)
